// Trips and events: moments that know time and place ("Lisbon, 12–16 May 2024"), each with the
// cover chosen from its photos; a trip opens on its visual sub-moments (today's moments of the
// collection, restricted to the trip), with the same granularity slider as the Moments view.

import { view, api, apiWait, h, img, thumb, busy, failure } from "../core.js";

function card(item, href, caption) {
  return h("a", { class: "thumb trip-card", href, "data-trip": item.trip || item.event, "data-image-id": item.cover },
    img(item.cover, item.title), h("span", { class: "badge" }, `${item.size}`),
    h("span", { class: "title" }, item.title), caption ? h("span", { class: "cap" }, caption) : null);
}

const photos = (n) => `${n} photo${n === 1 ? "" : "s"}`;

function tabs(kind) {
  return h("div", { class: "row", role: "tablist" }, [["trips", "Trips"], ["events", "Events"]].map(([k, label]) =>
    h("a", { class: "button" + (k === kind ? "" : " secondary"), role: "tab", "aria-selected": String(k === kind), href: `#/trips?kind=${k}` }, label)));
}

export function renderTrips(params, arg) {
  if (arg) { renderTrip(decodeURIComponent(arg), params); return; }
  const kind = params.get("kind") === "events" ? "events" : "trips";
  const out = h("section", { id: "trips" }, busy());
  view.replaceChildren(h("h1", {}, kind === "trips" ? "Trips" : "Events"),
    h("p", { class: "hint" }, kind === "trips"
      ? "Days away from home, found from the photos' times and GPS positions. Photos without them stay in Moments."
      : "Photos close in time and place, newest first."),
    tabs(kind), out);
  api(kind === "trips" ? "/trips" : "/events?limit=500").then(({ body }) => {
    const items = body.trips || body.events || [];
    const stale = body.stale ? h("p", { class: "muted" }, "The library changed: these are being brought up to date.") : null;
    if (!items.length) {
      out.replaceChildren(h("p", { class: "muted", id: "trips-empty" }, kind === "trips"
        ? "No trip yet: trips need photos with a capture time and a GPS position, taken away from home." : "No event yet."));
      return;
    }
    const countries = (t) => (t.countries && t.countries.length > 1 ? ` · ${t.countries.join(", ")}` : "");
    out.replaceChildren(stale ?? "", h("p", { class: "muted", id: "trips-count" }, kind === "trips" ? `${items.length} trips` : `${body.total} events`),
      h("div", { class: "grid trips" }, items.map((t) => kind === "trips"
        ? card(t, `#/trips/${encodeURIComponent(t.trip)}`, `${photos(t.size)} · ${Math.round(t.distance_km)} km from home${countries(t)}`)
        : card(t, `#/library?from=${t.start.slice(0, 10)}&to=${t.end.slice(0, 10)}`, photos(t.size)))));
  }).catch((err) => out.replaceChildren(failure(err)));
}

function renderTrip(id, params) {
  const granularity = Number(params.get("g") ?? 0.3);
  const slider = h("input", { type: "range", id: "trip-granularity", min: "0.02", max: "1", step: "0.02", value: String(granularity), "aria-label": "Granularity of the trip's moments" });
  const out = h("section", { id: "trip-moments" }, busy());
  const head = h("div", {}, h("h1", {}, "Trip"));
  view.replaceChildren(h("p", {}, h("a", { href: "#/trips" }, "← All trips")), head,
    h("div", { class: "row" }, h("label", { for: "trip-granularity" }, "Moments"), slider), out);
  let seq = 0;
  async function load() {
    const mine = ++seq;
    out.replaceChildren(busy("grouping the trip's photos…"));
    try {
      const trip = await apiWait(`/trips/${encodeURIComponent(id)}?granularity=${slider.value}`, {},
        (p) => { if (mine === seq) out.replaceChildren(busy(`grouping… ${Math.round(100 * (p.progress || 0))}%`)); });
      if (mine !== seq) return;
      head.replaceChildren(h("h1", { id: "trip-title" }, trip.title),
        h("p", { class: "muted" }, `${photos(trip.size)} · ${Math.round(trip.distance_km)} km from home · `,
          h("a", { href: `#/library?from=${trip.start}&to=${trip.end}` }, "these days in the library")));
      const from = trip.moments_from === "time" ? "by time (no vector service answered)" : `by ${trip.moments_from}`;
      out.replaceChildren(h("p", { class: "muted", id: "trip-moment-count" }, `${trip.moments.length} moments, ${from}`),
        ...trip.moments.map((m, n) => h("section", { class: "trip-moment", "data-size": m.size },
          h("h2", {}, `Moment ${n + 1}`, h("span", { class: "muted" }, ` · ${photos(m.size)}`)),
          h("div", { class: "grid small" }, m.members.map((member) => thumb(member, { caption: member === trip.cover ? "cover" : `#${member}`, keeper: member === trip.cover }))))));
    } catch (err) { if (mine === seq) out.replaceChildren(failure(err)); }
  }
  let timer;
  slider.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { history.replaceState(null, "", `#/trips/${encodeURIComponent(id)}?g=${slider.value}`); load(); }, 250);
  });
  load();
}
