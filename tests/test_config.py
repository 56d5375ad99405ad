from __future__ import annotations

import pytest

from utilities.config import resolve_target


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_URI", "http://env:19530")
    monkeypatch.setenv("MILVUS_TOKEN", "env-token")
    target = resolve_target("http://arg:19530", "arg-token")
    assert (target.uri, target.token, target.is_lite) == ("http://arg:19530", "arg-token", False)


def test_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_URI", "http://env:19530")
    monkeypatch.setenv("MILVUS_TOKEN", "secret")
    assert resolve_target().uri == "http://env:19530"
    assert resolve_target().token == "secret"
    monkeypatch.delenv("MILVUS_URI")
    monkeypatch.delenv("MILVUS_TOKEN")
    assert resolve_target().uri == "db/milvus.db" and resolve_target().is_lite
    assert resolve_target().token == ""


def test_token_is_never_in_repr() -> None:
    assert "secret" not in repr(resolve_target("http://h:1", "root:secret"))
