"""The lab report as a reader sees it: opened in headless Chromium (Debian's ``chromium``,
which ``.ci/run`` installs), on a phone-sized window.

Every figure loads, the console shows nothing (no error, no warning), and the page does not
scroll sideways at 390 px; the page opens with what dropout does and how to read it, and
each experiment gives its rule, a plain sentence and a table of its numbers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from dropkit.lab.config import resolve_config
from dropkit.lab.experiments import REGISTRY
from dropkit.lab.session import run_lab

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run "
                                "installs it: apt-get install chromium)")
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const wide = document.documentElement.scrollWidth > window.innerWidth + 1;
  document.body.setAttribute("data-check", JSON.stringify({n: imgs.length, bad, wide}));
});
</script></body>"""
EXPERIMENTS = ["overfitting", "rate-sweep", "scaling", "eval-mode", "coverage"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = (np.eye(3, 6)[y] * 2 + rng.normal(size=(300, 6))).astype(np.float32)
    np.savez(tmp / "d.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    cfg = resolve_config({"data": str(tmp / "d.npz"), "out": str(tmp / "o"), "hidden": [16],
                          "epochs": 3, "batch_size": 50, "lr": 0.01, "workers": 1,
                          "ps": [0.0, 0.5], "coverage_epochs": 1, "coverage_ps": [0.5],
                          "experiments": EXPERIMENTS})
    return run_lab(cfg).report


def _open(page: Path, width: int) -> tuple[dict, str]:
    """Load ``page`` in headless Chromium at ``width`` px: (the check's result, stderr)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    found = re.search(r'data-check="([^"]*)"', done.stdout)
    assert found, f"the check never ran; stderr: {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"')), done.stderr


@pytest.mark.parametrize("width", [390, 1280])
def test_every_figure_loads_and_the_console_is_clean(report: Path, width: int) -> None:
    checked = report.with_name(f"checked-{width}.html")
    checked.write_text(report.read_text().replace("</body>", CHECK))
    result, stderr = _open(checked, width)
    assert result["n"] == len(EXPERIMENTS) and result["bad"] == []
    assert not result["wide"], "the page scrolls sideways"
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []


def test_a_learner_can_follow_the_page(report: Path) -> None:
    text = report.read_text()
    assert "name='viewport'" in text and "What dropout does" in text
    assert "How to read this page" in text and "src='http" not in text  # self-contained
    for name in EXPERIMENTS:
        plain, rows = REGISTRY[name].explain(json.loads(
            (report.parent / "verdicts.json").read_text())[name])
        assert plain and len(rows) >= 2
        assert REGISTRY[name].RULE.split()[0] in text
    assert text.count("<table>") == len(EXPERIMENTS) + 1  # the verdicts, then one each
    assert "(claim" not in text  # no numbering after a document the reader lacks


def test_a_broken_figure_is_caught(report: Path) -> None:
    """The check fails when a figure does not decode (a plausible bug: truncated base64)."""
    broken = report.with_name("broken.html")
    page = re.sub(r"base64,[A-Za-z0-9+/=]{200}", "base64,AAAA", report.read_text(), count=1)
    broken.write_text(page.replace("</body>", CHECK))
    result, _ = _open(broken, 1280)
    assert len(result["bad"]) == 1


def test_a_console_error_is_caught(report: Path) -> None:
    """The console check sees a script error (so a clean console means something)."""
    noisy = report.with_name("noisy.html")
    noisy.write_text(report.read_text().replace("</body>", "<script>undefinedCall()</script>"
                                                + CHECK))
    _, stderr = _open(noisy, 1280)
    assert any(":CONSOLE" in line and "undefinedCall" in line for line in stderr.splitlines())
