"""report.html as a person sees it: headless Chromium renders a real small evaluation's report
(screenshot kept under the test's tmp dir) and runs the page's own filter (set from the URL);
the DOM it dumps must show the tables, both plots, overlays and the right samples.

Needs Debian's `chromium` (CI installs it in .ci/run); only these tests skip where no browser exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium / chromium-browser binary on PATH "
                                                        "(Debian: apt-get install chromium)")


def _chromium(tmp_path: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


def dump_dom(tmp_path: Path, url: str) -> str:
    result = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


class Visible(HTMLParser):
    """The sample cards of a dumped DOM: (id, hidden?, data-wrong), plus every tag's attributes."""

    def __init__(self):
        super().__init__()
        self.cards, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "article" and "sample" in (attrs.get("class") or "").split():
            self.cards.append((attrs["id"], "hidden" in attrs, attrs.get("data-wrong") or ""))

    def one(self, tag, id_):
        return next(a for t, a in self.tags if t == tag and a.get("id") == id_)


def _parse(dom: str) -> Visible:
    page = Visible()
    page.feed(dom)
    return page


@pytest.fixture(scope="module")
def small_eval(tmp_path_factory):
    """`jaxprune eval` on the embedded tiny LLaVA-NeXT: 12 easy-VQA questions, unpruned + 2 methods (hilo at
    keep 0.1 got one of them wrong when this was written)."""
    out = tmp_path_factory.mktemp("eval") / "results"
    script = Path(sys.executable).parent / "jaxprune"
    result = subprocess.run([str(script), "eval", "--data", "easy-vqa", "--limit", "12", "--bare-prompt",
                             "--method", "none", "mr_pruner", "hilo", "--keep", "0.1", "--batch-size", "8",
                             "--max-new-tokens", "4", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "report.html" in result.stdout
    return out


def test_a_real_evaluation_report_in_chromium(small_eval, tmp_path):
    report = small_eval / "report.html"
    assert report.is_file() and report.stat().st_size < 20_000_000
    shot = tmp_path / "report.png"  # the artifact: what a person sees
    result = _chromium(tmp_path, "--window-size=1400,2200", f"--screenshot={shot}", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as png:
        assert png.size == (1400, 2200)
        assert len(png.convert("RGB").getcolors(1 << 20) or ()) > 50  # a rendered page, not a blank one
    print(f"screenshot: {shot}")

    page = _parse(dump_dom(tmp_path, report.as_uri()))
    rows = [a for t, a in page.tags if t == "tr" and "run-row" in (a.get("class") or "")]
    assert [r["data-run"] for r in rows] == ["unpruned", "mr_pruner_keep0.1", "hilo_keep0.1"]
    plots = [a for t, a in page.tags if t == "img" and a.get("class") == "plot"]
    assert len(plots) == 2 and all(p["src"].startswith("data:image/png;base64,") for p in plots)
    overlays = [a for t, a in page.tags if t == "img" and a.get("class") == "overlay"]
    assert len(overlays) == 12 * 2  # each sample: mr_pruner and hilo kept tokens
    assert len(page.cards) == 12 and not any(hidden for _, hidden, _ in page.cards)  # all 12 on page 1
    samples = page.one("div", "samples")
    assert (samples["data-filter"], samples["data-visible"]) == ("all", "12")

    wrong = sum(1 for _, _, w in page.cards if w)
    page = _parse(dump_dom(tmp_path, report.as_uri() + "?filter=wrong"))
    shown = [(i, w) for i, hidden, w in page.cards if not hidden]
    assert len(shown) == wrong and all(w for _, w in shown)
    assert page.one("div", "samples")["data-matching"] == str(wrong)


def test_filter_and_pages_from_the_url(tmp_path):
    """A report with known answers: 45 samples, 3 got wrong by run b; 20 a page."""
    from jax_pruning.eval.report import write_report
    from tests.eval.report_runs import fake_sweep

    summaries, data = fake_sweep(tmp_path / "sweep", n=45, wrong=(3, 7, 40))
    report = write_report(tmp_path / "sweep", summaries, data)
    url = report.as_uri()

    def visible(query: str) -> tuple[list[str], dict]:
        page = _parse(dump_dom(tmp_path, url + query))
        return [i for i, hidden, _ in page.cards if not hidden], page.one("div", "samples")

    ids, state = visible("")
    assert ids == [f"sample-{i}" for i in range(20)] and state["data-matching"] == "45"
    ids, state = visible("#filter=all&page=3")
    assert ids == [f"sample-{i}" for i in range(40, 45)] and state["data-page"] == "3"
    ids, _ = visible("?filter=wrong")
    assert ids == ["sample-3", "sample-7", "sample-40"]
    ids, _ = visible("#filter=wrong:a_keep0.25")  # run a got everything right
    assert ids == []
    ids, _ = visible("#filter=wrong:b_keep0.25")
    assert ids == ["sample-3", "sample-7", "sample-40"]
