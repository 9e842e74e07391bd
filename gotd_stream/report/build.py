"""The numbers of a report (report.json): what a selection did, measured in the artifact's own feature space.

Distances are exact OT (POT's network simplex, `ot.emd2`) with the squared Euclidean cost of the space, between
uniform samples of at most `max_points` rows a side (drawn with `seed`): the target is the artifact's target
rows, the selection a sample of it, the pool a sample of the pool file, and the *random* subset a sample of the
pool as large as the selection (capped alike), which shows how far a selection of that size lands by chance.
Exact OT costs about the cube of the points, so `max_points` bounds the time; the sampled distance is itself an
estimate, biased upward for small samples, which is why the random subset has the selection's size.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson

from gotd_stream.errors import UsageProblem, setting
from gotd_stream.io.parquet_out import selection_lines
from gotd_stream.io.records import Skips, parse_line, split_mixed, split_scored
from gotd_stream.io.streams import display_name
from gotd_stream.select.artifact import Mixture, Potentials
from gotd_stream.select.merge import MixedFits, NotScored

log = logging.getLogger(__name__)

EXCERPT = 600  # characters of a record's text shown in the examples
TOP_GROUPS = 20  # values of --group-field listed one by one; the rest are summed as "(other)"
RATIO_WARN = 0.5  # the pool's excess distance to the reference, as a share of the target's, from which it warns
MISSING = "(missing)"


class EmptySelection(UsageProblem):
    """The selection holds no scored record: there is nothing to report."""


class MissingGroup(UsageProblem):
    """The group field is in no record of the selection (a wrong name, most likely)."""


class QuotaCandidates(UsageProblem):
    """Quota candidates (per-shard, for a merge) given where a selection is expected."""


@dataclass
class ReportSettings:
    """What a report reads (the text and group fields) and how much it measures (examples, OT points, bins)."""

    text_field: str = "text"
    group_field: str | None = None
    examples: int = 5
    max_points: int = 2_000
    seed: int = 0
    bins: int = 40

    def __post_init__(self):
        from gotd_stream.errors import BadSetting, whole

        for name in ("text_field", "group_field"):
            value = getattr(self, name)
            if (value is not None or name == "text_field") and (not isinstance(value, str) or not value):
                raise BadSetting(f"{setting(name)} must name a field, not {value!r}")
        whole("examples", self.examples, 0)
        whole("max_points", self.max_points, 2)
        whole("seed", self.seed)
        whole("bins", self.bins, 1)


@dataclass
class Records:
    """Records read for a report, in file order: texts, original lines, group values and per-target scores."""

    path: str
    texts: list[str] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)  # each target's score (one column for one target)
    values: list[float] = field(default_factory=list)  # the selection's gotd_score
    counted: list[str | None] = field(default_factory=list)  # quota: the target each line counts for
    guards: set[str] = field(default_factory=set)  # the duplicate guard's tags the lines carry (gotd_guard)
    skipped: dict[str, int] = field(default_factory=dict)
    rows: np.ndarray | None = None  # the pool's features, all of them

    def __len__(self) -> int:
        return len(self.texts)


def group_value(raw: bytes, path: str) -> str | None:
    """The value at `path` (dotted for nested objects, a top-level key of that exact name first) as text."""
    try:
        node = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(node, dict) and path in node:
        node = node[path]
    else:
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
    if node is None:
        return None
    if isinstance(node, str):
        return node
    if isinstance(node, bool | int | float):
        return orjson.dumps(node).decode()
    text = orjson.dumps(node).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def read_selection(path: str, artifact: Potentials | Mixture, settings: ReportSettings, skips: Skips) -> Records:
    """The selection's lines (JSONL or Parquet), with the scores `score` wrote; lines scored with another
    artifact are refused."""
    name = display_name(path)
    found = Records(path)
    several = isinstance(artifact, Mixture)
    before = Counter(skips.counts)
    kinds = set()
    expected = artifact.fit_id
    for lineno, line in selection_lines(path):  # JSONL, or a Parquet selection's rows as their lines
        if not line or line.isspace():
            continue
        parsed = parse_line(line, settings.text_field)
        if parsed[0] is None:
            skips.add(name, lineno, parsed[1], parsed[2])
            continue
        raw, text = parsed
        if several:
            mixed = split_mixed(line)
            if mixed is None:
                raise NotScored(f"{name}:{lineno}: {_unscored(artifact)}")
            fit_id, scores, value, target = mixed.fit_id, mixed.scores, mixed.value, mixed.target
            guard = mixed.guard
        else:
            scored = split_scored(line)
            if scored is None:
                raise NotScored(f"{name}:{lineno}: {_unscored(artifact)}")
            value, fit_id, guard = scored.score, scored.fit_id, scored.guard
            scores, target = [value], None
        if fit_id != expected:
            raise MixedFits(
                f"{name}:{lineno} was scored with fit {fit_id}, not with the artifact's {expected}: give "
                f"{setting('potentials')} the artifact the selection was made with"
            )
        if value is None:
            raise QuotaCandidates(
                f"{name}:{lineno}: quota candidates of one shard, not a selection: merge them first (`merge -p`)"
            )
        kinds.add("quota" if target is not None else "sum")
        if len(kinds) > 1:
            raise MixedFits(f"{name}:{lineno}: the file mixes quota and sum selections")
        found.texts.append(text)
        found.raws.append(raw)
        found.scores.append(scores)
        found.values.append(value)
        found.counted.append(target)
        if guard is not None:
            found.guards.add(guard)
        found.groups.append(group_value(raw, settings.group_field) if settings.group_field else None)
    found.skipped = dict(skips.counts - before)
    if not found.texts:
        what = f"all {sum(found.skipped.values()):,} records were skipped" if found.skipped else "it is empty"
        raise EmptySelection(f"{name} holds no scored record ({what}): nothing to report")
    if settings.group_field and all(g is None for g in found.groups):
        keys = ", ".join(list(orjson.loads(found.raws[0]))[:8]) if found.raws else "none"
        raise MissingGroup(
            f"{setting('group_field')} {settings.group_field!r} is in none of the {len(found):,} records of {name} "
            f"(keys of the first: {keys})"
        )
    return found


def _unscored(artifact) -> str:
    fields = "gotd_scores/gotd_fit" if isinstance(artifact, Mixture) else "gotd_score/gotd_fit"
    return (
        f"no {fields} at the end of the line: report takes a selection that `score` wrote with the artifact "
        f"(not with {setting('no_score')})"
    )


def read_pool(path: str, featurizer, artifact, settings: ReportSettings, skips: Skips, device: str) -> Records:
    """The pool sample, featurized and scored against every target (the before of the before/after)."""
    from gotd_stream.io.records import read_records
    from gotd_stream.select.mix import score_matrix
    from gotd_stream.select.score import embedded

    scorers = artifact.scorers(device) if isinstance(artifact, Mixture) else [artifact.scorer(device)]
    found = Records(path)
    before = Counter(skips.counts)
    rows = []
    for window, emb in embedded(read_records([path], settings.text_field, skips), featurizer, skips):
        rows.append(np.asarray(emb, np.float32))
        found.scores.extend(score_matrix(emb, scorers).tolist())
        for record in window:
            found.texts.append(record.text)
            found.raws.append(record.raw)
            found.groups.append(group_value(record.raw, settings.group_field) if settings.group_field else None)
    found.skipped = dict(skips.counts - before)
    if not found.texts:
        raise EmptySelection(f"{setting('pool')} {display_name(path)} holds no usable record")
    found.rows = np.concatenate(rows)
    return found


def read_texts(path: str, settings: ReportSettings, skips: Skips, size: int) -> list[str]:
    """A uniform sample of `size` texts of a file (reservoir, seeded)."""
    from gotd_stream.io.records import read_records
    from gotd_stream.select.sample import reservoir

    texts, _ = reservoir((r.text for r in read_records([path], settings.text_field, skips)), size, settings.seed)
    return texts


def features_of(texts: list[str], featurizer) -> np.ndarray:
    """Rows of in-memory texts in the space; the rows that cannot be scored (zero, not finite) are left out."""
    from gotd_stream.features.base import usable_rows

    if not texts:
        return np.zeros((0, featurizer.dim), np.float32)
    rows = featurizer.encode(texts)
    return rows[usable_rows(rows)]


def ot_distance(x: np.ndarray, y: np.ndarray, b: np.ndarray | None = None) -> float:
    """Exact OT between uniform x and y (or y weighted by b), squared Euclidean cost: POT's `ot.emd2`."""
    import ot

    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a = np.full(len(x64), 1.0 / len(x64))
    b = np.full(len(y64), 1.0 / len(y64)) if b is None else np.asarray(b, np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cost = float(ot.emd2(a, b, ot.dist(x64, y64), numItermax=10_000_000))
    for warning in caught:
        log.warning(f"exact OT: {warning.message}")
    return cost


def sample_rows(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most `size` rows, a seeded uniform choice, in their order."""
    if len(rows) <= size:
        return rows
    return rows[np.sort(np.random.default_rng(seed).choice(len(rows), size, replace=False))]


def stats(values: np.ndarray) -> dict:
    """Count, mean and quantiles of a set of numbers."""
    if not len(values):
        return {"n": 0}
    p10, median, p90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        "n": int(len(values)),
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "p10": float(p10),
        "median": float(median),
        "p90": float(p90),
        "max": float(np.max(values)),
    }


def histogram(series: dict[str, np.ndarray], bins: int, log_scale: bool = False) -> dict:
    """Counts of each series over shared bin edges (log-spaced for lengths), with each series' stats."""
    present = [np.asarray(v, np.float64) for v in series.values() if len(v)]
    if not present:  # a quota target that got no record, and no pool
        return {"edges": [], "log": log_scale, **{name: {"counts": [], "n": 0} for name in series}}
    low = min(float(v.min()) for v in present)
    high = max(float(v.max()) for v in present)
    if log_scale:
        low, high = max(low, 1.0), max(high, 1.0)
        edges = np.geomspace(low, high * 1.0001 if high > low else low * 2, bins + 1)
    else:
        edges = np.linspace(low, high if high > low else low + 1e-9, bins + 1)
    out = {"edges": edges.tolist(), "log": log_scale}
    for name, values in series.items():
        values = np.asarray(values, np.float64)
        counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), edges)
        out[name] = {"counts": counts.tolist(), **stats(values)}
    return out


