// The Map view (web.map_view): every stored image as a dot on a canvas; pan, zoom, hover, click.
// Plain JavaScript, no build step, nothing fetched from outside this server.
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
  // "#rrggbb" as one opaque RGBA pixel of a Uint32Array over ImageData (little-endian: R in the low byte)
  const packed = (hex) => {
    const v = parseInt(hex.slice(1), 16);
    return (0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | (v >> 16)) >>> 0;
  };
  const PACKED = [NO_CLASS, ...PALETTE].map(packed);
  const PACKED_BACKGROUND = packed(BACKGROUND);
  let pixels = null; // the canvas' ImageData, reused while its size holds
  let points = null; // {ids, x, y, cls, order, index: Map id -> i, grid}
  const view = { scale: 1, dx: 0, dy: 0 }; // screen pixel = data * scale + d (device pixels)
  let rings = []; // indexes ringed after a click
  let pending = false;
  const HIGHLIGHTS = { duplicates: "copies", leaks: "leaks across splits", label_errors: "label errors",
    outliers: "outliers", quality: "bad images" };
  const lists = {}; // list name -> indexes of its points
  let marked = null; // indexes of the points of the lists switched on, or null: none switched on

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
    const base = order.length < 2000 ? 6 : order.length < 50000 ? 3 : 2;  // small collections: larger dots
    const size = Math.max(1, Math.round(base * ratio()));
    const half = size / 2;
    // The dots are written straight into the canvas' pixels (one Uint32 a pixel): 100,000 of them take
    // a few milliseconds, where a fillRect each took 40 ms.
    if (!pixels || pixels.width !== w || pixels.height !== h) pixels = context.createImageData(w, h);
    const buffer = new Uint32Array(pixels.data.buffer);
    buffer.fill(PACKED_BACKGROUND);
    let drawn = 0;
    for (let k = 0; k < order.length; k++) {
      const i = order[k];
      const left = Math.round(x[i] * view.scale + view.dx - half), top = Math.round(y[i] * view.scale + view.dy - half);
      if (left + size <= 0 || top + size <= 0 || left >= w || top >= h) continue;
      const value = PACKED[cls[i] < 0 ? 0 : 1 + (cls[i] % PALETTE.length)];
      const x1 = Math.min(left + size, w), y1 = Math.min(top + size, h);
      for (let row = Math.max(top, 0); row < y1; row++) {
        const offset = row * w;
        for (let column = Math.max(left, 0); column < x1; column++) buffer[offset + column] = value;
      }
      drawn++;
    }
    context.putImageData(pixels, 0, 0);
    let highlighted = 0;
    if (marked) {  // the rest fade; the marked points are drawn again, larger and outlined, on top
      context.fillStyle = "rgba(255, 255, 255, 0.7)";
      context.fillRect(0, 0, w, h);
      const big = size + 2 * Math.max(1, Math.round(ratio()));
      context.strokeStyle = "#000";
      context.lineWidth = Math.max(1, ratio());
      for (const i of marked) {
        const sx = x[i] * view.scale + view.dx, sy = y[i] * view.scale + view.dy;
        if (sx < -big || sy < -big || sx > w + big || sy > h + big) continue;
        context.fillStyle = colour(cls[i]);
        context.fillRect(sx - big / 2, sy - big / 2, big, big);
        context.strokeRect(sx - big / 2, sy - big / 2, big, big);
        highlighted++;
      }
    }
    context.lineWidth = Math.max(1, ratio());
    for (const [n, i] of rings.entries()) {
      context.strokeStyle = n === 0 ? "#000" : "#444";
      context.beginPath();
      context.arc(x[i] * view.scale + view.dx, y[i] * view.scale + view.dy, (n === 0 ? 7 : 4) * ratio(), 0, 7);
      context.stroke();
    }
    document.body.dataset.drawn = String(drawn);
    document.body.dataset.highlighted = String(highlighted);
    document.body.dataset.drawMs = (performance.now() - began).toFixed(1);
    document.body.dataset.paintedAt = performance.now().toFixed(0); // ms since the page was asked for
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

  function mark() {
    const on = [...document.querySelectorAll("#highlights input:checked")].map((input) => input.value);
    const chosen = new Uint8Array(points.ids.length);
    for (const name of on) for (const i of lists[name]) chosen[i] = 1;
    const indexes = [];
    for (let i = 0; i < chosen.length; i++) if (chosen[i]) indexes.push(i);
    marked = on.length ? Int32Array.from(indexes) : null;
    redraw();
  }

  // Toggles for the saved duplicate groups and audit lists; a list not saved is shown greyed, saying why.
  async function loadHighlights() {
    const response = await fetch("/api/map/highlights");
    if (!response.ok) return;
    const data = await response.json();
    const box = document.getElementById("highlights");
    for (const [name, label] of Object.entries(HIGHLIGHTS)) {
      const ids = data.lists[name];
      const item = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = name;
      input.id = `highlight-${name}`;
      if (ids === undefined) {
        input.disabled = true;
        item.title = data.missing[name === "duplicates" ? "duplicates" : "audit"] || "not saved";
        item.append(input, ` ${label} (not saved)`);
      } else {
        lists[name] = Int32Array.from(ids.map((id) => points.index.get(id)).filter((i) => i !== undefined));
        item.append(input, ` ${label} (${lists[name].length})`);
      }
      input.addEventListener("change", mark);
      box.append(item);
    }
    box.hidden = false;
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
    await loadHighlights();
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
