"""The Map view: every stored image as a dot on one canvas, coloured by class, with pan, zoom, hover and click.

`GET /api/map` serves the map that `python -m utilities map` saved for this database and collection
(`collection_map.saved`), as parallel arrays. It is never computed here: a UMAP layout of 100,000
rows takes minutes, and the server is read-only; without a saved map, or with one made before the
collection was dropped or indexed again, it answers 404 saying to run `python -m utilities map`.
Rows indexed after the map was saved are not on it until `map` runs again (which places only them).

`GET /map` is the page: plain HTML, CSS and JavaScript served from this module (no CDN, no external
script), drawn on a 2-D canvas in one pass of `fillRect` per point, the points sorted by class so that
the colour changes once a class; points outside the view are skipped. Hover finds the nearest point
through a uniform grid over the positions and shows its thumbnail (`GET /api/rows/{id}/thumbnail`);
a click lists its nearest neighbours (`GET /api/search/{id}`) and rings them on the map.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import json
import threading
from typing import Any

from utilities.web.service import SearchService

_EXAMPLE = {
    "count": 3,
    "method": "umap",
    "fitted_on": 3,
    "created": "2026-12-07T22:00:00+00:00",
    "ids": ["101", "102", "103"],
    "x": [0.5, 1.25, 7.0],
    "y": [2.0, 2.5, -1.0],
    "class": [0, 0, 1],
    "classes": ["cat", "dog"],
}


def saved_map(store: Any) -> bytes:
    """The saved map of `store` as compact JSON (`CollectionMap.as_dict`).

    Raises:
        FileNotFoundError: No map is saved for this collection as it is now, with what to run.
    """
    from utilities.collection_map.mapper import CollectionMap
    from utilities.collection_map.saved import load_map, map_path
    from utilities.duplicates.provenance import Source

    path = map_path(store.target, store.name)
    saved = load_map(path, Source.of(store), store, with_layout=False)
    if saved is None:
        reason = "was made on the collection before it was dropped or indexed again" if path.is_file() else "is saved"
        raise FileNotFoundError(
            f"no map of this collection {reason}: run `python -m utilities map` (with the same --uri and "
            "--collection), then reload"
        )
    return json.dumps(CollectionMap.from_saved(saved).as_dict(), separators=(",", ":")).encode()


class _Cached:
    """The last map served, kept while its file and the collection are unchanged (reading and checking it
    took 1 s at 100,000 rows)."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.lock = threading.Lock()
        self.key: tuple[int, int, str] | None = None
        self.body = b""

    def get(self) -> bytes:
        from utilities.collection_map.saved import map_path

        store = self.service.store
        path = map_path(store.target, store.name)
        stat = path.stat() if path.is_file() else None
        key = (stat.st_mtime_ns, stat.st_size, store.identity()) if stat else None  # a file or collection replaced
        with self.lock:
            if key is None or key != self.key:
                self.body = saved_map(store)
                self.key = key
            return self.body


def router(service: SearchService) -> Any:
    """`GET /api/map` and the page `GET /map` (with its script and style): a FastAPI `APIRouter`."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import HTMLResponse, Response

    routes = APIRouter()
    cached = _Cached(service)

    @routes.get(
        "/api/map",
        response_class=Response,
        responses={
            200: {
                "description": "Parallel arrays, one entry per mapped row: `ids` (decimal strings), `x`, `y`, "
                "`class` (an index into `classes`, -1 for none); with `count`, `method` (umap or pca), "
                "`fitted_on` (rows the layout was fitted on) and `created`.",
                "content": {"application/json": {"example": _EXAMPLE}},
            },
            404: {"description": "No map is saved for this collection: run `python -m utilities map`."},
        },
    )
    def collection_map() -> Response:
        """Every stored image's 2-D position and class, as `python -m utilities map` saved them (read-only)."""
        try:
            body = cached.get()
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return Response(content=body, media_type="application/json")

    @routes.get("/map", include_in_schema=False)
    def page() -> Any:
        return HTMLResponse(_PAGE)

    @routes.get("/map/map.js", include_in_schema=False)
    def script() -> Any:
        return Response(_SCRIPT, media_type="text/javascript")

    @routes.get("/map/map.css", include_in_schema=False)
    def style() -> Any:
        return Response(_STYLE, media_type="text/css")

    return routes


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Map of the collection</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/map/map.css">
  <script src="/map/map.js" defer></script>
