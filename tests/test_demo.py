"""The demo on folders of every size: queries are held out of the database, and no rate is
reported over zero queries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import class_photos
from utilities.demo import DemoSummary, run_demo, split_database_and_queries
from utilities.engine import ImageSearchEngine
from utilities.indexing.pipeline import IndexReport


def small_folder(tmp_path: Path, per_class: int) -> Path:
    folder = tmp_path / f"small_{per_class}"
    for source in class_photos(per_class):
        (folder / source.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / source.parent.name / source.name)
    return folder


@pytest.mark.parametrize("per_class", [2, 8])
def test_small_classes_still_hold_out_one_query_each(tmp_path: Path, per_class: int) -> None:
    database, queries = split_database_and_queries(small_folder(tmp_path, per_class), per_class=20, queries=100)
    assert len(queries) == 10 and len(database) == 10 * (per_class - 1)
    assert not set(database) & set(queries)
    assert {q.parent.name for q in queries} == {d.parent.name for d in database}


def test_single_photo_classes_give_no_queries(tmp_path: Path) -> None:
    database, queries = split_database_and_queries(small_folder(tmp_path, 1), per_class=20, queries=3)
    assert len(database) == 10 and queries == []


def test_demo_on_eight_photos_a_class_searches_and_reports_its_rate(tmp_path: Path, embedder) -> None:
    with ImageSearchEngine(uri=str(tmp_path / "d.db"), collection_name="demo", embedder=embedder) as engine:
        engine.progress = False
        summary = run_demo(engine, small_folder(tmp_path, 8), output=tmp_path / "out", queries=3, top_k=4)
    assert summary.report.indexed == 70 and len(summary.plots) == 3
    assert all(plot.exists() for plot in summary.plots)
    # the rate, measured again from the copied results' manifests and the held-out queries
    _, queries = split_database_and_queries(small_folder(tmp_path, 8), per_class=20, queries=3)
    same = [
        Path(source).parent.name == query.parent.name
        for query, copies in zip(queries, summary.copies, strict=True)
        for source in pd.read_csv(copies / "manifest.csv")["source_path"]
    ]
    assert len(same) == 3 * 4 and summary.same_class_rate == pytest.approx(sum(same) / len(same))
    # each class is views of one scene: even random convolutional features beat chance (10 %) by far
    assert summary.same_class_rate >= 0.5
    assert "over 3 queries" in str(summary) and "chance is ~10%" in str(summary)


def test_summary_without_queries_reports_no_rate() -> None:
    summary = DemoSummary(report=IndexReport(collection="c"), images_root=Path("x"), classes=10)
    text = str(summary)
    assert summary.same_class_rate is None
    assert "no query was searched" in text and "%" not in text
