"""An image collection's vector index, and raw vector searches.

The defaults come from the benchmarks (`benchmarks/results/search*.md`); Milvus Lite
accepts fewer index types than a server.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from utilities.errors import ImageSearchError
from utilities.milvus.base import DEFAULT_METRIC, CollectionBase
from utilities.milvus.storage_probe import INDEXES_WITHOUT_VECTORS, check_vector_reads
from utilities.records import ID_FIELD, PATH_FIELD, VECTOR_FIELD

logger = logging.getLogger(__name__)

SEARCH_CONSISTENCY = "Session"
"""Consistency of searches: this client always sees its own writes, without waiting.

Counts and existence checks use Strong consistency (exact across processes). Strong
searches on a Milvus 2.3 server wait for the next time tick: measured p50 200 ms per
query against a few ms with Session (see benchmarks/results/search.md).
"""

METRICS = ("COSINE", "IP", "L2")
LITE_INDEX_TYPES = ("FLAT", "IVF_FLAT", "AUTOINDEX")
SERVER_INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "SCANN", "AUTOINDEX")
DEFAULT_INDEX_PARAMS: dict[str, dict[str, int]] = {
    "FLAT": {},
    "AUTOINDEX": {},
    "IVF_FLAT": {"nlist": 128},
    "IVF_SQ8": {"nlist": 128},
    "IVF_PQ": {"nlist": 128, "nbits": 8},
    "SCANN": {"nlist": 128},
    "DISKANN": {},
    "HNSW": {"M": 16, "efConstruction": 200},
}
DEFAULT_SEARCH_PARAMS: dict[str, dict[str, int]] = {
    "IVF_FLAT": {"nprobe": 32},
    "IVF_SQ8": {"nprobe": 32},
    "IVF_PQ": {"nprobe": 32},
    "SCANN": {"nprobe": 128, "reorder_k": 200},
    "DISKANN": {"search_list": 100},
    "HNSW": {"ef": 128},
}
"""Search parameters used unless the caller passes others.

