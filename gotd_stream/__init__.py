"""gotd-stream: streaming GOT-D data selection (Kang et al., ICLR 2024, arXiv 2405.02774)."""

__version__ = "0.1.0"

import os as _os

# MKL's strict reproducible mode: its matmuls give the same bits whatever the thread count, so a model's
# embeddings on the CPU do not depend on OMP_NUM_THREADS or torch.set_num_threads. MKL reads this at its first
# call, so it is set here, before anything imports torch; a value set by the user wins.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
