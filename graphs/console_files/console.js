// The console's core: requests with the tab's token, text-only DOM building, tabs and the user picker.
// Stored text only ever reaches the page as text nodes (el(), never innerHTML), so it cannot run.
import { showThreads, setupThreads } from "./threads.js";
import { showMemory, setupMemory } from "./memory.js";
import { showOps, setupOps } from "./ops.js";

const TOKEN_KEY = "convomem-token";
export const state = { user: null, me: null };

export function $(id) { return document.getElementById(id); }

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

export function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

export function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function refused(response) {
  let detail = `${response.status} ${response.statusText}`;
  try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
  if (response.status === 401) $("signin").hidden = false;
  const error = new Error(detail);
  error.status = response.status;
  return error;
}

export function withUser(path) {
  if (!state.user || state.user === state.me?.user) return path;
  return path + (path.includes("?") ? "&" : "?") + "user=" + encodeURIComponent(state.user);
}

export async function getJson(path) {
  const response = await fetch("api" + path, { headers: headers() });
  if (!response.ok) throw await refused(response);
  return response.json();
}

export async function post(path, body) {
  const response = await fetch("api" + path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await refused(response);
  return response;
}

export async function postJson(path, body) { return (await post(path, body)).json(); }

// A run's NDJSON events, one callback each, as they arrive.
export async function postStream(path, body, onEvent) {
  const reader = (await post(path, body)).body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) onEvent(JSON.parse(line));
    }
  }
}

export async function guarded(work) {
  try {
    showError("");
    return await work();
  } catch (error) {
    showError(error.message);
    return undefined;
  }
}

export async function download(path, filename) {
  const response = await fetch("api" + path, { headers: headers() });
  if (!response.ok) throw await refused(response);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

const SHOW = { threads: showThreads, memory: showMemory, ops: showOps };
let current = "threads";

function selectTab(name) {
  current = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of Object.keys(SHOW)) $(`tab-${tab}`).hidden = tab !== name;
  guarded(() => SHOW[name]());
}

async function start() {
  state.me = await getJson("/me");
  state.user = state.me.user;
  $("signin").hidden = true;
  $("whoami").textContent = state.me.confined ? `signed in as ${state.me.user}` : `local user ${state.me.user}`;
  const picker = $("user");
  picker.replaceChildren(...state.me.users.map((user) => el("option", { value: user }, user)));
  $("user-picker").hidden = state.me.confined;
  selectTab(current);
}

function boot() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => selectTab(button.dataset.tab));
  }
  $("user").addEventListener("change", (event) => { state.user = event.target.value; selectTab(current); });
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    guarded(start);
  });
  setupThreads();
  setupMemory();
  setupOps();
  guarded(start);
}

boot();
