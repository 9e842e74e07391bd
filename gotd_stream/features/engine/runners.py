"""The model runners of the fast path: Engine for a transformer (sorted, padded batches, the forward pass in a
thread of its own on a GPU) and BagEngine for a static model (the mean of token rows, in numpy)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from gotd_stream.features.engine.batches import (
    WINDOW_BATCHES,
    Batch,
    Packed,
    default_batch_tokens,
    pad_rows,
    plan_batches,
)
from gotd_stream.features.engine.pipeline import DEPTH, receive, send, start_stage
from gotd_stream.features.engine.workers import (
    CHUNK_DOCS,
    TIGHT_CHARS_PER_TOKEN,
    Chunk,
    Tokenize,
    TokenizerSpec,
    auto_workers,
    bag_workers,
    concat_chunks,
    cpu_count,
    init_worker,
    splits_at_whitespace,
    tokenize_job,
    warm_up,
)

SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


# What an engine tokenises to check itself against the model's own preprocessing: short and long, odd characters
PROBES = (
    "Hello, world!",
    "Ünïcödé — “quotes” and emoji 🙂 in a sentence.",
    " ".join(f"word{i} and more text" for i in range(400)),
    "x" * 5000,
)


def text_spec(serialised: str, direction: str, max_tokens: int, full_chars: int, **more) -> TokenizerSpec:
    """The tokenizer spec of a text model: texts cut to `full_chars`, and to fewer characters first when the
    tokenizer splits at whitespace and truncates on the right (so that no token is lost at the cut)."""
    tight = direction == "right" and splits_at_whitespace(serialised)
    return TokenizerSpec(
        json=serialised,
        max_tokens=max_tokens,
        direction=direction,
        tight_chars=max_tokens * TIGHT_CHARS_PER_TOKEN if tight else 0,
        full_chars=full_chars,
        types=False,
        **more,
    )


class Engine:
    """Embeds windows of texts with a SentenceTransformer, overlapping reading, tokenising and the forward pass."""

    inline_windows = 0  # windows tokenised in the main process before the workers take over
    chunk_docs = CHUNK_DOCS  # texts per job of a worker (and per call inline)
    share_cores = False  # whether the torch threads leave the workers' cores to them while streaming (CPU)

    def __init__(
        self,
        model,
        spec: TokenizerSpec,
        *,
        extra: dict,
        wants_types: bool,
        dim: int,
        device: str,
        batch_tokens: int,
        max_rows: int | None,
        workers: int,
        pad_id: int,
        left_pad: bool,
    ):
        self.model, self.spec, self.dim = model, spec, dim
        self.extra, self.wants_types = extra, wants_types  # features besides the tensors (e.g. modality)
        self.device = self._device(device)
        self.cuda = str(self.device).startswith("cuda")
        self.threaded = self.cuda  # the forward pass in a thread of its own (see stream)
        self.batch_tokens = max(batch_tokens, spec.max_tokens)  # one full-length text always fits
        self.max_rows, self.workers = max_rows, workers
        self.pad_id, self.left_pad = pad_id, left_pad
        self._pool = None
        self._pool_side: Any = None
        self._inline: Tokenize | None = None

    def _device(self, device: str):
        import torch

        return torch.device(device)

    @contextlib.contextmanager
    def _cores(self) -> Iterator[None]:
        """While streaming on the CPU with workers: torch threads for the cores the workers leave (else they wait
        on each other)."""
        import torch

        torch_threads = torch.get_num_threads()
        if self.share_cores and self.workers > 0 and not self.cuda:
            torch.set_num_threads(max(1, min(torch_threads, cpu_count() - self.workers)))
        try:
            yield
        finally:
            torch.set_num_threads(torch_threads)

    @classmethod
    def for_model(
        cls,
        model,
        *,
        device: str,
        max_tokens: int,
        full_chars: int,
        batch_tokens: int | None = None,
        max_rows: int | None = None,
        workers: int | None = None,
        dim: int,
    ) -> Engine | None:
        """The engine for a loaded SentenceTransformer, or None when its input is not plain text through a fast
        tokenizer (another modality, a default prompt, flattened inputs): the caller then falls back to encode()."""
        if getattr(model, "default_prompt_name", None):
            return None
        if is_bag(model[0]):
            return BagEngine.for_bag(
                model, device=device, max_tokens=max_tokens, full_chars=full_chars, workers=workers, dim=dim
            )
        tokenizer = getattr(model, "tokenizer", None)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not getattr(tokenizer, "is_fast", False):
            return None
        template = _preprocess(model, ["a probe"])  # which features the model's own preprocessing makes
        known = {"input_ids", "attention_mask", "token_type_ids"}
        tensors = {k for k, v in template.items() if hasattr(v, "shape")}
        if not {"input_ids", "attention_mask"} <= tensors or tensors - known:
            return None
        spec = text_spec(backend.to_str(), getattr(tokenizer, "truncation_side", "right"), max_tokens, full_chars)
        probe = Tokenize(spec)
        wants_types = "token_type_ids" in tensors
        if wants_types and any(probe.tokens(["a probe"])[0].type_ids):
            spec = dataclasses.replace(spec, types=True)
        engine = cls(
            model,
            spec,
            extra={k: v for k, v in template.items() if k not in tensors},
            wants_types=wants_types,
            dim=dim,
            device=device,
            batch_tokens=batch_tokens or default_batch_tokens(device),
            max_rows=max_rows,
            workers=auto_workers(device) if workers is None else workers,
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            left_pad=getattr(tokenizer, "padding_side", "right") == "left",
        )
        return engine if engine.agrees_with_model() else None

    def agrees_with_model(self) -> bool:
        """Our tokens equal the model's own preprocessing on a few probes, short and long (else: fall back)."""
        probes = PROBES
        ours = self._tokenizer_inline().tokens([p[: self.spec.full_chars] for p in probes])
        theirs = _preprocess(self.model, [p[: self.spec.full_chars] for p in probes])
        mask = theirs["attention_mask"].bool()
        return all(e.ids == theirs["input_ids"][i][mask[i]].tolist() for i, e in enumerate(ours))

    @property
    def window(self) -> int:
        """Documents sorted and batched together."""
        rows = max(1, self.batch_tokens // self.spec.max_tokens)
        if self.max_rows:
            rows = min(rows, self.max_rows)
        return WINDOW_BATCHES * rows

    def send_chars(self, side: Any) -> int:
        return max(self.spec.full_chars, getattr(side, "char_budget", 0) if side is not None else 0)

    def _tokenizer_inline(self) -> Tokenize:
        if self._inline is None:
            self._inline = Tokenize(self.spec)
        return self._inline

    def _executor(self, side: Any):
        """The worker pool, (re)started for this side featurizer: workers get the tokenizer and the side once."""
        if self._pool is not None and self._pool_side is side:
            return self._pool
        self.close()
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent holds torch's threads (and maybe CUDA), which a fork must not inherit
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.spec, side),
        )
        self._pool_side = side
        _close_at_exit(self)
        # an engine dropped without close() (the command line's end): the workers stop with it, at once
        weakref.finalize(self, self._pool.shutdown, wait=True, cancel_futures=True)
        return self._pool

    def _start(self, side: Any) -> None:
        """Start every worker process now (a pool starts them at its first jobs): one empty job each."""
        pool = self._executor(side)
        for _ in range(self.workers):
            pool.submit(warm_up)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._pool_side = None, None

    # --- the stages ---

    def stream(
        self, items: Iterable[tuple[Any, list[str]]], side: Any = None
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray | None]]:
        """(key, texts) -> (key, L2-normalised float32 embeddings in input order, side rows), window by window."""
        stop = threading.Event()
        tokenized: queue.Queue = queue.Queue(DEPTH)
        packed: queue.Queue = queue.Queue(DEPTH)
        done: queue.Queue = queue.Queue(DEPTH)
        # the first `inline_windows` windows are tokenised here, so that a short input never waits for worker
        # processes to start (they start with the window after)
        inline_windows = self.inline_windows if self.workers > 0 else math.inf
        inline: list[Tokenize] = []
        limit, size = self.send_chars(side), self.chunk_docs

        def read() -> None:
            for number, (key, texts) in enumerate(items):
                texts = [t[:limit] for t in texts]
                if number == 0 and 0 < inline_windows < math.inf and len(texts) >= self.window:
                    # a full first window: more is coming. The workers start now, and import and set up while
                    # the first windows are tokenised here (a short input never starts them)
                    self._start(side)
                if number >= inline_windows:
                    pool = self._executor(side)
                    job = [pool.submit(tokenize_job, texts[i : i + size]) for i in range(0, len(texts), size)]
                else:
                    job = texts
                if not send(tokenized, (key, job), stop):
                    return

        def pack() -> None:
            for key, job in receive(tokenized, stop):
                if job and not isinstance(job[0], str):  # futures of the workers
                    chunk = concat_chunks([f.result() for f in job])
                else:  # in chunks too: the tokenizer's transient memory stays small
                    inline[:] = inline or [Tokenize(self.spec, side)]
                    chunk = concat_chunks([inline[0](job[i : i + size]) for i in range(0, len(job), size)])
                if not send(packed, self._pack(key, chunk), stop):
                    return

        def forward() -> None:
            for item in receive(packed, stop):
                if not send(done, self._forward(item), stop):
                    return

        threads = [start_stage(read, tokenized, stop, "gotd-read"), start_stage(pack, packed, stop, "gotd-pack")]
        finished = False
        switch = sys.getswitchinterval()
        cores = contextlib.ExitStack()  # the thread counts while streaming, restored in the finally
        cores.enter_context(self._cores())
        try:
            if self.threaded:
                # the GPU works through a window while this thread scores the previous one. Every torch op
                # releases and retakes the GIL: a shorter switch interval keeps the reader's bursts of Python
                # from stalling the kernel launches (measured: 30 -> 6 us per op beside a busy thread)
                sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
                threads.append(start_stage(forward, done, stop, "gotd-forward"))
                yield from receive(done, stop)
            else:
                # on the CPU the forward pass needs the cores anyway; in this thread its large buffers stay in
                # one malloc arena (a second thread holding them would raise the peak RSS)
                for item in receive(packed, stop):
                    yield self._forward(item)
            finished = True
        finally:
            sys.setswitchinterval(switch)
            cores.close()
            stop.set()
            if not finished and self._pool is not None:
                self.close()  # a failure or an early stop: drop the tokenising queued for windows never used
            for thread in threads:
                thread.join(timeout=0.5 if thread.name == "gotd-read" else 10)

    def _pack(self, key: Any, chunk: Chunk) -> Packed:
        import torch

        order, bounds = plan_batches(chunk.lengths, self.batch_tokens, self.max_rows)
        offsets = np.concatenate([[0], np.cumsum(chunk.lengths, dtype=np.int64)[:-1]])
        batches = []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            rows = order[start:end]
            width = max(1, int(chunk.lengths[rows[0]]))
            ids = torch.empty((len(rows), width), dtype=torch.int32, pin_memory=self.cuda)
            types = None
            if self.spec.types:
                types = torch.empty((len(rows), width), dtype=torch.int8, pin_memory=self.cuda)
            out_types = None if types is None else types.numpy()
            pad_rows(chunk, offsets, rows, self.pad_id, self.left_pad, ids.numpy(), out_types)
            lengths = torch.from_numpy(chunk.lengths[rows].copy())
            batches.append(Batch(ids, lengths.pin_memory() if self.cuda else lengths, types))
        return Packed(key, order, batches, chunk.side)

    def _forward(self, item: Packed) -> tuple[Any, np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode():
            return self._forward_batches(item)

    def _forward_batches(self, item: Packed) -> tuple[Any, np.ndarray, np.ndarray | None]:
        import torch

        dev = self.device
        outputs = []
        for batch in item.batches:
            ids = batch.ids.to(dev, non_blocking=True).long()
            lengths = batch.lengths.to(dev, non_blocking=True).long()
            positions = torch.arange(ids.shape[1], device=dev)
            if self.left_pad:
                mask = positions[None, :] >= (ids.shape[1] - lengths)[:, None]
            else:
                mask = positions[None, :] < lengths[:, None]
            features = dict(self.extra, input_ids=ids, attention_mask=mask.long())
            if self.wants_types:
                features["token_type_ids"] = (
                    batch.types.to(dev, non_blocking=True).long() if batch.types is not None else torch.zeros_like(ids)
                )
            outputs.append(self.model(features)["sentence_embedding"].float())
        if outputs:
            emb = torch.cat(outputs)
            restored = torch.empty_like(emb)
            restored[torch.from_numpy(item.order).to(dev)] = emb
            # a non-finite row stays non-finite (the pipeline skips it); the others get unit length
            restored = restored / restored.norm(dim=1, keepdim=True).clamp_min(1e-12)
            result = restored.cpu().numpy()
        else:
            result = np.zeros((0, self.dim), np.float32)
        return item.key, result, item.side


def is_bag(module) -> bool:
    """Whether a model's first module is a StaticEmbedding: a text is the mean of its tokens' rows (our numpy
    StaticBag, or sentence-transformers' EmbeddingBag, over the ids of its tokenizer, a tokenizers.Tokenizer,
    without special tokens)."""
    from gotd_stream.features.static import StaticBag

    if isinstance(module, StaticBag):
        return True
    if "torch" not in sys.modules:  # no torch module can be loaded yet
        return False
    from tokenizers import Tokenizer
    from torch import nn

    return isinstance(getattr(module, "embedding", None), nn.EmbeddingBag) and isinstance(
        getattr(module, "tokenizer", None), Tokenizer
    )


def bag_table(module) -> np.ndarray:
    """A bag module's table of token rows, float32 on the CPU (sentence-transformers' StaticEmbedding: copied
    out of its EmbeddingBag once)."""
    from gotd_stream.features.static import StaticBag

    if isinstance(module, StaticBag):
        return module.weights
    return np.ascontiguousarray(module.embedding.weight.detach().float().cpu().numpy())


BAG_WINDOW = 4096  # texts per window of a static model: no batches to sort, one bag call per window


class BagEngine(Engine):
    """The engine for a StaticEmbedding model: the same reader, tokenizers (inline or in workers) and side
    features, but no padding, no sorting, no batches and no torch: the window's token ids, flat, and their
    lengths give each text the mean of its token rows in numpy on the CPU (features.static.bag_means), exactly
    what SentenceTransformer.encode gives them (a row's mean is computed over its own tokens, whatever bags come
    with it: the same bits in any window)."""

    inline_windows = 1  # a window takes well under a second here: a short input needs no worker processes
    chunk_docs = 1024  # the lexical half costs less per text in larger calls (the tokenizer's memory is small)
    share_cores = True  # the bag and the scoring need few cores, the workers the rest
    table: np.ndarray  # the model's token rows, float32 (bag_table), set by for_bag

    @classmethod
    def for_bag(
        cls, model, *, device: str, max_tokens: int, full_chars: int, workers: int | None, dim: int
    ) -> BagEngine | None:
        tokenizer = model[0].tokenizer
        direction = (tokenizer.truncation or {}).get("direction", "right")
        spec = text_spec(tokenizer.to_str(), direction, max_tokens, full_chars, special_tokens=False)
        engine = cls(
            model,
            spec,
            extra={},
            wants_types=False,
            dim=dim,
            device=device,
            batch_tokens=max_tokens,
            max_rows=None,
            workers=bag_workers() if workers is None else workers,
            pad_id=0,
            left_pad=False,
        )
        engine.table = bag_table(model[0])
        return engine if engine.agrees_with_model() else None

    def _device(self, device: str) -> str:
        return "cpu"  # the bag runs in numpy (the scores' device is the caller's)

    @contextlib.contextmanager
    def _cores(self) -> Iterator[None]:
        """While streaming with workers: BLAS threads (the c-transform's matmul) for the cores the workers
        leave, as few as one (else they wait on each other)."""
        if not (self.share_cores and self.workers > 0):
            yield
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(max(1, cpu_count() - self.workers), user_api="blas"):
            yield

    def agrees_with_model(self) -> bool:
        probes = PROBES
        cut = [p[: self.spec.full_chars] for p in probes]
        ours = self._tokenizer_inline().ids(cut)
        theirs = _preprocess(self.model, cut)
        flat = [i for row in ours for i in row]
        starts = np.cumsum([0] + [len(row) for row in ours[:-1]]).tolist()
        return flat == theirs["input_ids"].tolist() and starts == theirs["offsets"].tolist()

    @property
    def window(self) -> int:
        return BAG_WINDOW

    def _pack(self, key: Any, chunk: Chunk) -> tuple[Any, Chunk]:
        return key, chunk

    def _forward(self, item: tuple[Any, Chunk]) -> tuple[Any, np.ndarray, np.ndarray | None]:
        from gotd_stream.features.base import unit_rows
        from gotd_stream.features.static import bag_means

        key, chunk = item
        if not len(chunk.lengths):
            return key, np.zeros((0, self.dim), np.float32), chunk.side
        emb = bag_means(self.table, chunk.ids, chunk.lengths)
        # normalised as the plain path does (numpy), so that both give the same bits
        return key, unit_rows(emb), chunk.side


def _close_at_exit(engine: Engine) -> None:
    """Shut the engine's worker pool down when the interpreter exits, before concurrent.futures' own exit hook:
    a pool still open then races that hook, which can print an OSError traceback (a closed pipe) at exit.
    threading's exit hooks run last-registered first, before non-daemon threads are joined."""
    ref = weakref.ref(engine)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(close)
            return
    except RuntimeError:  # the interpreter is already shutting down
        return
    import atexit

    atexit.register(close)


def _preprocess(model, texts: list[str]) -> dict:
    """The model's own features for `texts` (preprocess() since sentence-transformers 6, tokenize() before)."""
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)
