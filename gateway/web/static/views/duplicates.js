// Duplicates: copies and similar-shot groups with their suggested keeper.

import { view, api, apiWait, toast, h, thumb, busy, failure } from "../core.js";

export function renderDuplicates(params) {
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
