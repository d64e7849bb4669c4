// Tether console (PROTOCOL §10.2): hash routing, sign-in by API token, live updates from
// /api/v1/events with polling of /api/v1 while the stream is unavailable.
import { api, ApiError, token } from "./api.js";
import { h } from "./dom.js";
import { connectEvents } from "./events.js";
import { PAGES } from "./pages.js";

const POLL_MS = 2000; // while the stream is down
const SLOW_POLL_MS = 30_000; // while it is up ("last seen" and expiry move without events)
const $ = (id) => document.getElementById(id);
let me = null;
let current = null; // { name, refresh, root }
let live = "offline";
let stopEvents = null;
let pollTimer = null;
let pending = null;

const can = (cap) => !!me && me.capabilities.includes(cap);

function flash(msg) {
  $("error").textContent = msg;
  $("error").hidden = !msg;
}

function setLive(state) {
  live = state;
  $("live").textContent = state === "live" ? "live" : state === "polling" ? "polling" : "offline";
  $("live").className = `badge ${state}`;
  schedulePoll();
}

function schedulePoll() {
  clearTimeout(pollTimer);
  if (!me) return;
  pollTimer = setTimeout(async () => {
    await refresh();
    schedulePoll();
  }, live === "live" ? SLOW_POLL_MS : POLL_MS);
}

async function refresh() {
  const page = current;
  if (!page) return;
  try {
    await page.refresh();
    if (page.root.dataset.ready !== "1") {
      page.root.dataset.ready = "1";
      if (!window.__firstRender) window.__firstRender = performance.now();
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut("Your token was refused (revoked or expired). Sign in again.");
    flash(`${page.name}: ${err.message}`);
  }
}

function onEvent(ev) {
  if (!current) return;
  const hit = PAGES[current.name].events.some((p) => ev.event.startsWith(p));
  if (!hit) return;
  clearTimeout(pending); // coalesce bursts (a fleet heartbeating)
  pending = setTimeout(refresh, 150);
}

function route() {
  if (!me) return;
  let name = location.hash.replace(/^#\/?/, "") || "fleet";
  if (!PAGES[name] || !can(PAGES[name].needs)) name = "fleet";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${name}`);
  const root = h("section", { id: `page-${name}`, "data-page": name });
  $("main").replaceChildren(root);
  flash("");
  current = { name, root, refresh: PAGES[name].mount(root, { can, flash, refresh: () => refresh() }) };
  document.title = `Tether: ${PAGES[name].title}`;
  void refresh();
}

function signInPage(message) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", placeholder: "tet_pat_…", required: true });
  const form = h("form", { id: "signin", class: "signin", onsubmit: async (e) => {
    e.preventDefault();
    token.set(input.value.trim());
    await start();
  } }, h("h1", {}, "Sign in"), h("p", { class: "muted" },
    "Paste an API token (tether api-token create). It is kept for this tab only and sent as a bearer header."),
  h("label", {}, "API token", input), h("button", { type: "submit", class: "primary" }, "Sign in"));
  $("main").replaceChildren(form);
  flash(message ?? "");
  if (!window.__firstRender) window.__firstRender = performance.now();
}

function signOut(message) {
  token.clear();
  me = null;
  current = null;
  stopEvents?.();
  stopEvents = null;
  clearTimeout(pollTimer);
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  setLive("offline");
  signInPage(message);
}

async function start() {
  if (!token.get()) return signInPage();
  try {
    me = await api("GET", "/whoami");
  } catch (err) {
    return signOut(err instanceof ApiError && err.status === 401 ? "That token was refused." : `Sign-in failed: ${err.message}`);
  }
  $("who").textContent = `${me.name} (${me.role})`;
  $("who").dataset.role = me.role;
  for (const a of document.querySelectorAll("nav a")) {
    const name = a.getAttribute("href").slice(2);
    a.hidden = !can(PAGES[name].needs);
  }
  $("nav").hidden = false;
  $("signout").hidden = false;
  setLive("polling");
  stopEvents = connectEvents(onEvent, setLive);
  route();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("signout").addEventListener("click", () => signOut());
  void start();
});
