// Conversations: the list with search, one thread's checkpoint tree (replay, fork), its transcript.
import { $, el, svg, when, state, getJson, postJson, postStream, guarded, download, withUser, showError } from "./console.js";

const ROW = 26;
const LANE = 22;
let thread = null;      // the open thread's id
let checkpoint = null;  // the selected checkpoint's id
let listing = 0;        // the newest list request: an older answer arriving late is dropped

function threadPath(suffix = "") { return `/threads/${encodeURIComponent(thread)}${suffix}`; }

export function setupThreads() {
  $("thread-search").addEventListener("submit", (event) => { event.preventDefault(); guarded(showThreads); });
  $("thread-query").addEventListener("input", () => guarded(showThreads));
  $("thread-status").addEventListener("change", () => guarded(showThreads));
  $("transcript-search").addEventListener("submit", (event) => { event.preventDefault(); guarded(showTranscript); });
  $("archive").addEventListener("click", () => guarded(toggleArchive));
  $("import-file").addEventListener("change", () => guarded(importFile));
  $("export").addEventListener("click", (event) => {
    event.preventDefault();
    guarded(() => download(threadPath("/export"), `${thread}.json`));
  });
  $("delete").addEventListener("click", () => { $("delete-choice").hidden = false; });
  $("delete-cancel").addEventListener("click", () => { $("delete-choice").hidden = true; });
  $("delete-with").addEventListener("click", () => guarded(() => remove(true)));
  $("delete-keep").addEventListener("click", () => guarded(() => remove(false)));
  $("replay").addEventListener("click", () => guarded(() => run("/replay", { checkpoint_id: checkpoint })));
  $("fork-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => run("/fork", { checkpoint_id: checkpoint, message: $("fork-message").value }));
  });
}

export async function showThreads() {
  const query = encodeURIComponent($("thread-query").value.trim());
  const status = $("thread-status").value;
  const asked = ++listing;
  const threads = await getJson(withUser(`/threads?status=${status}&search=${query}`));
  if (asked !== listing) return;
  const list = $("thread-list");
  list.replaceChildren(...threads.map((t) => {
    const item = el("li", { dataset: { thread: t.thread_id } },
      el("div", { class: "title" }, t.title || t.thread_id),
      el("div", { class: "meta" }, `${t.user_id ?? "?"} · ${t.messages} messages · ${t.status} · ${when(t.updated_at)}`));
    item.classList.toggle("selected", t.thread_id === thread);
    item.addEventListener("click", () => guarded(() => openThread(t.thread_id)));
    return item;
  }));
  if (!threads.length) list.append(el("li", { class: "meta" }, "No conversations."));
}

async function openThread(id) {
  thread = id;
  checkpoint = null;
  $("thread-view").hidden = false;
  $("checkpoint-view").hidden = true;
  $("delete-choice").hidden = true;
  for (const item of $("thread-list").children) item.classList.toggle("selected", item.dataset.thread === id);
  await Promise.all([showThread(), showTranscript()]);
}

async function showThread() {
  const view = await getJson(threadPath());
  const info = view.info || {};
  $("thread-title").textContent = info.title || thread;
  $("thread-meta").textContent =
    `${thread} · user ${info.user_id ?? "?"} · ${info.messages ?? 0} messages · ${info.status ?? ""} · ` +
    `created ${when(info.created_at)} · updated ${when(info.updated_at)}` +
    (view.next.length ? ` · waiting at ${view.next.join(", ")}` : "");
  $("archive").textContent = info.status === "archived" ? "Unarchive" : "Archive";
  drawTimeline(view.checkpoints, view.head);
}

// Lanes: a checkpoint continues its parent's lane unless a sibling already did (then a branch opens).
// A parent compaction removed is stood in for by the next older checkpoint (drawn dashed).
function layout(checkpoints) {
  const oldestFirst = [...checkpoints].reverse();
  const known = new Set(checkpoints.map((c) => c.checkpoint_id));
  const lane = new Map();
  const parentOf = new Map();
  const continued = new Set();
  let lanes = 0;
  let previous = null;
  for (const c of oldestFirst) {
    const parent = c.parent_id && known.has(c.parent_id) ? c.parent_id : previous;
    parentOf.set(c.checkpoint_id, parent);
    if (parent && !continued.has(parent)) {
      lane.set(c.checkpoint_id, lane.get(parent));
      continued.add(parent);
    } else {
      lane.set(c.checkpoint_id, lanes);
      lanes += 1;
    }
    previous = c.checkpoint_id;
  }
  return { lane, lanes, parentOf };
}

function describe(c) {
  const ran = c.ran.length ? c.ran.join("+") : c.source;
  return `step ${c.step} · ${ran}${c.next_nodes.length ? " → " + c.next_nodes.join(",") : ""} · ${c.messages} msgs`;
}

