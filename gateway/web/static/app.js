// The ambience page: one script, no build step, no third-party code. It only calls the gateway's
// own routes (the same ones a gallery uses) and renders what they answer.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const view = $("#view");
const FAVOURITES_KEY = "ambience.favourites";
const MOMENTS_PAGE = 300; // moment cards rendered per "Show more"
const SEARCH_SERVICES = [
  ["global_features_res", "visual (global features)", "global_features"],
  ["image_text_res", "CLIP", "image_text"],
  ["local_features_res", "local features", "local_features"],
  ["phash_res", "perceptual hash", "phash"],
  ["color_res", "colour", "color"],
];
const SIMILAR_ROUTES = [
  ["global_features", "global_features_get_similar_images_by_id", "Visual"],
  ["image_text", "image_text_features_get_similar_images_by_id", "CLIP"],
  ["color", "color_get_similar_images_by_id", "Colour"],
  ["local_features", "local_features_get_similar_images_by_id", "Local features"],
];

// ---- talking to the gateway ---------------------------------------------------------------

class HttpError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, { method = "GET", json, form, signal } = {}) {
  // The header marks requests made by this page: with the API key held in a SameSite cookie, the
  // gateway accepts a write only when it carries it (a cross-site form cannot set headers).
  const init = { method, headers: { "X-Ambience-Page": "1" }, credentials: "same-origin", signal };
  if (json !== undefined) {
    init.method = method === "GET" ? "POST" : method;
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.method = "POST";
    init.body = form;
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    location.href = "/ui/login";
    throw new HttpError(401, "sign in first");
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!res.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : text;
    throw new HttpError(res.status, detail || res.statusText);
  }
  return { status: res.status, body, headers: res.headers };
}

// Explore routes answer 202 with progress while a computation runs: poll until the result is in.
async function apiWait(path, options, onProgress) {
  for (let attempt = 0; attempt < 600; attempt++) {
    const reply = await api(path, options);
    if (reply.status !== 202) return reply.body;
    onProgress?.(reply.body);
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`${path} did not finish`);
}

function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const thumbUrl = (id) => `/thumbnails/${id}`;
const PLACEHOLDER = "data:image/svg+xml," + encodeURIComponent(
  "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 10 10'><rect width='10' height='10' fill='#e9e7e1'/>" +
  "<path d='M2 7l2-2.5 1.5 1.7L7 4l1.5 3z' fill='#c9c5bb'/></svg>");

function img(id, alt) {
  return h("img", {
    src: thumbUrl(id), alt: alt || `image ${id}`, loading: "lazy", decoding: "async",
    onerror: (e) => { e.target.onerror = null; e.target.src = PLACEHOLDER; },
  });
}

function thumb(id, { caption, badge, keeper, href } = {}) {
  return h("a", { class: "thumb" + (keeper ? " keeper" : ""), href: href || `#/image/${id}`, "data-image-id": id },
    img(id), badge ? h("span", { class: "badge" }, badge) : null,
    h("span", { class: "cap" }, caption ?? `#${id}`));
}

function fmtDistance(hit) {
  if (hit.matches !== undefined) return `${hit.matches} inliers`;
  if (hit.score !== undefined) return `score ${Number(hit.score).toFixed(3)}`;
  if (hit.distance === undefined || hit.distance === null) return "";
  const d = Number(hit.distance);
  return `distance ${Number.isInteger(d) ? d : d.toFixed(3)}`;
}

function hitList(hits) {
  if (!hits || !hits.length) return h("p", { class: "muted" }, "nothing");
  return h("ol", { class: "hits" }, hits.map((hit) => h("li", {},
    h("a", { href: `#/image/${hit.image_id}`, "data-image-id": hit.image_id }, img(hit.image_id),
      h("span", {}, `#${hit.image_id}`, h("br"), h("span", { class: "dist" }, fmtDistance(hit)))))));
}

// The services this gateway uses, from /health (fetched once per page load): views leave out what
// is not there instead of showing an error for it.
let servicesPromise = null;
function services() {
  servicesPromise ??= api("/health").then(({ body }) => body.services || {}).catch(() => ({}));
  return servicesPromise;
}
const running = (all, name) => all[name] && all[name].status === "up";