def example(text: str, score: float, group: str | None) -> dict:
    """A record for a human to read: its score, length, group and the start of its text."""
    shown = text if len(text) <= EXCERPT else text[:EXCERPT] + "…"
    return {"score": float(score), "chars": len(text), "group": group, "text": shown}


def views(selection: Records, pool: Records | None, artifact) -> list[dict]:
    """What the histograms and the examples are of: the one score; for sum the weighted sum then each target;
    for quota each target, with the lines that count for it."""
    sel = np.array(selection.scores, np.float64)
    pooled = np.array(pool.scores, np.float64) if pool is not None else None
    if not isinstance(artifact, Mixture):
        return [{"name": "score", "selection": sel[:, 0], "members": np.arange(len(sel)), "pool": _col(pooled, 0)}]
    from gotd_stream.select.mix import weighted_sum

    quota = selection.counted[0] is not None
    out = []
    if not quota:
        total = weighted_sum(pooled, artifact.weights) if pooled is not None else None
        out.append(
            {"name": "sum", "selection": np.array(selection.values), "members": np.arange(len(sel)), "pool": total}
        )
    for t, name in enumerate(artifact.names):
        members = np.flatnonzero([c == name for c in selection.counted]) if quota else np.arange(len(sel))
        out.append(
            {"name": name, "selection": sel[members, t], "members": members, "pool": _col(pooled, t), "examples": quota}
        )
    return out


