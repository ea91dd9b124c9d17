// The ambience page: plain ES modules, no build step, no third-party code. It only calls the
// gateway's own routes (the same ones a gallery uses) and renders what they answer. Each view is a
// module of views/ exporting its render function; a new view is one import, one entry below and
// one link in index.html's navigation.

import { view } from "./core.js";
import { renderAdd } from "./views/add.js";
import { renderDuplicates } from "./views/duplicates.js";
import { renderImage } from "./views/image.js";
import { renderLibrary } from "./views/library.js";
import { renderMap } from "./views/map.js";
import { renderMoments } from "./views/moments.js";
import { renderPeople, renderPerson } from "./views/people.js";
import { renderPlaces } from "./views/places.js";
import { renderSearch } from "./views/search.js";
import { renderStatus } from "./views/status.js";
import { renderTrips } from "./views/trips.js";

//: The views by the first part of the location's hash (#/name/arg?params): render(params, arg).
const VIEWS = {
  library: (params) => renderLibrary(params),
  search: () => renderSearch(),
  moments: (params) => renderMoments(params),
  duplicates: (params) => renderDuplicates(params),
  map: (params) => renderMap(params),
  people: (params) => renderPeople(params),
  person: (_, arg) => renderPerson(Number(arg)),
  places: () => renderPlaces(),
  trips: (params, arg) => renderTrips(params, arg),
  image: (_, arg) => renderImage(Number(arg)),
  add: () => renderAdd(),
  status: () => renderStatus(),
};
const DEFAULT_VIEW = "library"; // what a person sees first

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query);
  const [given, arg] = path.split("/");
  const name = given in VIEWS ? given : DEFAULT_VIEW;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === (name === "person" ? "people" : name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  VIEWS[name](params, arg);
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