</head>
<body>
  <header>
    <h1>Map of the collection</h1>
    <nav><a href="/">Search</a> · <a href="/openapi.json">API (OpenAPI)</a></nav>
    <p id="status" aria-live="polite">Loading the map…</p>
    <ul id="legend" aria-label="classes"></ul>
  </header>
  <main>
    <canvas id="map" aria-label="every stored image as a dot; drag to pan, wheel to zoom, click for neighbours">
    </canvas>
    <aside id="neighbours" aria-label="nearest neighbours" hidden></aside>
  </main>
  <img id="map-thumb" alt="the image under the pointer" hidden>
</body>
</html>
"""

_STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
body { margin: 0; padding: .5rem 1rem; height: 100vh; box-sizing: border-box; display: flex; flex-direction: column; }
header h1 { margin: 0; font-size: 1.3rem; display: inline-block; margin-right: 1rem; }
header nav { display: inline-block; font-size: .9rem; }
#status { margin: .25rem 0; color: #4a5264; font-size: .9rem; }
#legend { list-style: none; display: flex; flex-wrap: wrap; gap: .2rem .8rem; margin: 0 0 .4rem; padding: 0;
  font-size: .8rem; }
#legend li::before { content: ""; display: inline-block; width: .7em; height: .7em; margin-right: .3em;
  background: var(--colour); border-radius: 2px; }
main { flex: 1; display: flex; gap: .75rem; min-height: 0; }
#map { flex: 1; min-width: 0; height: 100%; background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0002;
  cursor: crosshair; touch-action: none; }
#map.dragging { cursor: grabbing; }
#neighbours { width: 220px; overflow-y: auto; background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0002;
  padding: .5rem; font-size: .8rem; }
#neighbours h2 { font-size: .9rem; margin: 0 0 .4rem; }
#neighbours figure { margin: 0 0 .5rem; }
#neighbours img { width: 100%; border-radius: 4px; background: #e4e7ec; }
#neighbours figcaption { overflow-wrap: anywhere; color: #4a5264; }
#map-thumb { position: fixed; pointer-events: none; max-width: 160px; max-height: 160px; border: 2px solid #fff;
  border-radius: 4px; box-shadow: 0 2px 8px #0005; background: #e4e7ec; z-index: 10; }
"""

