"""Synthetic "CLIP-like" image vectors: photos of three kinds, as an image encoder would have embedded them.

Each kind is a direction in 512 dimensions; a photo is its kind's direction plus noise, rounded to float32 as
encoders write them. Written as a corpus of two JSONL shards and one Parquet shard (a fixed-size list column of
float32, as `datasets` or pandas would store embeddings), and a target of one kind. No model, only numpy.

    python make_vectors.py OUT_DIR [--target-kind street] [--photos 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import orjson

KINDS = ("portrait", "street", "food")
DIM = 512


def photos(n: int, rng: np.random.Generator, centres: np.ndarray, kinds: list[int], noise: float = 1.0):
    """n records: an id, the kind (for checking the selection only) and the photo's vector."""
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        vector = centres[kind] + noise * rng.standard_normal(DIM) / np.sqrt(DIM)
        out.append({"id": f"img-{i:05d}", "kind": KINDS[kind], "clip": vector.astype(np.float32).tolist()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--target-kind", choices=KINDS, default="street")
    parser.add_argument("--photos", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((len(KINDS), DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = photos(args.photos, rng, centres, list(range(len(KINDS))))
    rng.shuffle(corpus)
    third = len(corpus) // 3
    for i, part in enumerate((corpus[:third], corpus[third : 2 * third])):
        (args.out / f"photos-{i}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in part))
    import pyarrow as pa
    import pyarrow.parquet as pq

    rest = corpus[2 * third :]
    table = pa.table(
        {
            "id": [r["id"] for r in rest],
            "kind": [r["kind"] for r in rest],
            "clip": pa.array([r["clip"] for r in rest], type=pa.list_(pa.float32(), DIM)),
        }
    )
    pq.write_table(table, args.out / "photos-2.parquet")
    target = photos(200, rng, centres, [KINDS.index(args.target_kind)])
    (args.out / "target.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in target))


if __name__ == "__main__":
    main()
