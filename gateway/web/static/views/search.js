// Search: by text (CLIP, or the text in pictures) or by a picture (the fused list beside each service's).

import { view, api, h, img, thumb, fmtDistance, hitList, services, running, busy, failure, MEDIA_ACCEPT } from "../core.js";

const SEARCH_SERVICES = [
  ["global_features_res", "visual (global features)", "global_features"],
  ["image_text_res", "CLIP", "image_text"],
  ["local_features_res", "local features", "local_features"],
  ["phash_res", "perceptual hash", "phash"],
  ["color_res", "colour", "color"],
];

export function renderSearch() {
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
