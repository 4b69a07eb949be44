"""Local copies of the lmms-lab evaluation datasets (parquet, images embedded as bytes).

Point `path` at a downloaded snapshot of the dataset repository (or at one
parquet file). Files are picked by split from their names, as the Hub lays
them out: `data/validation-00000-of-00003.parquet`,
`testdev_balanced_instructions/testdev-00000-of-00001.parquet`,
`ScienceQA-IMG/test-00000-of-00001.parquet`, `DocVQA/validation-00000-of-00006.parquet`.
Column names follow the public datasets (lmms-lab/textvqa, GQA, POPE, MME,
ScienceQA config ScienceQA-IMG, DocVQA configs DocVQA and InfographicVQA,
ChartQA; echo840/OCRBench), as lmms-eval's task files read them:

    textvqa   question_id, question, answers[10], image
    gqa       instructions: id, imageId, question, answer;  images: id, image
    pope      question_id, question, answer (yes/no), category, image
    mme       question_id (the image path, shared by its 2 questions), question, answer (Yes/No), category, image
    scienceqa question, choices, answer (index), hint, image (may be null)
    docvqa    questionId, question, answers[], image       (folder DocVQA/ when given the repository)
    infovqa   questionId, question, answers[], image       (folder InfographicVQA/)
    chartqa   question, answer, type (human_test / augmented_test), image
    ocrbench  dataset (source, e.g. HME100k), question, question_type (category), answer[], image

The default split is the one lmms-eval scores (validation for DocVQA/InfoVQA,
whose test answers are withheld; test for ChartQA and OCRBench). Every row's
answers are checked on opening: a missing or empty one is a ValueError naming
the file, row and column.

Text columns are read up front (small); image bytes are read lazily, one row
group at a time, so a large split never sits in memory.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from jax_pruning.eval.samples import Dataset, Sample, SampleError, choose_rows, image_from_bytes


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reading lmms-lab parquet datasets needs pyarrow: pip install pyarrow") from None
    return pq


def parquet_files(path: str | os.PathLike, split: str, part: str | None = None,
                  config: str | None = None) -> list[Path]:
    """The split's parquet files under `path` (in name order).

    `part` keeps only files in a folder whose name contains it (GQA's instructions
    vs images). `config` prefers files in a folder of that exact name (one config
    of a repository holding several, as lmms-lab/DocVQA) and falls back to all the
    split's files when there is none (`path` is the config's own folder).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset folder or parquet file")
    found = []
    for file in sorted(path.rglob("*.parquet")):
        rel = file.relative_to(path)
        in_split = file.name.startswith((f"{split}-", f"{split}.")) or split in rel.parts[:-1]
        if in_split and (part is None or any(part in p for p in rel.parts[:-1])):
            found.append(file)
    in_config = [f for f in found if config in f.relative_to(path).parts[:-1]]
    if in_config:
        found = in_config
    if not found:
        where = f" in a folder named *{part}*" if part else ""
        raise FileNotFoundError(f"{path}: no parquet files for split {split!r}{where} "
                                f"(expected names like {split}-00000-of-00001.parquet)")
    return found


