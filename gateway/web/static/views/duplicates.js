// Duplicates: copies, similar shots and stacks (bursts, RAW+JPEG), a page of groups at a time, each
// with its suggested keeper and the reason, the space removing the others frees, and what a person
// does about them: keep some and delete the rest ("resolve"), or say they are not duplicates. The
// decisions are kept by the gateway and listed below, each with an undo.

import { view, api, apiWait, toast, h, thumb, busy, failure } from "../core.js";

const KINDS = [
  ["copies", "Copies", "The same picture more than once (re-encoded, resized, cropped, mirrored)."],
  ["similar", "Similar shots", "Near shots of one scene."],
  ["bursts", "Stacks", "Frames of one burst, and one shot saved in two formats (RAW+JPEG, HEIC+JPEG)."],
];
const PAGE_SIZE = 20;

export function fmtBytes(n) {
  if (!n) return "0 B";
  const units = [["GB", 2 ** 30], ["MB", 2 ** 20], ["KB", 2 ** 10]];
  for (const [unit, scale] of units) if (n >= scale) return `${(n / scale).toFixed(1)} ${unit}`;
  return `${n} B`;
}

function memberCaption(kind, m, isKeeper) {
  const parts = [`#${m.image_id}`];
  if (m.format) parts.push(m.format);
  if (!isKeeper && kind === "bursts") parts.push(`+${Number(m.distance).toFixed(1)} s`);
  return parts.join(" · ");
}

function memberFacts(m) {
  const parts = [];
  if (m.width && m.height) parts.push(`${m.width}×${m.height}`);
  if (m.bytes) parts.push(fmtBytes(m.bytes));
  return parts.join(" · ");
}

function groupCard(kind, g, n, onGone) {
  const isStack = kind === "bursts";
  const keepWord = isStack ? "cover" : "keep";
  const title = isStack
    ? (g.stack === "formats" ? `One shot in ${g.size} formats` : `Burst of ${g.size} frames`)
    : `Group ${n}: ${g.size} pictures`;
  const checks = new Map();
  const resolveBtn = h("button", { class: "danger resolve", type: "button" });
  const notBtn = h("button", { class: "secondary not-duplicates", type: "button" }, isStack ? "Not a stack" : "Not duplicates");
  const update = () => {
    const keep = [...checks].filter(([, c]) => c.checked).map(([id]) => id);
    const remove = [...checks].filter(([, c]) => !c.checked).map(([id]) => id);
    resolveBtn.disabled = !keep.length;
    resolveBtn.textContent = remove.length ? `Keep ${keep.length}, delete ${remove.length}` : "Keep all";
    return { keep, remove };
  };
  const tiles = g.members.map((m, i) => {
    const isKeeper = m.image_id === g.keeper;
    const box = h("input", { type: "checkbox", class: "keep", checked: isKeeper, "aria-label": `keep image ${m.image_id}` });
    box.addEventListener("change", update);
    checks.set(m.image_id, box);
    const tile = thumb(m.image_id, { keeper: isKeeper, badge: isKeeper ? keepWord : null, caption: memberCaption(kind, m, isKeeper) });
    if (m.file_name) tile.title = m.file_name;
    // a stack is drawn as a pile, the cover on top
    const style = isStack ? `z-index: ${g.members.length - i}` : null;
    return h("div", { class: "member", style }, tile, h("span", { class: "facts" }, memberFacts(m)),
      h("label", { class: "keep-label" }, box, " keep"));
  });
  update();
  const card = h("section", { class: "group" + (isStack ? " stack" : ""), "data-keeper": g.keeper, "data-group-id": g.id, "data-bytes-freed": g.bytes_freed },
    h("header", {},
      h("div", {},
        h("strong", {}, title),
        h("span", { class: "muted" }, ` · frees ${fmtBytes(g.bytes_freed)}`),
        h("p", { class: "reason" }, `${isStack ? "Cover" : "Keeping"} #${g.keeper}: ${g.keeper_reason}`)),
      h("div", { class: "row actions" }, notBtn, resolveBtn)),
    h("div", { class: isStack ? "pile" : "grid small" }, tiles));

  notBtn.addEventListener("click", async () => {
    notBtn.disabled = true;
    try {
      await api("/duplicate_groups/decisions", { json: { image_ids: g.members.map((m) => m.image_id), decision: "not_duplicates", kind } });
      toast(isStack ? "Kept apart: not shown as a stack again." : "Kept apart: not shown as duplicates again.");
      card.remove();
      onGone();
    } catch (err) { toast(err.detail || String(err)); notBtn.disabled = false; }
  });
  resolveBtn.addEventListener("click", async () => {
    const { keep, remove } = update();
    if (remove.length && !confirm(`Delete ${remove.length} image(s) from every service, keeping ${keep.map((i) => "#" + i).join(", ")}?`)) return;
    resolveBtn.disabled = true;
    try {
      const { body } = await api("/duplicate_groups/resolve", { json: { kind, keep, remove } });
      const later = body.removed.filter((r) => r.status === "pending").length;
      const failed = body.removed.filter((r) => r.status === "failed").length;
      toast(`Resolved: ${remove.length} deleted` + (later ? `, ${later} finishing when every service is back` : "") + (failed ? `, ${failed} failed` : "") + ".");
      card.remove();
      onGone();
    } catch (err) { toast(err.detail || String(err)); resolveBtn.disabled = false; }
  });
  return card;
}

