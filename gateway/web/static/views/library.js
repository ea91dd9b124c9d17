// The library: every photo and video newest first, what a person sees first. A grid laid out a
// month at a time from /library/months (so its full height is known and the scrubber can jump to
// any month), whose tiles exist only where the window shows them: a month's images are fetched
// from /library a page at a time as it scrolls into view, so 100,000 images cost what one
// screenful costs. Filters that combine (text, people, place, dates, kind, copies) live in the
// location's hash; selecting images offers what the API can do with them.

import { view, api, apiWait, h, img, toast, busy, failure, services, running, imageInfo } from "../core.js";

const FILTERS = ["text", "text_source", "people", "country", "region", "city", "from", "to", "kind", "duplicates"];
const PAGE = 200;          // images asked per /library request
const TILE = 150;          // preferred tile size, CSS px (smaller on phones)
const GAP = 6;
const HEADER = 40;         // a month's heading
const OVERSCAN = 1.0;      // screens laid out above and below the window

const MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const monthLabel = (m) => `${MONTH_NAMES[Number(m.slice(5, 7)) - 1]} ${m.slice(0, 4)}`;
const lastDay = (m) => new Date(Date.UTC(Number(m.slice(0, 4)), Number(m.slice(5, 7)), 0)).toISOString().slice(0, 10);

function query(filters, extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) if (v !== undefined && v !== null && v !== "" && v !== false) q.set(k, v === true ? "1" : String(v));
  return q.toString();
}

// ---- selection and what can be done with it --------------------------------------------------

async function deleteEverywhere(ids, done) {
  if (!confirm(`Delete ${ids.length} image(s) from every service? This cannot be undone.`)) return;
  let next = 0, failed = 0;
  async function worker() {
    while (next < ids.length) {
      const id = ids[next++];
      try { await api("/delete_all_image_features", { json: { image_id: id } }); } catch (err) { failed++; toast(`#${id}: ${err.detail || err}`); }
    }
  }
  await Promise.all([worker(), worker(), worker()]);
  toast(`Deleted ${ids.length - failed} image(s)${failed ? `, ${failed} failed` : ""}.`);
  done();
}

async function exportCsv(ids) {
  const rows = [["image_id", "file_name", "taken", "place", "width", "height", "kind"]];
  for (let i = 0; i < ids.length; i += 10000) {
    const chunk = ids.slice(i, i + 10000);
    const info = await imageInfo(chunk);
    for (const id of chunk) {
      const f = info[id] || {};
      rows.push([id, f.file_name || "", f.captured_at || "", (f.place && f.place.name) || "", f.width ?? "", f.height ?? "", f.kind || ""]);
    }
  }
  const csv = rows.map((r) => r.map((v) => `"${String(v).replaceAll('"', '""')}"`).join(",")).join("\n") + "\n";
  const a = h("a", { href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })), download: "ambience-library.csv" });
  document.body.append(a); a.click(); a.remove();
}

async function duplicatesAmong(ids, out) {
  const chosen = new Set(ids);
  out.replaceChildren(busy("looking for copies and near shots…"));
  const sections = [];
  for (const [kind, label] of [["copies", "Copies"], ["similar", "Similar shots"]]) {
    try {
      const reply = await apiWait("/duplicate_groups", { json: { kind } });
      const groups = (reply.groups || []).map((g) => ({ keeper: g.keeper, members: g.members.map((m) => m.image_id).filter((id) => chosen.has(id)) }))
        .filter((g) => g.members.length > 1);
      sections.push(h("h3", {}, `${label}: ${groups.length} group(s) among the selection`),
        ...groups.map((g) => h("div", { class: "grid small dup-group" }, g.members.map((id) => {
          const t = h("a", { class: "thumb" + (id === g.keeper ? " keeper" : ""), href: `#/image/${id}`, "data-image-id": id }, img(id),
            h("span", { class: "cap" }, id === g.keeper ? `#${id} keeper` : `#${id}`));
          return t;
        }))));
    } catch (err) { sections.push(h("p", { class: "muted" }, `${label}: ${err.detail || err.message}`)); }
  }
  out.replaceChildren(...sections);
}

// ---- the view ---------------------------------------------------------------------------------