function busy(text = "working…") { return h("p", { class: "spinner", role: "status" }, text); }
function failure(err) { return h("p", { class: "error", role: "alert" }, err.detail || err.message || String(err)); }

// ---- search --------------------------------------------------------------------------------

// What the gateway takes: pictures, phone and camera formats a browser may not type (HEIC, RAW), videos.
const MEDIA_ACCEPT = "image/*,video/*,.heic,.heif,.avif,.dng,.cr2,.cr3,.nef,.arw,.orf,.raf,.rw2,.pef,.srw,.mp4,.mov,.m4v,.mkv,.webm,.avi";
const MEDIA_NAME = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|hif|avif|dng|cr2|cr3|nef|arw|orf|raf|rw2|pef|srw|mp4|mov|m4v|3gp|mkv|webm|avi)$/i;

function renderSearch() {
  const results = h("section", { id: "search-results" });
  const ocr = h("input", { type: "checkbox", id: "ocr-toggle" });
  const text = h("input", { type: "search", id: "text-query", class: "grow", placeholder: "Describe a picture, e.g. a lake at dusk", "aria-label": "Text search" });
  const dupMode = h("input", { type: "checkbox", id: "dup-toggle" });
  const fileInput = h("input", { type: "file", accept: MEDIA_ACCEPT, id: "query-file", hidden: true });
  const drop = h("div", { class: "drop", id: "drop-zone", tabindex: "0", role: "button",
    "aria-label": "Drop or choose an image to search with" }, "Drop a picture or video here, or press to choose one");

  async function textSearch(ev) {
    ev.preventDefault();
    const q = text.value.trim();
    if (!q) return;
    results.replaceChildren(busy());
    try {
      const hits = ocr.checked
        ? (await api("/ocr_search_by_text", { json: { text: q, k: 40 } })).body
        : (await api("/image_text_features_get_similar_images_by_text", { json: { text: q, k: 40 } })).body;
      results.replaceChildren(h("h2", {}, ocr.checked ? `Pictures whose text matches “${q}”` : `Pictures matching “${q}”`),
        hits.length ? h("div", { class: "grid" }, hits.map((hit) => thumb(hit.image_id, { caption: ocr.checked ? hit.text : fmtDistance(hit) })))
          : h("p", { class: "muted" }, "No picture matches."));
    } catch (err) { results.replaceChildren(failure(err)); }
  }

  async function imageSearch(file) {
    if (!file) return;
    results.replaceChildren(busy(`searching with ${file.name}…`));
    const form = new FormData();
    form.append("image", file);
    form.append("find_duplicate", dupMode.checked ? "1" : "0");
    try {
      const { body, headers } = await api("/reverse_search", { form });
      const failed = headers.get("X-Ambience-Failed");
      const preview = h("img", { class: "query", alt: "query", src: URL.createObjectURL(file), style: "max-width:160px;border-radius:8px" });
      if (dupMode.checked) {
        const dups = body.duplicate || [];
        results.replaceChildren(h("h2", {}, dups.length ? `${dups.length} duplicate(s)` : "No duplicate"), preview,
          h("div", { class: "grid" }, dups.map((hit) => thumb(hit.image_id, { caption: fmtDistance(hit) }))));
        return;
      }
      const all = await services();
      const columns = h("div", { class: "columns" },
        h("div", { class: "column", id: "col-unified_res" }, h("h2", {}, "Fused"), hitList(body.unified_res)),
        SEARCH_SERVICES.filter(([key, , service]) => key in body && running(all, service)).map(([key, label]) =>
          h("div", { class: "column", id: `col-${key}` }, h("h2", {}, label), hitList(body[key]))));
      results.replaceChildren(h("div", { class: "row" }, preview,
        failed ? h("p", { class: "muted" }, `Not answering: ${failed}`) : null), columns);
    } catch (err) { results.replaceChildren(failure(err)); }
  }

  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); imageSearch(e.dataTransfer.files[0]); });
  fileInput.addEventListener("change", () => imageSearch(fileInput.files[0]));

  services().then((all) => {
    if (!running(all, "image_text")) {
      if (running(all, "ocr")) { ocr.checked = true; ocr.disabled = true; }
      else { text.disabled = true; text.placeholder = "Text search needs the image_text or ocr service"; }
    }
    if (!running(all, "ocr")) ocr.disabled = true;
  });
  view.replaceChildren(
    h("h1", {}, "Search"),
    h("form", { class: "row", onsubmit: textSearch, id: "text-form" }, text,
      h("label", {}, ocr, " text in pictures (OCR)"), h("button", { type: "submit" }, "Search")),
    h("div", { class: "row" }, h("label", {}, dupMode, " find duplicates only")),
    drop, fileInput, results);
}

