"""The web page and its JSON API, through a real `python -m utilities serve` over HTTP, and in a
real headless Chromium (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs).

Set `WEB_SCREENSHOT=assets/web_page.png` to refresh the README's screenshot.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ROOT, SAMPLES, SERVER_ENV, class_photos, headless_chromium, run_cli
from tests.ports import free_port

PER_CLASS = 3
DARK = Path("night.png")
"""The nearly black picture the fixture adds to the first class folder."""
TOKEN = "web-test-user:not-a-real-secret-4711"
"""A token the page, the API and the logs must never show (the CI server has no authentication, so it is accepted)."""


@dataclass
class WebServer:
    url: str
    photos: list[Path]
    process: subprocess.Popen
    log: Path
    backend: str

    def get(self, path: str, **options) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **options)

    def search(self, path: Path | None = None, k: int = 10, data: bytes | None = None, name: str = "q.jpg"):
        content = path.read_bytes() if path is not None else data
        return requests.post(self.url + "/api/search", files={"file": (name, content)}, data={"k": str(k)}, timeout=60)


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.server)])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """`serve` running on a free port over 30 indexed photos (3 per class), on Lite or the server."""
    work = tmp_path_factory.mktemp(f"web-{request.param}")
    photos = []
    for source in class_photos(PER_CLASS):
        target = work / "photos" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        photos.append(target)
    copy = photos[-1].with_name(f"{photos[-1].stem}_copy.jpg")  # an exact copy, for the Duplicates view
    photos.append(Path(shutil.copy2(photos[-1], copy)))
    dark = photos[0].parent / DARK.name  # a nearly black picture, for the Audit view's bad images
    Image.fromarray(np.linspace(4, 20, 160 * 120, dtype=np.uint8).reshape(120, 160)).convert("RGB").save(dark)
    photos.insert(-2, dark)  # the copied pair stays last
    if request.param == "lite":
        uri, collection, token = str(work / "milvus.db"), "web", []
    else:
        uri = os.environ.get(SERVER_ENV) or pytest.fail(f"{SERVER_ENV} is not set: run `bash .ci/run`")
        collection, token = f"web_{os.getpid()}", ["--token", TOKEN]
    common = ["--uri", uri, "--collection", collection, *token]
    done = run_cli("index", str(work / "photos"), *common, "--weights", "none", cwd=work)
    assert done.returncode == 0, done.stderr
    done = run_cli("duplicates", *common, "--exact-only", cwd=work)  # saved where serve reads it
    assert done.returncode == 0 and "1 groups of copies (1 exact)" in done.stdout, done.stdout + done.stderr
    done = run_cli("audit", *common, cwd=work)  # saved where serve reads it
    assert done.returncode == 0 and "saved for the web page" in done.stdout, done.stdout + done.stderr
    port = free_port()
    log = work / "serve.log"
    options = ["--weights", "none", "--port", str(port), "--max-upload-mb", "1", "--max-waiting-uploads", "8", "-v"]
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "utilities", "serve", *common, *options],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=work,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
            start_new_session=True,  # its own process group, stopped by group below
        )
    server = WebServer(f"http://127.0.0.1:{port}", photos, process, log, request.param)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
        try:
            if server.get("/api/info").status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        pytest.fail(f"serve did not answer within 180 s: {log.read_text()[-3000:]}")
    yield server
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if request.param == "server":
        run_cli("drop", "--yes", *common)


def test_info_describes_the_collection_and_never_the_token(web: WebServer) -> None:
    info = web.get("/api/info").json()
    assert info["count"] == len(web.photos)
    assert info["dimension"] == 2048 and info["metric"] == "COSINE"
    assert info["index_type"] and "random weights" in info["model"]
    assert info["backend"] == ("Milvus Lite" if web.backend == "lite" else "Milvus server")
    for path in ("/api/info", "/", "/openapi.json", "/static/app.js"):
        assert TOKEN.split(":")[1] not in web.get(path).text
    assert TOKEN.split(":")[1] not in web.log.read_text()


def test_search_by_upload_returns_k_ranked_results_with_the_stored_copy_first(web: WebServer) -> None:
    query = web.photos[4]
    answer = web.search(query, k=5)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    assert results[0]["path"] == query.as_posix() and distances[0] < 1e-4
    assert all(isinstance(r["id"], str) and r["id"].lstrip("-").isdigit() for r in results)
    assert all(r["thumbnail"] == f"/api/rows/{r['id']}/thumbnail" for r in results)


def test_search_by_a_stored_row_and_its_files_by_id_only(web: WebServer) -> None:
    first = web.search(SAMPLES / "cat.jpg", k=3).json()["results"]
    row = first[1]
    neighbours = web.get(f"/api/search/{row['id']}", params={"k": 4}).json()
    assert neighbours["query"]["id"] == row["id"] and len(neighbours["results"]) == 4
    assert neighbours["results"][0]["id"] == row["id"] and neighbours["results"][0]["distance"] < 1e-4

    thumbnail = web.get(row["thumbnail"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 192
    original = web.get(row["image"])
    assert original.status_code == 200 and original.content == Path(row["path"]).read_bytes()

    assert web.get("/api/search/12345").status_code == 404
    assert web.get("/api/rows/12345/image").status_code == 404
    for attempt in (
        "/api/rows/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/api/rows/%2Fetc%2Fpasswd/image",
        "/api/rows/1e3/thumbnail",
    ):
        refused = web.get(attempt)
        assert refused.status_code in (404, 422) and "root:" not in refused.text, attempt
    escaped = web.get("/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd")
    assert escaped.status_code == 404 and "root:" not in escaped.text


def test_the_saved_duplicate_search_is_served_by_row_id(web: WebServer) -> None:
    answer = web.get("/api/duplicates")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["total_groups"] == 1 and data["removable"] == 1 and data["rows"] == len(web.photos)
    files = data["groups"][0]["files"]
    assert data["groups"][0]["exact"] and [f["keep"] for f in files] == [True, False]
    assert sorted(f["path"] for f in files) == sorted(p.as_posix() for p in web.photos[-2:])
    for file in files:
        assert (
            file["thumbnail"] == f"/api/rows/{file['id']}/thumbnail" and web.get(file["thumbnail"]).status_code == 200
        )
    assert web.get("/api/duplicates", params={"limit": 0}).status_code == 422


def test_concurrent_searches_all_succeed_with_the_same_answer(web: WebServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = [web.photos[0], web.photos[10], SAMPLES / "rocket.jpg"] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda path: (path, web.search(path, k=5)), queries))
    assert all(answer.status_code == 200 for _, answer in answers)
    by_query: dict[Path, set[tuple[str, ...]]] = {}
    for path, answer in answers:
        by_query.setdefault(path, set()).add(tuple(hit["id"] for hit in answer.json()["results"]))
    assert all(len(orders) == 1 for orders in by_query.values()), by_query


def test_bad_uploads_get_clear_errors(web: WebServer) -> None:
    not_image = web.search(data=b"just some text, not a picture", name="notes.txt")
    assert not_image.status_code == 400 and "notes.txt is not an image" in not_image.json()["detail"]
    empty = web.search(data=b"", name="empty.jpg")
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    big = web.search(data=b"\xff" * (2 * 1024 * 1024), name="big.jpg")  # the fixture allows 1 MB
    assert big.status_code == 413 and "larger than 1 MB" in big.json()["detail"]
    bomb = io.BytesIO()
    Image.new("L", (14_000, 14_000)).save(bomb, "PNG")  # 196 M pixels, over twice Pillow's limit; 0.2 MB
    refused = web.search(data=bomb.getvalue(), name="bomb.png")
    assert refused.status_code == 400 and "decompression-bomb" in refused.json()["detail"]
    deep = io.BytesIO()  # 12,000 x 12,000 16-bit: 0.3 MB that decoded in full took ~3.8 GB
    Image.fromarray(np.zeros((12_000, 12_000), dtype=np.uint16)).save(deep, "PNG")
    refused = web.search(data=deep.getvalue(), name="deep.png")
    assert refused.status_code == 400 and "image too large: 12000 x 12000 pixels" in refused.json()["detail"]
    assert web.search(SAMPLES / "coffee.jpg", k=0).status_code == 422
    assert web.search(SAMPLES / "coffee.jpg", k=101).status_code == 422


def test_openapi_description_lists_the_routes_and_no_cdn_docs_page_is_offered(web: WebServer) -> None:
    assert web.get("/docs").status_code == 404  # FastAPI's page loads its scripts from a CDN: removed
    paths = web.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/{row_id}", "/api/info", "/api/rows/{row_id}/thumbnail"} <= set(paths)


def test_the_saved_audit_is_served_by_row_id_and_the_map_can_highlight_its_lists(web: WebServer) -> None:
    from utilities.ids import path_id

    audit = web.get("/api/audit").json()
    assert audit["rows"] == len(web.photos) and set(audit["counts"]) == {"leaks", "label_errors", "outliers", "quality"}
    dark = [item for item in audit["quality"] if item["path"].endswith(DARK.name)]
    assert len(dark) == 1 and "dark" in dark[0]["issues"], audit["quality"]
    (shown,) = dark[0]["files"]
    assert shown["id"] == str(path_id(dark[0]["path"])) and web.get(shown["thumbnail"]).status_code == 200
    assert web.get("/api/audit", params={"limit": 0}).status_code == 422

    marked = web.get("/api/map/highlights").json()
    assert marked["missing"] == {}
    assert sorted(marked["lists"]["duplicates"]) == sorted(str(path_id(p.as_posix())) for p in web.photos[-2:])
    assert shown["id"] in marked["lists"]["quality"]
    assert {"/api/audit", "/api/map/highlights"} <= set(web.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize("web", ["lite"], indirect=True)  # the page once; the API tests cover the server
def test_the_page_in_headless_chromium(web: WebServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with headless_chromium(1200, 820) as driver:
        wait = WebDriverWait(driver, 60)
        driver.get(web.url + "/")
        wait.until(lambda d: f"{len(web.photos)} images" in d.find_element(By.ID, "info").text)
        assert not driver.find_elements(By.CSS_SELECTOR, 'a[href="/docs"]')  # the blank docs page is gone
        api_link = driver.find_element(By.CSS_SELECTOR, "footer a").get_attribute("href")
        assert api_link.endswith("/openapi.json") and "/api/search" in requests.get(api_link, timeout=30).text
        Select(driver.find_element(By.ID, "k")).select_by_visible_text("5")
        driver.find_element(By.ID, "file-input").send_keys(str(SAMPLES / "astronaut.jpg"))
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-searches") == "1")
        results = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        assert len(results) == 5
        assert "#1" in results[0].text and "astronaut" in results[0].text
        assert wait.until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in d.find_elements(By.CSS_SELECTOR, "#results img")
            )
        )
        if os.environ.get("WEB_SCREENSHOT"):
            driver.save_screenshot(str(ROOT / os.environ["WEB_SCREENSHOT"]))

        clicked = results[2]
        clicked_id = clicked.get_attribute("data-id")
        clicked.click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-searches") == "2")
        again = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        assert len(again) == 5 and again[0].get_attribute("data-id") == clicked_id
        assert driver.find_element(By.ID, "query").get_attribute("data-id") == clicked_id

        driver.find_element(By.ID, "duplicates-button").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-duplicates") == "1")
        group = driver.find_elements(By.CSS_SELECTOR, "#results .group")
        assert len(group) == 1 and "Exact copies: 2 files" in group[0].text and "keep: " in group[0].text
        assert wait.until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in d.find_elements(By.CSS_SELECTOR, "#results .group img")
            )
        )
        assert "Nothing is deleted here" in driver.find_element(By.ID, "status").text

        driver.find_element(By.ID, "audit-button").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-audit"))
        bad = driver.find_element(By.CSS_SELECTOR, '#results .audit[data-list="quality"]')
        assert bad.text.startswith("Bad images: ") and DARK.name in bad.text and "dark" in bad.text
        assert wait.until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in d.find_elements(By.CSS_SELECTOR, "#results .audit img")
            )
        )
        assert "Nothing is moved, deleted or relabelled" in driver.find_element(By.ID, "status").text

        not_image = tmp_path / "notes.jpg"
        not_image.write_text("not a picture")
        driver.find_element(By.ID, "file-input").send_keys(str(not_image))
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "notes.jpg is not an image" in driver.find_element(By.ID, "error").text
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert all("/api/search" in entry["message"] for entry in severe), severe  # only the 400 just provoked
        driver.save_screenshot(str(tmp_path / "page.png"))
