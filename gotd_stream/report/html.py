"""index.html: the report's numbers with their plots, in one self-contained file (PNG plots inlined as base64).

matplotlib draws on its Agg canvas directly (no pyplot, no global backend switch, no display); every text that
comes from the data is escaped in the HTML and drawn as plain text in the plots (no mathtext, no TeX).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import os
import warnings

from gotd_stream.errors import RuntimeProblem
from gotd_stream.io.outputs import atomic_output
from gotd_stream.io.remote import is_url

POOL, SELECTION, RANDOM = "#8c8c8c", "#1f6fb4", "#e3a21a"
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.7em 1em; }
.ok { background: #e9f5e9; border-left: 4px solid #3a9a3a; padding: 0.7em 1em; }
.text { font-size: 0.9em; max-width: 760px; white-space: pre-wrap; } img { max-width: 100%; }
.muted { color: #777; font-size: 0.9em; }
"""


class NoPlots(RuntimeProblem):
    """matplotlib is missing: the HTML report cannot draw its plots."""


PLAIN = {"text.usetex": False, "text.parse_math": False, "axes.formatter.use_mathtext": False}


def plain_text(plot):
    """Draw a plot with every text as plain text: a group value, a target or field name such as `$5 and $10`
    or `$\\frac{$` is data, never mathtext (which would draw a formula or raise) nor TeX (a user's matplotlibrc)."""

    @functools.wraps(plot)
    def drawn(report: dict) -> str:
        try:
            from matplotlib import rc_context
        except ImportError:
            raise NoPlots(
                "the HTML report needs matplotlib: pip install matplotlib (or ask for the JSON alone)"
            ) from None
        with rc_context(PLAIN), warnings.catch_warnings():
            # a character the font lacks (CJK, emoji) is drawn as a box; the tables beside the plot show it
            warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
            return plot(report)

    return drawn


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NoPlots("the HTML report needs matplotlib: pip install matplotlib (or ask for the JSON alone)") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # inside plain_text: the tick labels it makes are plain too
    return '<img alt="plot" src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'


def _hist(axes, hist: dict, key: str, color: str, label: str) -> None:
    """A histogram as a density (counts over n and bin width), so that a pool and a selection of other sizes compare."""
    if key not in hist or not hist[key].get("n") or not hist["edges"]:
        return
    edges, counts, n = hist["edges"], hist[key]["counts"], hist[key]["n"]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    density = [c / n / w if w > 0 else 0 for c, w in zip(counts, widths, strict=True)]
    filled = key == "selection"
    axes.stairs(density, edges, color=color, label=f"{label} (n={n:,})", fill=filled, alpha=0.55 if filled else 1.0)


