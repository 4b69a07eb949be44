"""report.html: one self-contained page of a sweep (every `jaxprune eval` and `jaxprune demo` writes one).

    write_report(out_dir, summaries, dataset)  ->  out_dir/report.html

What is in it (templates/report.html.j2, rendered by Jinja2 with autoescape):
- a table of every run (method x keep): the task's primary metric, every other
  metric, samples and failures, visual tokens, prefill FLOPs, samples/s; and the
  primary metric as a method x keep grid;
- the accuracy- and speed-vs-keep plots the sweep wrote (inline PNG);
- a sample browser: per sample the image, question, answers, and for each run
  its prediction marked right / partly right / wrong / failed, with the pruned
  runs' kept tokens drawn over the image (eval/overlay.py, from the
  `token_views` each record carries). A filter shows only the samples some
  method (or one chosen run) got wrong; it can be set from the URL
  (`report.html?filter=wrong`, `#filter=wrong:hilo_keep0.1&page=2`).

No network: CSS, JS and images (base64 data URIs) are inside the file. Large
runs: samples some run got wrong come first, then the others in dataset order,
until `max_samples` or the byte budget (`max_bytes`, ~18 MB by default) is
reached; the page says how many of how many it shows, 20 per page.
The file is written atomically (records.write_atomic).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Sequence

from jax_pruning.eval.records import read_records, write_atomic
from jax_pruning.eval.runner import PREDICTIONS_FILE

REPORT_FILE = "report.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_SAMPLES, MAX_BYTES, PER_PAGE = 200, 18_000_000, 20
THUMB, PANEL = 224, 160  # the sample image's longest side; an overlay panel's (pixels)
PLOTS = (("accuracy", "accuracy_vs_keep_ratio.png"), ("speed", "speed_vs_keep_ratio.png"))


def data_uri(image, *, photo: bool | None = None) -> str:
    """A PIL image as a data: URI: PNG, or JPEG (quality 85) where that is smaller."""
    png = io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    best, mime = png.getvalue(), "image/png"
    if photo is not False:
        jpeg = io.BytesIO()
        image.convert("RGB").save(jpeg, format="JPEG", quality=85)
        if len(jpeg.getvalue()) < 0.8 * len(best):
            best, mime = jpeg.getvalue(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(best).decode('ascii')}"


def _file_uri(path: Path) -> str | None:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')}" if path.is_file() else None


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _runs(summaries: Sequence[dict]) -> list[dict]:
    """Table rows, one per run, with the unpruned run's visual tokens / FLOPs as the reference."""
    ref = next((s for s in summaries if s.get("method") in (None, "none", "unpruned")), None)
    rows = []
    for s in summaries:
        primary = s.get("primary_metric")
        flops, tokens = s.get("mean_prefill_flops"), s.get("mean_visual_tokens")
        ref_flops = ref.get("mean_prefill_flops") if ref else None
        rows.append({
            "name": s["name"], "method": s.get("method"), "keep": s.get("keep_ratio"),
            "primary": _fmt(s["metrics"].get(primary), 4),
            "others": ", ".join(f"{k} {_fmt(v)}" for k, v in s["metrics"].items() if k not in (primary, "n")),
            "samples": s.get("n_samples"), "failed": s.get("n_failed"), "missing": s.get("n_missing"),
            "tokens": _fmt(tokens, 4), "gflops": _fmt(None if flops is None else flops / 1e9, 4),
            "flops_x": "-" if not (flops and ref_flops) else f"{ref_flops / flops:.2f}x",
            "speed": _fmt(s.get("samples_per_s"), 3),
        })
    return rows


def _grid(summaries: Sequence[dict]) -> dict:
    """The primary metric as methods (rows) x keep ratios (columns)."""
    keeps = sorted({float(s["keep_ratio"]) for s in summaries if s.get("method") not in (None, "none")},
                   reverse=True)
    methods: dict[str, dict] = {}
    for s in summaries:
        value = _fmt(s["metrics"].get(s.get("primary_metric")), 4)
        if s.get("method") in (None, "none"):
            methods.setdefault("unpruned", {})["all"] = value
        else:
            methods.setdefault(str(s["method"]), {})[float(s["keep_ratio"])] = value
    return {"keeps": keeps, "rows": [{"method": m, "unpruned": v.get("all"), "cells": [v.get(k, "-") for k in keeps]}
                                     for m, v in methods.items()]}


def _mark(score: float | None, ok: bool) -> str:
    if not ok:
        return "failed"
    return "right" if score >= 1.0 else ("wrong" if score <= 0.0 else "partial")


def _score_runs(summaries, records_by_run, by_id, task) -> dict[str, dict[str, dict]]:
    """run name -> sample id -> {prediction, score, mark, error, record}."""
    from jax_pruning.eval.metrics import score_each

    out = {}
    for s in summaries:
        records = records_by_run[s["name"]]
        ids = [i for i in records if i in by_id]
        scores = score_each(task, [records[i].get("prediction", "") if records[i].get("ok") else "" for i in ids],
                            [by_id[i] for i in ids]) if ids else []
        out[s["name"]] = {i: {"record": records[i], "score": sc, "mark": _mark(sc, bool(records[i].get("ok")))}
                          for i, sc in zip(ids, scores)}
    return out


