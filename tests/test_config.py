from __future__ import annotations

from pathlib import Path

import pytest

from utilities.config import cache_dir, resolve_target


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


def test_credentials_in_a_uri_are_masked_in_repr_and_in_every_message(caplog: pytest.LogCaptureFixture) -> None:
    from tests.ports import free_port
    from utilities.config import masked_uri
    from utilities.errors import MilvusUnavailableError
    from utilities.milvus.collection import ImageCollection

    assert masked_uri("https://alice:s3cret@milvus.example:19530/db") == "https://***@milvus.example:19530/db"
    assert masked_uri("http://alice@h:1") == "http://***@h:1" and masked_uri("http://h:1/a@b") == "http://h:1/a@b"
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    assert "s3cret" not in repr(resolve_target(uri))
    with pytest.raises(MilvusUnavailableError) as raised:
        ImageCollection.open(uri, name="x", create=False, retry_seconds=0)
    assert "s3cret" not in str(raised.value) and "***@127.0.0.1" in str(raised.value)
    assert "s3cret" not in caplog.text


def test_the_cli_never_prints_credentials_of_a_uri(capsys: pytest.CaptureFixture) -> None:
    from tests.ports import free_port
    from utilities.cli import main

    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    assert main(["info", "--uri", uri, "--retry-seconds", "0"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: nothing answers at http://***@127.0.0.1:") and "s3cret" not in error


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UTILITIES_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("UTILITIES_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "milvus-image-similarity"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "milvus-image-similarity"