class ParquetRows:
    """Rows of several parquet files: text columns in memory, other columns read per row group on demand."""

    def __init__(self, files: list[Path], columns: list[str]):
        pq = _pyarrow()
        self.files = files
        self.columns: dict[str, list] = {c: [] for c in columns}
        self._where: list[tuple[int, int, int]] = []  # global row -> (file, row group, row in group)
        self._first_row: list[int] = []  # global index of each file's first row
        for f, file in enumerate(files):
            self._first_row.append(len(self._where))
            handle = pq.ParquetFile(file)
            names = handle.schema_arrow.names
            missing = [c for c in columns if c not in names]
            if missing:
                raise ValueError(f"{file}: missing column(s) {missing}; it has {names}")
            table = handle.read(columns=columns)
            for c in columns:
                self.columns[c].extend(table.column(c).to_pylist())
            for g in range(handle.num_row_groups):
                self._where.extend((f, g, r) for r in range(handle.metadata.row_group(g).num_rows))

    def __len__(self) -> int:
        return len(self._where)

    def value(self, column: str, row: int) -> Any:
        return self.columns[column][row]

    def locate(self, row: int) -> tuple[Path, int]:
        """The file holding a global row, and the row's index inside that file."""
        f = bisect.bisect_right(self._first_row, row) - 1
        return self.files[f], row - self._first_row[f]

    @functools.lru_cache(maxsize=2)
    def _group(self, f: int, g: int, column: str) -> list:
        pq = _pyarrow()
        return pq.ParquetFile(self.files[f]).read_row_group(g, columns=[column]).column(column).to_pylist()

    def lazy(self, column: str, row: int) -> Any:
        f, g, r = self._where[row]
        return self._group(f, g, column)[r]


def image_bytes(cell: Any) -> bytes | None:
    """The bytes of an HF `Image` cell ({"bytes", "path"} struct) or of a plain binary cell."""
    if isinstance(cell, dict):
        return cell.get("bytes")
    return cell


def _lazy_image(rows: ParquetRows, row: int, where: str) -> Callable:
    def load():
        return image_from_bytes(image_bytes(rows.lazy("image", row)), where)()

    return load


def _unique(ids: list[str]) -> list[str]:
    """Ids made unique by appending '#row' where the source repeats them (MME pairs, POPE subsets)."""
    counts = Counter(ids)
    return [i if counts[i] == 1 else f"{i}#{row}" for row, i in enumerate(ids)]


@dataclasses.dataclass(frozen=True)
class Layout:
    task: str  # the scoring task (eval.metrics.TASKS), which also picks the prompt
    split: str
    columns: tuple[str, ...]
    make_id: Callable[[dict, int], str]
    answers: Callable[[Any], list[str]]  # the answer column's cell -> the sample's answers
    answer_column: str = "answer"
    question: Callable[[dict], str] = lambda r: str(r["question"]).strip()
    choices: Callable[[dict], list[str] | None] = lambda r: None
    meta: Callable[[dict], dict] = lambda r: {}
    config: str | None = None  # the repository folder of this config (see parquet_files)


def _letter(i: int) -> str:
    if isinstance(i, bool) or not isinstance(i, int):
        raise TypeError(f"expected an option index, got {type(i).__name__}")
    return chr(ord("A") + i)


def _one(cell: Any) -> list[str]:
    if not isinstance(cell, str):
        raise TypeError(f"expected a string, got {type(cell).__name__}")
    return [cell]


def _many(cell: Any) -> list[str]:
    if not isinstance(cell, list) or not all(isinstance(a, str) for a in cell):
        raise TypeError(f"expected a list of strings, got {type(cell).__name__}")
    return list(cell)


def _checked_answers(layout: Layout, rows: "ParquetRows", records: list[dict]) -> list[list[str]]:
    """Every row's answers, or a ValueError naming the file, row and column of the first bad one."""
    out = []
    for i, record in enumerate(records):
        cell = record[layout.answer_column]
        try:
            answers = layout.answers(cell)
            if not answers:
                raise ValueError("no answers")
        except (TypeError, ValueError) as err:
            file, row = rows.locate(i)
            hint = " (this split's answers may be withheld; use one that has them)" if cell is None else ""
            raise ValueError(f"{file}: row {row}: column {layout.answer_column!r} holds {cell!r}: "
                             f"{err}{hint}") from None
        out.append(answers)
    return out


def _sqa_question(r: dict) -> str:
    hint = (r.get("hint") or "").strip()
    return (f"Context: {hint}\n" if hint else "") + str(r["question"]).strip()