def _sample_card(index: int, sample, summaries, scored, panel: int) -> dict:
    """One browser entry: the image, the question, each run's prediction and overlay (data URIs)."""
    from jax_pruning.eval.overlay import caption, render_views
    from jax_pruning.eval.token_views import decode_views

    try:
        image = sample.preview
    except Exception as err:  # noqa: BLE001 — a broken image still gets its text row
        image, image_error = None, str(err)
    else:
        image_error = None
    thumb = None
    if image is not None:
        small = image.copy()
        small.thumbnail((THUMB, THUMB))
        thumb = data_uri(small)
    runs, wrong_in = [], []
    for s in summaries:
        got = scored[s["name"]].get(sample.id)
        if got is None:
            runs.append({"name": s["name"], "method": s.get("method"), "keep": s.get("keep_ratio"), "prediction": "",
                         "error": None, "score": "-", "mark": "missing", "overlay": None, "captions": [],
                         "tokens": None})
            continue
        record = got["record"]
        overlay, captions = None, []
        if image is not None and record.get("token_views"):
            views = decode_views(record["token_views"])
            overlay = data_uri(render_views(image, views, panel, captions=False))
            captions = [caption(v) for v in views]
        if got["mark"] != "right":
            wrong_in.append(s["name"])
        runs.append({"name": s["name"], "method": s.get("method"), "keep": s.get("keep_ratio"),
                     "prediction": record.get("prediction", ""), "error": record.get("error"),
                     "score": f"{got['score']:.2f}", "mark": got["mark"], "overlay": overlay,
                     "captions": captions, "tokens": record.get("visual_tokens")})
    return {"index": index, "id": sample.id, "question": sample.question, "answers": list(sample.answers),
            "choices": sample.choices, "image": thumb, "image_error": image_error, "runs": runs,
            "wrong_in": wrong_in}


def _card_bytes(card: dict) -> int:
    return len(card["image"] or "") + sum(len(r.get("overlay") or "") for r in card["runs"]) + 2000


def _browser(summaries, out_dir: Path, dataset, max_samples: int, max_bytes: int, panel: int) -> dict:
    """The sample cards that fit: wrong-somewhere first, then the rest; shown in dataset order."""
    if dataset is None:
        return {"cards": [], "total": 0, "wrong_total": 0, "note": "no dataset was given: no sample browser"}
    task = summaries[0].get("task")
    samples = list(dataset)
    by_id = {s.id: s for s in samples}
    records_by_run = {s["name"]: {r["id"]: r for r in read_records(out_dir / s["name"] / PREDICTIONS_FILE)}
                      for s in summaries}
    scored = _score_runs(summaries, records_by_run, by_id, task)
    order = {s.id: i for i, s in enumerate(samples)}
    present = [s for s in samples if any(s.id in scored[run] for run in scored)]
    wrong = [s for s in present if any(scored[r].get(s.id, {"mark": "right"})["mark"] != "right" for r in scored)]
    wrong_ids = {s.id for s in wrong}
    cards, used = [], 0
    for sample in wrong + [s for s in present if s.id not in wrong_ids]:
        if len(cards) >= max_samples:
            break
        card = _sample_card(order[sample.id], sample, summaries, scored, panel)
        size = _card_bytes(card)
        if cards and used + size > max_bytes:
            break
        cards.append(card)
        used += size
    cards.sort(key=lambda c: c["index"])
    shown_wrong = sum(1 for c in cards if c["wrong_in"])
    note = (f"{len(cards)} of {len(present)} samples shown ({shown_wrong} of the {len(wrong)} that some run "
            f"got wrong)" + ("" if len(cards) == len(present) else
                             f"; the rest left out to keep this file small (at most {max_samples} samples, "
                             f"~{max_bytes / 1e6:.0f} MB of pictures); all predictions are in <run>/"
                             f"{PREDICTIONS_FILE}"))
    return {"cards": cards, "total": len(present), "wrong_total": len(wrong), "note": note}


def _legend() -> list[dict]:
    from jax_pruning.eval.overlay import LABEL_NAMES, _swatch

    return [{"label": name, "swatch": data_uri(_swatch(label, 14), photo=False)} for label, name in LABEL_NAMES.items()]


def render_report(summaries: Sequence[dict], out_dir: str | os.PathLike, dataset=None, *, title: str | None = None,
                  max_samples: int = MAX_SAMPLES, max_bytes: int = MAX_BYTES, per_page: int = PER_PAGE,
                  panel: int = PANEL) -> str:
    """The report's HTML text (see the module doc); `out_dir` holds the runs' folders and the plots."""
    import jinja2

    summaries = list(summaries)
    if not summaries:
        raise ValueError("render_report: no runs to report")
    out_dir = Path(out_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    first = summaries[0]
    devices = first.get("devices") or {}
    context = {
        "title": title or f"Evaluation: {first.get('task') or ''} — {out_dir.resolve().name}",
        "task": first.get("task"), "metric": first.get("primary_metric"),
        "dataset": getattr(dataset, "name", None), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "devices": f"{devices.get('count', '?')} x {devices.get('kind', '?')}" if devices else "-",
        "runs": _runs(summaries), "grid": _grid(summaries),
        "plots": [{"name": n, "uri": _file_uri(out_dir / f)} for n, f in PLOTS if (out_dir / f).is_file()],
        "legend": _legend(), "browser": _browser(summaries, out_dir, dataset, max_samples, max_bytes, panel),
        "run_names": [s["name"] for s in summaries], "per_page": per_page,
    }
    context["config_json"] = json.dumps({"perPage": per_page}, separators=(",", ":"))
    return env.get_template("report.html.j2").render(**context)


def write_report(out_dir: str | os.PathLike, summaries: Sequence[dict], dataset=None, **kwargs) -> Path:
    """Render and write out_dir/report.html atomically; returns its path."""
    return write_atomic(Path(out_dir) / REPORT_FILE, render_report(summaries, out_dir, dataset, **kwargs))
