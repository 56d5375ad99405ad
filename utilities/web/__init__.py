"""The search web page and its JSON API (`[web]` extra: FastAPI, uvicorn, python-multipart).

Search a collection by example in the browser, read-only, served to this machine unless told
otherwise. Guide: `docs/guide/web.md`.

`app.create_app` builds the FastAPI application that `python -m utilities serve` runs; `static/`
holds the page's HTML, CSS and JavaScript (no build step, no CDN).
"""

from pathlib import Path

STATIC = Path(__file__).with_name("static")
"""The pages' files: the search page (`index.html`, `app.js`, `style.css`) and the Map view (`map.*`)."""
