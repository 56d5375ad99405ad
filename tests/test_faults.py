"""Server faults, injected into a private Milvus standalone: wrong token, the server killed
during a search and during indexing, restarted or left down, and two processes indexing
disjoint shards into one server at once.

The private server (tests/milvus_server.py) has authorization on and runs on its own ports
beside the shared one, so killing it touches nothing else.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import class_photos, cli_process, run_cli
from tests.milvus_server import PrivateMilvusServer
from utilities.catalog import mapping_from_collection, verify_mapping
from utilities.engine import ImageSearchEngine
from utilities.errors import MilvusUnavailableError
from utilities.ids import stored_path
from utilities.milvus.collection import ImageCollection, connect
from utilities.milvus.connection import MilvusConnection
from utilities.milvus.retry import RetryPolicy
from utilities.milvus.storage_probe import (
    VectorReadsDestroyVectorsError,
    check_vector_reads,
    vectors_survive_reads,
    verdicts_path,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

SECRET = "not-the-password-7f3a"


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory):
    """A Milvus standalone with authorization on, that tests may kill and restart."""
    server = PrivateMilvusServer(tmp_path_factory.mktemp("private-milvus") / "data")
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def running(private_server: PrivateMilvusServer) -> PrivateMilvusServer:
    """The private server, started again if an earlier test left it down."""
    if private_server.process is None:
        private_server.start()
    return private_server


def photos(tmp_path: Path, per_class: int) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in class_photos(per_class):
        shutil.copy2(source, folder / source.name)
    return folder


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_wrong_or_missing_token_is_one_clear_error_that_never_shows_the_token(
    running: PrivateMilvusServer, capfd: pytest.CaptureFixture
) -> None:
    capture = _Capture()
    loggers = [logging.getLogger(), logging.getLogger("pymilvus")]  # pymilvus does not propagate
    levels = [log.level for log in loggers]
    for log in loggers:
        log.addHandler(capture)
        log.setLevel(logging.DEBUG)
    try:
        with pytest.raises(MilvusUnavailableError) as wrong:
            connect(running.uri, token=f"root:{SECRET}")
        with pytest.raises(MilvusUnavailableError) as missing:
            connect(running.uri, token="")
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.removeHandler(capture)
            log.setLevel(level)
    assert running.uri in str(wrong.value) and "token given was refused" in str(wrong.value)
    assert "no token was given" in str(missing.value) and "$MILVUS_TOKEN" in str(missing.value)
    out, err = capfd.readouterr()
    for text in (str(wrong.value), str(missing.value), out, err, *capture.lines):
        assert SECRET not in text
    client, _ = connect(running.uri, token=running.token)  # the right token still works
    assert isinstance(client.list_collections(), list)


def test_cli_with_a_wrong_token_prints_one_line_without_it(running: PrivateMilvusServer) -> None:
    done = run_cli("info", "--uri", running.uri, "--token", f"root:{SECRET}", timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "refused the connection" in done.stderr and SECRET not in done.stderr + done.stdout


def test_server_stopping_during_searches_gives_a_clear_error_then_recovers(running: PrivateMilvusServer) -> None:
    store = ImageCollection.open(running.uri, running.token, name="faults_search", dimension=8, reset=True)
    vectors = np.random.default_rng(0).random((50, 8), dtype=np.float32)
    store.insert([f"/search/{i}.jpg" for i in range(50)], vectors)
    store.retry = RetryPolicy(seconds=3)
    assert store.search(vectors[:1], top_k=1)[0][0]["entity"]["path"] == "/search/0.jpg"
    running.kill()
    started = time.monotonic()
    with pytest.raises(MilvusUnavailableError) as stopped:
        store.search(vectors[:1], top_k=1)
    waited = time.monotonic() - started
    assert running.uri in str(stopped.value) and "did not answer during search" in str(stopped.value)
    assert 1.0 <= waited < 20, f"retries are bounded by the 3 s budget (waited {waited:.1f} s)"
    running.start()
    store.retry = RetryPolicy(seconds=120)  # the same object reconnects once the server is back
    assert store.search(vectors[7:8], top_k=1)[0][0]["entity"]["path"] == "/search/7.jpg"
    assert store.count() == 50
    store.drop()


class KillingEmbedder:
    """Embeds with a real model; after `after` batches it kills the server and restarts it `pause` s later."""

    def __init__(self, inner, server: PrivateMilvusServer, after: int, pause: float) -> None:
        self.inner, self.server, self.after, self.pause = inner, server, after, pause
        self.image_size, self.dimension = inner.image_size, inner.dimension
        self.batches = 0
        self.restarter: threading.Thread | None = None

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        self.batches += 1
        if self.batches == self.after:
            self.server.kill()
            self.restarter = threading.Thread(target=lambda: (time.sleep(self.pause), self.server.start()))
            self.restarter.start()
        return self.inner.embed_batch(images)


def test_server_killed_mid_indexing_and_restarted_the_run_finishes_with_each_image_once(
    running: PrivateMilvusServer, embedder, tmp_path: Path
) -> None:
    folder = photos(tmp_path, 2)
    killing = KillingEmbedder(embedder, running, after=3, pause=2.0)
    engine = ImageSearchEngine(
        running.uri, running.token, "faults_restart", embedder=killing, batch_size=4, progress=False
    )
    engine.create_collection(reset=True)
    report = engine.index_folder(folder)  # the writes of batches 2-3 meet a dead server, then retry
    killing.restarter.join()
    assert killing.batches == 5 and report.added == 20 and not report.failed
    mapping = mapping_from_collection(engine.store)
    assert len(mapping) == 20 == engine.count() and mapping["path"].is_unique
    assert set(mapping["path"]) == {stored_path(p) for p in folder.iterdir()}
    assert verify_mapping(engine.store, engine.mapping_path).consistent
    engine.store.drop()


def run_index(server: PrivateMilvusServer, folder: Path, *extra: str) -> subprocess.Popen:
    common = ["--uri", server.uri, "--weights", "none", "--collection", "faults_down", "--batch-size", "4"]
    return cli_process("index", str(folder), *common, *extra, env={"MILVUS_TOKEN": server.token})


def test_server_down_mid_indexing_the_cli_stops_clearly_and_a_rerun_completes_exactly_once(
    running: PrivateMilvusServer, tmp_path: Path
) -> None:
    folder = photos(tmp_path, 6)
    watcher = ImageCollection.open(running.uri, running.token, name="faults_down", dimension=2048, reset=True)
    child = run_index(running, folder, "--retry-seconds", "4")
    deadline = time.monotonic() + 240
    while watcher.count() == 0 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    running.kill()  # and leave it down
    _, stderr = child.communicate(timeout=180)
    assert child.returncode == 1, f"the run should stop once its 4 s of retries are spent: {stderr[-2000:]}"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: Milvus at " + running.uri) and "run the same command again" in last
    assert "Traceback" not in stderr
    running.start()
    rerun = run_index(running, folder, "--json")
    out, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-2000:]
    summary = json.loads(out)
    assert summary["already_present"] > 0 and summary["indexed"] + summary["already_present"] == 60
    store = ImageCollection.open(running.uri, running.token, name="faults_down", create=False)
    mapping = mapping_from_collection(store)
    assert len(mapping) == 60 == store.count() and mapping["id"].is_unique
    assert set(mapping["path"]) == {stored_path(p) for p in folder.iterdir()}
    store.drop()


def test_a_server_that_would_delete_vectors_read_under_sq8_is_refused_before_anything_is_lost(
    running: PrivateMilvusServer,
) -> None:
    # The private server is the PyPI server as it starts by default (absolute localStorage.path): reading
    # stored vectors under IVF_SQ8 there deletes them (milvus.storage_probe); the CI server has the fix.
    store = ImageCollection.open(running.uri, running.token, name="faults_sq8", dimension=8, reset=True)
    try:
        vectors = np.random.default_rng(5).standard_normal((1_500, 8)).astype(np.float32)
        ids = list(range(1_500))
        store.insert([f"/sq8/{i}.jpg" for i in ids], vectors, ids=ids)
        store.create_index("HNSW", M=8, efConstruction=64)
        assert not vectors_survive_reads(store.connection)  # the hazard is real on this server
        with pytest.raises(VectorReadsDestroyVectorsError, match="localStorage.path=data"):
            store.create_index("IVF_SQ8", nlist=16)
        assert store.index_type == "HNSW"  # nothing was built
        store.release()
        store.load()
        kept = store.records(ids[:5], with_vectors=True)  # the vectors are all there, after a fresh load
        assert [r.id for r in kept] == ids[:5] and np.allclose([r.vector for r in kept], vectors[:5], atol=1e-5)

        store.build_index("IVF_SQ8", store.metric, {"nlist": 16})  # built by another tool: reads refuse too
        store.wait_for_index(timeout=120)
        fresh = ImageCollection.open(running.uri, running.token, name="faults_sq8", create=False)
        with pytest.raises(VectorReadsDestroyVectorsError):
            fresh.records(ids[:5], with_vectors=True)
        assert len(fresh.records(ids[:5])) == 5  # reads without vectors go on
        fresh.close()
        assert not [name for name in store.client.list_collections() if name.startswith("vector_read_probe_")]
    finally:
        store.drop()
        store.close()


def test_a_vector_read_check_that_cannot_run_says_why_instead_of_blaming_the_storage_path(
    running: PrivateMilvusServer,
) -> None:
    admin, _ = connect(running.uri, token=running.token)
    if "probe_reader" in admin.list_users():
        admin.drop_user("probe_reader")
    admin.create_user("probe_reader", "reader-password-7f3a")  # no role: may not create a collection
    reader = MilvusConnection.open(running.uri, token="probe_reader:reader-password-7f3a")
    try:
        for check in (vectors_survive_reads, check_vector_reads):  # refused at the probe's first step
            with pytest.raises(Exception, match="PrivilegeCreateCollection: permission deny") as refused:
                check(reader)
            assert not isinstance(refused.value, VectorReadsDestroyVectorsError)
        assert not verdicts_path().exists()  # no answer was remembered
    finally:
        reader.close()
        admin.drop_user("probe_reader")

    gone = MilvusConnection.open(running.uri, token=running.token, retry=RetryPolicy(seconds=3))
    running.kill()  # the server goes away: the next test starts it again
    try:
        with pytest.raises(MilvusUnavailableError, match="did not answer"):
            vectors_survive_reads(gone)
        with pytest.raises(MilvusUnavailableError, match="did not answer"):
            check_vector_reads(gone)
    finally:
        gone.close()


def test_the_vector_read_check_is_remembered_until_the_server_restarts(
    running: PrivateMilvusServer, caplog: pytest.LogCaptureFixture
) -> None:
    def check() -> tuple[str, int, float]:
        """The refusal, how many times the scratch collection was written and read, and the seconds taken."""
        connection = MilvusConnection.open(running.uri, token=running.token)  # a new command's connection
        started = time.monotonic()
        caplog.clear()
        try:
            with (
                caplog.at_level(logging.INFO, logger="utilities.milvus.storage_probe"),
                pytest.raises(VectorReadsDestroyVectorsError) as refused,
            ):
                check_vector_reads(connection)
        finally:
            connection.close()
        probes = [record for record in caplog.records if record.getMessage().startswith("stored vectors")]
        return str(refused.value), len(probes), time.monotonic() - started

    message, probes, _ = check()  # this server deletes the vectors (absolute localStorage.path)
    assert probes == 1 and "checked on a scratch collection just now" in message
    message, probes, seconds = check()
    assert probes == 0 and seconds < 5, "the same running server was probed again"
    assert "since it last started" in message and "localStorage.path=data" in message
    remembered = json.loads(verdicts_path().read_text())[running.uri]
    assert remembered["vectors_survive_reads"] is False and remembered["version"].endswith("-lite")
    running.restart()
    message, probes, _ = check()  # a restart may change its settings: asked again
    assert probes == 1 and "just now" in message
    assert json.loads(verdicts_path().read_text())[running.uri]["started"] != remembered["started"]


def test_two_processes_index_disjoint_shards_into_one_server_at_once(
    server_uri: str, collection_name: str, tmp_path: Path
) -> None:
    """Two writers need a server (two processes on one Lite file are refused: see test_engine)."""
    backend = server_uri
    folder = photos(tmp_path, 3)
    common = ["--uri", backend, "--collection", collection_name, "--weights", "none", "--batch-size", "4"]
    children = [cli_process("index", str(folder), *common, "--shard", f"{i}/2", "--json") for i in (1, 2)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-2000:]
    added = [json.loads(out)["added"] for out, _ in outputs]
    assert sum(added) == 30 and min(added) > 0
    store = ImageCollection.open(backend, name=collection_name, create=False)
    try:
        mapping = mapping_from_collection(store)
        assert len(mapping) == 30 == store.count() and mapping["id"].is_unique
        assert set(mapping["path"]) == {stored_path(p) for p in folder.iterdir()}
        engine = ImageSearchEngine(backend, collection_name=collection_name, weights=None)
        saved = tmp_path / engine.mapping_path  # both wrote the same mapping file, under a lock
        assert verify_mapping(store, saved).consistent
    finally:
        store.drop()
        store.close()
