// Places: where the photos were taken, on a world map drawn from the vendored Natural Earth outline
// (worldmap.js, no tiles, no network) and as a list of countries and cities. A point or a city
// opens the library filtered to that place.

import "../worldmap.js";
import { view, api, apiWait, h, img, busy, failure, toast } from "../core.js";

let landRings = null; // the outline, decoded once per page load

async function land() {
  if (!landRings) {
    const res = await fetch("/ui/land-110m.json", { credentials: "same-origin" });
    landRings = window.WorldMap.decodeTopology(await res.json());
  }
  return landRings;
}

const libraryLink = (place) => `#/library?${new URLSearchParams(Object.entries(place).filter(([, v]) => v)).toString()}`;

export function renderPlaces() {
  const canvas = h("canvas", { id: "places-map", tabindex: "0", "aria-label": "World map of the photos: drag to pan, scroll or +/- to zoom, click a point to see its photos" });
  const list = h("section", { id: "places-list" }, busy());
  const picked = h("section", { id: "places-picked" });
  const status = h("p", { class: "muted", id: "places-status" });
  view.replaceChildren(h("h1", {}, "Places"), status,
    h("div", { class: "places" }, h("div", { id: "places-map-wrap" }, canvas), list), picked,
    h("p", { class: "muted credit" }, "Places from GeoNames (geonames.org, CC BY 4.0); land outline from Natural Earth."));

  let map = null;
  async function show(place, label, count) {
    picked.replaceChildren(h("h2", {}, `${label}`, h("span", { class: "muted" }, count ? ` · ${count} photo${count > 1 ? "s" : ""}` : "")), busy());
    try {
      const { body } = await api(`/library?${new URLSearchParams({ ...Object.fromEntries(Object.entries(place).filter(([, v]) => v)), limit: "24" })}`);
      picked.replaceChildren(picked.firstChild,
        h("div", { class: "grid small" }, body.images.map((i) => h("a", { class: "thumb", href: `#/image/${i.image_id}`, "data-image-id": i.image_id }, img(i.image_id),
          h("span", { class: "cap" }, i.taken_at.slice(0, 10))))),
        h("p", {}, h("a", { class: "button", id: "places-open-library", href: libraryLink(place) }, "Show them all in the library")));
    } catch (err) { picked.replaceChildren(failure(err)); }
  }

  function renderList(body) {
    const unplaced = body.not_placed;
    status.replaceChildren(`${(body.total - body.without_position).toLocaleString()} of ${body.total.toLocaleString()} photos have a position` +
      (body.at_sea ? `, ${body.at_sea} at sea` : "") + ".");
    if (unplaced) {
      const button = h("button", { type: "button", class: "secondary", id: "places-backfill" }, `Place ${unplaced} more`);
      button.addEventListener("click", async () => {
        button.disabled = true;
        await api("/places/backfill", { method: "POST" });
        await apiWait("/places/backfill", {}, (p) => { button.textContent = `placing… ${p.progress.done}/${p.progress.total}`; });
        toast("Places filled in."); renderPlaces();
      });
      status.append(" ", button);
    }
    if (!body.countries.length) { list.replaceChildren(h("p", { class: "muted" }, "No photo with a GPS position yet.")); return; }
    list.replaceChildren(h("ul", { class: "countries" }, body.countries.map((c, n) => h("li", { "data-country": c.country_code },
      h("details", { open: n === 0 }, h("summary", {}, h("span", {}, c.country || c.country_code), h("span", { class: "count" }, c.count)),
        h("ul", { class: "cities" }, c.cities.map((city) => h("li", {},
          h("a", { href: libraryLink({ country: c.country_code, region: city.region, city: city.city }), "data-city": city.city,
            onclick: (e) => {
              e.preventDefault();
              map?.centreOn(city.latitude, city.longitude, 64);
              show({ country: c.country_code, region: city.region, city: city.city }, `${city.city}, ${c.country}`, city.count);
            } }, city.city), h("span", { class: "count" }, city.count)))),
        h("a", { class: "all", href: libraryLink({ country: c.country_code }) }, `All of ${c.country || c.country_code}`))))));
  }

  Promise.all([api("/places"), api("/places/points"), land()]).then(([places, points, rings]) => {
    renderList(places.body);
    const pts = points.body.points.map((p) => ({ ...p }));
    map = window.WorldMap.create(canvas, rings, {
      pointRadius: 5,
      onPointClick: (p) => {
        map.select(p);
        const place = p.city ? { country: p.country_code, city: p.city } : { country: p.country_code };
        show(place, p.city ? `${p.city}${p.country_code ? ", " + p.country_code : ""}` : p.country_code || "Here", null);
      },
    });
    canvas.worldMap = map; // for the console and the page's tests
    map.attach();
    map.setPoints(pts);
    if (pts.length) map.fitPoints(pts, 80);
    canvas.dataset.points = String(pts.length);
  }).catch((err) => list.replaceChildren(failure(err)));
}
