"""The report's figures (PNG, matplotlib): each draws what its question tests, with the question's
variant and statistic, and says in its caption which question that is and why a panel is absent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from langspec.science import tracin_vs_ablation
from langspec.science.study import StudyData
from langspec.science.verdicts import Finding
from store.queries import VARIANTS

COLORS = {"full": "#4c72b0", "subnetwork": "#dd8452", "sft": "#55a868"}
OUTSIDE_RIGHT = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small"}  # legends go beside the data, never on it


@dataclass(frozen=True)
class Figure:
    file: str | None  # None: not drawn, and the caption says why
    title: str
    caption: str


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def _save(fig, out: Path, file: str, title: str, caption: str, layout: bool = True) -> Figure:
    import matplotlib.pyplot as plt

    if layout:  # not for a colorbar shared by several axes, which tight_layout cannot place
        fig.tight_layout()
    fig.savefig(out / file, dpi=110, bbox_inches="tight")  # tight: a legend beside the axes stays in the picture
    plt.close(fig)
    return Figure(file, title, caption)


def _variants(rows: list[dict]) -> list[str]:
    present = {r["variant"] for r in rows}
    return [v for v in VARIANTS if v in present]


def _grouped_bars(ax, languages: list[str], variants: list[str], value, error) -> list:
    """One group of bars per language, one bar per variant: value(variant, language), error(...)."""
    width = 0.8 / len(variants)
    bars = []
    for i, variant in enumerate(variants):
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(languages))]
        bars.append(ax.bar(xs, [value(variant, lang) for lang in languages], width,
                           yerr=[error(variant, lang) or 0.0 for lang in languages], label=variant, color=COLORS[variant]))
    ax.set_xticks(range(len(languages)), languages)
    return bars


def accuracy(rows: list[dict], labels: int, out: Path) -> Figure | None:
    """Bars zoomed to the accuracies (a 0-1 axis makes 0.85 and 0.92 look alike), each with its value,
    and the chance line 1 / labels."""
    import matplotlib.pyplot as plt

    if not rows:
        return None
    by_language = {r["language"]: r for r in rows}
    variants = [v for v in VARIANTS if any(r[v] is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = _grouped_bars(ax, list(by_language), variants, lambda v, lang: by_language[lang][v] or 0.0,
                         lambda v, lang: by_language[lang][f"{v}_sd"])
    for container in bars:
        ax.bar_label(container, fmt="%.3f", fontsize=7, padding=2)
    drawn = [(r[v], r[f"{v}_sd"] or 0.0) for r in rows for v in variants if r[v] is not None]
    chance = 1 / labels if labels else None
    low = min([value - sd for value, sd in drawn] + ([chance] if chance else []))
    high = max(value + sd for value, sd in drawn)
    margin = max(0.05, (high - low) * 0.15)
    ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    if chance:
        ax.axhline(chance, color="black", linestyle="dashed", linewidth=1, label=f"chance (1/{labels} labels)")
    ax.set_xlabel("language")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy per language: full model, its subnetworks, SFT")
    ax.legend(**OUTSIDE_RIGHT)
    return _save(fig, out, "accuracy.png", "Accuracy",
                 "Test accuracy at the last epoch, mean over seeds (bars: ±1 sd over seeds); each language's subnetwork and the "
                 "SFT model are evaluated with that language's mask. The axis is zoomed to the data; dashed: chance, one over "
                 "the number of labels.")


def in_language(rows: list[dict], k: int, out: Path) -> Figure | None:
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
    ax.legend(**OUTSIDE_RIGHT)
    return _save(fig, out, "in_language_share.png", "In-language share",
                 f"S+(t): share of each test example's top-{k} proponents from its own language, averaged over the test examples "
                 "of t; dashed: the language's share of the scored training examples. Q2 tests subnetwork minus full, Q3 SFT "
                 "minus subnetwork, both paired per test example.")


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


def cross_language(rows: list[dict], k: int, out: Path) -> Figure | None:
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
    return _save(fig, out, "cross_language.png", "Cross-language reliance",
                 f"M+[t, s]: share of test language t's top-{k} proponents from training language s; rows sum to 1.", layout=False)


def masks(rows: list[dict], out: Path) -> Figure | None:
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


def jaccard(rows: list[dict], out: Path) -> Figure | None:
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
    return _save(fig, out, "jaccard.png", "Subnetwork similarity",
                 "Jaccard similarity of the kept heads of two languages' subnetworks (raw: it rises with the masks' sizes; "
                 "Q4 uses it minus its expectation for random masks of the same sizes).")


def similarity_vs_influence(study: StudyData, cross: list[dict], q4: Finding | None, out: Path) -> Figure | None:
    """What Q4 correlates: size-adjusted Jaccard against M+ of the full model, one point per ordered
    pair of different languages, each the mean over the seeds that have it; Q4's r in the title."""
    import matplotlib.pyplot as plt

    by_pair: dict[tuple[str, str], list[float]] = {}
    for pairs in study.jaccard_excess.values():
        for pair, value in pairs.items():
            by_pair.setdefault(pair, []).append(value)
    shares = {(r["test_language"], r["train_language"]): r["share"] for r in cross
              if r["variant"] == "full" and r["side"] == "proponents"}
    points = {pair: (_mean(values), shares[pair]) for pair, values in sorted(by_pair.items()) if pair in shares}
    if not points and shares and any(r["language_a"] != r["language_b"] for r in study.pairs):  # the page says why not
        return Figure(None, "Similarity vs influence (Q4)",
                      "Not drawn: no pair of different languages has a size-adjusted Jaccard, as a mask that keeps no heads "
                      "has none (see the head masks); Q4 has no pairs to correlate.")
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([j for j, _ in points.values()], [m for _, m in points.values()], color=COLORS["full"], alpha=0.85)
    for (a, b), xy in points.items():
        ax.annotate(f"{a}←{b}", xy, fontsize=7, xytext=(3, 3), textcoords="offset points")
    title = "Q4, full model: no r (too few pairs, or one side constant)"
    if q4 is not None and q4.statistic is not None:
        title = f"Q4, full model: r = {q4.statistic:+.2f}" + (f" [{q4.interval[0]:+.2f}, {q4.interval[1]:+.2f}]" if q4.interval else "")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("size-adjusted similarity: J(a, b) − J of random masks")
    ax.set_ylabel("cross-language share M+[a, b], full model")
    ax.set_title(title)
    return _save(fig, out, "similarity_vs_influence.png", "Similarity vs influence (Q4)",
                 "What Q4 tests, on the full model: each point is an ordered pair of different languages (test language a, "
                 "training language b), mean over seeds; x: the Jaccard similarity of their subnetworks minus its expectation for "
                 "random masks of the same sizes, y: the share of a's proponents from b. r is Q4's statistic, the mean over "
                 "seeds of each seed's Pearson r over these pairs.")


