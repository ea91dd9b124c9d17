// Status: each service's state, its images, pending and failed parts; the catalog.

import { view, api, h, busy, failure } from "../core.js";

export function renderStatus() {
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