// ---- moments (culling) ---------------------------------------------------------------------

// What the gateway recorded per image at add time (file name, size, EXIF capture time and place).
async function imageInfo(ids) {
  return (await api("/image_info", { json: { image_ids: ids } })).body;
}

function favourites() { return new Set(JSON.parse(localStorage.getItem(FAVOURITES_KEY) || "[]")); }
function setFavourite(id, on) {
  const favs = favourites();
  if (on) favs.add(id); else favs.delete(id);
  localStorage.setItem(FAVOURITES_KEY, JSON.stringify([...favs]));
}

function favButton(id) {
  const on = favourites().has(id);
  return h("button", { class: "fav", type: "button", "aria-pressed": on ? "true" : "false",
    "aria-label": `favourite image ${id}`, title: "favourite",
    onclick: (e) => { e.preventDefault(); e.stopPropagation(); const b = e.currentTarget;
      const next = b.getAttribute("aria-pressed") !== "true"; setFavourite(id, next); b.setAttribute("aria-pressed", String(next)); } }, "★");
}

async function exportFavourites() {
  const ids = [...favourites()].sort((a, b) => a - b);
  const rows = [["image_id", "file_name"]];
  const info = ids.length ? await imageInfo(ids).catch(() => ({})) : {};
  for (const id of ids) rows.push([id, (info[id] && info[id].file_name) || ""]);
  const csv = rows.map((r) => r.map((v) => `"${String(v).replaceAll('"', '""')}"`).join(",")).join("\n") + "\n";
  const a = h("a", { href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })), download: "ambience-favourites.csv" });
  document.body.append(a); a.click(); a.remove();
}

