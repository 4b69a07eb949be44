"""report.html without a browser: its structure, self-containment, the filter's data and its size budget."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from jax_pruning.eval.report import REPORT_FILE, render_report, write_report
from tests.eval.report_runs import RUNS, fake_sweep


class Outline(HTMLParser):
    """Tags with their attributes, and the text inside table cells."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, **want):
        return [a for t, a in self.tags if t == tag and all(want[k] in (a.get(k) or "").split() for k in want)]


def _outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    summaries, data = fake_sweep(folder, n=30, wrong=(3, 7, 11))
    path = write_report(folder, summaries, data)
    return path, path.read_text(encoding="utf-8"), summaries


def test_tables_plots_overlays_and_samples_are_all_in_the_file(report):
    path, html, summaries = report
    assert path.name == REPORT_FILE
    page = _outline(html)
    assert len(page.find("tr", **{"class": "run-row"})) == len(RUNS)  # every run x keep
    for header in ("exact_match", "visual tokens", "prefill GFLOPs", "samples/s", "failed"):
        assert f"<th>{header}</th>" in html
    assert len(page.find("img", **{"class": "plot"})) == 2  # accuracy and speed vs keep
    cards = page.find("article", **{"class": "sample"})
    assert len(cards) == 30
    # samples 3, 7, 11 are wrong in run b only
    wrong = {c["id"]: c["data-wrong"] for c in cards if c["data-wrong"]}
    assert wrong == {"sample-3": "b_keep0.25", "sample-7": "b_keep0.25", "sample-11": "b_keep0.25"}
    overlays = page.find("img", **{"class": "overlay"})
    assert len(overlays) == 30 * 2  # the two pruned runs of every sample
    assert all(o["src"].startswith("data:image/") for o in overlays)
    assert "✗" in html and "✓" in html and "candidate" in html  # marks and the legend
    assert "3 that some run got wrong" in html


def test_self_contained_no_network(report):
    _, html, _ = report
    page = _outline(html)
    assert not page.find("link") and not [s for s in page.find("script") if s.get("src")]
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not attrs.get(key) or attrs[key].startswith(("data:", "#")), (key, attrs[key][:80])
    assert not re.search(r"https?://", html)


def test_questions_are_escaped(tmp_path):
    from jax_pruning.eval.samples import Sample

    summaries, data = fake_sweep(tmp_path, n=2, wrong=())
    evil = [Sample(id=s.id, question="<script>alert(1)</script>", answers=s.answers, task=s.task,
                   load_image=s.load_image) for s in data]
    html = render_report(summaries, tmp_path, evil)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_large_runs_stay_under_the_byte_budget(tmp_path):
    summaries, data = fake_sweep(tmp_path, n=60, wrong=(50, 55))
    path = write_report(tmp_path, summaries, data, max_bytes=400_000, panel=200)
    html = path.read_text(encoding="utf-8")
    cards = _outline(html).find("article", **{"class": "sample"})
    assert 2 <= len(cards) < 60
    assert path.stat().st_size < 400_000 + 200_000  # pictures within budget, plus plots and markup
    assert {"sample-50", "sample-55"} <= {c["id"] for c in cards}  # wrong samples come first
    assert f"{len(cards)} of 60 samples shown" in html and "left out" in html
    capped = render_report(summaries, tmp_path, data, max_samples=5)
    assert len(_outline(capped).find("article", **{"class": "sample"})) == 5


def test_without_a_dataset_the_report_still_has_its_tables(tmp_path):
    summaries, _ = fake_sweep(tmp_path, n=3, wrong=())
    html = render_report(summaries, tmp_path)
    assert len(_outline(html).find("tr", **{"class": "run-row"})) == 3 and "no sample browser" in html
    with pytest.raises(ValueError, match="no runs"):
        render_report([], tmp_path)
