"""`langspec report`: the study's findings (langspec.science.findings: findings.json and the page's first
section), its figures (langspec.science.figures: PNG, matplotlib) and an HTML page a reader takes in at
a glance, for one run and sweep point of a store, from the named analyses in store/sql/."""

from __future__ import annotations

import html
import json
from pathlib import Path

import duckdb

from langspec.science import controls, figures as draw, findings as study_findings
from langspec.science.figures import Figure
from store.errors import StoreError
from store.queries import internal, named_queries, resolve, run_named, run_points

FINDINGS_FILE = "findings.json"  # its schema: docs/findings.schema.json


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: int | None = None, k: int | None = None,
                point: str | None = None, command: str = "report") -> tuple[int, int, str]:
    """(run_id, k, point) of a report (or of `command`'s output): those given, else the last completed
    run, its analysis.top_k and its only sweep point."""
    given = {name: value for name, value in (("run_id", run_id), ("k", k), ("point", point)) if value is not None}
    params = resolve(con, named_queries()["in_language_share"], given, point_option="--point ",  # run_id, point, k
                     asker=f"`langspec {command}`")
    return params["run_id"], params["k"], params["point"]


def report_dir(store_root: Path, run_id: int, point: str) -> Path:
    """Where a run's report goes unless told: one directory per run and sweep point, so a new run
    never overwrites the report of an earlier one (report/run-3/, report/run-4/prune.threshold=0.9/).
    Both come from the store: a run id that is no integer, or a point that names no directory of its own
    (`..`), is refused rather than let lead elsewhere."""
    directory = point.replace("/", "_") if point else ""
    if type(run_id) is not int or directory in (".", "..") or "\0" in directory:
        raise StoreError(f"run {run_id!r} at sweep point {point!r} makes no directory name under {Path(store_root) / 'report'}: "
                         f"the store was changed outside langspec; name the report's directory with --out DIR")
    where = Path(store_root) / "report" / f"run-{run_id}"
    return where / directory if directory else where


def write_report(con: duckdb.DuckDBPyConnection, out: Path, run_id: int | None = None, k: int | None = None,
                 point: str | None = None) -> Path:
    """Write out/findings.json, out/index.html and its PNG figures for `run_id` (default: the last
    completed run) and its sweep `point` (default: its only one)."""
    import matplotlib

    matplotlib.use("Agg")
    run_id, k, point = resolve_run(con, run_id, k, point)
    params = {"run_id": run_id, "k": k, "point": point}

    def analysis(name: str) -> list[dict]:
        """The analysis' rows that average over the run's seeds."""
        rows = run_named(con, name, **{p: params[p] for p in named_queries()[name].params}).to_pylist()
        return [row for row in rows if row["seed"] == "mean"]

    data = {name: analysis(name) for name in (
        "accuracy", "in_language_share", "cross_language", "subnetwork_similarity", "dynamics",
    )}
    masks = [dict(zip(("language", "layer", "head", "kept"), row)) for row in internal(con, "report_masks", run_id=run_id, point=point)]
    spec_name = internal(con, "run_spec_name", run_id=run_id)[0][0]

    out.mkdir(parents=True, exist_ok=True)
    study = study_findings.load(con, run_id, point, k)
    answers = study_findings.findings(study)
    # The ablation's ground truth, if the point has it: every seed's (t, s) pairs, and their statistics (Q6).
    pairs = run_named(con, "influence_validity", **params).to_pylist() if study.validity else []
    (out / FINDINGS_FILE).write_text(json.dumps([f.to_json() for f in answers], indent=1) + "\n")
    points = run_points(con, run_id)
    sweep = run_named(con, "threshold_sweep", run_id=run_id, k=k).to_pylist() if len(points) > 1 else []
    by_question = {a.question: a for a in answers}
    labels = max((r["labels"] for r in study.full_model), default=0)  # chance accuracy is 1 / labels
    validated = [r.variant for r in study.validity]
    q6_variant = "full" if "full" in validated else next(iter(validated), None)  # as Q6 chooses it
    figures = [
        figure for figure in (
            draw.accuracy(data["accuracy"], labels, out),
            draw.in_language(data["in_language_share"], k, out),
            draw.cross_language(data["cross_language"], k, out),
            draw.masks(masks, out),
            draw.jaccard(data["subnetwork_similarity"], out),
            draw.similarity_vs_influence(study, data["cross_language"], by_question.get("Q4"), out),
            draw.dynamics(data["dynamics"], out),
            draw.threshold_sweep(sweep, k, out),
            draw.influence_validity(pairs, study.validity, q6_variant, out),
        ) if figure is not None
    ]
    known = controls.write(con, run_id, k, out)  # a run with planted modules: every point's, by overlap
    figures += [Figure(*known)] if known else []
    page = out / "index.html"
    page.write_text(_html(spec_name + (f" [{point}]" if point else ""), run_id, k, answers, figures))
    return page


