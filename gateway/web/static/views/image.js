// One image: its preview, facts, caption, tags and similar pictures by each service.

import { view, api, h, thumbUrl, PLACEHOLDER, img, hitList, services, running, busy, imageInfo, similarById, HttpError } from "../core.js";
import { faceBoxes } from "./people.js";

const SIMILAR_ROUTES = [
  ["global_features", "global_features_get_similar_images_by_id", "Visual"],
  ["image_text", "image_text_features_get_similar_images_by_id", "CLIP"],
  ["color", "color_get_similar_images_by_id", "Colour"],
  ["local_features", "local_features_get_similar_images_by_id", "Local features"],
];

async function imageBlob(id) {
  const res = await fetch(thumbUrl(id), { credentials: "same-origin" });
  if (!res.ok) throw new HttpError(res.status, "no thumbnail kept for this image");
  return res.blob();
}

export function renderImage(id) {
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
    faceBoxes(view.querySelector("img.large"), body);  // the people in it, when faces are kept
    if (body.gps_latitude !== null && body.gps_latitude !== undefined) {
      const where = `${body.gps_latitude.toFixed(5)}, ${body.gps_longitude.toFixed(5)}`;
      const place = body.place;  // geocoded offline by the gateway (GeoNames)
      meta.append(...row("place", place && place.name
        ? [h("a", { href: `#/library?${new URLSearchParams(Object.entries({ country: place.country_code, city: place.city }).filter(([, v]) => v))}` }, place.name), h("span", { class: "muted" }, ` (${where})`)]
        : where));
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
