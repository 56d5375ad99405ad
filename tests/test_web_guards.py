"""The web server's guards, over HTTP against a real uvicorn server in this process, on Milvus Lite.

A near-free embedder (the mean colour) stands in for the model, so that a slow one can be
simulated exactly: `SLOW_SECONDS` a call, to fill the queue of uploads waiting for it.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import SAMPLES, class_photos, mean_colour_embedder, serve_in_thread
from tests.ports import free_port
from utilities.engine import ImageSearchEngine
from utilities.ids import path_id, stored_path
from utilities.web.guards import SECURITY_HEADERS, TOKEN_COOKIE, allowed_hosts, is_loopback, read_token

SLOW_SECONDS = 2.0
BOUNDARY = "guardboundary"
TOKEN = "guard-test-token-0123456789abcdef"


@dataclass
class Served:
    url: str
    photos: list[Path]
    slow: threading.Event

    def get(self, path: str, **options) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **options)

    def upload(self, path: Path, **options) -> requests.Response:
        files = {"file": (path.name, path.read_bytes())}
        return requests.post(self.url + "/api/search", files=files, data={"k": "3"}, timeout=60, **options)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageSearchEngine, list[Path], threading.Event]]:
    work = tmp_path_factory.mktemp("guards")
    photos = []
    for source in class_photos(1):
        target = work / "photos" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        photos.append(target)
    slow = threading.Event()

    def maybe_slow() -> None:
        if slow.is_set():
            time.sleep(SLOW_SECONDS)

    embedder = mean_colour_embedder(maybe_slow)
    engine = ImageSearchEngine(uri=str(work / "m.db"), collection_name="guards", embedder=embedder)
    engine.index_folder(work / "photos")
    yield engine, photos, slow
    engine.close()


@pytest.fixture(scope="module")
def served(engine) -> Iterator[Served]:
    from utilities.web.app import create_app

    search_engine, photos, slow = engine
    url, server, thread = serve_in_thread(create_app(search_engine, max_upload_bytes=256 * 1024, max_waiting_uploads=1))
    yield Served(url, photos, slow)
    server.should_exit = True
    thread.join(timeout=10)


def test_every_response_carries_the_security_headers(served: Served) -> None:
    answers = [
        served.get("/"),
        served.get("/api/info"),
        served.get("/api/rows/1/image"),  # 404
        served.get("/api/info", headers={"Host": "evil.example"}),  # 400
        requests.post(served.url + "/api/search", data=b"x" * 400_000, timeout=60),  # 413 from Content-Length
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 400, 413]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.url, name)
    assert "frame-ancestors 'none'" in answers[0].headers["content-security-policy"]


def test_only_this_machines_host_names_are_answered(served: Served) -> None:
    port = served.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert served.get("/api/info", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", ""):
        refused = served.get("/api/info", headers={"Host": host})
        assert refused.status_code == 400 and "count" not in refused.text, host
    assert allowed_hosts("0.0.0.0", ["Photos.Example.org"]) == ["localhost", "127.0.0.1", "::1", "photos.example.org"]
    assert allowed_hosts("192.168.1.5") == ["localhost", "127.0.0.1", "::1", "192.168.1.5"]
    assert [is_loopback(h) for h in ("127.0.0.2", "::1", "[::1]", "0.0.0.0", "::")] == [True, True, True, False, False]


class CountingReads:
    """ASGI wrapper around the whole app, guards included: the request body bytes the app read."""

    def __init__(self, app) -> None:
        self.app = app
        self.read = 0

    async def __call__(self, scope, receive, send) -> None:
        async def counted():
            message = await receive()
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def _post_chunked_slowly(url: str, parts: list[bytes], pause: float) -> tuple[int, dict, int]:
    """POST `parts` as a chunked multipart body, one part every `pause` s, and stop sending as soon as an
    answer arrives (as a browser does). Returns the answer's status and JSON, and the body bytes sent."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(
        f"POST /api/search HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
    )
    sent = 0
    for part in [*parts, b""]:  # the empty chunk ends the body
        if select.select([sock], [], [], pause)[0]:  # answered: stop sending
            break
        try:
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        except OSError:  # the server closed the connection after answering
            break
        sent += len(part)
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    body = json.loads(answer.read())
    sock.close()
    return answer.status, body, sent


