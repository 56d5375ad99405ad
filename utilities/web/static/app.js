// The search page: upload or drop an image, see its neighbours, click one to search by it.
// Plain JavaScript, no build step, nothing fetched from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
let busy = false;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function readJson(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    throw new Error(detail || `the server answered ${response.status} ${response.statusText}`);
  }
  return body;
}

async function loadInfo() {
  try {
    const info = await readJson(await fetch("/api/info"));
    $("info").textContent =
      `Collection ${info.collection}: ${info.count.toLocaleString()} images, ` +
      `index ${info.index_type} (${info.metric}), model ${info.model}, ${info.backend} ${info.uri}`;
  } catch (error) {
    $("info").textContent = "";
    showError(`Cannot read the collection: ${error.message}`);
  }
}

function showQuery(source, caption) {
  $("query").hidden = false;
  $("query-preview").src = source;
  $("query-caption").textContent = caption;
}

function render(data) {
  const grid = $("results");
  grid.replaceChildren();
  for (const hit of data.results) {
    const figure = document.createElement("figure");
    figure.className = "result";
    figure.tabIndex = 0;
    figure.dataset.id = hit.id;
    figure.title = hit.path;
    const image = document.createElement("img");
    image.src = hit.thumbnail;
    image.alt = hit.name;
    image.loading = "lazy";
    const caption = document.createElement("figcaption");
    for (const [cls, text] of [["rank", `#${hit.rank}`], ["distance", `distance ${hit.distance.toFixed(4)}`],
                               ["name", hit.name]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      caption.append(span);
    }
    figure.append(image, caption);
    figure.addEventListener("click", () => searchRow(hit.id, hit.thumbnail, hit.name));
    figure.addEventListener("keydown", (event) => {
      if (event.key === "Enter") searchRow(hit.id, hit.thumbnail, hit.name);
    });
    grid.append(figure);
  }
  $("status").textContent = `${data.results.length} nearest images (${(data.seconds * 1000).toFixed(0)} ms)`;
  document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
}

async function run(request) {
  if (busy) return;
  busy = true;
  showError("");
  $("status").textContent = "Searching…";
  try {
    render(await readJson(await request()));
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  } finally {
    busy = false;
  }
}

function searchFile(file) {
  if (!file) return;
  showQuery(URL.createObjectURL(file), file.name);
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value);
  run(() => fetch("/api/search", { method: "POST", body: form }));
}

function searchRow(id, thumbnail, name) {
  showQuery(thumbnail, name);
  $("query").dataset.id = id;
  run(() => fetch(`/api/search/${encodeURIComponent(id)}?k=${$("k").value}`));
}

function thumbnailFigure(file, className) {
  const figure = document.createElement("figure");
  figure.className = className;
  figure.dataset.id = file.id;
  figure.title = file.path;
  const image = document.createElement("img");
  image.src = file.thumbnail;
  image.alt = file.name;
  image.loading = "lazy";
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = (file.keep ? "keep: " : "") + file.name;
  caption.append(name);
  figure.append(image, caption);
  return figure;
}

async function showDuplicates() {
  showError("");
  $("status").textContent = "Reading the saved duplicate search…";
  try {
    const data = await readJson(await fetch("/api/duplicates"));
    const grid = $("results");
    grid.replaceChildren();
    for (const group of data.groups) {
      const section = document.createElement("section");
      section.className = "group";
      const title = document.createElement("h2");
      title.textContent = `${group.exact ? "Exact copies" : "Copies"}: ${group.files.length} files`;
      section.append(title);
      if (group.keeper_reason) {
        const why = document.createElement("p");
        why.className = "why";
        why.textContent = `kept: ${group.keeper_reason}`;
        section.append(why);
      }
      for (const file of group.files) section.append(thumbnailFigure(file, file.keep ? "result keep" : "result"));
      grid.append(section);
    }
    const shown = data.groups.length < data.total_groups ? ` (the first ${data.groups.length})` : "";
    $("status").textContent =
      `${data.total_groups} groups of copies${shown} among ${data.rows} images; ` +
      `${data.removable} files could be removed, keeping one a group` +
      (data.related ? `; ${data.related} more are related to a kept file but not copies of it` : "") +
      ` (search saved ${data.created}). Nothing is deleted here.`;
    document.body.dataset.duplicates = String(data.total_groups);
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
}

const AUDIT_LISTS = [
  ["leaks", "Copies across splits", (item) => `${item.kind} copy, cosine ${item.cosine.toFixed(3)}` +
    (item.verified === false ? ", not confirmed" : "")],
  ["label_errors", "Perhaps in the wrong class folder", (item) =>
    `filed under ${item.folder}, looks like ${item.suggested} (score ${item.score.toFixed(2)})`],
  ["outliers", "Far from every class", (item) => `score ${item.score.toFixed(3)}`],
  ["quality", "Bad images", (item) => item.issues.join(", ")],
];

async function showAudit() {
  showError("");
  $("status").textContent = "Reading the saved audit…";
  try {
    const data = await readJson(await fetch("/api/audit"));
    const grid = $("results");
    grid.replaceChildren();
    for (const [name, heading, describe] of AUDIT_LISTS) {
      const section = document.createElement("section");
      section.className = "group audit";
      section.dataset.list = name;
      const title = document.createElement("h2");
      const shown = data[name].length < data.counts[name] ? ` (the first ${data[name].length})` : "";
      title.textContent = `${heading}: ${data.counts[name]}${shown}`;
      section.append(title);
      for (const item of data[name]) {
        const entry = document.createElement("div");
        entry.className = "audit-item";
        for (const file of item.files) entry.append(thumbnailFigure(file, "result"));
        const why = document.createElement("p");
        why.className = "why";
        why.textContent = describe(item);
        entry.append(why);
        section.append(entry);
      }
      grid.append(section);
    }
    $("status").textContent = `Audit of ${data.rows} images (${data.created}). Nothing is moved, deleted or ` +
      "relabelled here." + (data.notes.length ? ` ${data.notes.join(" ")}` : "");
    document.body.dataset.audit = Object.values(data.counts).join(",");
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
}

function setUp() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => searchFile(event.target.files[0]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    searchFile(event.dataTransfer.files[0]);
  });
  $("duplicates-button").addEventListener("click", showDuplicates);
  $("audit-button").addEventListener("click", showAudit);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setUp);
