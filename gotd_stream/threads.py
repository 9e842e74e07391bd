"""Sums that do not depend on the thread count: below features/ and select/, which both need them.

torch, BLAS and LAPACK split a matmul's or a reduction's sums by thread count, so a result computed on several
threads can differ in its last bits from one machine's settings to another's. What must be the same bits
everywhere (the OT potentials, the lexical projection, a distilled static model) is computed on one thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch, BLAS and LAPACK on one CPU thread inside the block, then restore the thread counts.

    Their sums are split by thread count (a matmul's, a reduction's), so a fit made on one thread is the same
    bits whatever the machine's settings (`OMP_NUM_THREADS`, `torch.set_num_threads`).
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)
