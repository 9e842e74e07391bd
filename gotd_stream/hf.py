"""Hugging Face models, loaded offline and safely: what the embedder and fine-tuning share.

Nothing is fetched from a hub, weights come from safetensors only (a pickled .bin file can run code), and the
progress bars and warnings of transformers stay quiet: our commands report on stderr themselves.
"""

from __future__ import annotations

import os

SAFETENSORS_HINT = " (gotd-stream loads weights from model.safetensors only: a pickled .bin file can run code)"


def setup_offline() -> None:
    """No hub, no tokenizer threads beside ours (set before transformers is imported), quiet transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_failure(exc: Exception) -> str:
    """Why a model did not load, for a message: the library's own words, and our rule when they name safetensors."""
    return f"{exc}{SAFETENSORS_HINT}" if "safetensors" in str(exc) else str(exc)


def pick_device(device: str) -> str:
    """`auto`: the GPU when torch sees one, else the CPU; any other name as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
