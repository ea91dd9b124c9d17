// People: everybody the faces service found, grouped by the gateway (largest first), with their
// face crops and counts; names edited in place; two or more selected and merged; hidden people
// behind a toggle; "is this X?" for unnamed people near a named one. A person's page lists their
// photos; the image page draws the face boxes with names (faceBoxes).

import { view, api, h, thumb, busy, failure, toast, PLACEHOLDER } from "../core.js";

const coverUrl = (id) => `/people/${id}/cover`;
const crop = (src, alt) => h("img", { src, alt, loading: "lazy", decoding: "async",
  onerror: (e) => { e.target.onerror = null; e.target.src = PLACEHOLDER; } });

async function rename(id, name) {
  const { body } = await api(`/people/${id}`, { json: { name: name.trim() || null } });
  toast(body.name ? `Named ${body.name}.` : "Name removed.");
  return body;
}

function nameField(person, onSaved) {
  // Edited in place: Enter or leaving the field saves, Escape puts the old name back.
  const input = h("input", { type: "text", class: "name", value: person.name || "", placeholder: "Add a name",
    "aria-label": `name of person ${person.person_id}`, "data-person-id": person.person_id });
  let saved = person.name || "";
  const save = async () => {
    if (input.value.trim() === saved) return;
    try { saved = (await rename(person.person_id, input.value)).name || ""; onSaved?.(saved); }
    catch (err) { toast(err.detail || String(err)); input.value = saved; }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); input.blur(); }
    if (e.key === "Escape") { input.value = saved; input.blur(); }
  });
  input.addEventListener("change", save);
  return input;
}

function personCard(person, selected, onSelect) {
  const box = h("input", { type: "checkbox", class: "select", "aria-label": `select person ${person.person_id}`,
    checked: selected.has(person.person_id) });
  box.addEventListener("change", () => { box.checked ? selected.add(person.person_id) : selected.delete(person.person_id); onSelect(); });
  const hide = h("button", { type: "button", class: "secondary small hide" }, person.hidden ? "Show" : "Hide");
  const card = h("div", { class: "person" + (person.hidden ? " hidden-person" : ""), "data-person-id": person.person_id },
    h("a", { href: `#/person/${person.person_id}`, class: "face" }, crop(coverUrl(person.person_id), person.name || `person ${person.person_id}`)),
    box, nameField(person),
    h("span", { class: "cap" }, `${person.images} photo${person.images === 1 ? "" : "s"}`, person.hidden ? " · hidden" : ""),
    hide);
  hide.addEventListener("click", async () => {
    try {
      await api(`/people/${person.person_id}`, { json: { hidden: !person.hidden } });
      person.hidden = !person.hidden;
      toast(person.hidden ? "Hidden: shown only with “show hidden”." : "Shown again.");
      card.replaceWith(personCard(person, selected, onSelect));
    } catch (err) { toast(err.detail || String(err)); }
  });
  return card;
}

function suggestionCard(s, refresh) {
  const yes = h("button", { type: "button", class: "yes" }, "Yes");
  const no = h("button", { type: "button", class: "secondary no" }, "No");
  const card = h("div", { class: "suggestion", "data-person-id": s.person_id },
    crop(coverUrl(s.person_id), `person ${s.person_id}`), h("span", {}, "Is this ", h("strong", {}, s.suggestion.name), "?"),
    crop(coverUrl(s.suggestion.person_id), s.suggestion.name), yes, no);
  yes.addEventListener("click", async () => {
    try { await api(`/people/${s.person_id}`, { json: { merge_into: s.suggestion.person_id } }); toast(`Merged into ${s.suggestion.name}.`); refresh(); }
    catch (err) { toast(err.detail || String(err)); }
  });
  no.addEventListener("click", async () => {
    try { await api(`/people/${s.person_id}`, { json: { not_same_as: s.suggestion.person_id } }); card.remove(); }
    catch (err) { toast(err.detail || String(err)); }
  });
  return card;
}

