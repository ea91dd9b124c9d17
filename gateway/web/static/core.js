// What every view of the page shares: the gateway's routes (the same ones a gallery uses), element
// building, thumbnails, the services this gateway runs. No build step, no third-party code.

export const $ = (sel, root = document) => root.querySelector(sel);
export const view = $("#view");

// ---- talking to the gateway ---------------------------------------------------------------

export class HttpError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export async function api(path, { method = "GET", json, form, signal } = {}) {
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
export async function apiWait(path, options, onProgress) {
  for (let attempt = 0; attempt < 600; attempt++) {
    const reply = await api(path, options);
    if (reply.status !== 202) return reply.body;
    onProgress?.(reply.body);
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`${path} did not finish`);
}

// The vector service Moments and the Map analyse: the gateway's default, or one the person picks.
// A stack without some model weights may have no default running: its error names the others, and
// this offers them (a service ambience serve could not start is listed, greyed, with its reason).
export function sourcePicker(id, selected, onChange) {
  const select = h("select", { id, "aria-label": "Analysed by (vector service)" },
    h("option", { value: "" }, "default source"));
  api("/analysis_sources").then(({ body }) => {
    select.firstChild.textContent = body.default ? `default (${body.default})` : "default (none running)";
    for (const s of body.sources) {
      select.append(h("option", { value: s.name, disabled: !s.runs, title: s.why || undefined },
        s.runs ? s.name : `${s.name} (not running)`));
    }
    select.value = selected || "";
  }).catch(() => { select.firstChild.textContent = "default source (list unavailable)"; });
  select.addEventListener("change", () => onChange(select.value));
  return select;
}

export function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

export function h(tag, attrs = {}, ...children) {
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

export const thumbUrl = (id) => `/thumbnails/${id}`;
export const PLACEHOLDER = "data:image/svg+xml," + encodeURIComponent(
  "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 10 10'><rect width='10' height='10' fill='#e9e7e1'/>" +
  "<path d='M2 7l2-2.5 1.5 1.7L7 4l1.5 3z' fill='#c9c5bb'/></svg>");

export function img(id, alt) {
  return h("img", {
    src: thumbUrl(id), alt: alt || `image ${id}`, loading: "lazy", decoding: "async",
    onerror: (e) => { e.target.onerror = null; e.target.src = PLACEHOLDER; },
  });
}

export function thumb(id, { caption, badge, keeper, href } = {}) {
  return h("a", { class: "thumb" + (keeper ? " keeper" : ""), href: href || `#/image/${id}`, "data-image-id": id },
    img(id), badge ? h("span", { class: "badge" }, badge) : null,
    h("span", { class: "cap" }, caption ?? `#${id}`));
}

export function fmtDistance(hit) {
  if (hit.matches !== undefined) return `${hit.matches} inliers`;
  if (hit.score !== undefined) return `score ${Number(hit.score).toFixed(3)}`;
  if (hit.distance === undefined || hit.distance === null) return "";
  const d = Number(hit.distance);
  return `distance ${Number.isInteger(d) ? d : d.toFixed(3)}`;
}

export function hitList(hits) {
  if (!hits || !hits.length) return h("p", { class: "muted" }, "nothing");
  return h("ol", { class: "hits" }, hits.map((hit) => h("li", {},
    h("a", { href: `#/image/${hit.image_id}`, "data-image-id": hit.image_id }, img(hit.image_id),
      h("span", {}, `#${hit.image_id}`, h("br"), h("span", { class: "dist" }, fmtDistance(hit)))))));
}

// The services this gateway uses, from /health (fetched once per page load): views leave out what
// is not there instead of showing an error for it.
let servicesPromise = null;
export function services() {
  servicesPromise ??= api("/health").then(({ body }) => body.services || {}).catch(() => ({}));
  return servicesPromise;
}
export const running = (all, name) => all[name] && all[name].status === "up";

export function busy(text = "working…") { return h("p", { class: "spinner", role: "status" }, text); }
export function failure(err) { return h("p", { class: "error", role: "alert" }, err.detail || err.message || String(err)); }

// What the gateway takes: pictures, phone and camera formats a browser may not type (HEIC, RAW), videos.
export const MEDIA_ACCEPT = "image/*,video/*,.heic,.heif,.avif,.dng,.cr2,.cr3,.nef,.arw,.orf,.raf,.rw2,.pef,.srw,.mp4,.mov,.m4v,.mkv,.webm,.avi";
export const MEDIA_NAME = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|hif|avif|dng|cr2|cr3|nef|arw|orf|raf|rw2|pef|srw|mp4|mov|m4v|3gp|mkv|webm|avi)$/i;


// What the gateway recorded per image at add time (file name, size, EXIF capture time and place).
export async function imageInfo(ids) {
  return (await api("/image_info", { json: { image_ids: ids } })).body;
}


export async function similarById(service, route, id, k = 12) {
  const { body } = await api(`/${route}`, { json: { image_id: id, k: k + 1 } });
  return body.filter((hit) => hit.image_id !== id).slice(0, k);
}