LAYOUTS: dict[str, Layout] = {
    "textvqa": Layout("textvqa", "validation", ("question_id", "question", "answers", "image_id"),
                      make_id=lambda r, i: str(r["question_id"]), answers=_many, answer_column="answers",
                      meta=lambda r: {"image_id": r["image_id"]}),
    "gqa": Layout("gqa", "testdev", ("id", "imageId", "question", "answer"),
                  make_id=lambda r, i: str(r["id"]), answers=_one,
                  meta=lambda r: {"image_id": str(r["imageId"])}),
    "pope": Layout("pope", "test", ("question_id", "question", "answer", "category"),
                   make_id=lambda r, i: f"{r['category']}/{r['question_id']}", answers=_one,
                   meta=lambda r: {"category": r["category"]}),
    "mme": Layout("mme", "test", ("question_id", "question", "answer", "category"),
                  make_id=lambda r, i: str(r["question_id"]), answers=_one,
                  meta=lambda r: {"category": r["category"], "image_id": str(r["question_id"])}),
    "scienceqa-img": Layout("scienceqa_img", "test", ("question", "choices", "answer", "hint"),
                            make_id=lambda r, i: f"sqa-{i}", answers=lambda cell: [_letter(cell)],
                            question=_sqa_question, choices=lambda r: [str(c) for c in r["choices"]]),
    "docvqa": Layout("docvqa", "validation", ("questionId", "question", "answers"),
                     make_id=lambda r, i: str(r["questionId"]), answers=_many, answer_column="answers",
                     config="DocVQA"),
    "infovqa": Layout("infovqa", "validation", ("questionId", "question", "answers"),
                      make_id=lambda r, i: str(r["questionId"]), answers=_many, answer_column="answers",
                      config="InfographicVQA"),
    "chartqa": Layout("chartqa", "test", ("question", "answer", "type"),
                      make_id=lambda r, i: f"chartqa-{i}", answers=_one, meta=lambda r: {"type": r["type"]}),
    "ocrbench": Layout("ocrbench", "test", ("dataset", "question", "question_type", "answer"),
                       make_id=lambda r, i: f"ocrbench-{i}", answers=_many,
                       meta=lambda r: {"category": r["question_type"], "source_dataset": r["dataset"]}),
}


def open_parquet(name: str, path, split: str | None = None, limit: int | None = None,
                 seed: int | None = None) -> Dataset:
    """An lmms-lab dataset from local parquet files (see the module docstring for the layouts)."""
    layout = LAYOUTS[name]
    split = split or layout.split
    part = "instructions" if name == "gqa" else None
    rows = ParquetRows(parquet_files(path, split, part, layout.config), list(layout.columns))
    records = [{c: rows.value(c, i) for c in layout.columns} for i in range(len(rows))]
    answers = _checked_answers(layout, rows, records)
    ids = _unique([layout.make_id(r, i) for i, r in enumerate(records)])
    images = _gqa_images(path, split) if name == "gqa" else None

    def make(i: int) -> Sample:
        r = records[i]
        where = f"{name} row {i} (id {ids[i]!r})"
        if images is None:
            load = _lazy_image(rows, i, where)
        else:
            load = images(str(r["imageId"]), where)
        return Sample(id=ids[i], question=layout.question(r), answers=answers[i], task=layout.task,
                      load_image=load, choices=layout.choices(r), meta={"dataset": name, **layout.meta(r)})

    return Dataset(name, choose_rows(len(records), limit, seed).tolist(), make)


def _gqa_images(path, split: str) -> Callable[[str, str], Callable]:
    """GQA keeps images in their own files (testdev_balanced_images), keyed by `id` = imageId."""
    rows = ParquetRows(parquet_files(path, split, "images"), ["id"])
    index = {str(image_id): row for row, image_id in enumerate(rows.columns["id"])}

    def loader(image_id: str, where: str) -> Callable:
        def load():
            if image_id not in index:
                raise SampleError(f"{where}: imageId {image_id!r} is not in the GQA image files")
            return image_from_bytes(image_bytes(rows.lazy("image", index[image_id])), where)()

        return load

    return loader