VERDICT_COLORS = {"supported": "#2e7d32", "contradicted": "#c62828", "inconclusive": "#8d6e00"}


def _html(spec_name: str, run_id: int, k: int, answers: list, figures: list[Figure]) -> str:
    items = "\n".join(_finding(a) for a in answers)
    sections = "\n".join(
        f"<section><h2>{html.escape(f.title)}</h2>"
        + (f'<a href="{f.file}"><img src="{f.file}" alt="{html.escape(f.title)}"></a>' if f.file else "")
        + f"<p>{html.escape(f.caption)}</p></section>"
        for f in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>langspec report: {html.escape(spec_name)}, run {run_id}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4;overflow-wrap:anywhere}}
img{{max-width:100%;height:auto}}section{{margin-top:2em}}p{{color:#444}}li{{margin-bottom:1em}}li p{{margin:0.2em 0}}
.more{{font-size:0.85em;color:#444}}summary{{cursor:pointer}}ul{{padding-left:1.2em}}dd{{margin-left:1.5em}}</style></head>
<body>
<h1>{html.escape(spec_name)}: run {run_id}</h1>
{_header(k)}
<h2>Findings</h2>
<ul id="findings">
{items}
</ul>
{sections}
</body></html>
"""


def _header(k: int) -> str:
    """What the page shows and how to read a verdict, in words; the statistics are in docs/analyses.md."""
    doc = "<code>docs/analyses.md</code> in langspec's repository"  # named, not linked: the page holds no path of this machine
    colour = {verdict: f'<b style="color:{code}">{verdict}</b>' for verdict, code in VERDICT_COLORS.items()}
    return f"""<p>The study's answers for this run, then the figures they come from. Each finding tests one claim
(Q1–Q6 are the study's questions; P1 checks that the toy data's planted language families show) and gives a verdict:</p>
<dl>
<dt>{colour["supported"]}</dt><dd>the claim holds: its 95% interval lies on the claimed side of zero.</dd>
<dt>{colour["contradicted"]}</dt><dd>the opposite holds: the interval lies on the other side.</dd>
<dt>{colour["inconclusive"]}</dt><dd>this run cannot tell: the interval includes zero, there is one seed, or a check of the
models failed. Not a "no": the finding says why, and what effect the run could have detected.</dd>
</dl>
<p>A verdict is about the languages it names, unless it says languages in general. Influence counts the top-{k}
proponents of each test example: the training examples that helped it most. How the intervals, p-values and
checks are computed: {doc}, "How to read a verdict". Every number is in <code>{FINDINGS_FILE}</code> beside this
page and in <code>langspec analyze</code>.</p>"""


def _finding(a) -> str:
    """One finding: its sentence (label, numbers, interval and verdict, once), then what it is about,
    the reasons its sentence does not already give, and what it could detect if the sentence does not say."""
    label = f"{a.question} {a.verdict}"
    at = a.sentence.find(label)  # the sentence opens with its label, after any "Exploratory (...)" note
    sentence = (html.escape(a.sentence[:at]) + f'<b style="color:{VERDICT_COLORS[a.verdict]}">{html.escape(label)}</b>'
                + html.escape(a.sentence[at + len(label):])) if at >= 0 else html.escape(a.sentence)
    more = [f"<b>Claim:</b> {html.escape(a.title)}."]
    reasons = [html.escape(r) for r in a.reasons if r not in a.sentence]
    if reasons:  # the first at a glance, the rest a click away
        first = f"<b>{'Notes:' if a.verdict == 'supported' else f'Why {a.verdict}:'}</b> {reasons[0]}"
        listed = "".join(f"<li>{r}</li>" for r in reasons[1:])
        more.append(f"<details><summary>{first} (and {len(reasons) - 1} more)</summary><ol start=2>{listed}</ol></details>"
                    if listed else first)
    sampled = ", ".join(a.estimand["random_factors"])
    more.append(f"<b>Scope:</b> about {html.escape(a.estimand['population'])} ({html.escape(sampled)} as the replications).")
    if a.power["detectable"] not in a.sentence:
        more.append(f"<b>Power:</b> {html.escape(a.power['detectable'])}.")
    return f"  <li><p>{sentence}</p>" + "".join(f'<div class="more">{line}</div>' for line in more) + "</li>"