def _legend(axes) -> None:
    """A legend when the panel drew something (an empty panel: a quota target that got no record)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


@plain_text
def plot_distances(report: dict) -> str:
    """Bars of the OT distance from each target to the selection, a random subset of the pool, and the pool."""
    rows = report["ot"]["targets"]
    figure = _figure(max(4.0, 1.6 * len(rows) + 2), 3.2)
    axes = figure.subplots()
    kinds = [
        ("to_selection", "selection", SELECTION),
        ("to_random", "random subset", RANDOM),
        ("to_pool", "pool", POOL),
    ]
    kinds = [k for k in kinds if k[0] in rows[0]]
    width = 0.8 / len(kinds)
    for j, (key, label, color) in enumerate(kinds):
        axes.bar([i + j * width for i in range(len(rows))], [r[key] for r in rows], width, label=label, color=color)
    axes.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(rows))], [r["name"] for r in rows])
    axes.set_ylabel("OT distance to the target")
    axes.legend()
    return _png(figure)


@plain_text
def plot_scores(report: dict) -> str:
    """One panel per score: the pool sample's distribution against the selection's."""
    views = report["scores"]
    figure = _figure(5.0 * min(len(views), 3), 3.0 * ((len(views) + 2) // 3))
    grid = figure.subplots((len(views) + 2) // 3, min(len(views), 3), squeeze=False)
    for axes in grid.flat[len(views) :]:
        axes.set_visible(False)
    for axes, view in zip(grid.flat, views, strict=False):
        _hist(axes, view, "pool", POOL, "pool")
        _hist(axes, view, "selection", SELECTION, "selection")
        axes.set_title(f"score: {view['name']}" if view["name"] != "score" else "score (lower is better)")
        axes.set_xlabel("calibrated OT gradient")
        _legend(axes)
    return _png(figure)


@plain_text
def plot_lengths(report: dict) -> str:
    """The lengths of the pool sample and of the selection (a length bias shows at a glance)."""
    figure = _figure(6.0, 3.0)
    axes = figure.subplots()
    _hist(axes, report["lengths"], "pool", POOL, "pool")
    _hist(axes, report["lengths"], "selection", SELECTION, "selection")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("characters")
    axes.set_ylabel("density")
    _legend(axes)
    return _png(figure)


@plain_text
def plot_composition(report: dict) -> str:
    """The selection's share of each value of the group field, against the pool's."""
    rows = report["composition"]["rows"]
    figure = _figure(7.0, max(2.0, 0.35 * len(rows) + 1))
    axes = figure.subplots()
    positions = list(range(len(rows)))[::-1]
    axes.barh(
        [p + 0.2 for p in positions], [r["selection_share"] for r in rows], 0.4, color=SELECTION, label="selection"
    )
    if rows and "pool_share" in rows[0]:
        axes.barh([p - 0.2 for p in positions], [r["pool_share"] for r in rows], 0.4, color=POOL, label="pool")
    axes.set_yticks(positions, [r["value"][:40] for r in rows])
    axes.set_xlabel(f"share of records by {report['composition']['field']}")
    axes.legend(fontsize="small")
    return _png(figure)


@plain_text
def plot_reference(report: dict) -> str:
    """The pool's and the target's OT distance to the pre-training sample, with two halves of it for scale."""
    ref = report["reference"]
    figure = _figure(5.0, 2.8)
    axes = figure.subplots()
    labels = ["pool", "target", "reference halves"]
    values = [ref["pool_to_reference"], ref["target_to_reference"], ref["reference_halves"]]
    axes.bar(labels, values, color=[POOL, SELECTION, "#bbbbbb"])
    axes.set_ylabel("OT distance to the reference")
    return _png(figure)


def _e(value) -> str:
    return html.escape(str(value))


def _num(value, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(row) + "</tr>")
    return "\n".join(out + ["</table>"])


def _examples(block: dict) -> str:
    parts = [f"<h3>{_e(block['view'])}: {block['kept']:,} kept, cut at {_num(block['cut'])}</h3>"]
    sections = [("best kept", block["best"]), ("worst kept", block["worst"])]
    if block["below_cut"] is not None:
        sections.append(("first below the cut (pool sample, not kept)", block["below_cut"]))
    for title, records in sections:
        rows = [
            [
                f'<td class="n">{r["score"]:.4f}</td>',
                f'<td class="n">{r["chars"]:,}</td>',
                f"<td>{_e(r['group'] if r['group'] is not None else '')}</td>",
                f'<td class="text">{_e(r["text"])}</td>',
            ]
            for r in records
        ]
        parts.append(f"<h4>{_e(title)}</h4>" + (_table(["score", "chars", "group", "text"], rows) if rows else ""))
    if block["below_cut"] is None:
        parts.append('<p class="muted">Give --pool to see the records just below the cut.</p>')
    return "\n".join(parts)


def render_html(report: dict) -> str:
    """The whole page, self-contained."""
    art, sel, pool = report["artifact"], report["selection"], report["pool"]
    ot = report["ot"]
    targets = ", ".join(f"{t['name']} ({t['weight']:.3g})" for t in art["targets"])
    body = [
        f"<h1>What the selection did: {_e(sel['path'])}</h1>",
        "<table>",
        f"<tr><th>artifact</th><td>{_e(art['path'])} (fit {_e(art['fit_id'])}, {_e(art['space'])} space)</td></tr>",
        f"<tr><th>targets</th><td>{_e(targets)}{' — mix ' + _e(sel['mix']) if sel['mix'] else ''}</td></tr>",
        f"<tr><th>selection</th><td>{sel['records']:,} records{_skipped(sel)}</td></tr>",
        "<tr><th>pool sample</th><td>"
        + (f"{_e(pool['path'])}: {pool['records']:,} records{_skipped(pool)}" if pool else "not given (--pool)")
        + "</td></tr>",
        *_guard_row(report.get("guard")),
        f"<tr><th>made</th><td>{_e(report['created'])} by gotd-stream {_e(report['gotd_stream'])}</td></tr>",
        "</table>",
    ]
    if report.get("counted"):
        counted = ", ".join(f"{_e(n)} {c:,}" for n, c in report["counted"].items())
        body.append(f"<p>Quota: the records counted for each target: {counted}.</p>")
    body.append("<h2>How far the selection moved the data toward the target</h2>")
    rows = [
        [
            f"<td>{_e(r['name'])}</td>",
            f'<td class="n">{_num(r["to_selection"])}</td>',
            f'<td class="n">{_num(r.get("to_random"))}</td>',
            f'<td class="n">{_num(r.get("to_pool"))}</td>',
            f'<td class="n">{_num(r.get("moved"), ".1%")}</td>',
        ]
        for r in ot["targets"]
    ]
    body.append(_table(["target", "selection", "random subset", "pool sample", "closer than the pool"], rows))
    body.append(
        f'<p class="muted">{_e(ot["method"])}; at most {ot["max_points"]:,} points a side (selection '
        f"{ot['selection_points']:,}, random subset {_num(ot['random_points'], ',')}, pool "
        f"{_num(ot['pool_points'], ',')}; seed {ot['seed']}). Lower is closer. The random subset has the "
        "selection's size: the distance a selection of that size has by chance.</p>"
    )
    body.append(plot_distances(report))
    body.append("<h2>Scores: the pool sample against the selection</h2>" + plot_scores(report))
    body.append("<h2>Lengths</h2>" + plot_lengths(report))
    columns = ("n", "p10", "median", "p90", "mean")
    length_rows = [
        [f"<td>{key}</td>"] + [f'<td class="n">{report["lengths"][key].get(s, 0):,.0f}</td>' for s in columns]
        for key in ("selection", "pool")
        if key in report["lengths"]
    ]
    body.append(_table(["characters", "records", "p10", "median", "p90", "mean"], length_rows))
    if report["composition"]:
        comp = report["composition"]
        body.append(f"<h2>Composition by {_e(comp['field'])}</h2>" + plot_composition(report))
        rows = [
            [
                f"<td>{_e(r['value'])}</td>",
                f'<td class="n">{r["selection"]:,}</td>',
                f'<td class="n">{r["selection_share"]:.1%}</td>',
                f'<td class="n">{r.get("pool", 0):,}</td>' if "pool" in r else "<td>–</td>",
                f'<td class="n">{r["pool_share"]:.1%}</td>' if "pool_share" in r else "<td>–</td>",
            ]
            for r in comp["rows"]
        ]
        body.append(_table([comp["field"], "selection", "share", "pool sample", "share"], rows))
    if report["reference"]:
        ref = report["reference"]
        body.append("<h2>The method's assumption: is the pool like the pre-training data?</h2>")
        if ref["warning"]:
            body.append(f'<p class="warning">{_e(ref["warning"])}</p>')
        elif ref["ratio"] is None:
            body.append(
                '<p class="ok">The target is no farther from the pre-training sample than two halves of the '
                "reference are from each other, so the pool is measured against that floor: it stands less than "
                f"{ref['threshold']:.0%} of it beyond (the report warns from there).</p>"
            )
        else:
            body.append(
                f'<p class="ok">The pool sample is much closer to the pre-training sample than the target is: it '
                f"stands {ref['ratio']:.0%} as far out as the target, beyond the distance between two halves of the "
                f"reference (the report warns from {ref['threshold']:.0%}).</p>"
            )
        body.append(plot_reference(report))
        body.append(
            f'<p class="muted">{_e(ref["path"])}: {ref["records"]:,} records, two halves of {ref["points"]:,}. '
            f"Pool ({ref['points']:,} rows) to one half {ref['pool_to_reference']:.4f}, target to it "
            f"{ref['target_to_reference']:.4f}, the other half to it {ref['reference_halves']:.4f} (the distance of "
            "two samples of one source at this size: the floor both are measured from).</p>"
        )
    body.append("<h2>Records to read</h2>")
    body.extend(_examples(block) for block in report["examples"])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gotd-stream report</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _guard_row(guard: dict | None) -> list[str]:
    """The duplicate guard's row: its mode, and what it dropped (from the selection's manifest) or why not known."""
    if guard is None:
        return []
    mode = guard["dedup"] + (f", threshold {guard['dedup_threshold']:g}" if guard["dedup"] == "near" else "")
    dropped = guard["dropped"]
    if dropped is None:
        said = f"dropped: not known ({guard['note']})"
    else:
        said = "dropped " + (
            ", ".join(f"{n:,} {'as copies' if why == 'copy' else why}" for why, n in sorted(dropped.items())) or "none"
        )
    return [f"<tr><th>duplicate guard</th><td>{_e(mode)}; {_e(said)}</td></tr>"]


def _skipped(part: dict) -> str:
    skipped = sum(part["skipped"].values())
    return f" ({skipped:,} skipped)" if skipped else ""


def strict(value):
    """The report with every number that is not finite (NaN, infinities) as null: report.json is strict JSON,
    which has no such numbers (the README lists the fields that can be null and what null means there)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def report_json(report: dict) -> bytes:
    """report.json's bytes: strict JSON (no NaN or Infinity), indented, UTF-8."""
    return (json.dumps(strict(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_report(folder: str, report: dict) -> tuple[str, str]:
    """index.html and report.json in `folder` (made if missing; a URL: two objects under that prefix), each
    written atomically; returns both paths."""
    if is_url(folder):
        page, data = f"{folder.rstrip('/')}/index.html", f"{folder.rstrip('/')}/report.json"
    else:
        os.makedirs(folder, exist_ok=True)
        page, data = os.path.join(folder, "index.html"), os.path.join(folder, "report.json")
    text = render_html(report).encode()
    with atomic_output(data) as fh:
        fh.write(report_json(report))
    with atomic_output(page) as fh:
        fh.write(text)
    return page, data
