// Memory: the user's entities and profile facts (with their history), added, edited and deleted through
// the same rules as the CLI (the server answers a refusal with the CLI's line).
import { $, el, when, state, getJson, postJson, guarded } from "./console.js";


function body(fields) { return state.user === state.me.user ? fields : { ...fields, user: state.user }; }

export function setupMemory() {
  $("entity-form").addEventListener("submit", (event) => { event.preventDefault(); guarded(saveEntity); });
  $("entity-cancel").addEventListener("click", resetEntityForm);
  $("fact-form").addEventListener("submit", (event) => { event.preventDefault(); guarded(setFact); });
}

function resetEntityForm() {
  $("entity-form").reset();
  $("entity-name").value = "";
  $("entity-submit").textContent = "Add entity";
  $("entity-cancel").hidden = true;
}

function editEntity(record) {
  $("entity-name").value = record.value;
  $("entity-type").value = record.type;
  $("entity-value").value = record.value;
  $("entity-context").value = record.contexts.join(" | ");
  $("entity-submit").textContent = `Save ${record.value}`;
  $("entity-cancel").hidden = false;
  $("entity-value").focus();
}

async function saveEntity() {
  const name = $("entity-name").value;
  const type = $("entity-type").value;
  const value = $("entity-value").value;
  const context = $("entity-context").value.trim();
  if (name) {
    const contexts = context ? context.split("|").map((c) => c.trim()).filter(Boolean) : [];
    await postJson("/memory/entities/edit", body({ name, type, value, contexts }));
  } else {
    await postJson("/memory/entities", body({ type, value, context }));
  }
  resetEntityForm();
  await showMemory();
}

async function setFact() {
  await postJson("/memory/facts", body({ attribute: $("fact-attribute").value, value: $("fact-value").value }));
  $("fact-form").reset();
  await showMemory();
}

function button(label, action) {
  const node = el("button", { type: "button" }, label);
  node.addEventListener("click", () => guarded(action));
  return node;
}

function entityRow(record) {
  return el("tr", { dataset: { entity: record.value } },
    el("td", {}, record.type), el("td", {}, record.value), el("td", {}, record.aliases.join(", ")),
    el("td", {}, record.contexts.join(" | ")), el("td", {}, record.mentions), el("td", {}, when(record.last_seen)),
    el("td", {},
      button("Edit", async () => editEntity(record)),
      button("Delete", async () => {
        await postJson("/memory/entities/delete", body({ name: record.value }));
        await showMemory();
      })));
}

function factRow(attribute, versions) {
  const current = versions.find((v) => v.valid_to === null || v.valid_to === undefined);
  const past = versions.filter((v) => v !== current)
    .map((v) => `${v.value} (${when(v.valid_from)} – ${when(v.valid_to)})`).join("; ");
  return el("tr", { dataset: { fact: attribute } },
    el("td", {}, attribute), el("td", {}, current ? current.value : "(none now)"),
    el("td", {}, current ? when(current.valid_from) : ""), el("td", {}, past),
    el("td", {}, current ? button("Unset", async () => {
      await postJson("/memory/facts/unset", body({ attribute }));
      await showMemory();
    }) : ""));
}

export async function showMemory() {
  const memory = await getJson(`/memory${state.user === state.me.user ? "" : "?user=" + encodeURIComponent(state.user)}`);
  if (!$("entity-type").options.length) {
    $("entity-type").replaceChildren(...state.me.entity_types.map((t) => el("option", { value: t }, t)));
  }
  $("entities").tBodies[0].replaceChildren(...memory.entities.map(entityRow));
  const profile = memory.profile || { facts: {}, interests: [], preferred_topics: [] };
  const fields = [["name", profile.name], ["language", profile.language], ["style", profile.communication_style],
    ["interests", (profile.interests || []).join(", ")], ["topics", (profile.preferred_topics || []).join(", ")]];
  $("profile").replaceChildren(...fields.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value || "—")]));
  $("facts").tBodies[0].replaceChildren(...Object.entries(profile.facts || {}).map(([a, v]) => factRow(a, v)));
}
