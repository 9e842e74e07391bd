"""The manual stays true to itself and to the tool: cross-references name headings that exist, the table of
contents lists every `##` heading, links land on GitHub's anchors, every command has a section and every flag
of every command's --help is documented.

The convention: a capitalised italic span, `*Several targets*`, is a reference to a section. It resolves in the
file it is written in, or in the file named just before it (`BENCHMARKS.md *Token parity*`, `the README's *Input and
output*`). It names a heading in full, or the part of it before a colon: `*Several targets*` is the heading
`Several targets: --target NAME=FILE:WEIGHT, --mix quota|sum`. Lower-case italics (*f*, *hybrid*) are emphasis.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import run

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md")
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
# *Capitalised words*, not **bold**: a single star on each side, the span starting with a capital letter
REFERENCE = re.compile(r"(?<![*\w\\])\*(?![*\s])([A-Z][^*]*?)(?<![\s\\])\*(?![*\w])")
NAMED_FILE = re.compile(r"(README|BENCHMARKS|ARCHITECTURE)(?:\.md)?(?:'s)?(?:\]\([^)]*\))?[,:]?\s*\(?\s*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """The text outside code blocks, each paragraph on one line (a reference may be reflowed over two)."""
    markdown = FENCE.sub("", markdown)
    return re.sub(r"\n(?!\n)[ \t]*", " ", markdown)


def plain(heading: str) -> str:
    """A heading as it reads: inline code, emphasis and links reduced to their text."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return heading.replace("`", "").replace("**", "").strip()


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks (a `# comment` in a shell block is no heading)."""
    return [(len(m.group(1)), m.group(2)) for m in HEADING.finditer(FENCE.sub("", markdown))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    words = plain(heading).lower()
    kept = "".join(c for c in words if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor GitHub makes for the headings of a file: a repeated one gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for _, heading in headings(markdown):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def names(markdown: str) -> set[str]:
    """What a reference may call a heading: its text, and its text up to the first colon."""
    found = set()
    for _, heading in headings(markdown):
        full = plain(heading)
        found |= {full, full.split(":", 1)[0].strip()}
    return found


def references(markdown: str, own: str) -> list[tuple[str, str]]:
    """(file it resolves in, section name) for each `*Section*` reference of a file's prose."""
    body = CODE.sub("``", prose(markdown))
    found = []
    for m in REFERENCE.finditer(body):
        before = NAMED_FILE.search(body[max(0, m.start() - 60) : m.start()])
        found.append((f"{before.group(1)}.md" if before else own, m.group(1)))
    return found


def section(markdown: str, title: str) -> str:
    """The text under the heading that reads `title` (or `title: ...`), down to the next heading of its level
    or above (its subsections included)."""
    lines = FENCE.sub(lambda m: m.group(0).replace("#", "\\#"), markdown).splitlines(keepends=True)
    start, level = None, 0
    for i, line in enumerate(lines):
        m = HEADING.match(line)
        if not m:
            continue
        if start is not None and len(m.group(1)) <= level:
            return "".join(lines[start:i])
        if start is None and re.match(rf"{re.escape(title)}(:|\s|$)", plain(m.group(2))):
            start, level = i, len(m.group(1))
    assert start is not None, f"README.md has no section {title!r}"
    return "".join(lines[start:])


def commands() -> list[str]:
    listing = run(["--help"]).stdout.split("Commands:", 1)[1]
    return re.findall(r"^  ([a-z][\w-]*)\s", listing, re.M)


def flags(command: list[str]) -> set[str]:
    """Every flag `--help` lists for a command: the lines of its Options that start with a dash."""
    options = run([*command, "--help"]).stdout.split("Options:", 1)[1]
    found = set()
    for line in options.splitlines():
        m = re.match(r"^  (-.*?)(?:\s{2,}|$)", line)
        if m:
            found |= set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", m.group(1)))
    return found


def mentions(body: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", body) is not None


# -- the checks -------------------------------------------------------------------------------------------------


def test_conventions_found_on_known_text():
    """The parsers see what they must, so the checks below cannot pass by finding nothing."""
    sample = (
        "# Top\n\n## Several targets: `--target NAME=FILE:WEIGHT`\n\n```\n# not a heading\n```\n\n"
        "See *Several targets*, the *hybrid* space and **bold**; (BENCHMARKS.md, *Token\nparity*) and *Gone*.\n"
        "## Target: speeches\n### Target: speeches\n"
    )
    assert headings(sample) == [(1, "Top"), (2, "Several targets: `--target NAME=FILE:WEIGHT`"),
                                (2, "Target: speeches"), (3, "Target: speeches")]  # fmt: skip
    assert references(sample, "README.md") == [
        ("README.md", "Several targets"),
        ("BENCHMARKS.md", "Token parity"),
        ("README.md", "Gone"),
    ]
    assert references("as the README's *Input and output* says", "BENCHMARKS.md") == [("README.md", "Input and output")]
    assert "Several targets" in names(sample) and "Gone" not in names(sample)
    assert anchors(sample) == {"top", "several-targets---target-namefileweight", "target-speeches", "target-speeches-1"}
    assert slug("Token parity: GOT-D against DSIR (both modes): `make quality` (bench/parity.py)") == (
        "token-parity-got-d-against-dsir-both-modes-make-quality-benchparitypy"
    )


@pytest.mark.parametrize("doc", DOCS)
def test_every_section_reference_names_a_heading(doc):
    """`see *Several targets*` must lead somewhere: a dropped or renamed section leaves such references behind."""
    dangling = [
        f"{doc}: *{name}* (in {where})" for where, name in references(text(doc), doc) if name not in names(text(where))
    ]
    assert not dangling, "references to sections that do not exist:\n" + "\n".join(dangling)


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_lands(doc):
    """Links to a file of the repository name one that exists; an #anchor is one GitHub makes for its headings."""
    broken = []
    for target in LINK.findall(FENCE.sub("", text(doc))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        where = path or doc
        if not (ROOT / where).exists():
            broken.append(f"{target} (no file {where})")
        elif anchor and anchor not in anchors(text(where)):
            broken.append(f"{target} (no heading of {where} has the anchor #{anchor})")
    assert not broken, f"{doc}: broken links:\n" + "\n".join(broken)


def test_contents_list_every_section():
    """The README opens with a table of contents: every `##` heading, each linked to its anchor."""
    readme = text("README.md")
    contents = section(readme, "Contents")
    linked = {target[1:] for target in LINK.findall(contents) if target.startswith("#")}
    top = [heading for level, heading in headings(readme) if level == 2 and plain(heading) != "Contents"]
    assert len(top) >= 10
    missing = [heading for heading in top if slug(heading) not in linked]
    assert not missing, "## headings missing from the table of contents: " + ", ".join(missing)
    assert linked <= anchors(readme), linked - anchors(readme)


def test_every_command_has_a_section():
    """No command left undocumented: each of `gotd-stream --help`'s commands has a heading of its own."""
    found = commands()
    assert {"fit", "score", "merge", "embed", "info", "report", "finetune"} <= set(found)
    titles = [plain(heading) for _, heading in headings(text("README.md"))]
    missing = [c for c in found if not any(re.match(rf"{c}(:|\s|$)", t) for t in titles)]
    assert not missing, f"commands without a README section: {missing}"


@pytest.mark.parametrize("command", ["fit", "score", "merge", "embed", "info", "report", "finetune"])
def test_every_flag_is_documented(command):
    """Each flag of `CMD --help` is named in the command's own section or in *Common options*."""
    readme = text("README.md")
    where = section(readme, command) + section(readme, "Common options")
    listed = flags([command])
    assert {"-h", "--help"} <= listed  # the parse works
    missing = sorted(flag for flag in listed if not mentions(where, flag))
    assert not missing, f"`{command} --help` lists flags its README section does not name: {missing}"


def test_top_level_flags_are_documented():
    readme = text("README.md")
    missing = sorted(flag for flag in flags([]) if not mentions(readme, flag))
    assert not missing, missing