function renderMoments(params) {
  const granularity = Number(params.get("g") ?? 0.3);
  const pageSize = Math.max(1, Math.floor(Number(params.get("per"))) || MOMENTS_PAGE); // cards per page
  const slider = h("input", { type: "range", id: "granularity", min: "0.02", max: "1", step: "0.02",
    value: String(granularity), "aria-label": "Granularity: moments per photo" });
  const label = h("output", { for: "granularity", id: "granularity-value" }, granularity.toFixed(2));
  const method = h("select", { id: "moments-method", "aria-label": "Clustering method" },
    h("option", { value: "kmeans" }, "k-means"), h("option", { value: "density" }, "density"));
  method.value = params.get("method") || "kmeans";
  const out = h("section", { id: "moments" });
  const members = h("section", { id: "moment-members" });
  let seq = 0;

  async function load() {
    const mine = ++seq;
    out.replaceChildren(busy("clustering…"));
    members.replaceChildren();
    try {
      const moments = await apiWait("/moments", { json: { granularity: Number(slider.value), method: method.value } },
        (p) => { if (mine === seq) out.replaceChildren(busy(`clustering… ${Math.round(100 * (p.progress || 0))}%`)); });
      if (mine !== seq) return;
      const list = Array.isArray(moments) ? moments : moments.moments || [];
      if (!list.length) { out.replaceChildren(h("p", { class: "muted" }, "No photos yet: add some first.")); return; }
      const card = (m) => {
        const c = thumb(m.representative, { badge: `${m.size}`, caption: m.moment === -1 || m.noise ? "unclustered" : `moment ${m.moment}`, href: "#" });
        c.classList.add("moment");
        c.append(favButton(m.representative));
        c.addEventListener("click", (e) => { e.preventDefault(); showMembers(m); });
        return c;
      };
      // Cards are added a page at a time: 100,000 photos at granularity 0.3 are 30,000 moments,
      // more cards than a browser lays out quickly or a person scrolls through.
      const grid = h("div", { class: "grid", id: "moment-grid" });
      const more = h("button", { type: "button", class: "secondary", id: "moments-more" });
      let shown = 0;
      const showPage = () => {
        const next = list.slice(shown, shown + pageSize);
        grid.append(...next.map(card));
        shown += next.length;
        more.hidden = shown >= list.length;
        more.textContent = `Show more (${list.length - shown} left)`;
      };
      more.addEventListener("click", () => {
        const first = shown;
        showPage();
        grid.children[first]?.focus(); // keyboard users continue where the new cards start
      });
      showPage();
      out.replaceChildren(h("p", { class: "muted", id: "moment-count" }, `${list.length} moments`), grid, more);
    } catch (err) { if (mine === seq) out.replaceChildren(failure(err)); }
  }

  async function showMembers(m) {
    members.replaceChildren(h("h2", {}, `Moment ${m.moment}: ${m.size} photos`),
      h("div", { class: "grid small" }, m.members.map((id) => { const t = thumb(id); t.append(favButton(id)); return t; })),
      h("h2", {}, "Nearest to its representative"), busy());
    members.scrollIntoView({ behavior: "smooth" });
    try {
      const hits = await similarById("global_features", "global_features_get_similar_images_by_id", m.representative, 12)
        .catch(() => similarById("image_text", "image_text_features_get_similar_images_by_id", m.representative, 12));
      members.lastChild.replaceWith(h("div", { class: "grid small" }, hits.map((hit) => { const t = thumb(hit.image_id, { caption: fmtDistance(hit) }); t.append(favButton(hit.image_id)); return t; })));
    } catch (err) { members.lastChild.replaceWith(failure(err)); }
  }

  let timer;
  slider.addEventListener("input", () => {
    label.textContent = Number(slider.value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(() => { history.replaceState(null, "", `#/moments?g=${slider.value}&method=${method.value}`); load(); }, 250);
  });
  method.addEventListener("change", load);
  view.replaceChildren(h("h1", {}, "Moments"),
    h("p", { class: "hint" }, "One picture per moment. Move the slider for more or fewer moments, open one to see all its photos, star the keepers and export them."),
    h("div", { class: "row" }, h("label", { for: "granularity" }, "Granularity"), slider, label, method,
      h("button", { type: "button", class: "secondary", id: "export-csv", onclick: exportFavourites }, "Export favourites (CSV)")),
    out, members);
  load();
}

async function similarById(service, route, id, k = 12) {
  const { body } = await api(`/${route}`, { json: { image_id: id, k: k + 1 } });
  return body.filter((hit) => hit.image_id !== id).slice(0, k);
}

// ---- duplicates ----------------------------------------------------------------------------

function renderDuplicates(params) {
  const kind = params.get("kind") || "copies";
  const out = h("section", { id: "groups" });
  const tabs = h("div", { class: "row", role: "tablist" },
    ["copies", "similar"].map((k) => h("a", { class: "button" + (k === kind ? "" : " secondary"), role: "tab",
      "aria-selected": String(k === kind), href: `#/duplicates?kind=${k}` }, k === "copies" ? "Copies" : "Similar shots")));
  view.replaceChildren(h("h1", {}, "Duplicates"),
    h("p", { class: "hint" }, kind === "copies" ? "The same picture more than once (re-encoded, resized, cropped, mirrored). The suggested keeper is outlined." : "Near shots and bursts. The suggested keeper is outlined."),
    tabs, out);
  out.append(busy());
  apiWait("/duplicate_groups", { json: { kind } }).then((reply) => {
    const groups = Array.isArray(reply) ? reply : reply.groups || [];
    if (!groups.length) { out.replaceChildren(h("p", { class: "muted" }, "No groups.")); return; }
    out.replaceChildren(h("p", { class: "muted", id: "group-count" }, `${groups.length} groups`),
      ...groups.map((g, i) => {
        const memberIds = (g.members || []).map((m) => (typeof m === "object" ? m.image_id : m));
        const others = memberIds.filter((id) => id !== g.keeper);
        const distance = Object.fromEntries((g.members || []).filter((m) => typeof m === "object").map((m) => [m.image_id, m.distance]));
        const del = h("button", { class: "danger", type: "button", disabled: !others.length }, `Delete ${others.length} other(s)`);
        del.addEventListener("click", async () => {
          if (!confirm(`Delete ${others.length} image(s) from every service, keeping #${g.keeper}?`)) return;
          del.disabled = true;
          for (const id of others) {
            try { await api("/delete_all_image_features", { json: { image_id: id } }); } catch (err) { toast(`#${id}: ${err.detail || err}`); }
          }
          toast(`Deleted ${others.length} image(s).`);
          box.remove();
        });
        const box = h("section", { class: "group", "data-keeper": g.keeper },
          h("header", {}, h("strong", {}, `Group ${i + 1}: ${memberIds.length} pictures`), del),
          h("div", { class: "grid small" }, memberIds.map((id) => thumb(id, {
            keeper: id === g.keeper, badge: id === g.keeper ? "keep" : null,
            caption: id === g.keeper ? `#${id} keeper` : `#${id} · ${distance[id] !== undefined ? Number(distance[id]).toFixed(2) : ""}` }))));
        return box;
      }));
  }).catch((err) => out.replaceChildren(failure(err)));
}

// ---- map -----------------------------------------------------------------------------------

const THUMBS_ON_MAP = 150;
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function renderMap() {
  const canvas = h("canvas", { id: "map-canvas", "aria-label": "Map of the collection: each point is a photo; drag to pan, scroll to zoom", tabindex: "0" });
  const tip = h("div", { id: "map-tip", hidden: true });
  const status = h("p", { class: "muted", id: "map-status" }, "loading…");
  view.replaceChildren(h("h1", {}, "Map"),
    h("p", { class: "hint" }, "Similar photos lie close together; colours are moments. Drag to pan, scroll or +/- to zoom, click a point to open it."),
    status, h("div", { id: "map-wrap" }, canvas, tip));
  const ctx = canvas.getContext("2d");
  let points = [], xs, ys, colours, zoom = 1, panX = 0, panY = 0, grid = null, dpr = 1;
  let bounds = { minX: 0, maxX: 1, minY: 0, maxY: 1 };

  function resize() {
    dpr = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * dpr;
    canvas.height = canvas.clientHeight * dpr;
    draw();
  }
  const toScreen = (i) => {
    const w = canvas.width, hgt = canvas.height, pad = 20 * dpr;
    const sx = pad + ((xs[i] - bounds.minX) / (bounds.maxX - bounds.minX || 1)) * (w - 2 * pad);
    const sy = pad + ((ys[i] - bounds.minY) / (bounds.maxY - bounds.minY || 1)) * (hgt - 2 * pad);
    return [(sx - w / 2) * zoom + w / 2 + panX * dpr, (sy - hgt / 2) * zoom + hgt / 2 + panY * dpr];
  };
  function draw() {
    if (!xs) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    // Bigger dots for small collections (about 6 px at 100 images, 1.5 px at 100,000), growing with zoom.
    const r = Math.max(1.5, Math.min(10, (60 / Math.sqrt(xs.length)) * Math.sqrt(zoom))) * dpr;
    const shown = [];
    // Points grouped by colour: one fillStyle change per moment keeps 100,000 points fast.
    const byColour = new Map();
    grid = new Map();
    const cell = 12 * dpr;
    for (let i = 0; i < xs.length; i++) {
      const [x, y] = toScreen(i);
      if (x < -r || y < -r || x > canvas.width + r || y > canvas.height + r) continue;
      shown.push(i);
      const c = colours[i];
      if (!byColour.has(c)) byColour.set(c, []);
      byColour.get(c).push(x, y);
      const key = `${Math.floor(x / cell)},${Math.floor(y / cell)}`;
      if (!grid.has(key)) grid.set(key, []);
      grid.get(key).push(i);
    }
    for (const [c, coords] of byColour) {
      ctx.fillStyle = c;
      ctx.beginPath();
      for (let j = 0; j < coords.length; j += 2) { ctx.moveTo(coords[j] + r, coords[j + 1]); ctx.arc(coords[j], coords[j + 1], r, 0, 2 * Math.PI); }
      ctx.fill();
    }
    // Few pictures on screen: draw their previews, framed in their moment's colour.
    if (shown.length <= THUMBS_ON_MAP) for (const i of shown) drawThumb(i);
  }
  const thumbs = new Map();
  function drawThumb(i) {
    const id = points[i].image_id;
    let im = thumbs.get(id);
    if (!im) {
      im = new Image();
      im.onload = () => { if (!dragging) draw(); };
      im.src = thumbUrl(id);
      thumbs.set(id, im);
    }
    if (!im.complete || !im.naturalWidth) return;
    const [x, y] = toScreen(i), side = 36 * dpr * Math.min(2, Math.sqrt(zoom));
    const scale = side / Math.max(im.naturalWidth, im.naturalHeight);
    const w = im.naturalWidth * scale, hh = im.naturalHeight * scale;
    ctx.fillStyle = colours[i];
    ctx.fillRect(x - w / 2 - 2 * dpr, y - hh / 2 - 2 * dpr, w + 4 * dpr, hh + 4 * dpr);
    ctx.drawImage(im, x - w / 2, y - hh / 2, w, hh);
  }
  function nearest(ev) {
    if (!grid) return -1;
    const rect = canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) * dpr, y = (ev.clientY - rect.top) * dpr, cell = 12 * dpr;
    let best = -1, bestD = (10 * dpr) ** 2;
    for (let gx = -1; gx <= 1; gx++) for (let gy = -1; gy <= 1; gy++) {
      for (const i of grid.get(`${Math.floor(x / cell) + gx},${Math.floor(y / cell) + gy}`) || []) {
        const [px, py] = toScreen(i), d = (px - x) ** 2 + (py - y) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
    }
    return best;
  }
  let dragging = null;
  canvas.addEventListener("pointerdown", (e) => { dragging = { x: e.clientX, y: e.clientY, moved: false }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (dragging) {
      const dx = e.clientX - dragging.x, dy = e.clientY - dragging.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) dragging.moved = true;
      panX += dx; panY += dy; dragging.x = e.clientX; dragging.y = e.clientY;
      tip.hidden = true; draw(); return;
    }
    const i = nearest(e);
    if (i < 0) { tip.hidden = true; return; }
    const id = points[i].image_id;
    if (tip.dataset.id !== String(id)) { tip.replaceChildren(img(id), h("span", {}, `#${id}`)); tip.dataset.id = String(id); }
    const rect = canvas.getBoundingClientRect();
    tip.style.left = `${Math.min(e.clientX - rect.left + 12, rect.width - 140)}px`;
    tip.style.top = `${Math.min(e.clientY - rect.top + 12, rect.height - 150)}px`;
    tip.hidden = false;
  });
  canvas.addEventListener("pointerup", (e) => {
    const click = dragging && !dragging.moved;
    dragging = null;
    if (click) { const i = nearest(e); if (i >= 0) location.hash = `#/image/${points[i].image_id}`; }
  });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.25 : 0.8); }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const step = 40;
    if (e.key === "+" || e.key === "=") zoomBy(1.25);
    else if (e.key === "-") zoomBy(0.8);
    else if (e.key === "ArrowLeft") { panX += step; draw(); }
    else if (e.key === "ArrowRight") { panX -= step; draw(); }
    else if (e.key === "ArrowUp") { panY += step; draw(); }
    else if (e.key === "ArrowDown") { panY -= step; draw(); }
    else return;
    e.preventDefault();
  });
  function zoomBy(f) { zoom = Math.max(0.5, Math.min(200, zoom * f)); panX *= f; panY *= f; draw(); }
  new ResizeObserver(resize).observe(canvas);
  apiWait("/map", {}, (p) => { status.textContent = `laying out… ${Math.round(100 * (p.progress || 0))}%`; }).then((reply) => {
    points = Array.isArray(reply) ? reply : reply.points || [];
    xs = Float64Array.from(points, (p) => p.x);
    ys = Float64Array.from(points, (p) => p.y);
    colours = points.map((p) => (p.moment === null || p.moment === undefined || p.moment < 0 ? "#999" : PALETTE[p.moment % PALETTE.length]));
    // A loop, not Math.min(...xs): spreading 100,000 arguments can overflow the call stack.
    if (points.length) {
      bounds = { minX: Infinity, maxX: -Infinity, minY: Infinity, maxY: -Infinity };
      for (let i = 0; i < xs.length; i++) {
        bounds.minX = Math.min(bounds.minX, xs[i]); bounds.maxX = Math.max(bounds.maxX, xs[i]);
        bounds.minY = Math.min(bounds.minY, ys[i]); bounds.maxY = Math.max(bounds.maxY, ys[i]);
      }
    }
    canvas.dataset.points = String(points.length);
    status.textContent = points.length ? `${points.length} photos` : "No photos yet: add some first.";
    resize();
  }).catch((err) => status.replaceWith(failure(err)));
}