def dynamics(rows: list[dict], out: Path) -> Figure | None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

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
        ax.set_title({"full": "full fine-tuning", "sft": "SFT"}.get(variant, variant))
        ax.set_xlabel("epoch (checkpoint)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("S+(t) of that checkpoint's term")
    axes[0][-1].legend(**OUTSIDE_RIGHT)
    fig.suptitle("In-language reliance over training (Q5)")
    return _save(fig, out, "dynamics.png", "Dynamics (Q5)",
                 "S+(t) computed from each checkpoint's TracIn term alone, for the two trainings Q5 compares: full fine-tuning "
                 "and SFT. The subnetwork variant has no panel: it trains nothing of its own (it scores the full model's "
                 "checkpoints under each language's mask); its per-checkpoint S+ is in the dynamics analysis (langspec analyze dynamics).")


def threshold_sweep(rows: list[dict], k: int, out: Path) -> Figure | None:
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
    axes[2].legend(**OUTSIDE_RIGHT)
    for ax in axes:
        ax.set_xlabel("prune.threshold")
    fig.suptitle("The prune threshold: how sparse, how accurate, how specialised")
    return _save(fig, out, "threshold_sweep.png", "Prune threshold sweep",
                 "Each sweep point of the run: mean over seeds (error bars: sd over seeds) of the subnetworks' sparsity, "
                 "their test retention and S+ per TracIn variant (the threshold_sweep analysis).")


def influence_validity(pairs: list[dict], results: list[tracin_vs_ablation.Validity], q6_variant: str | None, out: Path) -> Figure | None:
    """TracIn's predicted effect against the measured one, a panel per variant; the panel Q6 tests
    says so, with Q6's statistic (over the pairs t ≠ s) first."""
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
        name = f"{variant} (Q6)" if variant == q6_variant else variant
        if ("pearson", "off_diagonal") in stats:
            off, every = stats[("pearson", "off_diagonal")], stats.get(("pearson", "all"))
            ax.set_title(f"{name}: r over t ≠ s = {off.statistic:+.2f} [{off.low:+.2f}, {off.high:+.2f}]"
                         + (f"; with the diagonal {every.statistic:+.2f}" if every else ""), fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("TracIn's predicted effect P[t, s]")
    axes[0][0].set_ylabel("measured effect E[t, s] (test loss without s − with all)")
    axes[0][-1].legend(**OUTSIDE_RIGHT)
    fig.suptitle("Does TracIn predict the effect of removing a language?")
    return _save(fig, out, "influence_validity.png", "Influence validity (Q6)",
                 "Each point is a pair (test language t, left-out language s), mean over seeds with ±1 sd over seeds as bars. "
                 "P sums TracInCP over the training examples TracIn scored (tracin.train_per_language of s), averaged over "
                 "t's TracIn test examples; E is t's mean test-loss change when s is left out of fine-tuning. r: Pearson, the "
                 "mean over seeds of the per-seed correlation, with its 95% t interval over seeds; Q6 tests r over the pairs "
                 "t ≠ s of the panel it names, the diagonal apart.")
