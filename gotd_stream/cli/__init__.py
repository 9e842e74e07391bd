"""The gotd-stream command line: click over the public API in gotd_stream; heavy imports inside commands.

options.py    the shared options, the wording of the library's errors, exit codes, stderr lines
select.py     fit, score, merge, embed, info
several.py    several targets: checking them, the words of their summaries
report.py     report
finetune.py   finetune
"""

from __future__ import annotations

import click

from gotd_stream.cli.finetune import finetune
from gotd_stream.cli.options import CONTEXT
from gotd_stream.cli.report import report
from gotd_stream.cli.select import embed, fit, info, merge, score
from gotd_stream.version import __version__


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="gotd-stream")
def cli() -> None:
    """Select, from a huge JSONL corpus, the documents that best warm a model up for a target task (GOT-D).

    \b
      gotd-stream fit --target task.jsonl shards/*.jsonl.zst -o task.gotd
      zstdcat corpus.jsonl.zst | gotd-stream score --potentials task.gotd -k 50000 -o selected.jsonl.zst
      gotd-stream merge -k 50000 node*.jsonl.zst -o selected.jsonl.zst

    Data goes to stdout or -o; progress, warnings and the summary go to stderr.
    """


for command in (fit, score, merge, embed, info, report, finetune):
    cli.add_command(command)


def _terminated(signum, frame) -> None:
    """SIGTERM (kill, a scheduler's timeout) unwinds like Ctrl-C, so temporary files are removed."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    cli(prog_name="gotd-stream")