// ---- one image -----------------------------------------------------------------------------

async function imageBlob(id) {
  const res = await fetch(thumbUrl(id), { credentials: "same-origin" });
  if (!res.ok) throw new HttpError(res.status, "no thumbnail kept for this image");
  return res.blob();
}

function renderImage(id) {
  const meta = h("dl", { class: "meta", id: "image-meta" });
  const similar = h("section", { id: "similar" });
  view.replaceChildren(h("h1", {}, `Image #${id}`),
    h("div", { class: "detail" }, h("img", { class: "large", src: thumbUrl(id), alt: `image ${id}`, onerror: (e) => { e.target.onerror = null; e.target.src = PLACEHOLDER; } }), meta),
    similar);
  const row = (k, v) => [h("dt", {}, k), h("dd", { "data-field": k }, v)];
  imageInfo([id]).then((found) => {
    const body = found[id];
    if (!body) { meta.append(...row("catalog", "not recorded (added before the gateway kept details)")); return; }
    meta.append(...row("file", body.file_name || "—"),
      ...row("size", body.width ? `${body.width} × ${body.height} px, ${(body.bytes / 1024).toFixed(0)} KB` : "—"),
      // camera-local time as EXIF has it: shown as written, not converted to this browser's zone
      ...row("taken", body.captured_at ? body.captured_at.replace("T", " ") : "—"));
    if (body.gps_latitude !== null && body.gps_latitude !== undefined) {
      meta.append(...row("place", `${body.gps_latitude.toFixed(5)}, ${body.gps_longitude.toFixed(5)}`));
    }
  }).catch((err) => meta.append(...row("catalog", err.detail || String(err))));
  // Caption and tags are computed from the kept preview: the models look at 224-384 px anyway.
  Promise.all([imageBlob(id), services()]).then(([blob, all]) => {
    const form = () => { const f = new FormData(); f.append("image", blob, `${id}.webp`); return f; };
    const describe = (service, route, field, render) => {
      if (!running(all, service)) return;
      const dd = h("dd", { "data-field": field }, "…");
      meta.append(h("dt", {}, field), dd);
      api(route, { form: form() }).then(({ body }) => { dd.textContent = render(body); })
        .catch((err) => { dd.textContent = err.detail || String(err); });
    };
    describe("captioner", "/get_image_caption", "caption", (body) => body.caption);
    if (running(all, "ocr")) {  // the text recognised at add time, from the full picture
      api("/get_stored_image_text", { json: { image_id: id } }).then(({ body }) => {
        if (body.text) meta.append(h("dt", {}, "text in it"), h("dd", { "data-field": "text in it" }, body.text));
      }).catch(() => {});
    }
    describe("tagger", "/get_image_tags", "tags", (body) =>
      (body.tags || []).slice(0, 5).map((t) => t.name ?? t.label ?? t).join(", ") + (body.environment ? ` · ${body.environment}` : ""));
  }).catch(() => {});
  similar.classList.add("columns");
  services().then((all) => { for (const [service, route, label] of SIMILAR_ROUTES) {
    if (!running(all, service)) continue;
    const box = h("div", { class: "column", id: `similar-${service}` }, h("h2", {}, `Similar by ${label}`), busy());
    similar.append(box);
    similarById(service, route, id, 8).then((hits) => box.lastChild.replaceWith(hitList(hits)))
      .catch((err) => box.lastChild.replaceWith(h("p", { class: "muted" }, err.status === 404 || err.status === 503 ? "service not running" : err.detail || String(err))));
  } });
}

