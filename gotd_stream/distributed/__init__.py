"""Past one machine, on engines that schedule and retry: Slurm job arrays (shards.py) and Ray (ray.py).

Our own code stays "what one shard does" (select.score.score_shard, select.sample.bottom_k_keyed) and "how shard
results merge" (per-shard top-k lists in input order, per-shard bottom-k samples); the engines do the rest.
"""