def test_a_chunked_upload_over_the_cap_gets_413_before_the_rest_is_read_and_the_server_goes_on(engine) -> None:
    from utilities.web.app import MULTIPART_OVERHEAD, create_app

    search_engine, photos, _ = engine
    cap = 256 * 1024
    counting = CountingReads(create_app(search_engine, max_upload_bytes=cap, max_waiting_uploads=1))
    url, server, thread = serve_in_thread(counting)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    parts = [head, *[b"\xff" * 65536] * 64, f"\r\n--{BOUNDARY}--\r\n".encode()]  # 4 MB against 256 KB
    total = sum(len(part) for part in parts)
    try:
        status, answer, sent = _post_chunked_slowly(url, parts, pause=0.02)
        assert status == 413 and answer["detail"] == "the upload is larger than 256 KB: choose a smaller image"
        assert counting.read > cap  # the guard saw the cap passed ...
        # ... and read no further than the message that passed it (asyncio reads at most 256 KB at once)
        assert counting.read <= cap + MULTIPART_OVERHEAD + 256 * 1024, f"the app read {counting.read} bytes"
        assert sent < total / 2, f"the answer came only after {sent} of {total} bytes were sent"
        with open(photos[0], "rb") as photo:
            after = requests.post(url + "/api/search", files={"file": photo}, data={"k": "3"}, timeout=60)
        assert after.status_code == 200  # the server goes on
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_413_names_the_cap_in_a_unit_that_shows_it(served: Served) -> None:
    # a file over the 256 KB cap in a form under the guard's cap (+ 64 KB): the route's own 413
    files = {"file": ("big.jpg", b"\xff" * 300_000)}
    refused = requests.post(served.url + "/api/search", files=files, data={"k": "3"}, timeout=60)
    assert refused.status_code == 413
    assert refused.json()["detail"] == "the upload is larger than 256 KB: choose a smaller image"  # not "0 MB"


def test_uploads_beyond_the_waiting_bound_get_503_and_pages_stay_fast(served: Served) -> None:
    served.slow.set()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            uploads = [pool.submit(served.upload, served.photos[i % len(served.photos)]) for i in range(6)]
            time.sleep(0.3)  # every upload has arrived: one embeds (2 s), one waits, the rest were refused
            started = time.perf_counter()
            info = served.get("/api/info")
            thumbnail = served.get(f"/api/rows/{path_id(stored_path(served.photos[1]))}/thumbnail")
            page = served.get("/")
            page_seconds = time.perf_counter() - started
            answers = [future.result() for future in uploads]
    finally:
        served.slow.clear()
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(200) >= 1 and codes.count(503) >= 1 and set(codes) <= {200, 503}, codes
    assert codes.count(200) <= 2, codes  # one embedding, one waiting
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "2" and "busy" in answer.json()["detail"]
    assert info.status_code == thumbnail.status_code == page.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert page_seconds < SLOW_SECONDS, "the info, thumbnail and page requests waited for the model"


def test_a_changed_or_swapped_file_is_not_served(served: Served, tmp_path: Path) -> None:
    result = served.upload(served.photos[2]).json()["results"][0]
    path = Path(result["path"])
    original, status = path.read_bytes(), path.stat()
    assert served.get(result["image"]).content == original
    first_thumbnail = served.get(result["thumbnail"]).content
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:not for the web\n")
    try:
        path.unlink()
        path.symlink_to(secret)  # the indexed path now leads to another file
        for kind in ("image", "thumbnail"):
            refused = served.get(result[kind])
            assert refused.status_code == 404 and "root:" not in refused.text, kind
        path.unlink()
        shutil.copy(SAMPLES / "rocket.jpg", path)  # replaced by another photo: changed since it was indexed
        changed = served.get(result["image"])
        assert changed.status_code == 404 and "changed since it was indexed" in changed.json()["detail"]
        assert served.get(result["thumbnail"]).status_code == 404
    finally:
        path.unlink(missing_ok=True)
        path.write_bytes(original)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    restored = served.get(result["image"])
    assert restored.status_code == 200 and restored.content == original
    assert restored.headers["content-type"] == "image/jpeg"
    assert served.get(result["thumbnail"]).content == first_thumbnail


