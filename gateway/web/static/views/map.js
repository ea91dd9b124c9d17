// The map: every image as a point on a canvas, coloured by moment.

import { view, apiWait, h, thumbUrl, img, failure, sourcePicker } from "../core.js";

const THUMBS_ON_MAP = 150;
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export function renderMap(params) {
  const source = params.get("source") || ""; // "": the gateway's default
  const picker = sourcePicker("map-source", source,
    (chosen) => { location.hash = chosen ? `#/map?source=${encodeURIComponent(chosen)}` : "#/map"; });
  const canvas = h("canvas", { id: "map-canvas", "aria-label": "Map of the collection: each point is a photo; drag to pan, scroll to zoom", tabindex: "0" });
  const tip = h("div", { id: "map-tip", hidden: true });
  const status = h("p", { class: "muted", id: "map-status" }, "loading…");
  view.replaceChildren(h("h1", {}, "Map"),
    h("p", { class: "hint" }, "Similar photos lie close together; colours are moments. Drag to pan, scroll or +/- to zoom, click a point to open it."),
    h("div", { class: "row" }, h("span", { class: "labelled" }, h("label", { for: "map-source" }, "Laid out by"), picker), status), h("div", { id: "map-wrap" }, canvas, tip));
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
  apiWait(source ? `/map?source=${encodeURIComponent(source)}` : "/map", {}, (p) => { status.textContent = `laying out… ${Math.round(100 * (p.progress || 0))}%`; }).then((reply) => {
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
    status.textContent = points.length ? `${points.length} photos, by ${reply.source}` : "No photos yet: add some first.";
    resize();
  }).catch((err) => status.replaceWith(failure(err)));
}
