from __future__ import annotations

import json

import pytest

from tests.conftest import PHOTOS
from utilities.cli import main
from utilities.evaluation import average_precision, evaluate, split_labelled


def test_standard_and_towhee_map_differ_where_they_should() -> None:
    # relevant at ranks 1 and 3 of 3; 5 relevant items exist in the database
    standard, towhee = average_precision([True, False, True], relevant_total=5, k=3)
    assert standard == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert towhee == pytest.approx((1 / 1 + 2 / 3) / 2)
    # every retrieved item relevant: both agree on 1.0
    assert average_precision([True, True], relevant_total=9, k=2) == (1.0, 1.0)
    # nothing relevant found: both 0
    assert average_precision([False, False], relevant_total=3, k=2) == (0.0, 0.0)
    # fewer relevant items than k: the standard denominator is min(k, relevant_total)
    assert average_precision([False, True, False, False], relevant_total=1, k=4)[0] == pytest.approx(0.5)


def test_split_keeps_queries_out_of_the_database() -> None:
    database, queries = split_labelled(PHOTOS, 3, 1)
    assert len(database) == 30 and len(queries) == 10
    assert not set(database) & set(queries)


def test_evaluate_reports_every_metric(backend: str, embedder) -> None:
    report = evaluate(PHOTOS, embedder, uri=backend, database_per_class=3, queries_per_class=1, top_k=5)
    assert (report.database_images, report.queries, report.classes, report.top_k) == (30, 10, 10, 5)
    assert report.self_retrieval == 1.0
    assert report.index_recall_vs_exact == 1.0  # FLAT is exact
    assert 0.0 <= report.map_at_k <= report.map_at_k_towhee <= 1.0
    assert 0.0 <= report.precision_at_k <= report.recall_at_k <= 1.0
    assert report.latency_p50_ms > 0 and report.latency_p95_ms >= report.latency_p50_ms
    assert set(report.table()["metric"]) >= {"recall_at_k", "map_at_k", "map_at_k_towhee", "self_retrieval"}


def test_evaluate_command_prints_json(tmp_path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "evaluate",
            str(PHOTOS),
            "--weights",
            "none",
            "--per-class",
            "2",
            "--queries-per-class",
            "1",
            "--top-k",
            "3",
            "--uri",
            str(tmp_path / "eval.db"),
            "--json",
        ]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["self_retrieval"] == 1.0 and metrics["queries"] == 10