// ---- add photos ----------------------------------------------------------------------------

function renderAdd() {
  const files = h("input", { type: "file", id: "add-files", accept: MEDIA_ACCEPT, multiple: true });
  const folder = h("input", { type: "file", id: "add-folder", webkitdirectory: true, multiple: true });
  const progress = h("progress", { class: "progress", id: "add-progress", max: "1", value: "0" });
  const log = h("p", { class: "muted", id: "add-log" });
  const errors = h("ul", { class: "error", id: "add-errors" });
  async function upload(list) {
    const images = [...list].filter((f) => f.type.startsWith("image/") || f.type.startsWith("video/") || MEDIA_NAME.test(f.name));
    if (!images.length) { log.textContent = "No pictures in that selection."; return; }
    progress.max = images.length; progress.value = 0; errors.replaceChildren();
    let done = 0, failed = 0;
    const { body } = await api("/ui/allocate_ids", { json: { count: images.length } });
    const ids = body.ids;
    let next = 0;
    // Three uploads at a time: enough to keep every service busy without flooding the gateway.
    async function worker() {
      while (next < images.length) {
        const i = next++;
        const form = new FormData();
        form.append("image", images[i], images[i].webkitRelativePath || images[i].name);
        form.append("image_id", String(ids[i]));
        try { await api("/calculate_all_image_features", { form }); done++; }
        catch (err) { failed++; errors.append(h("li", {}, `${images[i].name}: ${err.detail || err}`)); }
        progress.value = done + failed;
        log.textContent = `${done} added, ${failed} refused, of ${images.length}`;
      }
    }
    await Promise.all([worker(), worker(), worker()]);
    log.textContent = `Done: ${done} added, ${failed} refused, of ${images.length}.`;
  }
  files.addEventListener("change", () => upload(files.files));
  folder.addEventListener("change", () => upload(folder.files));
  view.replaceChildren(h("h1", {}, "Add photos"),
    h("p", { class: "hint" }, "Each picture goes to every running service; the gateway retries the ones that are down. JPEG, PNG, WebP, HEIC, AVIF, camera RAW and videos (a video is searched by one representative frame)."),
    h("div", { class: "row" }, h("label", { for: "add-files" }, "Pictures "), files),
    h("div", { class: "row" }, h("label", { for: "add-folder" }, "A whole folder "), folder),
    progress, log, errors);
}

