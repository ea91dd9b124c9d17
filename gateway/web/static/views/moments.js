// Moments: one picture per moment, a granularity slider, favourites kept in the browser.

import { view, apiWait, h, thumb, fmtDistance, busy, failure, imageInfo, similarById, sourcePicker } from "../core.js";

const FAVOURITES_KEY = "ambience.favourites";
const MOMENTS_PAGE = 300; // moment cards rendered per "Show more"

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

export function renderMoments(params) {
  const granularity = Number(params.get("g") ?? 0.3);
  const pageSize = Math.max(1, Math.floor(Number(params.get("per"))) || MOMENTS_PAGE); // cards per page
  const slider = h("input", { type: "range", id: "granularity", min: "0.02", max: "1", step: "0.02",
    value: String(granularity), "aria-label": "Granularity: moments per photo" });
  const label = h("output", { for: "granularity", id: "granularity-value" }, granularity.toFixed(2));
  const method = h("select", { id: "moments-method", "aria-label": "Clustering method" },
    h("option", { value: "kmeans" }, "k-means"), h("option", { value: "density" }, "density"));
  method.value = params.get("method") || "kmeans";
  let source = params.get("source") || ""; // "": the gateway's default
  const picker = sourcePicker("moments-source", source, (chosen) => { source = chosen; remember(); load(); });
  const out = h("section", { id: "moments" });
  const members = h("section", { id: "moment-members" });
  let seq = 0;

  async function load() {
    const mine = ++seq;
    out.replaceChildren(busy("clustering…"));
    members.replaceChildren();
    try {
      const body = { granularity: Number(slider.value), method: method.value, ...(source ? { source } : {}) };
      const moments = await apiWait("/moments", { json: body },
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
      out.replaceChildren(h("p", { class: "muted", id: "moment-count" }, `${list.length} moments`, moments.source ? ` by ${moments.source}` : ""), grid, more);
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

  function remember() { // the choices in the address, so a reload or a shared link shows the same
    const chosen = new URLSearchParams({ g: slider.value, method: method.value, ...(source ? { source } : {}) });
    history.replaceState(null, "", `#/moments?${chosen}`);
  }
  let timer;
  slider.addEventListener("input", () => {
    label.textContent = Number(slider.value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(() => { remember(); load(); }, 250);
  });
  method.addEventListener("change", () => { remember(); load(); });
  view.replaceChildren(h("h1", {}, "Moments"),
    h("p", { class: "hint" }, "One picture per moment. Move the slider for more or fewer moments, open one to see all its photos, star the keepers and export them."),
    h("div", { class: "row" }, h("label", { for: "granularity" }, "Granularity"), slider, label, method, h("span", { class: "labelled" }, h("label", { for: "moments-source" }, "by"), picker),
      h("button", { type: "button", class: "secondary", id: "export-csv", onclick: exportFavourites }, "Export favourites (CSV)")),
    out, members);
  load();
}