def test_the_api_docs_page_is_gone_and_the_openapi_description_stays(served: Served) -> None:
    assert served.get("/docs").status_code == 404 and served.get("/redoc").status_code == 404
    assert "/api/search" in served.get("/openapi.json").json()["paths"]
    assert 'href="/docs"' not in served.get("/").text


def test_an_access_token_guards_the_page_and_the_api(engine, tmp_path: Path) -> None:
    from utilities.web.app import create_app

    search_engine, photos, _ = engine
    url, server, thread = serve_in_thread(create_app(search_engine, token=TOKEN))
    try:
        for path in ("/", "/api/info", "/openapi.json", "/static/app.js"):
            refused = requests.get(url + path, timeout=30)
            assert refused.status_code == 401 and TOKEN not in refused.text, path
        assert requests.get(url + "/api/info", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
        bearer = requests.get(url + "/api/info", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert bearer.status_code == 200 and bearer.json()["count"] == len(photos)
        opened = requests.get(url + f"/?token={TOKEN}", timeout=30, allow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        with requests.Session() as browser:
            page = browser.get(url + f"/?token={TOKEN}", timeout=30)  # follows the redirect with the cookie
            assert page.status_code == 200 and "<html" in page.text.lower() and TOKEN not in page.text
            assert browser.get(url + "/api/info", timeout=30).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert read_token(token_file) == TOKEN
    token_file.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        read_token(token_file)
    with pytest.raises(ValueError, match="does not exist"):
        read_token(tmp_path / "missing")
    token_file.write_text("a token; with spaces=and-more\n")
    with pytest.raises(ValueError, match="only letters, digits"):
        read_token(token_file)


def test_a_thumbnail_is_made_again_when_its_file_changes(tmp_path: Path) -> None:
    from utilities.images.thumbnails import ThumbnailCache

    photo = tmp_path / "photo.jpg"
    shutil.copy(SAMPLES / "cat.jpg", photo)
    cache = ThumbnailCache(capacity=4)
    first = cache.get(7, str(photo), stamp=(1, 1))
    shutil.copy(SAMPLES / "rocket.jpg", photo)
    assert cache.get(7, str(photo), stamp=(1, 1)) == first  # same stamp: the kept thumbnail
    changed = cache.get(7, str(photo), stamp=(2, 2))
    assert changed != first and len(cache) == 1


def test_serving_beyond_this_machine_warns(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    done = run_cli("serve", "--uri", str(tmp_path / "none.db"), "--host", "0.0.0.0", "--port", str(free_port()),
                   "--weights", "none", timeout=120, env={"UTILITIES_WEB_TOKEN": ""})  # fmt: skip
    assert done.returncode == 1  # no collection there: it stops after the warning
    assert "warning: serving on 0.0.0.0, beyond this machine" in done.stderr
    assert "set an access token (UTILITIES_WEB_TOKEN or --token-file)" in done.stderr
    assert "does not exist" in done.stderr


def test_the_duplicates_view_serves_the_saved_search(engine, served: Served) -> None:
    search_engine, photos, _ = engine
    exact_report = search_engine.duplicates_report_path(exact_only=True)  # shown when no checked search is saved
    search_engine.duplicates_path.unlink(missing_ok=True)
    exact_report.unlink(missing_ok=True)
    missing = served.get("/api/duplicates")
    assert missing.status_code == 404 and "python -m utilities duplicates" in missing.json()["detail"]
    folder = photos[0].parent
    copy = Path(shutil.copy2(photos[3], folder / f"{photos[3].stem}_copy.jpg"))
    try:
        search_engine.index_folder(folder)
        report = search_engine.find_duplicates(exact_only=True)
        assert exact_report.is_file() and len(report.groups) == 1
        data = served.get("/api/duplicates").json()
        assert data["total_groups"] == 1 and data["removable"] == 1
        keep, other = data["groups"][0]["files"]
        assert keep["keep"] and keep["path"] == stored_path(photos[3]) and other["path"] == stored_path(copy)
        assert served.get(other["thumbnail"]).status_code == 200  # by row id only
    finally:
        copy.unlink()
        search_engine.index_folder(folder, prune=True)
        exact_report.unlink(missing_ok=True)
    assert search_engine.count() == len(photos)