def _col(matrix: np.ndarray | None, t: int) -> np.ndarray | None:
    return None if matrix is None else matrix[:, t]


def examples_of(view: dict, selection: Records, pool: Records | None, count: int) -> dict:
    """The best and worst kept records of a view, and the pool's first records past its cut."""
    members, scores = view["members"], view["selection"]
    order = np.lexsort((members, scores))  # by score, ties to the earlier line
    ranked = [(int(members[i]), float(scores[i])) for i in order]
    cut = ranked[-1][1] if ranked else None
    shown = {
        "view": view["name"],
        "kept": len(ranked),
        "cut": cut,
        "best": [example(selection.texts[i], s, selection.groups[i]) for i, s in ranked[:count]],
        "worst": [example(selection.texts[i], s, selection.groups[i]) for i, s in ranked[-count:][::-1]]
        if count
        else [],
        "below_cut": None,
    }
    if pool is not None and view["pool"] is not None and cut is not None:
        kept = set(selection.raws)
        values = view["pool"]
        past = [i for i in np.lexsort((np.arange(len(values)), values)) if values[i] > cut and pool.raws[i] not in kept]
        shown["below_cut"] = [example(pool.texts[i], values[i], pool.groups[i]) for i in past[:count]]
    return shown


def composition(selection: Records, pool: Records | None, field_name: str) -> dict:
    """How the selection splits by a field's values, against the pool sample's split."""
    chosen = Counter(g if g is not None else MISSING for g in selection.groups)
    pooled = Counter(g if g is not None else MISSING for g in pool.groups) if pool is not None else Counter()
    ranked = sorted(set(chosen) | set(pooled), key=lambda v: (-chosen[v], -pooled[v], v))
    shown, rest = ranked[:TOP_GROUPS], ranked[TOP_GROUPS:]
    rows = []
    for value in shown + (["(other)"] if rest else []):
        n_sel = chosen[value] if value != "(other)" else sum(chosen[v] for v in rest)
        n_pool = pooled[value] if value != "(other)" else sum(pooled[v] for v in rest)
        row = {"value": value, "selection": n_sel, "selection_share": n_sel / len(selection)}
        if pool is not None:
            row.update(pool=n_pool, pool_share=n_pool / len(pool))
        rows.append(row)
    return {"field": field_name, "values": len(ranked), "rows": rows}


