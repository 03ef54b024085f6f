"""The report as a reader sees it, in a real browser (headless Chromium, Debian's `chromium`): every
figure loads, each finding says its label, interval and reasons once, and the page reads at a
desktop's 1280 px and a phone's 390 px without scrolling sideways. Without chromium the test skips,
except under CI=true, where .ci/run installs it and its absence is a failure.

Chromium's headless window is at least 500 px wide, so the page is measured in an iframe of the
width under test, and the probe inside it posts what it measured to the frame around it, which
--dump-dom prints."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from langspec.science.report import write_report
from tests.langspec.test_findings import build

WIDTHS = (1280, 390)
PROBE = """<script>
addEventListener("load", () => parent.postMessage({
  images: [...document.images].map(image => [image.getAttribute("src"), image.naturalWidth]),
  findings: [...([...document.querySelectorAll("h2")].find(h => h.textContent === "Findings")?.nextElementSibling?.children ?? [])]
    .map(item => item.textContent),
  width: innerWidth, scrollWidth: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
}, "*"));
</script>"""
# One frame per width, side by side, so one browser start measures (or photographs) every width.
FRAMES = """<!doctype html><html><body style="margin:0;display:flex;align-items:flex-start">{frames}
<pre id="probe"></pre>
<script>
const seen = [];
addEventListener("message", event => {{
  seen.push(event.data);
  if (seen.length === {count}) document.getElementById("probe").textContent = JSON.stringify(seen);
}});
</script></body></html>"""
FRAME = '<iframe src="probed.html" style="border:0;flex:none;width:{width}px;height:{height}px"></iframe>'


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package before `make test`")
    pytest.skip("chromium is not installed (apt-get install chromium); under CI=true this test fails instead")


def browse(chromium: str, report: Path, heights: dict[int, int], screenshot: Path | None = None) -> dict[int, dict]:
    """Open the report in one frame per width (width -> height in px): what the probe measured in
    each, by width; or a screenshot of them all."""
    (report / "probed.html").write_text((report / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    frames = report / "frames.html"
    frames.write_text(FRAMES.format(frames="".join(FRAME.format(width=w, height=h) for w, h in heights.items()), count=len(heights)))
    action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    browser = subprocess.run(
        # --no-sandbox: Chromium's sandbox refuses to start as root, as CI's containers run
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={report / 'profile'}",
         f"--window-size={sum(heights)},{max(heights.values())}", "--virtual-time-budget=10000", *action, frames.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert browser.returncode == 0, browser.stderr[-2000:]
    if screenshot:
        return {}
    probed = re.search(r'<pre id="probe">(.*?)</pre>', browser.stdout, re.S)
    assert probed and probed.group(1), f"the probe reported nothing: {browser.stdout[-2000:]}"
    return {seen["width"]: seen for seen in json.loads(html.unescape(probed.group(1)))}


@pytest.mark.parametrize("seeds", [(0, 1, 2), (0,)], ids=["three seeds", "one seed"])
def test_the_report_reads_in_a_browser_at_desktop_and_phone_widths(tmp_path, seeds):
    browser = chromium()
    report = tmp_path / "report"
    write_report(build(seeds=seeds, sft_accuracy=8 / 9), report)
    answers = json.loads((report / "findings.json").read_text())
    measured = browse(browser, report, {width: 900 for width in WIDTHS})
    assert sorted(measured) == sorted(WIDTHS)
    for width, seen in measured.items():
        assert seen["scrollWidth"] <= width, f"at {width} px the page is {seen['scrollWidth']} px wide: it scrolls sideways"
        drawn = sorted(path.name for path in report.glob("*.png"))
        assert sorted(src for src, _ in seen["images"]) == drawn and len(drawn) >= 6
        assert all(natural > 0 for _, natural in seen["images"]), seen["images"]  # every figure loaded
        assert len(seen["findings"]) == len(answers)
        for finding, text in zip(answers, seen["findings"]):
            said = " ".join(text.split())
            label = f"{finding['question']} {finding['verdict']}"
            assert said.count(label) == 1, said
            assert said.count(finding["power"]["detectable"]) == 1, said
            for reason in finding["reasons"]:
                assert said.count(reason) == 1, (reason, said)
            if finding["interval"]:
                low, high = finding["interval"]
                assert said.count(f"[{low:+.3f}, {high:+.3f}]") == 1, said
            assert not re.search(r"\b1 seeds\b", said), said
    if len(seeds) == 3:  # what a reader sees, the whole page at each width, for a person to look at
        shot = tmp_path / "frames.png"
        browse(browser, report, {width: seen["height"] for width, seen in measured.items()}, shot)
        left = 0
        with Image.open(shot) as frames:
            for width, seen in measured.items():
                frames.crop((left, 0, left + width, seen["height"])).save(tmp_path / f"report-{width}px.png")
                left += width