function drawTimeline(checkpoints, head) {
  const { lane, lanes, parentOf } = layout(checkpoints);
  const row = new Map(checkpoints.map((c, i) => [c.checkpoint_id, i]));
  const width = lanes * LANE + 640;
  const picture = svg("svg", { width, height: checkpoints.length * ROW + 10, role: "img", "aria-label": "checkpoint tree" });
  const x = (id) => 12 + lane.get(id) * LANE;
  const y = (id) => 14 + row.get(id) * ROW;
  for (const c of checkpoints) {
    const parent = parentOf.get(c.checkpoint_id);
    if (!parent) continue;
    const line = svg("path", {
      d: `M${x(c.checkpoint_id)},${y(c.checkpoint_id)} L${x(parent)},${y(parent)}`,
      stroke: "#a0aec0", fill: "none", "stroke-width": 2,
    });
    if (parent !== c.parent_id) line.setAttribute("stroke-dasharray", "3 3");
    picture.append(line);
  }
  for (const c of checkpoints) {
    const dot = svg("g", { class: "dot", "data-checkpoint": c.checkpoint_id, "data-lane": lane.get(c.checkpoint_id) });
    const circle = svg("circle", { cx: x(c.checkpoint_id), cy: y(c.checkpoint_id), r: 6, fill: c.checkpoint_id === head ? "#2b6cb0" : "#fff", stroke: "#2b6cb0", "stroke-width": 2 });
    const label = svg("text", { x: lanes * LANE + 16, y: y(c.checkpoint_id) + 4 });
    const time = c.created_at ? new Date(c.created_at).toLocaleTimeString() : "";
    label.textContent = `${c.checkpoint_id.slice(-8)}  ${describe(c)} · ${time}`;
    dot.append(circle, label);
    dot.classList.toggle("selected", c.checkpoint_id === checkpoint);
    dot.addEventListener("click", () => guarded(() => openCheckpoint(c.checkpoint_id)));
    picture.append(dot);
  }
  $("timeline").replaceChildren(picture);
}

function messageItem(m) {
  const calls = (m.tool_calls || []).map((call) => ` [calls ${call.name} ${JSON.stringify(call.args)}]`).join("");
  return el("li", { dataset: { role: m.role } }, el("span", { class: "role" }, m.role), m.content + calls);
}

async function openCheckpoint(id) {
  checkpoint = id;
  const view = await getJson(threadPath(`/checkpoints/${encodeURIComponent(id)}`));
  $("checkpoint-view").hidden = false;
  $("checkpoint-id").textContent = id;
  $("checkpoint-messages").replaceChildren(...view.messages.map(messageItem));
  $("run-output").hidden = true;
  for (const dot of document.querySelectorAll("#timeline .dot")) {
    dot.classList.toggle("selected", dot.dataset.checkpoint === id);
  }
}

async function run(action, body) {
  const output = $("run-output");
  output.hidden = false;
  output.textContent = "running…\n";
  output.dataset.state = "running";
  await postStream(threadPath(action), body, (event) => {
    if (event.type === "ReplyToken") output.append(event.text);
    else if (event.type === "ToolCall") output.append(`\n[tool ${event.name} ${JSON.stringify(event.args)}]\n`);
    else if (event.type === "ToolResult") output.append(`[${event.name} said: ${event.content}]\n`);
    else if (event.type === "TurnEnded") output.append(`\n— done${event.next_nodes.length ? ", waiting at " + event.next_nodes.join(",") : ""}`);
    else if (event.type === "error") { output.append(`\nerror: ${event.detail}`); showError(event.detail); }
  });
  output.dataset.state = "done";
  await Promise.all([showThread(), showTranscript(), showThreads()]);
}

function highlighted(snippet) {
  const parts = [];
  let marked = false;
  for (const piece of snippet.split(/([\u0002\u0003])/)) {
    if (piece === "\u0002") marked = true;
    else if (piece === "\u0003") marked = false;
    else if (piece) parts.push(marked ? el("mark", {}, piece) : piece);
  }
  return parts;
}

async function showTranscript() {
  const query = $("transcript-query").value.trim();
  const found = await getJson(threadPath(`/transcript${query ? "?q=" + encodeURIComponent(query) : ""}`));
  const list = $("transcript");
  if (found.hits) {
    list.replaceChildren(...found.hits.map((hit) =>
      el("li", { dataset: { role: hit.role } }, el("span", { class: "role" }, hit.role), ...highlighted(hit.snippet))));
    if (!found.hits.length) list.append(el("li", { class: "meta" }, "Nothing matches."));
  } else {
    list.replaceChildren(...found.entries.map(messageItem));
  }
}

async function toggleArchive() {
  const archived = $("archive").textContent === "Archive";
  await postJson(threadPath("/archive"), { archived });
  await Promise.all([showThread(), showThreads()]);
}

async function remove(withTranscript) {
  await postJson(threadPath("/delete"), { with_transcript: withTranscript });
  thread = null;
  $("thread-view").hidden = true;
  $("thread-title").textContent = "";
  await showThreads();
}

async function importFile() {
  const file = $("import-file").files[0];
  if (!file) return;
  let document;
  try {
    document = JSON.parse(await file.text());
  } catch {
    throw new Error(`${file.name} is not JSON: choose a file \`convomem export\` wrote.`);
  } finally {
    $("import-file").value = "";
  }
  const info = await postJson("/threads/import", { document });
  await showThreads();
  await openThread(info.thread_id);
}