def targets_of(artifact) -> list[dict]:
    """The artifact's targets (one, named "target", for a single-target artifact): names, weights, rows."""
    if isinstance(artifact, Mixture):
        return [
            {"name": n, "weight": w, "rows": p.target}
            for n, w, p in zip(artifact.names, artifact.weights, artifact.parts, strict=True)
        ]
    return [{"name": "target", "weight": 1.0, "rows": artifact.target}]


def build_report(
    selected: str,
    artifact: Potentials | Mixture,
    featurizer,
    settings: ReportSettings,
    *,
    pool: str | None = None,
    reference: str | None = None,
    skips: Skips | None = None,
    device: str = "cpu",
    names: dict | None = None,
    manifest: dict | None = None,
) -> dict:
    """Everything report.json holds (see the module's docstring and README, *report*); `names` labels the inputs;
    `manifest`: the selection's (manifest.load), for what the duplicate guard dropped."""
    if reference and not pool:
        raise UsageProblem(f"{setting('reference')} needs {setting('pool')}: it checks the pool against it")
    skips = skips if skips is not None else Skips()
    names = names or {}
    points, seed = settings.max_points, settings.seed
    selection = read_selection(selected, artifact, settings, skips)
    log.info(f"report: {len(selection):,} selected records read")
    pooled = read_pool(pool, featurizer, artifact, settings, skips, device) if pool else None
    if pooled is not None:
        log.info(f"report: {len(pooled):,} pool records scored")
    targets = targets_of(artifact)
    sel_rows = features_of([selection.texts[i] for i in _indices(len(selection), points, seed)], featurizer)
    if not len(sel_rows):
        raise EmptySelection(f"no selected record of {display_name(selected)} has a usable row in the artifact's space")
    pool_rows = sample_rows(pooled.rows, points, seed + 1) if pooled is not None else None
    random_rows = sample_rows(pooled.rows, min(len(selection), points), seed + 2) if pooled is not None else None
    distances = []
    for target in targets + _mixture_target(targets):
        rows, b = target["rows"], target.get("b")
        if b is None:
            rows = sample_rows(rows, points, seed + 3)
        entry = {"name": target["name"], "weight": target["weight"], "target_points": int(len(rows))}
        entry["to_selection"] = ot_distance(sel_rows, rows, b)
        if pooled is not None:
            entry["to_pool"] = ot_distance(pool_rows, rows, b)
            entry["to_random"] = ot_distance(random_rows, rows, b)
            entry["moved"] = 1 - entry["to_selection"] / entry["to_pool"] if entry["to_pool"] > 0 else None
        distances.append(entry)
        log.info(f"report: OT distances to {target['name']} done")
    report = {
        "gotd_stream": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "artifact": {
            "path": names.get("potentials", ""),
            "fit_id": artifact.fit_id,
            "space": artifact.features.get("space", "semantic"),
            "targets": [{"name": t["name"], "weight": t["weight"], "rows": int(len(t["rows"]))} for t in targets],
        },
        "selection": {
            "path": names.get("selected", selected),
            "records": len(selection),
            "skipped": selection.skipped,
            "mix": ("quota" if selection.counted[0] is not None else "sum") if isinstance(artifact, Mixture) else None,
        },
        "pool": None if pooled is None else {"path": pool, "records": len(pooled), "skipped": pooled.skipped},
        "ot": {
            "method": "exact OT (POT ot.emd2), squared Euclidean cost in the artifact's feature space, uniform weights",
            "max_points": points,
            "seed": seed,
            "selection_points": int(len(sel_rows)),
            "pool_points": None if pool_rows is None else int(len(pool_rows)),
            "random_points": None if random_rows is None else int(len(random_rows)),
            "targets": distances,
        },
    }
    report["scores"], report["examples"] = [], []
    for view in views(selection, pooled, artifact):
        series = {"selection": view["selection"]}
        if view["pool"] is not None:
            series["pool"] = view["pool"]
        report["scores"].append({"name": view["name"], **histogram(series, settings.bins)})
        if view.get("examples", True):
            report["examples"].append(examples_of(view, selection, pooled, settings.examples))
    lengths = {"selection": np.array([len(t) for t in selection.texts])}
    if pooled is not None:
        lengths["pool"] = np.array([len(t) for t in pooled.texts])
    report["lengths"] = {"unit": "characters", **histogram(lengths, settings.bins, log_scale=True)}
    if isinstance(artifact, Mixture) and report["selection"]["mix"] == "quota":
        report["counted"] = {name: selection.counted.count(name) for name in artifact.names}
    report["composition"] = composition(selection, pooled, settings.group_field) if settings.group_field else None
    report["guard"] = guard_of(selection, artifact, manifest, names.get("manifest"))
    report["reference"] = None
    if reference:
        report["reference"] = check_reference(reference, featurizer, settings, skips, pool_rows, targets, names)
    return report