async function decisionsList(kind, reload) {
  const { body } = await api(`/duplicate_groups/decisions?kind=${kind}&limit=10`);
  const items = body.decisions.filter((d) => d.decision !== "resolved");
  if (!items.length) return h("p", { class: "muted" }, "No decisions yet.");
  return h("ul", { class: "decisions" }, items.map((d) => {
    const undo = h("button", { type: "button", class: "secondary undo" }, "Undo");
    undo.addEventListener("click", async () => {
      undo.disabled = true;
      try { await api("/duplicate_groups/decisions/remove", { json: { id: d.id } }); toast("Undone."); reload(); }
      catch (err) { toast(err.detail || String(err)); undo.disabled = false; }
    });
    const what = d.decision === "not_duplicates" ? "not duplicates" : "duplicates";
    return h("li", { "data-decision-id": d.id }, `${d.image_ids.map((i) => "#" + i).join(", ")}: ${what}${d.kind ? "" : " (every kind)"} `, undo);
  }));
}

export function renderDuplicates(params) {
  const kind = KINDS.some(([k]) => k === params.get("kind")) ? params.get("kind") : "copies";
  const order = params.get("order") === "space" ? "space" : "size";
  const pageSize = Math.max(1, Math.floor(Number(params.get("per"))) || PAGE_SIZE); // groups per page
  const out = h("section", { id: "groups" });
  const summary = h("p", { class: "muted", id: "group-count" });
  const decided = h("section", { id: "decisions" });
  const tabs = h("div", { class: "row", role: "tablist" },
    KINDS.map(([k, label]) => h("a", { class: "button" + (k === kind ? "" : " secondary"), role: "tab",
      "aria-selected": String(k === kind), href: `#/duplicates?kind=${k}&order=${order}` }, label)));
  const sort = h("select", { id: "group-order", "aria-label": "Order of the groups" },
    h("option", { value: "size" }, "Largest groups first"), h("option", { value: "space" }, "Most space freed first"));
  sort.value = order;
  sort.addEventListener("change", () => { location.hash = `#/duplicates?kind=${kind}&order=${sort.value}`; });
  const hint = KINDS.find(([k]) => k === kind)[2];
  view.replaceChildren(h("h1", {}, "Duplicates"),
    h("p", { class: "hint" }, `${hint} The suggested ${kind === "bursts" ? "cover" : "keeper"} is outlined, with the rule that chose it; untick what you want to keep, or say they are not duplicates.`),
    tabs, h("div", { class: "row" }, sort, summary), out, h("h2", {}, "Your decisions"), decided);

  let totals = null;
  let shown = 0; // groups on the page (those resolved or decided on leave it)
  let numbered = 0; // the number of the last group card made
  const showTotals = () => {
    if (!totals) return;
    summary.textContent = `${totals.groups} groups · ${totals.images} images · ${fmtBytes(totals.bytes_freed)} can be freed`;
  };
  const onGone = () => {
    if (totals) { totals.groups -= 1; showTotals(); }
    shown -= 1; // the groups left to show stay the same
  };
  const reload = () => renderDuplicates(params);
  const grid = h("div", { id: "group-list" });
  const more = h("button", { type: "button", class: "secondary", id: "groups-more", hidden: true });

  async function loadPage(after) {
    const body = { kind, order, page_size: pageSize, ...(after ? { after } : {}) };
    const reply = await apiWait("/duplicate_groups", { json: body });
    totals = reply.totals;
    showTotals();
    grid.append(...reply.groups.map((g) => groupCard(kind, g, ++numbered, onGone)));
    shown += reply.groups.length;
    more.hidden = !reply.next;
    more.textContent = `Show more (${Math.max(0, reply.totals.groups - shown)} left)`;
    more.onclick = async () => {
      more.disabled = true;
      const last = grid.lastElementChild; // keyboard users go on at the first new group
      try { await loadPage(reply.next); last?.nextElementSibling?.querySelector("a")?.focus(); }
      catch (err) { toast(err.detail || String(err)); }
      more.disabled = false;
    };
    return reply;
  }

  out.append(busy());
  loadPage(null).then((reply) => {
    if (!reply.groups.length) { out.replaceChildren(h("p", { class: "muted" }, kind === "bursts" ? "No stacks." : "No groups.")); return; }
    out.replaceChildren(grid, more);
  }).catch((err) => out.replaceChildren(failure(err)));
  decisionsList(kind, reload).then((list) => decided.replaceChildren(list)).catch((err) => decided.replaceChildren(failure(err)));
}
