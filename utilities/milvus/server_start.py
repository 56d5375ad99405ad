"""When the Milvus server behind a connection started: an identity that changes with each restart.

A server's settings (its `localStorage.path`, say) can only change when it restarts, so what was
learnt about a running server holds until then. The server says when its parts started in its
system metrics (`GetMetrics` with `{"metric_type": "system_info"}`: each node's `created_time`, to
the nanosecond). pymilvus' `MilvusClient` has no method for that call, so it is made through the
client's own gRPC stub (with its address, token and TLS); where that is not possible (another
pymilvus, a user without the privilege) `server_started` says None and nothing is remembered.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from utilities.errors import MilvusUnavailableError

if TYPE_CHECKING:
    from utilities.milvus.connection import MilvusConnection

logger = logging.getLogger(__name__)

SYSTEM_INFO = json.dumps({"metric_type": "system_info"})

ASK_TIMEOUT = 10.0
"""Seconds one `GetMetrics` call may take (it answers in about a millisecond)."""


def server_started(connection: MilvusConnection) -> str | None:
    """When the server's nodes started, as one string (a standalone server's nodes start together:
    `"2026-12-07 18:36:01.214873877 +0000 UTC"`), or None when the server cannot be asked.

    Raises:
        MilvusUnavailableError: The server did not answer within the connection's retry budget.
    """
    try:
        metrics = connection.retrying("get_metrics", _system_info)
    except MilvusUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - without an answer the caller only forgoes remembering
        logger.debug("the server at %s did not say when it started: %s", connection.target.shown, error)
        return None
    return started_from(metrics)


def started_from(metrics: dict[str, Any]) -> str | None:
    """The start identity in a `system_info` answer: its nodes' distinct `created_time`s, sorted.

    Example:
        >>> node = {"infos": {"type": "proxy", "created_time": "2026-12-07 18:36:01.214873877 +0000 UTC"}}
        >>> started_from({"nodes_info": [node, node]})
        '2026-12-07 18:36:01.214873877 +0000 UTC'
    """
    nodes = [node.get("infos") or {} for node in metrics.get("nodes_info") or []]
    return "; ".join(sorted({str(node["created_time"]) for node in nodes if node.get("created_time")})) or None


def _system_info(client: Any) -> dict[str, Any]:
    """Ask the server behind a pymilvus `MilvusClient` for its `system_info` metrics."""
    from pymilvus.client.utils import check_status
    from pymilvus.grpc_gen import milvus_pb2

    handler = client._get_connection()
    answer = handler._stub.GetMetrics(milvus_pb2.GetMetricsRequest(request=SYSTEM_INFO), timeout=ASK_TIMEOUT)
    check_status(answer.status)
    return json.loads(answer.response)
