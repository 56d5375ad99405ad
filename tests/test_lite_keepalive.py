"""A Milvus Lite connection left idle is kept, without gRPC's GOAWAY `too_many_pings` on stderr.

pymilvus pings every 10 s even with no call in flight; the Lite server counts pings on an idle
connection as abuse and, at the third, drops the connection with GOAWAY ENHANCE_YOUR_CALM
(`milvus.connection.LITE_GRPC_OPTIONS`). gRPC's client throttles those pings to one a minute, so
in real time it takes about 2 minutes of idling (135 s measured); the child process below runs
pymilvus' own ping cadence ten times faster and without that throttle, so that seconds show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_python
from utilities.config import MilvusTarget
from utilities.milvus import connection as connection_module
from utilities.milvus.connection import MilvusConnection

IDLE_SECONDS = 12.0
"""How long the child keeps its connection idle: a dozen of the sped-up pings."""

IDLE_CHILD = r"""
import json, sys, time

import grpc

pymilvus_keepalive_ms = 10_000  # pymilvus' own `grpc.keepalive_time_ms`
opened = grpc.insecure_channel


def faster(target, options=None, compression=None):
    # Time runs ten times faster for pymilvus' own pings (options set over them are left as they are),
    # and gRPC's client may ping without data as often as that (its default throttles to one a minute).
    options = [
        (key, 1_000 if key == "grpc.keepalive_time_ms" and value == pymilvus_keepalive_ms else value)
        for key, value in options or []
    ]
    return opened(target, options + [("grpc.http2.max_pings_without_data", 0)], compression)


grpc.insecure_channel = faster

from utilities.milvus.connection import MilvusConnection

connection = MilvusConnection.open(sys.argv[1])
client = connection.client
client.create_collection("idle", dimension=4)
client.insert("idle", [{"id": i, "vector": [float(i), 1.0, 0.0, 0.0]} for i in range(5)])
channel = client._get_connection()._channel
states = []
channel.subscribe(lambda state: states.append(state.name), try_to_connect=False)
time.sleep(float(sys.argv[2]))
rows = client.query("idle", filter="id >= 0", output_fields=["id"])
same = client._get_connection()._channel is channel
print(json.dumps({"rows": len(rows), "same_channel": same, "states": states}))
connection.close()
"""


@pytest.mark.slow
def test_an_idle_lite_connection_is_kept_without_goaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_VERBOSITY", "INFO")  # gRPC's own lines, as a terminal shows them by default
    done = run_python(IDLE_CHILD, str(tmp_path / "idle.db"), str(IDLE_SECONDS), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GOAWAY" not in done.stderr and "too_many_pings" not in done.stderr, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == 5  # a query still works after the idle time
    assert result["same_channel"], "pymilvus replaced the channel"
    assert result["states"] == ["READY"], f"the connection was dropped and made again: {result['states']}"


def test_lite_channels_get_no_keepalive_pings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc

    made: list[dict[str, Any]] = []
    opened = grpc.insecure_channel

    def recording(target: str, options: Any = None, compression: Any = None) -> Any:
        made.append(dict(options or []))
        return opened(target, options, compression)

    monkeypatch.setattr(grpc, "insecure_channel", recording)
    connection = MilvusConnection.open(tmp_path / "options.db")
    try:
        assert connection.client.list_collections() == []
    finally:
        connection.close()
    assert made, "no gRPC channel was made"
    options = made[-1]
    assert options["grpc.keepalive_time_ms"] == 2**31 - 1  # gRPC's "never"
    assert not options["grpc.keepalive_permit_without_calls"]
    assert connection_module.LITE_GRPC_OPTIONS.items() <= options.items()


def test_server_clients_keep_pymilvus_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymilvus

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(pymilvus, "MilvusClient", lambda **kwargs: calls.append(kwargs) or object())
    connection_module.new_client(MilvusTarget(uri="http://127.0.0.1:1"), 1.0)
    connection_module.new_client(MilvusTarget(uri="db/some.db"), 1.0)
    assert "grpc_options" not in calls[0]  # a server: pymilvus' settings, made for Milvus servers
    assert calls[1]["grpc_options"] == connection_module.LITE_GRPC_OPTIONS
