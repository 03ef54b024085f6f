"""`langspec report`: the study's findings (langspec.science.findings: findings.json and the page's first
section), its figures (PNG, matplotlib) and an HTML page, for one run and sweep point of a store,
from the named analyses in store/sql/."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from langspec.science import controls, findings as study_findings, tracin_vs_ablation
from store.errors import StoreError
from store.queries import VARIANTS, internal, named_queries, resolve, run_named, run_points

FINDINGS_FILE = "findings.json"  # its schema: docs/findings.schema.json
COLORS = {"full": "#4c72b0", "subnetwork": "#dd8452", "sft": "#55a868"}


@dataclass(frozen=True)
class Figure:
    file: str
    title: str
    caption: str


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: int | None = None, k: int | None = None,
                point: str | None = None) -> tuple[int, int, str]:
    """(run_id, k, point) of a report: those given, else the last completed run, its analysis.top_k
    and its only sweep point."""
    given = {name: value for name, value in (("run_id", run_id), ("k", k), ("point", point)) if value is not None}
    params = resolve(con, named_queries()["in_language_share"], given)  # run_id, point, k
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
        "accuracy", "in_language_share", "specialization", "cross_language", "subnetwork_similarity",
        "similarity_vs_influence", "dynamics",
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
    figures = [
        figure for figure in (
            _accuracy(data["accuracy"], out),
            _in_language(data["in_language_share"], k, out),
            _cross_language(data["cross_language"], k, out),
            _masks(masks, out),
            _jaccard(data["subnetwork_similarity"], out),
            _similarity_vs_influence(data["subnetwork_similarity"], data["cross_language"], data["similarity_vs_influence"], out),
            _dynamics(data["dynamics"], out),
            _threshold_sweep(sweep, k, out),
            _influence_validity(pairs, study.validity, out),
        ) if figure is not None
    ]
    known = controls.write(con, run_id, k, out)  # a run with planted modules: every point's, by overlap
    figures += [Figure(*known)] if known else []
    page = out / "index.html"
    page.write_text(_html(spec_name + (f" [{point}]" if point else ""), run_id, k, answers, figures))
    return page


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _save(fig, out: Path, file: str, title: str, caption: str) -> Figure:
    fig.tight_layout()
    fig.savefig(out / file, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Figure(file, title, caption)


def _variants(rows: list[dict]) -> list[str]:
    present = {r["variant"] for r in rows}
    return [v for v in VARIANTS if v in present]


def _grouped_bars(ax, languages: list[str], variants: list[str], value, error) -> None:
    """One group of bars per language, one bar per variant: value(variant, language), error(...)."""
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(languages))]
        ax.bar(xs, [value(variant, lang) for lang in languages], width,
               yerr=[error(variant, lang) or 0.0 for lang in languages], label=variant, color=COLORS[variant])
    ax.set_xticks(range(len(languages)), languages)


def _accuracy(rows: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    by_language = {r["language"]: r for r in rows}
    variants = [v for v in VARIANTS if any(r[v] is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    _grouped_bars(ax, list(by_language), variants, lambda v, lang: by_language[lang][v] or 0.0,
                  lambda v, lang: by_language[lang][f"{v}_sd"])
    ax.set_ylim(0, 1)
    ax.set_xlabel("language")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy per language: full model, its subnetworks, SFT")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out, "accuracy.png", "Accuracy", "Test accuracy at the last epoch; each language's subnetwork and the SFT model are evaluated with that language's mask.")


def _in_language(rows: list[dict], k: int, out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    variants = _variants(rows)
    languages = sorted({r["language"] for r in rows})
    cells = {(r["variant"], r["language"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 3.6))
    _grouped_bars(ax, languages, variants, lambda v, lang: cells[(v, lang)]["s_plus"], lambda v, lang: cells[(v, lang)]["s_plus_sd"])
    chance = [cells[(variants[0], lang)]["chance"] for lang in languages]
    ax.hlines(chance, [j - 0.45 for j in range(len(languages))], [j + 0.45 for j in range(len(languages))],
              colors="black", linestyles="dashed", label="chance")
    ax.set_xlabel("test language t")
    ax.set_ylabel(f"S+(t): in-language share of top-{k}")
    ax.set_title("In-language reliance of the proponents")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out, "in_language_share.png", "In-language share",
                 f"S+(t): share of each test example's top-{k} proponents from its own language, averaged over the test examples of t; dashed: the language's share of the scored training examples.")


def _matrix(rows: list[dict], row_key: str, col_key: str, value: str) -> tuple[list[str], list[str], list[list[float]]]:
    row_labels = sorted({r[row_key] for r in rows})
    col_labels = sorted({r[col_key] for r in rows})
    cells = {(r[row_key], r[col_key]): r[value] for r in rows}
    return row_labels, col_labels, [[cells.get((a, b), float("nan")) for b in col_labels] for a in row_labels]


def _heatmap(ax, rows, cols, matrix, vmin=None, vmax=None, cmap="viridis", fmt="{:.2f}"):
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="white" if value < (min(map(min, matrix)) + max(map(max, matrix))) / 2 else "black")
    return image


def _cross_language(rows: list[dict], k: int, out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    proponents = [r for r in rows if r["side"] == "proponents"]
    if not proponents:
        return None
    variants = _variants(proponents)
    top = max(r["share"] for r in proponents)
    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.6), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        rows_, cols, matrix = _matrix([r for r in proponents if r["variant"] == variant], "test_language", "train_language", "share")
        image = _heatmap(ax, rows_, cols, matrix, vmin=0, vmax=top)
        ax.set_title(variant)
        ax.set_xlabel("training language s")
    axes[0][0].set_ylabel("test language t")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="M+[t, s]")
    fig.suptitle(f"Where the top-{k} proponents come from")
    fig.savefig(out / "cross_language.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure("cross_language.png", "Cross-language reliance",
                  f"M+[t, s]: share of test language t's top-{k} proponents from training language s; rows sum to 1.")


def _masks(rows: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    languages = sorted({r["language"] for r in rows})
    layers = max(r["layer"] for r in rows) + 1
    heads = max(r["head"] for r in rows) + 1
    fig, axes = plt.subplots(1, len(languages), figsize=(1.0 + 1.6 * len(languages), 1.2 + 0.3 * layers), squeeze=False)
    for ax, language in zip(axes[0], languages):
        grid = [[0.0] * heads for _ in range(layers)]
        for r in rows:
            if r["language"] == language:
                grid[r["layer"]][r["head"]] = float(r["kept"])
        ax.imshow(grid, vmin=0, vmax=1, cmap="Greens")
        ax.set_title(f"{language} ({int(sum(map(sum, grid)))} kept)", fontsize=9)
        ax.set_xticks(range(heads))
        ax.set_yticks(range(layers))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Subnetworks: kept (green) and masked heads")
    return _save(fig, out, "masks.png", "Head masks", "Each language's subnetwork as a layers × heads grid (the run's first seed).")


def _jaccard(rows: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    labels, cols, matrix = _matrix(rows, "language_a", "language_b", "jaccard")
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    image = _heatmap(ax, labels, cols, matrix, vmin=0, vmax=1, cmap="magma")
    fig.colorbar(image, ax=ax, label="Jaccard J(a, b)")
    ax.set_xlabel("language b")
    ax.set_ylabel("language a")
    ax.set_title("Subnetwork similarity")
    return _save(fig, out, "jaccard.png", "Subnetwork similarity", "Jaccard similarity of the kept heads of two languages' subnetworks.")


def _similarity_vs_influence(similarity: list[dict], cross: list[dict], correlation: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    jaccard = {(r["language_a"], r["language_b"]): r["jaccard"] for r in similarity if r["language_a"] != r["language_b"]}
    proponents = [r for r in cross if r["side"] == "proponents" and (r["test_language"], r["train_language"]) in jaccard]
    if not proponents:
        return None
    stats = {r["variant"]: r for r in correlation}
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in _variants(proponents):
        points = [(jaccard[(r["test_language"], r["train_language"])], r["share"]) for r in proponents if r["variant"] == variant]
        label = variant
        if variant in stats and stats[variant]["pearson"] is not None:
            label += f" (Pearson {stats[variant]['pearson']:.2f}, Spearman {stats[variant]['spearman']:.2f})"
        ax.scatter(*zip(*points), label=label, color=COLORS[variant], alpha=0.8)
    ax.set_xlabel("subnetwork similarity J(a, b)")
    ax.set_ylabel("cross-language share M+[a, b]")
    ax.set_title("Similar subnetworks, more influence?")
    ax.legend(fontsize="small")
    return _save(fig, out, "similarity_vs_influence.png", "Similarity vs influence",
                 "Each point is an ordered pair of different languages: test language a, training language b.")


def _dynamics(rows: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not rows:
        return None
    variants = [v for v in ("full", "sft") if any(r["variant"] == v for r in rows)] or _variants(rows)
    languages = sorted({r["language"] for r in rows})
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants) + 0.8, 3.4), squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants):
        for language in languages:
            series = sorted((r["epoch"], r["s_plus"]) for r in rows if r["variant"] == variant and r["language"] == language)
            ax.plot(*zip(*series), marker="o", label=language)
        chance = [r["chance"] for r in rows if r["variant"] == variant]
        ax.axhline(_mean(chance), color="black", linestyle="dashed", linewidth=1, label="chance")
        ax.set_title(variant)
        ax.set_xlabel("epoch (checkpoint)")
    axes[0][0].set_ylabel("S+(t) of that checkpoint's term")
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("In-language reliance over training")
    return _save(fig, out, "dynamics.png", "Dynamics", "S+(t) computed from each checkpoint's TracIn term alone.")


def _threshold_sweep(rows: list[dict], k: int, out: Path) -> Figure | None:
    """Across the run's sweep points: sparsity, test retention and S+ against the prune threshold."""
    import matplotlib.pyplot as plt

    rows = sorted((r for r in rows if r["seed"] == "mean" and r["threshold"] is not None), key=lambda r: r["threshold"])
    if len(rows) < 2:
        return None
    thresholds = [r["threshold"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, column, label in ((axes[0], "sparsity", "sparsity (share of heads masked)"),
                              (axes[1], "retention", "test retention (subnetwork / full)")):
        ax.errorbar(thresholds, [r[column] for r in rows], yerr=[r[f"{column}_sd"] or 0.0 for r in rows], marker="o")
        ax.set_ylabel(label)
    for variant in VARIANTS:
        values = [r[f"s_plus_{variant}"] for r in rows]
        if any(v is not None for v in values):
            axes[2].errorbar(thresholds, values, yerr=[r[f"s_plus_{variant}_sd"] or 0.0 for r in rows], marker="o",
                             label=variant, color=COLORS[variant])
    axes[2].set_ylabel(f"S+ (top-{k})")
    axes[2].legend(fontsize="small")
    for ax in axes:
        ax.set_xlabel("prune.threshold")
    fig.suptitle("The prune threshold: how sparse, how accurate, how specialised")
    return _save(fig, out, "threshold_sweep.png", "Prune threshold sweep",
                 "Each sweep point of the run: mean over seeds (error bars: sd over seeds) of the subnetworks' sparsity, "
                 "their test retention and S+ per TracIn variant (the threshold_sweep analysis).")


VERDICT_COLORS = {"supported": "#2e7d32", "contradicted": "#c62828", "inconclusive": "#8d6e00"}


def _influence_validity(pairs: list[dict], results: list[tracin_vs_ablation.Validity], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt

    if not pairs:
        return None
    variants = _variants(pairs)
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 4.2), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        cells: dict[tuple[str, str], list[dict]] = {}
        for r in pairs:
            if r["variant"] == variant:
                cells.setdefault((r["test_language"], r["train_language"]), []).append(r)
        for diagonal, style in ((False, {"color": COLORS[variant], "marker": "o", "label": "t ≠ s"}),
                                (True, {"color": "black", "marker": "D", "label": "t = s (diagonal)"})):
            chosen = [rows for (t, s), rows in sorted(cells.items()) if (t == s) == diagonal]
            if not chosen:
                continue
            p = [_mean(r["predicted"] for r in rows) for rows in chosen]
            e = [_mean(r["loss_effect"] for r in rows) for rows in chosen]
            p_sd = [_sd([r["predicted"] for r in rows]) for rows in chosen]
            e_sd = [_sd([r["loss_effect"] for r in rows]) for rows in chosen]
            ax.errorbar(p, e, xerr=p_sd, yerr=e_sd, linestyle="none", capsize=2, alpha=0.85, **style)
        for (t, s), rows in cells.items():
            ax.annotate(f"{t}←{s}", (_mean(r["predicted"] for r in rows), _mean(r["loss_effect"] for r in rows)),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        stats = {(r.method, r.pairs): r for r in results if r.variant == variant and r.predictor == "tracin"}
        if ("pearson", "all") in stats:
            r, off = stats[("pearson", "all")], stats[("pearson", "off_diagonal")]
            ax.set_title(f"{variant}: r = {r.statistic:.2f} [{r.low:.2f}, {r.high:.2f}]; t ≠ s: {off.statistic:.2f}", fontsize=9)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("TracIn's predicted effect P[t, s]")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("measured effect E[t, s] (test loss without s − with all)")
    fig.suptitle("Does TracIn predict the effect of removing a language?")
    return _save(fig, out, "influence_validity.png", "Influence validity",
                 "Each point is a pair (test language t, left-out language s), mean over seeds with ±1 sd over seeds as bars. "
                 "P sums TracInCP over the training examples TracIn scored (tracin.train_per_language of s), averaged over "
                 "t's TracIn test examples; E is t's mean test-loss change when s is left out of fine-tuning. r: Pearson, the "
                 "mean over seeds of the per-seed correlation, with its 95% t interval over seeds.")


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def _html(spec_name: str, run_id: int, k: int, answers: list, figures: list[Figure]) -> str:
    items = "\n".join(
        f'  <li><b style="color:{VERDICT_COLORS[a.verdict]}">{html.escape(a.question)} {html.escape(a.verdict)}</b>: '
        f"{html.escape(a.sentence)}"
        + f"<br><small>about {html.escape(a.estimand['population'])} (random: {html.escape(', '.join(a.estimand['random_factors']))}); "
        f"{html.escape(a.power['detectable'])}</small>"
        + (f"<br><small>{html.escape('; '.join(a.reasons))}</small>" if a.reasons else "") + "</li>"
        for a in answers
    )
    sections = "\n".join(
        f'<section><h2>{html.escape(f.title)}</h2><img src="{f.file}" alt="{html.escape(f.title)}">'
        f"<p>{html.escape(f.caption)}</p></section>"
        for f in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>langspec report: {html.escape(spec_name)}, run {run_id}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}img{{max-width:100%}}
section{{margin-top:2em}}p{{color:#444}}li{{margin-bottom:0.6em}}</style></head>
<body>
<h1>{html.escape(spec_name)}: run {run_id}</h1>
<p>Top-{k} proponents and opponents per test example. Every number comes from <code>langspec analyze</code>
and <code>{FINDINGS_FILE}</code> beside this page. Seeds are the replications: a statistic per seed gets a t interval
over seeds, one per test example the crossed interval (seeds and test examples, shared by every seed, as two random
factors); each p-value comes from the same estimate as its interval, and the primary questions' p-values are
Holm-adjusted. With one seed there is no interval, and every verdict is inconclusive. Each finding names what it is
about: these languages (seeds and test examples as the replications), or languages in general (a test over relabellings
of the languages, where the study has enough of them), and what its design could detect.</p>
<h2>Findings</h2>
<ul>
{items}
</ul>
{sections}
</body></html>
"""