_SCRIPT = r"""
"use strict";
(() => {
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#dbdb8d", "#9edae5"];
  const NO_CLASS = "#b0b4bc";
  const BACKGROUND = "#ffffff";
  const HOVER_PX = 8;
  const canvas = document.getElementById("map");
  const context = canvas.getContext("2d", { alpha: false });
  const status = document.getElementById("status");
  const thumb = document.getElementById("map-thumb");
  const aside = document.getElementById("neighbours");
  const colour = (c) => (c < 0 ? NO_CLASS : PALETTE[c % PALETTE.length]);
  let points = null; // {ids, x, y, cls, order, index: Map id -> i, grid}
  const view = { scale: 1, dx: 0, dy: 0 }; // screen pixel = data * scale + d (device pixels)
  let rings = []; // indexes ringed after a click
  let pending = false;

  const ratio = () => window.devicePixelRatio || 1;

  function resize() {
    const r = ratio();
    const w = Math.max(1, Math.round(canvas.clientWidth * r));
    const h = Math.max(1, Math.round(canvas.clientHeight * r));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
      if (points) fit();
    }
  }

  function fit() {
    const { x, y } = points;
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (let i = 0; i < x.length; i++) {
      if (x[i] < minX) minX = x[i];
      if (x[i] > maxX) maxX = x[i];
      if (y[i] < minY) minY = y[i];
      if (y[i] > maxY) maxY = y[i];
    }
    const spanX = Math.max(maxX - minX, 1e-9), spanY = Math.max(maxY - minY, 1e-9);
    view.scale = 0.92 * Math.min(canvas.width / spanX, canvas.height / spanY);
    view.dx = canvas.width / 2 - view.scale * (minX + maxX) / 2;
    view.dy = canvas.height / 2 - view.scale * (minY + maxY) / 2;
    points.bounds = { minX, minY, spanX, spanY };
  }

  function buildGrid() {
    const { x, y, bounds } = points;
    const n = x.length;
    const side = Math.max(1, Math.ceil(Math.sqrt(n / 4)));
    const cellOf = (i) => {
      const gx = Math.min(side - 1, Math.floor(((x[i] - bounds.minX) / bounds.spanX) * side));
      const gy = Math.min(side - 1, Math.floor(((y[i] - bounds.minY) / bounds.spanY) * side));
      return gy * side + gx;
    };
    const start = new Int32Array(side * side + 1);
    for (let i = 0; i < n; i++) start[cellOf(i) + 1]++;
    for (let c = 0; c < side * side; c++) start[c + 1] += start[c];
    const fill = start.slice(0, side * side);
    const items = new Int32Array(n);
    for (let i = 0; i < n; i++) items[fill[cellOf(i)]++] = i;
    points.grid = { side, start, items };
  }

  function draw() {
    pending = false;
    const began = performance.now();
    const { x, y, cls, order } = points;
    const w = canvas.width, h = canvas.height;
    context.fillStyle = BACKGROUND;
    context.fillRect(0, 0, w, h);
    const base = order.length < 2000 ? 6 : order.length < 50000 ? 3 : 2;  // small collections: larger dots
    const size = Math.max(1, Math.round(base * ratio()));
    const half = size / 2;
    let current = -2, drawn = 0;
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      const sx = x[i] * view.scale + view.dx, sy = y[i] * view.scale + view.dy;
      if (sx < -size || sy < -size || sx > w + size || sy > h + size) continue;
      if (cls[i] !== current) {
        current = cls[i];
        context.fillStyle = colour(current);
      }
      context.fillRect(sx - half, sy - half, size, size);
      drawn++;
    }
    context.lineWidth = Math.max(1, ratio());
    for (const [n, i] of rings.entries()) {
      context.strokeStyle = n === 0 ? "#000" : "#444";
      context.beginPath();
      context.arc(x[i] * view.scale + view.dx, y[i] * view.scale + view.dy, (n === 0 ? 7 : 4) * ratio(), 0, 7);
      context.stroke();
    }
    document.body.dataset.drawn = String(drawn);
    document.body.dataset.drawMs = (performance.now() - began).toFixed(1);
  }

  function redraw() {
    if (!pending && points) {
      pending = true;
      requestAnimationFrame(draw);
    }
  }

  function nearest(clientX, clientY) {
    const rect = canvas.getBoundingClientRect();
    const r = ratio();
    const px = (clientX - rect.left) * r, py = (clientY - rect.top) * r;
    const { x, y, bounds, grid } = points;
    const reach = HOVER_PX * r;
    const toCell = (v, min, span) => Math.floor(((v - min) / span) * grid.side);
    const dataX = (px - view.dx) / view.scale, dataY = (py - view.dy) / view.scale, dataReach = reach / view.scale;
    const x0 = Math.max(0, toCell(dataX - dataReach, bounds.minX, bounds.spanX));
    const x1 = Math.min(grid.side - 1, toCell(dataX + dataReach, bounds.minX, bounds.spanX));
    const y0 = Math.max(0, toCell(dataY - dataReach, bounds.minY, bounds.spanY));
    const y1 = Math.min(grid.side - 1, toCell(dataY + dataReach, bounds.minY, bounds.spanY));
    let best = -1, bestDistance = reach * reach;
    for (let gy = y0; gy <= y1; gy++) {
      for (let gx = x0; gx <= x1; gx++) {
        const cell = gy * grid.side + gx;
        for (let k = grid.start[cell]; k < grid.start[cell + 1]; k++) {
          const i = grid.items[k];
          const ex = x[i] * view.scale + view.dx - px, ey = y[i] * view.scale + view.dy - py;
          const d = ex * ex + ey * ey;
          if (d <= bestDistance) {
            bestDistance = d;
            best = i;
          }
        }
      }
    }
    return best;
  }

  function showThumb(i, event) {
    if (i < 0) {
      thumb.hidden = true;
      delete thumb.dataset.id;
      return;
    }
    const id = points.ids[i];
    if (thumb.dataset.id !== id) {
      thumb.dataset.id = id;
      thumb.src = `/api/rows/${encodeURIComponent(id)}/thumbnail`;
      thumb.alt = points.classes[points.cls[i]] || "image";
    }
    thumb.style.left = `${Math.min(event.clientX + 16, window.innerWidth - 170)}px`;
    thumb.style.top = `${Math.min(event.clientY + 16, window.innerHeight - 170)}px`;
    thumb.hidden = false;
  }

  async function showNeighbours(i) {
    const id = points.ids[i];
    aside.hidden = false;
    aside.textContent = "Searching…";
    const response = await fetch(`/api/search/${encodeURIComponent(id)}?k=10`);
    const answer = await response.json().catch(() => ({}));
    aside.textContent = "";
    const title = document.createElement("h2");
    if (!response.ok) {
      title.textContent = answer.detail || `The search failed (${response.status})`;
      aside.append(title);
      return;
    }
    title.textContent = `Nearest to ${answer.query.name}`;
    aside.append(title);
    for (const result of answer.results) {
      const figure = document.createElement("figure");
      figure.className = "neighbour";
      figure.dataset.id = result.id;
      const img = document.createElement("img");
      img.src = result.thumbnail;
      img.alt = result.name;
      const caption = document.createElement("figcaption");
      caption.textContent = `#${result.rank} ${result.name} (${result.distance.toFixed(3)})`;
      figure.append(img, caption);
      aside.append(figure);
    }
    rings = [i, ...answer.results.map((r) => points.index.get(r.id)).filter((n) => n !== undefined && n !== i)];
    document.body.dataset.neighbours = String(answer.results.length);
    redraw();
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!points) return;
    if (drag) {
      const r = ratio();
      const mx = event.clientX - drag.x, my = event.clientY - drag.y;
      if (Math.abs(mx) + Math.abs(my) > 2) drag.moved = true;
      if (drag.moved) {
        canvas.classList.add("dragging");
        view.dx += mx * r;
        view.dy += my * r;
        drag.x = event.clientX;
        drag.y = event.clientY;
        thumb.hidden = true;
        redraw();
        return;
      }
    }
    showThumb(nearest(event.clientX, event.clientY), event);
  });
  canvas.addEventListener("pointerup", (event) => {
    const clicked = drag && !drag.moved;
    drag = null;
    canvas.classList.remove("dragging");
    if (clicked && points) {
      const i = nearest(event.clientX, event.clientY);
      if (i >= 0) showNeighbours(i);
    }
  });
  canvas.addEventListener("pointerleave", () => { thumb.hidden = true; });
  canvas.addEventListener("wheel", (event) => {
    if (!points) return;
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const r = ratio();
    const px = (event.clientX - rect.left) * r, py = (event.clientY - rect.top) * r;
    const factor = Math.exp(-event.deltaY * 0.0015);
    view.dx = px - (px - view.dx) * factor;
    view.dy = py - (py - view.dy) * factor;
    view.scale *= factor;
    redraw();
  }, { passive: false });
  window.addEventListener("resize", () => { resize(); redraw(); });

  function legend(classes, counts) {
    const list = document.getElementById("legend");
    classes.forEach((name, c) => {
      const item = document.createElement("li");
      item.style.setProperty("--colour", colour(c));
      item.textContent = `${name} (${counts[c]})`;
      list.append(item);
    });
  }

  async function load() {
    const response = await fetch("/api/map");
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      status.textContent = data.detail || `The map could not be loaded (${response.status}).`;
      document.body.dataset.drawn = "0";
      return;
    }
    const n = data.ids.length;
    const cls = Int32Array.from(data.class);
    const order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => cls[a] - cls[b]);
    points = { ids: data.ids, x: Float32Array.from(data.x), y: Float32Array.from(data.y), cls, order,
      classes: data.classes, index: new Map(data.ids.map((id, i) => [id, i])) };
    const counts = new Array(data.classes.length).fill(0);
    for (let i = 0; i < n; i++) if (cls[i] >= 0) counts[cls[i]]++;
    legend(data.classes, counts);
    status.textContent = `${n} images, laid out by ${data.method.toUpperCase()} (fitted on ${data.fitted_on}, ` +
      `${data.created}). Drag to pan, wheel to zoom, hover for the image, click for its neighbours.`;
    resize();
    fit();
    buildGrid();
    draw();
  }

  // Where point i is on the page, in CSS pixels (for tests and scripts).
  window.mapView = {
    screenOf(i) {
      const rect = canvas.getBoundingClientRect(), r = ratio();
      const sx = points.x[i] * view.scale + view.dx, sy = points.y[i] * view.scale + view.dy;
      return [rect.left + sx / r, rect.top + sy / r];
    },
  };
  load();
})();
"""
