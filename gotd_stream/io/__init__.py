"""Bytes and records in and out: decompression, JSONL records with their original bytes, atomic outputs."""