def guard_of(selection: Records, artifact, manifest: dict | None, name: str | None) -> dict | None:
    """The duplicate guard's part of a report: its settings, as the lines' gotd_guard (or the manifest) record
    them, and what it dropped above the selection's last unit, by reason ("copy", "target copy", "exclude FILE"),
    which only the selection's manifest holds (`dropped` None without one, or with one that describes another
    selection: `note` says which). None when the guard was off."""
    from gotd_stream.select.dedup import Guard

    recorded = (manifest or {}).get("plan") or {}
    settings = recorded.get("guard") or {}
    tag = next(iter(sorted(selection.guards)), None)
    if tag is None and settings.get("dedup", "off") == "off":
        return None
    if tag is not None:
        guard = Guard.from_tag(tag)
        settings = {"dedup": guard.mode, "dedup_threshold": guard.threshold, "dedup_margin": guard.margin}
    part = {**settings, "dropped": None, "manifest": name, "note": None}
    if manifest is None:
        part["note"] = "no manifest beside the selection: the counts of what the guard dropped are in it"
        return part
    counts = manifest.get("counts") or {}
    fit_id = (manifest.get("artifact") or {}).get("fit_id")
    if fit_id != artifact.fit_id or counts.get("selected") != len(selection) + sum(selection.skipped.values()):
        part["note"] = (
            f"the manifest describes another selection (fit {fit_id}, {counts.get('selected')} records): "
            "its counts are not shown"
        )
        return part
    if counts.get("dropped_by_guard") is None:
        part["note"] = "the manifest does not record what the guard dropped"
        return part
    part["dropped"] = dict(counts["dropped_by_guard"])
    return part