// ---- status --------------------------------------------------------------------------------

function renderStatus() {
  const out = h("section", { id: "status" }, busy());
  view.replaceChildren(h("h1", {}, "Status"), out);
  Promise.all([api("/health"), api("/catalog_stats").catch((e) => ({ body: { error: e.detail } }))]).then(([health, stats]) => {
    const services = health.body.services || {};
    const pending = (stats.body.pending_parts) || {};
    const failedParts = (stats.body.failed_parts || stats.body.rejected_parts) || {};
    out.replaceChildren(
      h("p", {}, "Gateway: ", h("strong", { class: health.body.status === "ok" ? "up" : "down" }, health.body.status)),
      h("table", { class: "status" },
        h("thead", {}, h("tr", {}, h("th", {}, "service"), h("th", {}, "state"), h("th", {}, "images"), h("th", {}, "pending"), h("th", {}, "failed"), h("th", {}, "detail"))),
        h("tbody", {}, Object.entries(services).map(([name, s]) => h("tr", { "data-service": name },
          h("td", {}, name), h("td", { class: s.status }, s.status), h("td", {}, s.count ?? ""),
          h("td", {}, pending[name] ?? 0), h("td", {}, failedParts[name] ?? 0), h("td", {}, s.detail || s.restarts ? `${s.detail || ""}` : ""))))),
      h("p", { class: "muted" }, `Catalog: ${health.body.catalog ? health.body.catalog.status : "?"}; images: ${stats.body.images ?? "?"}`));
  }).catch((err) => out.replaceChildren(failure(err)));
}

// ---- router --------------------------------------------------------------------------------

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query);
  const [name, arg] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.dataset.view === (name || "search"));
  document.querySelectorAll("nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  switch (name) {
    case "moments": renderMoments(params); break;
    case "duplicates": renderDuplicates(params); break;
    case "map": renderMap(); break;
    case "image": renderImage(Number(arg)); break;
    case "add": renderAdd(); break;
    case "status": renderStatus(); break;
    default: renderSearch();
  }
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
