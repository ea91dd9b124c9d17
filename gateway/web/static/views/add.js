// Add photos: many files or a whole folder, three uploads at a time.

import { view, api, h, busy, MEDIA_ACCEPT, MEDIA_NAME } from "../core.js";

export function renderAdd() {
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