def _indices(n: int, size: int, seed: int) -> list[int]:
    if n <= size:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size, replace=False).tolist())


def _mixture_target(targets: list[dict]) -> list[dict]:
    """Several targets as one measure: each target's rows with its weight spread over them."""
    if len(targets) < 2:
        return []
    rows = np.concatenate([t["rows"] for t in targets])
    b = np.concatenate([np.full(len(t["rows"]), t["weight"] / len(t["rows"])) for t in targets])
    return [{"name": "mixture", "weight": 1.0, "rows": rows, "b": b / b.sum()}]


def check_reference(
    path: str, featurizer, settings: ReportSettings, skips: Skips, pool_rows, targets: list[dict], names: dict
) -> dict:
    """The method's assumption: the pool resembles what the model was pre-trained on.

    The reference sample is split in two halves, A and B, of n rows (n at most the pool's points). OT between two
    samples of one source is not zero at these sizes, so the floor is d(A, B); the pool's excess over it,
    d(pool, B) - d(A, B) with n pool rows, is compared with the target's, d(target, B) - d(A, B) (each at least
    0). The report warns when the pool's excess is at least RATIO_WARN of the target's. When the target has no
    excess (it is as close to the reference as the reference's own halves) the ratio is undefined (null), and
    the report warns only when the pool's excess is at least RATIO_WARN of the floor d(A, B) itself: a pool that
    is its own reference never warns.
    """
    texts = read_texts(path, settings, skips, 2 * settings.max_points)
    rows = features_of(texts, featurizer)
    if len(rows) < 2:
        raise EmptySelection(f"{setting('reference')} {display_name(path)} holds fewer than 2 usable records")
    rows = rows[np.random.default_rng(settings.seed + 4).permutation(len(rows))]
    n = min(len(rows) // 2, len(pool_rows))
    half_a, half_b = rows[:n], rows[n : 2 * n]
    measure = (_mixture_target(targets) or targets)[0]
    target_rows = measure["rows"]
    if "b" not in measure:
        target_rows = sample_rows(target_rows, settings.max_points, settings.seed + 3)
    floor = ot_distance(half_a, half_b)
    pool_ref = ot_distance(sample_rows(pool_rows, n, settings.seed + 5), half_b)
    target_ref = ot_distance(half_b, target_rows, measure.get("b"))
    pool_excess, target_excess = max(0.0, pool_ref - floor), max(0.0, target_ref - floor)
    # the pool's excess as a share of the target's; undefined (None) when the target is no farther out than the
    # floor, and the pool's excess is then measured against the floor itself
    ratio = pool_excess / target_excess if target_excess > 0 else None
    where = (
        f"its OT distance to it is {pool_ref:.3f} against {target_ref:.3f} for the target and {floor:.3f} between "
        "two halves of the reference, so "
    )
    far = None
    if ratio is not None and ratio >= RATIO_WARN:
        far = where + f"the pool stands {ratio:.0%} as far out as the target does"
    elif ratio is None and pool_excess > 0 and pool_excess >= RATIO_WARN * floor:
        far = where + (
            f"the target is no farther out than two halves of the reference are from each other, while the pool "
            f"stands {pool_excess:.3f} beyond them"
        )
    warning = None
    if far is not None:
        warning = (
            f"The pool sample is far from the pre-training sample: {far}. GOT-D assumes that the candidates "
            f"resemble what the model was pre-trained on, so that its gradient points from the model's own data "
            f"toward the target. Here it points from the pool's distribution instead, and the selection may favour "
            f"what is common in the pool rather than what the model lacks. Check that the pool and the reference "
            f"are what you think they are, or select from a pool closer to the pre-training data."
        )
    return {
        "path": names.get("reference", path),
        "records": len(rows),
        "points": n,
        "pool_to_reference": pool_ref,
        "target_to_reference": target_ref,
        "reference_halves": floor,
        "ratio": ratio,
        "threshold": RATIO_WARN,
        "warning": warning,
    }


def _version() -> str:
    from gotd_stream.version import __version__

    return __version__
