"""Known answers through the whole pipeline: a small spec with planted modules swept over overlap
0 and 1, run by the local executor, then `langspec report`: controls.json holds every overlap's
recovery (by the pruned masks and by each head's ablation effect), Q1, S+ and P1, and the
dose-response figure is on the page. At overlap 1 the planted set is every head, so a pruned mask's
Jaccard with it is exactly its random-mask expectation."""

from __future__ import annotations

import json
import textwrap

from PIL import Image
from typer.testing import CliRunner

from langspec.cli import app
from tests.conftest import SMALL_SPEC

SETTINGS = ["data.languages=[ka, kb, la]", "seeds=[0, 1]", "prune.enabled=true", "tracin.enabled=true",
            "tracin.variants=[full, subnetwork]", "tracin.train_per_language=10", "tracin.test_per_language=3",
            "analysis.top_k=5", "planted.overlap=0.0", "sweep={planted.overlap: [0.0, 1.0]}", "head_effects.enabled=true"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_controls_report_every_overlap(tmp_path):
    spec = tmp_path / "controls.yaml"
    spec.write_text(textwrap.dedent(SMALL_SPEC.format(epochs=2)))
    store = tmp_path / "results"
    ran = invoke("run", spec, "--store", store, "--executor", "local", *[a for s in SETTINGS for a in ("--set", s)])
    assert ran.exit_code == 0, ran.output
    planted = json.loads(invoke("query", "SELECT language, family, count(*) FILTER (WHERE kept) AS heads FROM planted_heads "
                                "WHERE seed = 0 GROUP BY task_key, language, family ORDER BY heads, language", "--store", store,
                                "--format", "json").output)
    # 2 layers x 2 heads: at overlap 0 the families k and l have 2 heads each, at overlap 1 all 4.
    assert [tuple(r.values()) for r in planted] == [(lang, lang[0], heads) for heads in (2, 4) for lang in ("ka", "kb", "la")]
    reported = invoke("report", "--store", store, "--point", "planted.overlap=0.0", "--out", tmp_path / "report")
    assert reported.exit_code == 0, reported.output
    document = json.loads((tmp_path / "report" / "controls.json").read_text())
    points = document["points"]
    assert [p["overlap"] for p in points] == [0.0, 1.0]
    for point in points:
        assert set(point["measures"]) == {"recovery", "recovery_by_effects", "q1", "s_plus_full", "s_plus_subnetwork", "p1"}
        assert point["measures"]["q1"]["verdict"] in ("supported", "contradicted", "inconclusive")
        assert set(point["p1_per_family"]) == {"ka/kb"}  # la has no relative among the languages studied
        for measure in ("s_plus_full", "s_plus_subnetwork"):
            summary = point["measures"][measure]
            assert summary["n"] == {"seeds": 2, "test_examples": 9} and summary["interval"][0] <= summary["value"] <= summary["interval"][1]
            low, high = summary["interval"]  # a share is read against its chance level (1/3 here), not against 0
            assert point["chance"] == 1 / 3 and "interval_vs_0" not in summary
            assert summary["interval_vs_chance"] == ("above chance" if low > 1 / 3 else "below chance" if high < 1 / 3 else "includes chance")
    everything = points[1]["measures"]["recovery"]  # overlap 1: J(pruned, all heads) = kept / heads, its random expectation
    assert everything["value"] == 0.0 and everything["interval"] == [0.0, 0.0]
    assert everything["jaccard"] == everything["random"]
    assert points[0]["measures"]["recovery"]["n"] == {"seeds": 2, "languages": 3}
    # Recovery by ablation effect (head_effects), beside it: at overlap 1 the top set is every head.
    assert "recovery_by_effects" in document["monotone"]
    assert points[0]["measures"]["recovery_by_effects"]["n"] == {"seeds": 2, "languages": 3}
    by_effects = points[1]["measures"]["recovery_by_effects"]
    assert by_effects["value"] == 0.0 and by_effects["jaccard"] == by_effects["random"] == 1.0
    counted = invoke("query", "SELECT count(*) FROM head_effects", "--store", store, "--format", "csv")
    assert counted.output.split()[-1] == str(2 * 2 * 3 * 2 * 2)  # layers x heads x languages x seeds, at 2 overlaps
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'src="controls.png"' in page
    with Image.open(tmp_path / "report" / "controls.png") as image:
        assert image.width >= 600 and len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10
