"""Feature spaces for the OT problem: semantic (sentence embeddings), lexical (hashed n-grams), hybrid (both)."""
