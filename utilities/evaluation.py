"""Retrieval quality on a labelled folder (one sub-folder per class).

A database split is indexed into a temporary collection and a held-out split is
used as queries; a result is relevant when it comes from the query's class folder.
Reported, side by side so numbers compare with published tables:

- recall@k (hit ratio): share of queries with at least one relevant result in the top k;
- precision@k: relevant results / k, averaged over queries;
- mAP@k, standard: AP@k divided by min(k, relevant items in the database);
- mAP@k, Towhee's variant: AP@k divided by the relevant items found in the top k
  (used by the Towhee/Milvus reverse-image-search tutorial; it is never lower);
- self-retrieval: share of database images whose nearest result is themselves;
- p50/p95 latency of single searches;
- recall@k of the collection's index against exact search over the same vectors,
  so an approximate index cannot cost quality unnoticed.

Measured on our 2-core CI machine on the Imagenette validation photos with random
ResNet50 weights (chance precision is 0.10 with 10 balanced classes):

    $ python -m utilities evaluate ../shared/data/imagenette-val --weights none --per-class 20 --queries-per-class 5
    ResNet50, random weights (seed 0), FLAT index: 200 database images, 50 queries, 10 classes
    recall@10 (hit ratio) 0.840 | precision@10 0.192 | mAP@10 0.092 (Towhee-style 0.340)
    self-retrieval 1.000 | search p50 4.0 ms, p95 6.6 ms | FLAT recall@10 vs exact 1.000

Run the same command with `--weights imagenet` (internet needed once) for real numbers.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from utilities.embeddings import Embedder
from utilities.ids import path_id
from utilities.indexing.pipeline import embed_paths
from utilities.milvus.collection import ImageCollection
from utilities.milvus.vector_index import exact_scores
from utilities.splits import class_folders, split_per_class


@dataclass
class EvaluationReport:
    """Retrieval metrics of one evaluation run (see the module docstring)."""

    top_k: int
    classes: int
    database_images: int
    queries: int
    recall_at_k: float
    precision_at_k: float
    map_at_k: float
    map_at_k_towhee: float
    self_retrieval: float
    latency_p50_ms: float
    latency_p95_ms: float
    index_recall_vs_exact: float
    index_type: str
    model: str

    def table(self) -> pd.DataFrame:
        """The report as a two-column DataFrame (`metric`, `value`)."""
        return pd.DataFrame(list(asdict(self).items()), columns=["metric", "value"])

    def __str__(self) -> str:
        k = self.top_k
        return "\n".join(
            [
                f"{self.model}, {self.index_type} index: {self.database_images} database images, "
                f"{self.queries} queries, {self.classes} classes",
                f"recall@{k} (hit ratio) {self.recall_at_k:.3f} | precision@{k} {self.precision_at_k:.3f} | "
                f"mAP@{k} {self.map_at_k:.3f} (Towhee-style {self.map_at_k_towhee:.3f})",
                f"self-retrieval {self.self_retrieval:.3f} | search p50 {self.latency_p50_ms:.1f} ms, "
                f"p95 {self.latency_p95_ms:.1f} ms | {self.index_type} recall@{k} vs exact "
                f"{self.index_recall_vs_exact:.3f}",
            ]
        )


def average_precision(relevant: Sequence[bool], relevant_total: int, k: int) -> tuple[float, float]:
    """AP@k of one ranked list, standard and Towhee-style.

    Args:
        relevant: Whether each ranked result is relevant, best first.
        relevant_total: Relevant items in the whole database.
        k: Cut-off.

    Returns:
        `(standard, towhee)`: the sum of precision@i at each relevant rank i <= k,
        divided by `min(k, relevant_total)` (standard) or by the hits found (Towhee).

    Example:
        >>> average_precision([True, False, True], relevant_total=5, k=3)
        (0.5555555555555555, 0.8333333333333333)
    """
    hits, total = 0, 0.0
    for rank, is_relevant in enumerate(relevant[:k], start=1):
        if is_relevant:
            hits += 1
            total += hits / rank
    standard = total / min(k, relevant_total) if relevant_total else 0.0
    towhee = total / hits if hits else 0.0
    return standard, towhee


def split_labelled(
    folder: str | os.PathLike, database_per_class: int, queries_per_class: int
) -> tuple[list[Path], list[Path]]:
    """The first `database_per_class` images of each class folder, and the next `queries_per_class`."""
    if len(class_folders(folder)) < 2:
        raise ValueError(f"{folder} needs at least two class sub-folders to evaluate retrieval")
    return split_per_class(folder, database_per_class, queries_per_class)


def _exact_top_k(database: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    scores = exact_scores(queries, database, metric)
    return np.argsort(scores if metric == "L2" else -scores, axis=1)[:, :k]


def evaluate(
    folder: str | os.PathLike,
    embedder: Embedder,
    uri: str | os.PathLike | None = None,
    token: str | None = None,
    database_per_class: int = 20,
    queries_per_class: int = 5,
    top_k: int = 10,
    index_type: str = "FLAT",
    metric: str = "COSINE",
    progress: bool = False,
    **index_params: int,
) -> EvaluationReport:
    """Index a database split of a labelled folder into a temporary collection and measure retrieval.

    Args:
        folder: A folder with one sub-folder of images per class.
        embedder: Any `Embedder` (ResNet50 or your own model).
        uri: Milvus Lite file or server URI (see `milvus.connection.connect`).
        token: Server token.
        database_per_class: Images per class to index.
        queries_per_class: Held-out images per class to query with.
        top_k: The k of every metric.
        index_type: `FLAT`, `IVF_FLAT`, `HNSW` (server), ...
        metric: `COSINE`, `IP` or `L2`.
        progress: Show progress bars while embedding.
        **index_params: Build parameters of the index (for example `nlist=64`).

    Returns:
        An `EvaluationReport`. The temporary collection is dropped afterwards.

    Example:
        >>> print(evaluate("../shared/data/imagenette-val", ResNet50Embedder(weights=None)))  # doctest: +SKIP
    """
    database_files, query_files = split_labelled(folder, database_per_class, queries_per_class)
    database = embed_paths(database_files, embedder, progress=progress)
    queries = embed_paths(query_files, embedder, progress=progress)
    labels = {path_id(p): Path(p).parent.name for p in database.paths}
    store = ImageCollection.open(
        uri, token, f"evaluation_{uuid.uuid4().hex[:10]}", dimension=embedder.dimension, metric=metric
    )
    try:
        store.insert(database.paths, database.vectors)
        if index_type.upper() != "FLAT":
            store.create_index(index_type, **index_params)  # seals the rows first
        else:
            store.seal()  # so that exact search, not Milvus' interim index on growing segments, answers
        return _measure(store, database, queries, labels, top_k, getattr(embedder, "weights_label", "custom model"))
    finally:
        store.drop()


def _measure(store, database, queries, labels: dict[int, str], top_k: int, model: str) -> EvaluationReport:
    latencies, found = [], []
    for vector in queries.vectors:
        started = time.perf_counter()
        hits = store.search(vector[None], top_k)[0]
        latencies.append(time.perf_counter() - started)
        found.append([int(hit["id"]) for hit in hits])
    query_labels = [Path(p).parent.name for p in queries.paths]
    per_class = pd.Series(list(labels.values())).value_counts().to_dict()
    relevance = [[labels.get(i) == label for i in ids] for ids, label in zip(found, query_labels, strict=True)]
    precisions = [
        average_precision(r, per_class.get(label, 0), top_k) for r, label in zip(relevance, query_labels, strict=True)
    ]
    database_ids = np.array([path_id(p) for p in database.paths])
    exact = database_ids[_exact_top_k(database.vectors, queries.vectors, top_k, store.metric)]
    overlap = [len(set(a) & set(e)) / top_k for a, e in zip(found, exact.tolist(), strict=True)]
    nearest = [
        hits
        for start in range(0, len(database_ids), 500)
        for hits in store.search(database.vectors[start : start + 500], 1)
    ]
    self_hits = [int(hits[0]["id"]) == int(own) for hits, own in zip(nearest, database_ids, strict=True)]
    return EvaluationReport(
        top_k=top_k,
        classes=len(per_class),
        database_images=len(database.paths),
        queries=len(queries.paths),
        recall_at_k=float(np.mean([any(r) for r in relevance])),
        precision_at_k=float(np.mean([sum(r) / top_k for r in relevance])),
        map_at_k=float(np.mean([p[0] for p in precisions])),
        map_at_k_towhee=float(np.mean([p[1] for p in precisions])),
        self_retrieval=float(np.mean(self_hits)),
        latency_p50_ms=float(np.percentile(latencies, 50) * 1000),
        latency_p95_ms=float(np.percentile(latencies, 95) * 1000),
        index_recall_vs_exact=float(np.mean(overlap)),
        index_type=store.index_type,
        model=model,
    )