export function renderPeople(params) {
  const hidden = params.get("hidden") === "1";
  const selected = new Set();
  const grid = h("div", { class: "people", id: "people" });
  const more = h("button", { type: "button", class: "secondary", hidden: true, id: "more-people" }, "More");
  const merge = h("button", { type: "button", id: "merge-selected", disabled: true }, "Merge selected");
  const toggle = h("input", { type: "checkbox", id: "show-hidden", checked: hidden });
  const suggestions = h("section", { id: "suggestions" });
  const count = h("span", { class: "muted", id: "people-count" });
  const onSelect = () => { merge.disabled = selected.size < 2; merge.textContent = selected.size >= 2 ? `Merge ${selected.size} people` : "Merge selected"; };
  toggle.addEventListener("change", () => { location.hash = toggle.checked ? "#/people?hidden=1" : "#/people"; });
  view.replaceChildren(h("h1", {}, "People"),
    h("p", { class: "hint" }, "Faces found in your photos, grouped by person. Name someone in place; select two or more and merge them when they are one person."),
    h("div", { class: "row" }, merge, h("label", {}, toggle, " show hidden"), count),
    suggestions, grid, more);
  const people = [];
  let next = null;
  const load = async () => {
    more.hidden = true;
    const query = new URLSearchParams({ limit: "120" });
    if (hidden) query.set("hidden", "1");
    if (next) query.set("after", next);
    const { body } = await api(`/people?${query}`);
    people.push(...body.people);
    grid.append(...body.people.map((p) => personCard(p, selected, onSelect)));
    next = body.next;
    more.hidden = !next;
    count.textContent = `${people.length}${next ? "+" : ""} people`;
    if (!people.length) grid.replaceChildren(h("p", { class: "muted" }, "Nobody yet: people appear once three or more photos show them."));
  };
  more.addEventListener("click", () => load().catch((err) => grid.append(failure(err))));
  merge.addEventListener("click", async () => {
    // Into the first named one (else the one with most faces, listed first).
    const chosen = people.filter((p) => selected.has(p.person_id));
    const target = chosen.find((p) => p.name) || chosen[0];
    if (!confirm(`Merge ${chosen.length} people into ${target.name || `#${target.person_id}`}?`)) return;
    merge.disabled = true;
    for (const p of chosen) {
      if (p.person_id === target.person_id) continue;
      try { await api(`/people/${p.person_id}`, { json: { merge_into: target.person_id } }); }
      catch (err) { toast(err.detail || String(err)); }
    }
    toast(`Merged into ${target.name || `#${target.person_id}`}.`);
    renderPeople(params);
  });
  grid.append(busy());
  load().then(() => grid.querySelector(".spinner")?.remove()).catch((err) => grid.replaceChildren(failure(err)));
  api("/people/suggestions").then(({ body }) => {
    if (!body.suggestions.length) return;
    suggestions.append(h("h2", {}, "Is this somebody you named?"),
      h("div", { class: "suggestions" }, body.suggestions.map((s) => suggestionCard(s, () => renderPeople(params)))));
  }).catch(() => {});
}

export function renderPerson(id) {
  const photos = h("div", { class: "grid small", id: "person-photos" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More");
  const title = h("div", { class: "row person-head" }, busy());
  view.replaceChildren(h("p", {}, h("a", { href: "#/people" }, "← People")), title, photos, more);
  let next = null;
  const load = async () => {
    more.hidden = true;
    const { body } = await api(`/people/${id}/images?limit=120${next !== null ? `&after=${next}` : ""}`);
    photos.append(...body.images.map((image) => {
      const card = thumb(image.image_id, { caption: `#${image.image_id}` });
      const notThem = h("button", { type: "button", class: "fav not-them", title: "Not this person",
        "aria-label": `image ${image.image_id} is not this person` }, "✕");
      notThem.addEventListener("click", async (e) => {
        e.preventDefault();
        try {
          for (const face of image.faces) await api(`/people/faces/${image.image_id}/${face.face}`, { json: { not_person: Number(id) } });
          card.remove();
          toast("Taken out of this person.");
        } catch (err) { toast(err.detail || String(err)); }
      });
      card.append(notThem);
      return card;
    }));
    next = body.next;
    more.hidden = next === null;
  };
  more.addEventListener("click", () => load().catch((err) => photos.append(failure(err))));
  api(`/people/${id}`).then(({ body }) => {
    if (body.person_id !== Number(id)) { location.hash = `#/person/${body.person_id}`; return; }  // merged since
    const hide = h("button", { type: "button", class: "secondary" }, body.hidden ? "Show" : "Hide");
    hide.addEventListener("click", async () => {
      await api(`/people/${id}`, { json: { hidden: !body.hidden } });
      renderPerson(id);
    });
    title.replaceChildren(h("span", { class: "face large" }, crop(coverUrl(id), body.name || `person ${id}`)),
      h("h1", {}, nameField(body)),
      h("span", { class: "muted", id: "person-count" }, `${body.images} photos · ${body.faces} faces${body.hidden ? " · hidden" : ""}`), hide);
    return load();
  }).catch((err) => title.replaceChildren(failure(err)));
}

// The faces of an image drawn over its picture, each with its person's name (image page).
export function faceBoxes(picture, info) {
  if (!info.faces || !info.faces.length || !info.width || !info.height) return;
  const frame = h("div", { class: "faces-frame" });
  picture.replaceWith(frame);
  frame.append(picture, ...info.faces.map((face) => {
    const [left, top, right, bottom] = face.box;
    const style = `left:${(100 * left) / info.width}%;top:${(100 * top) / info.height}%;` +
      `width:${(100 * (right - left)) / info.width}%;height:${(100 * (bottom - top)) / info.height}%`;
    const label = face.person_id ? (face.name || `person ${face.person_id}`) : (face.hidden ? "" : "?");
    const attrs = { class: "face-box", style, "data-face": face.face, title: label || "hidden" };
    return face.person_id
      ? h("a", { ...attrs, href: `#/person/${face.person_id}` }, h("span", {}, label))
      : h("span", attrs, label ? h("span", {}, label) : null);
  }));
}
