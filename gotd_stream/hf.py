"""Hugging Face models, loaded offline and safely: what the embedder and fine-tuning share.

Nothing is fetched from a hub, weights come from safetensors only (a pickled .bin file can run code), and the
progress bars and warnings of transformers stay quiet: our commands report on stderr themselves.
"""

from __future__ import annotations

import os
import sys

from gotd_stream.errors import UsageProblem, setting

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


class DeviceUnavailable(UsageProblem):
    """A device that is not one torch can use here (no CUDA, a name torch does not run on); says which exist."""


def devices_here() -> list[str]:
    """The device names that work on this machine: cpu, cuda:N for each GPU torch sees, mps on Apple silicon."""
    import torch

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    mps = getattr(torch.backends, "mps", None)
    return found + (["mps"] if mps is not None and mps.is_available() else [])


# Device files of the GPUs torch can use on Linux (NVIDIA, ROCm, WSL): without any, torch sees no CUDA device
GPU_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def no_gpu_here() -> bool:
    """Whether torch surely sees no CUDA device, known without importing torch (a second of a score's start-up):
    on Linux no GPU device file, on macOS always (`auto` never picks mps). Elsewhere, or with torch loaded, False:
    torch is asked."""
    if "torch" in sys.modules:
        return False
    if sys.platform == "darwin":
        return True
    return sys.platform.startswith("linux") and not any(os.path.exists(path) for path in GPU_FILES)


def pick_device(device: str) -> str:
    """`auto`: the GPU when torch sees one, else the CPU; else the name given, once it is known to work here
    (DeviceUnavailable otherwise: torch's own failure comes late, as a traceback or an assertion). `cpu`, and
    `auto` on a machine without a GPU, need no torch."""
    if device == "cpu" or (device == "auto" and no_gpu_here()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    here = devices_here()
    name, _, index = device.partition(":")
    usable = device in here or (device == "cuda" and "cuda:0" in here)
    if usable:
        return device
    listed = f"the devices here: auto, {', '.join(here)}"
    if name == "cuda" and (index == "" or index.isdigit()):
        gpus = sum(d.startswith("cuda:") for d in here)
        if gpus:
            why = f"no {device} here (torch sees {gpus} GPU{'s' if gpus > 1 else ''})"
        else:
            why = f"no CUDA device here (torch sees none{'' if torch.version.cuda else ', and was built without CUDA'})"
        raise DeviceUnavailable(f"{setting('device')} {device}: {why}; {listed}")
    raise DeviceUnavailable(
        f"{setting('device')} {device}: not a device gotd-stream runs on here; give auto, cpu, cuda or cuda:N "
        f"({listed})"
    )