export function renderLibrary(params) {
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const active = FILTERS.some((k) => filters[k]);
  const count = h("p", { class: "muted", id: "library-count" }, "…");
  const memories = h("section", { id: "on-this-day", hidden: true });
  const grid = h("div", { id: "library-grid", role: "list", "aria-label": "Photos, newest first" });
  const scrubber = h("nav", { id: "scrubber", "aria-label": "Jump to a month" });
  const jump = h("select", { id: "jump-month", "aria-label": "Jump to a month" });
  const selection = new Set();
  const actionBar = h("div", { id: "selection-bar", class: "row", hidden: true });
  const dupOut = h("section", { id: "selection-duplicates" });

  // -- filters --
  const text = h("input", { type: "search", id: "lib-text", class: "grow", placeholder: "Search: a lake at dusk, a word on a sign…", value: filters.text, "aria-label": "Text" });
  const ocr = h("input", { type: "checkbox", id: "lib-ocr", checked: filters.text_source === "ocr" });
  const country = h("select", { id: "lib-country", "aria-label": "Country" }, h("option", { value: "" }, "Any country"));
  const city = h("select", { id: "lib-city", "aria-label": "City" }, h("option", { value: "" }, "Any city"));
  const from = h("input", { type: "date", id: "lib-from", value: filters.from.length === 7 ? `${filters.from}-01` : filters.from, "aria-label": "From" });
  const to = h("input", { type: "date", id: "lib-to", value: filters.to.length === 7 ? lastDay(filters.to) : filters.to, "aria-label": "To" });
  const kind = h("select", { id: "lib-kind", "aria-label": "Kind" }, h("option", { value: "" }, "Photos and videos"),
    h("option", { value: "photo" }, "Photos"), h("option", { value: "video" }, "Videos"));
  kind.value = filters.kind;
  const dups = h("input", { type: "checkbox", id: "lib-dups", checked: filters.duplicates === "1" });
  const people = h("input", { type: "text", id: "lib-people", value: filters.people, placeholder: "person ids: 1,2", size: "10", "aria-label": "People (person ids)", hidden: !filters.people });
  const apply = (ev) => {
    ev?.preventDefault();
    const next = {
      text: text.value.trim(), text_source: ocr.checked ? "ocr" : "", people: people.value.replace(/\s/g, ""),
      country: country.value, region: city.selectedOptions[0]?.dataset.region || "", city: city.value,
      from: from.value, to: to.value, kind: kind.value, duplicates: dups.checked ? "1" : "",
    };
    location.hash = `#/library${query(next) ? "?" + query(next) : ""}`;
  };
  for (const el of [country, kind, dups, ocr, from, to]) el.addEventListener("change", (e) => { if (el === country) city.value = ""; apply(e); });
  city.addEventListener("change", apply);
  // On a phone the filters fold away behind their summary (open when one is set), the text stays.
  const narrowed = FILTERS.filter((k) => k !== "text" && k !== "text_source" && filters[k]).length;
  const more = h("details", { class: "more-filters", open: window.innerWidth > 640 || narrowed > 0 },
    h("summary", {}, narrowed ? `Filters (${narrowed})` : "Filters"),
    h("div", { class: "row" },
      h("label", { title: "match the words written in pictures (OCR) instead of what they show" }, ocr, " text in pictures"),
      people, country, city, h("label", {}, "from ", from), h("label", {}, "to ", to), kind,
      h("label", {}, dups, " has copies")));
  const form = h("form", { class: "row filters", id: "library-filters", onsubmit: apply }, text,
    h("button", { type: "submit" }, "Filter"),
    active ? h("a", { class: "button secondary", href: "#/library", id: "lib-clear" }, "Clear") : null, more);

  view.replaceChildren(h("div", { class: "library-head" }, h("h1", {}, "Library"), count, jump), memories, form, actionBar, dupOut,
    h("div", { class: "library-body" }, grid, scrubber));

  services().then((all) => {
    if (!running(all, "image_text") && !running(all, "ocr")) { text.disabled = true; text.placeholder = "Text search needs the image_text or ocr service"; }
    if (!running(all, "ocr")) ocr.disabled = true;
    if (!running(all, "image_text") && running(all, "ocr")) ocr.checked = true;
    if (running(all, "faces")) people.hidden = false;
  });
  api("/places").then(({ body }) => {
    for (const c of body.countries) country.append(h("option", { value: c.country_code }, `${c.country || c.country_code} (${c.count})`));
    country.value = filters.country.toUpperCase();
    const chosen = body.countries.find((c) => c.country_code === country.value);
    for (const c of chosen ? chosen.cities : []) city.append(h("option", { value: c.city, "data-region": c.region || "" }, `${c.city} (${c.count})`));
    city.value = filters.city;
    if (filters.city && !city.value) city.append(h("option", { value: filters.city, selected: true }, filters.city));
  }).catch(() => {});

  // -- on this day (only on the unfiltered first screen) --
  if (!active) {
    api("/on_this_day").then(({ body }) => {
      if (!body.years.length) return;
      memories.hidden = false;
      memories.replaceChildren(h("h2", {}, "On this day"), h("div", { class: "memories" }, body.years.map((y) => {
        const w = body.window_days, anchor = new Date(`${y.anchor}T00:00:00Z`);
        const day = (d) => new Date(anchor.getTime() + d * 86400000).toISOString().slice(0, 10);
        return h("a", { class: "memory thumb", href: `#/library?${query({ from: day(-w), to: day(w) })}`, "data-year": y.year },
          img(y.cover), h("span", { class: "badge" }, `${y.size}`),
          h("span", { class: "cap" }, `${y.years_ago} year${y.years_ago > 1 ? "s" : ""} ago · ${y.year}`));
      })));
    }).catch(() => {});
  }

  // -- selection --
  function updateBar() {
    actionBar.hidden = selection.size === 0;
    grid.classList.toggle("selecting", selection.size > 0);
    const ids = () => [...selection];
    actionBar.replaceChildren(h("strong", { id: "selected-count" }, `${selection.size} selected`),
      h("button", { type: "button", class: "danger", id: "sel-delete", onclick: () => deleteEverywhere(ids(), () => { selection.clear(); updateBar(); rebuild(); }) }, "Delete everywhere"),
      h("button", { type: "button", class: "secondary", id: "sel-duplicates", onclick: () => duplicatesAmong(ids(), dupOut) }, "Find duplicates among them"),
      h("button", { type: "button", class: "secondary", id: "sel-csv", onclick: () => exportCsv(ids()) }, "Export CSV"),
      h("button", { type: "button", class: "secondary", id: "sel-clear", onclick: () => { selection.clear(); dupOut.replaceChildren(); updateBar(); for (const t of grid.querySelectorAll(".lib-tile.selected")) t.classList.remove("selected"); } }, "Clear selection"));
  }

  // -- the grid, laid out a month at a time --
  let months = [], layout = null, tiles = new Map(), heads = new Map(), generation = 0, frame = 0;

  function computeLayout() {
    const width = grid.clientWidth || 800;
    const target = width < 500 ? 100 : TILE;
    const cols = Math.max(2, Math.floor((width + GAP) / (target + GAP)));
    const size = (width - (cols - 1) * GAP) / cols;
    let y = 0;
    for (const m of months) {
      m.top = y;
      m.rows = Math.ceil(m.count / cols);
      y += HEADER + m.rows * (size + GAP);
    }
    layout = { cols, size, height: y };
    grid.style.height = `${y}px`;
    drawScrubber();
  }

  function drawScrubber() {
    scrubber.replaceChildren();
    if (!layout || !layout.height) return;
    let lastYear = null;
    for (const m of months) {
      const year = m.month.slice(0, 4);
      const mark = h("button", { type: "button", class: "tick" + (year !== lastYear ? " year" : ""), title: `${monthLabel(m.month)}: ${m.count}`,
        "data-month": m.month, style: `top:${(100 * m.top) / layout.height}%`, tabindex: "-1",
        onclick: () => scrollToMonth(m.month) }, year !== lastYear ? year : "");
      lastYear = year;
      scrubber.append(mark);
    }
  }

  function scrollToMonth(month) {
    const m = months.find((x) => x.month === month);
    if (!m) return;
    const top = grid.getBoundingClientRect().top + window.scrollY + m.top - 70;
    window.scrollTo({ top, behavior: "instant" });
    schedule();
  }
  jump.addEventListener("change", () => { if (jump.value) scrollToMonth(jump.value); });
  // the bar beside the grid: press or drag anywhere on it to go to the month at that height
  let dragging = false;
  function jumpAt(clientY) {
    if (!layout || !months.length) return;
    const rect = scrubber.getBoundingClientRect(), at = ((clientY - rect.top) / rect.height) * layout.height;
    const m = [...months].reverse().find((x) => x.top <= at) || months[0];
    scrollToMonth(m.month);
  }
  scrubber.addEventListener("pointerdown", (e) => {
    if (e.target.classList.contains("tick")) return;  // its own click handles it
    dragging = true;
    scrubber.setPointerCapture?.(e.pointerId);
    jumpAt(e.clientY);
  });
  scrubber.addEventListener("pointermove", (e) => { if (dragging) jumpAt(e.clientY); });
  scrubber.addEventListener("pointerup", () => { dragging = false; });

  async function loadMore(m, needed, mine) {
    if (m.loading || m.done || m.images.length >= needed) return;
    m.loading = true;
    try {
      while (!m.done && m.images.length < needed && mine === generation) {
        // the month's own range within the filter's: each month pages through its own images
        const range = { from: maxDate(filters.from, `${m.month}-01`), to: minDate(filters.to, lastDay(m.month)) };
        const { body } = await api(`/library?${query({ ...filters, ...range }, { limit: PAGE, cursor: m.next || undefined })}`);
        if (mine !== generation) return;
        m.images.push(...body.images);
        m.next = body.next;
        m.done = !body.next;
      }
    } catch (err) { if (mine === generation) toast(err.detail || String(err)); m.failed = true; }
    finally { m.loading = false; }
    if (mine === generation) schedule();
  }

  function tile(image) {
    const el = h("a", { class: "thumb lib-tile" + (selection.has(image.image_id) ? " selected" : ""), role: "listitem", href: `#/image/${image.image_id}`,
      "data-image-id": image.image_id, title: [image.taken_at.replace("T", " "), image.place].filter(Boolean).join(" · ") },
    img(image.image_id), image.kind === "video" ? h("span", { class: "badge" }, "▶ video") : null);
    const check = h("button", { type: "button", class: "select", "aria-label": `select image ${image.image_id}`, "aria-pressed": String(selection.has(image.image_id)) }, "✓");
    check.addEventListener("click", (e) => {
      e.preventDefault(); e.stopPropagation();
      const on = !selection.has(image.image_id);
      if (on) selection.add(image.image_id); else selection.delete(image.image_id);
      el.classList.toggle("selected", on); check.setAttribute("aria-pressed", String(on));
      updateBar();
    });
    el.append(check);
    return el;
  }

  function draw() {
    frame = 0;
    if (!grid.isConnected) { detach(); return; }
    if (!layout) return;
    const gridTop = grid.getBoundingClientRect().top + window.scrollY;
    const screen = window.innerHeight;
    const lo = window.scrollY - gridTop - OVERSCAN * screen, hi = window.scrollY - gridTop + (1 + OVERSCAN) * screen;
    const { cols, size } = layout;
    const keep = new Set(), keepHeads = new Set();
    for (const m of months) {
      const bottom = m.top + HEADER + m.rows * (size + GAP);
      if (bottom < lo || m.top > hi) continue;
      keepHeads.add(m.month);
      if (!heads.has(m.month)) {
        const head = h("h2", { class: "month", "data-month": m.month }, monthLabel(m.month), h("span", { class: "muted" }, ` · ${m.count}`));
        heads.set(m.month, head); grid.append(head);
      }
      heads.get(m.month).style.transform = `translateY(${m.top}px)`;
      const firstRow = Math.max(0, Math.floor((lo - m.top - HEADER) / (size + GAP)));
      const lastRow = Math.min(m.rows - 1, Math.floor((hi - m.top - HEADER) / (size + GAP)));
      const needed = Math.min(m.count, (lastRow + 1) * cols);
      if (m.images.length < needed && !m.failed) loadMore(m, needed, generation);
      for (let i = firstRow * cols; i < Math.min(needed, m.images.length); i++) {
        const image = m.images[i];
        const key = image.image_id;
        keep.add(key);
        let el = tiles.get(key);
        if (!el) { el = tile(image); tiles.set(key, el); grid.append(el); }
        const x = (i % cols) * (size + GAP), y = m.top + HEADER + Math.floor(i / cols) * (size + GAP);
        el.style.cssText = `width:${size}px;height:${size}px;transform:translate(${x}px,${y}px)`;
      }
    }
    for (const [key, el] of tiles) if (!keep.has(key)) { el.remove(); tiles.delete(key); }
    for (const [key, el] of heads) if (!keepHeads.has(key)) { el.remove(); heads.delete(key); }
    grid.dataset.tiles = String(tiles.size);
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  const resized = new ResizeObserver(() => { if (months.length) { computeLayout(); schedule(); } });
  function detach() { window.removeEventListener("scroll", schedule); resized.disconnect(); }
  window.addEventListener("scroll", schedule, { passive: true });
  resized.observe(grid);

  async function rebuild() {
    const mine = ++generation;
    for (const el of tiles.values()) el.remove();
    for (const el of heads.values()) el.remove();
    tiles = new Map(); heads = new Map();
    grid.replaceChildren(busy("loading the library…"));
    try {
      const { body } = await api(`/library/months?${query(filters)}`);
      if (mine !== generation) return;
      grid.replaceChildren();
      months = body.months.map((m) => ({ ...m, images: [], next: null, done: false, loading: false }));
      const n = body.total;
      count.textContent = n ? `${n.toLocaleString()} ${n === 1 ? "photo or video" : "photos and videos"}${active ? (n === 1 ? " matches" : " match") : ""}` : "";
      jump.replaceChildren(h("option", { value: "" }, "Jump to…"), ...months.map((m) => h("option", { value: m.month }, `${monthLabel(m.month)} (${m.count})`)));
      jump.hidden = months.length < 2;
      if (!months.length) {
        grid.style.height = "";
        grid.replaceChildren(h("p", { class: "muted", id: "library-empty" }, active ? "Nothing matches these filters." : "No photos yet: add some first."));
        scrubber.replaceChildren();
        return;
      }
      computeLayout();
      schedule();
    } catch (err) { if (mine === generation) grid.replaceChildren(failure(err)); }
  }
  updateBar();
  rebuild();
}

const maxDate = (a, b) => (!a ? b : a > b ? a : b);
const minDate = (a, b) => (!a ? b : a < b ? a : b);