Chosen from benchmarks/results/search*.md: HNSW (M=16, efConstruction=200) searched with
ef=128 reached recall@10 0.992 (p50 11 ms on the server) on 30,000 2048-d vectors in
overlapping clusters, where ef=64 gave 0.966; on 100,000 vectors in tight clusters ef=64
already gave 1.000. IVF's recall depends on the data: nprobe=32 of nlist=1024 found
everything in tight clusters but only 0.53 of the true top 10 (nprobe=32 of 692) in
overlapping ones; check yours with `evaluation.evaluate(index_type="IVF_FLAT")`. SCANN (nlist
1024) with nprobe 128 and reorder_k 200 found 1.000 of the exact top 10 at 1,281,167 256-d vectors
(p50 2.4 ms) and 0.972 on hard random clusters, against 0.994 and 0.944 with nprobe 32 and reorder_k 100
(benchmarks/results/lean-indexes-*dims256*.md).
"""

REFINE_FACTOR = 4
"""How many times `top_k` candidates a search under an index of compressed codes asks for, to re-rank."""

DEFAULT_REFINE: dict[str, int] = dict.fromkeys(INDEXES_WITHOUT_VECTORS, REFINE_FACTOR)
"""Indexes whose searches are re-ranked on the stored float vectors by default, and by how many times
`top_k` candidates (`CollectionIndex.rescored`): those that rank by compressed codes, which are the ones
that keep no float vectors (`milvus.storage_probe.INDEXES_WITHOUT_VECTORS`, the one list of them)."""

MAX_SEARCH_LIMIT = 16_384
"""The most rows one Milvus search returns per query."""

FLAT_UP_TO_ROWS = 20_000
"""Up to this many rows a server collection keeps the exact FLAT index: its searches stay within tens of
milliseconds (31 ms p50 at 30,000 2048-d rows, benchmarks/results/search-hard.md) and there is nothing to
build. Milvus Lite always searches exactly (its IVF_FLAT answered as fast as FLAT, at the same recall)."""


REDUCED_DIMENSIONS_UP_TO = 512
"""Vectors up to this long (`dims=256`, or a small model's) get SCANN above `FLAT_UP_TO_ROWS` rows; longer
ones get HNSW (`recommended_index`)."""


def recommended_index(is_lite: bool, rows: int, dimension: int) -> tuple[str, dict[str, int]]:
    """The index `create_index("AUTO")` builds, by backend, row count and vector length.

    - Milvus Lite, or up to `FLAT_UP_TO_ROWS` rows: FLAT (exact, nothing to build).
    - Vectors of up to `REDUCED_DIMENSIONS_UP_TO` dims: SCANN, nlist 1024. At 1,281,167 256-d vectors
      drawn from a model of real features it took 1,425 bytes a row in the loaded server (HNSW: 1,846-1,991),
      built in 82 s and found 0.994-1.000 of the exact top 10 at p50 1.9-2.4 ms; on hard random clusters
      (200,000 rows) 0.944-0.972 (benchmarks/results/lean-indexes-1.28m-dims256*.md, lean-indexes-200k*.md).
    - Longer vectors: HNSW (M 16, efConstruction 128), the one index that kept recall@10 >= 0.95 on hard
      2048-d data (200,000 vectors: 0.995 at ef 128, p50 8.7 ms, where the IVF family found 0.81-0.86).
      It holds the float vectors: for less memory store reduced vectors (`dims=256`).

    Example:
        >>> recommended_index(True, 1_000_000, 2048)
        ('FLAT', {})
        >>> recommended_index(False, 5_000, 2048)
        ('FLAT', {})
        >>> recommended_index(False, 1_281_167, 2048)
        ('HNSW', {'M': 16, 'efConstruction': 128})
        >>> recommended_index(False, 1_281_167, 256)
        ('SCANN', {'nlist': 1024})
    """
    if is_lite or rows <= FLAT_UP_TO_ROWS:
        return "FLAT", {}
    if dimension <= REDUCED_DIMENSIONS_UP_TO:
        return "SCANN", {"nlist": 1024}
    return "HNSW", {"M": 16, "efConstruction": 128}


def bytes_per_row(index_type: str, dimension: int, params: dict[str, Any] | None = None) -> int:
    """What one row's vector costs in the loaded index, estimated from its layout (the server adds its
    own overhead; measured figures are in benchmarks/results/lean-indexes*.md).

    FLAT and IVF_FLAT hold float32 vectors; HNSW adds about `2 M` 4-byte links; IVF_SQ8 holds a byte a
    dimension; IVF_PQ `m` codes of `nbits`; SCANN 4-bit codes for half the dimensions and the floats
    it re-ranks with.

    Example:
        >>> bytes_per_row("FLAT", 2048), bytes_per_row("IVF_SQ8", 2048), bytes_per_row("HNSW", 256, {"M": 16})
        (8192, 2048, 1152)
    """
    params = params or {}
    kind = index_type.upper()
    floats = 4 * dimension
    if kind == "HNSW":
        return floats + 8 * int(params.get("M", DEFAULT_INDEX_PARAMS["HNSW"]["M"]))
    if kind == "IVF_SQ8":
        return dimension
    if kind == "IVF_PQ":
        return max(1, int(params.get("m", pq_subquantizers(dimension))) * int(params.get("nbits", 8)) // 8)
    if kind == "SCANN":
        return floats + dimension // 4
    return floats


BUILD_PARAMETERS = ("nlist", "M", "efConstruction", "m", "nbits", "with_raw_data")
"""Keys of an index description that are build parameters (the rest are its name, state and counts)."""

INDEX_WAIT_SECONDS = 1800.0
"""How long an indexing run waits for the index to cover its rows before it returns anyway."""

INDEX_POLL_SECONDS = 1.0


def vector_index_params(
    client: Any, index_type: str = "FLAT", metric: str = DEFAULT_METRIC, field: str = VECTOR_FIELD, **build: int
) -> Any:
    """pymilvus `IndexParams` for the vector field (FLAT, exact, unless told otherwise)."""
    index_params = client.prepare_index_params()
    extra = {"params": build} if build else {}
    index_params.add_index(field_name=field, index_type=index_type, metric_type=metric, **extra)
    return index_params


def pq_subquantizers(dimension: int, per_subquantizer: int = 8) -> int:
    """IVF_PQ's `m`: sub-vectors of about `per_subquantizer` dimensions (`m` must divide the dimension).

    Example:
        >>> pq_subquantizers(2048), pq_subquantizers(256), pq_subquantizers(10)
        (256, 32, 1)
    """
    wanted = max(1, dimension // per_subquantizer)
    return max(m for m in range(1, wanted + 1) if dimension % m == 0)


def exact_scores(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Milvus' score of each row of `vectors` for each query, `(queries, rows)`: cosine, inner product,
    or squared L2 (where smaller is nearer). Scored in float64, so that near-ties among float32
    rows order as their exact values do.

    Example:
        >>> vectors = np.array([[2.0, 0.0], [0.0, 1.0]])
        >>> exact_scores(np.array([[1.0, 0.0]]), vectors, "COSINE").tolist()
        [[1.0, 0.0]]
        >>> exact_scores(np.array([[1.0, 0.0]]), vectors, "L2").tolist()
        [[1.0, 2.0]]
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    vectors = np.asarray(vectors, dtype=np.float64)
    if metric == "L2":
        return np.sum(queries**2, axis=1)[:, None] - 2 * queries @ vectors.T + np.sum(vectors**2, axis=1)
    scores = queries @ vectors.T
    if metric == "COSINE":
        norms = np.linalg.norm(queries, axis=1)[:, None] * np.linalg.norm(vectors, axis=1)[None, :]
        scores = scores / np.maximum(norms, 1e-12)
    return scores


def distance_from_score(scores: np.ndarray, metric: str) -> np.ndarray:
    """Turn Milvus scores into distances where smaller means closer.

    COSINE and IP return similarities (1 is identical): the distance is `1 - score`.
    L2 already is a (squared) distance.

    Example:
        >>> distance_from_score(np.array([1.0, 0.25]), "COSINE").tolist()
        [0.0, 0.75]
    """
    scores = np.asarray(scores, dtype=np.float64)
    return scores if metric == "L2" else np.maximum(1.0 - scores, 0.0)


class CollectionIndex(CollectionBase):
    """The vector index (building and replacing it) and searches by vector."""

    search_consistency = SEARCH_CONSISTENCY

    def seal(self) -> None:
        """Seal the rows written so far (a flush), so that searches use the collection's index on them.

        Milvus keeps new rows in growing segments and searches them with an interim index of its
        own until it seals them by itself (when a segment is full or idle for minutes): until
        then the index type and its `ef` / `nprobe` change nothing for those rows.
        """
        self._retrying("flush", lambda client: client.flush(self.name, timeout=self._timeout))

    def wait_for_index(self, timeout: float = INDEX_WAIT_SECONDS, progress: bool = False) -> bool:
        """Wait until the vector index covers every sealed row (server; Milvus Lite builds at once).

        A Milvus 2.3 server keeps answering from a sealed segment's growing copy, with its interim
        index, until the segment's own index is built: right after a 100,000-row run with HNSW,
        searches found 0.957 of the exact top 10 whatever `ef` (benchmarks/results/scale-server.md).

        Returns:
            True once every sealed row is indexed; False if `timeout` passed first (searches still
            work, with Milvus' interim index on the rest).
        """
        if self.target.is_lite or self.index_type in ("NONE", "FLAT"):
            return True
        from tqdm.auto import tqdm

        deadline = time.monotonic() + timeout
        with tqdm(desc="building the index", unit="row", disable=not progress) as bar:
            while True:
                self._index_cache = None
                info = self.index_info() or {}
                total, done = int(info.get("total_rows", 0)), int(info.get("indexed_rows", 0))
                bar.total, bar.n = total, done
                bar.refresh()
                # pending_index_rows also counts segments that compaction merged and that are being
                # indexed again, while their indexed originals still answer: not worth waiting for.
                if done >= total:
                    return True
                if time.monotonic() > deadline:
                    logger.warning(
                        "the %s index of %s covers %d of %d rows after %.0f s",
                        self.index_type,
                        self.name,
                        done,
                        total,
                        timeout,
                    )
                    return False
                time.sleep(INDEX_POLL_SECONDS)

    def supported_index_types(self) -> tuple[str, ...]:
        """Index types this backend accepts (Milvus Lite has fewer)."""
        return LITE_INDEX_TYPES if self.target.is_lite else SERVER_INDEX_TYPES

    def index_summary(self) -> dict[str, Any]:
        """The row count, the index, its parameters, the memory a row's vector takes in it, and the index
        `AUTO` would choose for the collection's size now (for `info` and `create-index`)."""
        info = self.index_info() or {}
        params = {k: int(v) if str(v).isdigit() else v for k, v in info.items() if k in BUILD_PARAMETERS}
        rows = self.count()
        recommended, recommended_params = recommended_index(self.target.is_lite, rows, self.dimension)
        per_row = bytes_per_row(self.index_type, self.dimension, params)
        return {
            "rows": rows,
            "index_type": self.index_type,
            "index_params": params,
            "bytes_per_row": per_row,
            "vector_memory_mb": round(per_row * rows / 2**20, 1),
            "recommended_index": recommended,
            "recommended_params": recommended_params,
        }

    def _before_vector_read(self) -> None:
        if not self.target.is_lite and self.index_type in INDEXES_WITHOUT_VECTORS:
            check_vector_reads(self.connection)

    def release(self) -> None:
        """Release the collection from the server's memory (searches and queries fail until `load`)."""
        self._retrying("release_collection", lambda client: client.release_collection(self.name, timeout=self._timeout))

    def load(self) -> None:
        """Load the collection for searching, giving it the exact FLAT index if it has none."""
        if self.index_info() is None:
            flat = vector_index_params(self.client)
            self._once("create_index", lambda client: client.create_index(self.name, flat))
            self._index_cache = None
        # no per-attempt time limit: loading a large collection may take long
        self._retrying("load_collection", lambda client: client.load_collection(self.name))

    def create_index(self, index_type: str = "AUTO", metric: str | None = None, **params: int) -> dict[str, Any]:
        """Replace the vector index and load the collection again.

        Args:
            index_type: `AUTO` (the default: `recommended_index` for this backend, row count and dimension),
                `FLAT` (exact), `IVF_FLAT` (`nlist`), and on a server `HNSW` (`M`,
                `efConstruction`), `IVF_SQ8` (`nlist`), `IVF_PQ` (`nlist`, `m`, `nbits`), `SCANN`
                (`nlist`), or `AUTOINDEX` (Milvus' choice). DISKANN is not offered: the Milvus
                2.3.5 server this package is tested on fails to build it.
            metric: `COSINE`, `IP` or `L2`; keeps the current one if None.
            **params: Build parameters; defaults from `DEFAULT_INDEX_PARAMS`.

        Returns:
            The new index description.

        Raises:
            ImageSearchError: The backend does not support that index type.
            milvus.storage_probe.VectorReadsDestroyVectorsError: IVF_SQ8 or IVF_PQ on a server that would
                delete stored vectors when they are read under it (the `milvus` PyPI server started without
                `--extra-config localStorage.path=data`); nothing is changed.

        Example:
            >>> store.create_index("IVF_FLAT", nlist=256)  # doctest: +SKIP
        """
        kind = index_type.upper()
        if kind == "AUTO":
            kind, chosen = recommended_index(self.target.is_lite, self.count(), self.dimension)
            params = {**chosen, **params}
        if kind not in self.supported_index_types():
            backend = "Milvus Lite" if self.target.is_lite else "this Milvus server"
            raise ImageSearchError(
                f"{backend} does not support index type {kind}; choose one of "
                f"{', '.join(self.supported_index_types())}"
                + (" (HNSW needs a Milvus server: see docs/guide/server.md)" if self.target.is_lite else "")
            )
        chosen_metric = (metric or self.metric).upper()
        build = {**DEFAULT_INDEX_PARAMS.get(kind, {}), **params}
        if kind == "IVF_PQ" and "m" not in build:
            build["m"] = pq_subquantizers(self.dimension)
        if kind in INDEXES_WITHOUT_VECTORS:  # refuse before building what the package could not read safely
            check_vector_reads(self.connection)
        return self.build_index(kind, chosen_metric, build)

    def build_index(self, kind: str, metric: str, build: dict[str, int]) -> dict[str, Any]:
        """Seal, release, replace the index with `kind` built with `build`, and load (`create_index` checks
        the type and fills the defaults first)."""
        # Seal first: rows still in growing segments are searched with Milvus' interim index,
        # not the one built here, until Milvus seals them by itself (benchmarks/results/scale.md).
        self.seal()
        self.release()
        names = self._retrying(
            "list_indexes",
            lambda client: client.list_indexes(self.name, field_name=VECTOR_FIELD, timeout=self._timeout),
        )
        for name in names:
            self._once("drop_index", lambda client, name=name: client.drop_index(self.name, name))
        index_params = vector_index_params(self.client, kind, metric, **build)
        self._once("create_index", lambda client: client.create_index(self.name, index_params))
        self._index_cache = None
        self._retrying("load_collection", lambda client: client.load_collection(self.name))
        logger.info("built %s index on %s (%s, %s)", kind, self.name, metric, build)
        return self.index_info() or {}

    def search_params(self, top_k: int, **overrides: int) -> dict[str, Any]:
        """Search parameters suited to the current index (`ef` >= `top_k` for HNSW, `nprobe` <= `nlist`)."""
        params = {**DEFAULT_SEARCH_PARAMS.get(self.index_type, {}), **overrides}
        if self.index_type == "HNSW":
            params["ef"] = max(int(params["ef"]), top_k)
        if self.index_type == "SCANN":
            params["reorder_k"] = max(int(params["reorder_k"]), top_k)
        if self.index_type == "DISKANN":
            params["search_list"] = max(int(params["search_list"]), top_k)
        if "nprobe" in params and "nlist" in (self.index_info() or {}):
            params["nprobe"] = max(1, min(int(params["nprobe"]), int(self.index_info()["nlist"])))
        return {"metric_type": self.metric, "params": params}

    def search(
        self,
        vectors: np.ndarray,
        top_k: int = 10,
        search_params: dict[str, Any] | None = None,
        refine: int | None = None,
    ) -> list[list[dict]]:
        """Nearest rows for each query vector, as pymilvus returns them.

        Args:
            vectors: `(n, dimension)` float32 queries.
            top_k: Neighbours per query.
            search_params: Overrides `search_params(top_k)`.
            refine: Ask the index for `refine x top_k` rows, then keep the `top_k` nearest by their
                stored float vectors (`rescored`). Default: `DEFAULT_REFINE` for the current index
                (indexes that compare compressed codes), else 1 (none).

        Returns:
            For each query, a list of `{"id", "distance", "entity": {"path"}}` hits.
        """
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise ValueError(
                f"query vectors have dimension {vectors.shape[1]}, collection {self.name!r} holds {self.dimension}"
            )
        params = search_params or self.search_params(top_k)
        factor = DEFAULT_REFINE.get(self.index_type, 1) if refine is None else max(1, int(refine))
        limit = min(int(top_k) * factor, MAX_SEARCH_LIMIT)
        hits = self._retrying(
            "search",
            lambda client: client.search(
                self.name,
                data=list(vectors),
                limit=limit,
                output_fields=[PATH_FIELD],
                search_params=params,
                anns_field=VECTOR_FIELD,
                consistency_level=self.search_consistency,
                timeout=self._timeout,
            ),
        )
        return self.rescored(vectors, hits, top_k) if limit > top_k else hits

    def rescored(self, vectors: np.ndarray, hits: list[list[dict]], top_k: int) -> list[list[dict]]:
        """Each query's hits re-ranked by its stored float vectors, the `top_k` nearest kept.

        Indexes such as IVF_SQ8 rank by compressed codes (a byte a dimension), which caps their
        recall; the rows' float vectors are still stored (and read from the server's storage, not
        held in its memory), so the few candidates are scored again exactly, with the collection's
        metric, and their `distance` is that exact score.
        """
        ids = sorted({int(hit["id"]) for row in hits for hit in row})
        rows = self.get(ids, (ID_FIELD, VECTOR_FIELD), SEARCH_CONSISTENCY)  # type: ignore[attr-defined]
        stored = {int(row[ID_FIELD]): row[VECTOR_FIELD] for row in rows}
        answers = []
        for query, row in zip(vectors, hits, strict=True):
            kept = [hit for hit in row if int(hit["id"]) in stored]
            if not kept:
                answers.append([])
                continue
            candidates = np.asarray([stored[int(hit["id"])] for hit in kept], dtype=np.float32)
            scores = exact_scores(query, candidates, self.metric)[0]
            order = np.argsort(scores if self.metric == "L2" else -scores, kind="stable")[:top_k]
            answers.append(
                [
                    {"id": kept[i]["id"], "distance": float(scores[i]), "entity": kept[i].get("entity", {})}
                    for i in order
                ]
            )
        return answers
