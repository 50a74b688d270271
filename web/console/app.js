// The Chorus console: a small hand-written script over the JSON API (no framework, no build).
// The API key lives in sessionStorage (this tab only) and is sent as a header, never in a URL.
// Live status: GET /v1/events read with fetch and a stream reader (EventSource cannot send
// headers). Data from the server is always inserted as text, never as HTML.
"use strict";

const KEY = "chorus.key";
const TERMINAL = new Set(["succeeded", "failed", "dead", "cancelled"]);
const state = {
  key: sessionStorage.getItem(KEY), admin: false, page: null, jobs: new Map(),
  cursor: null, stream: null, adminTimer: null, blobs: new Map(),
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, signal, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && path !== "/v1/usage") signOut("Your API key was refused.");
    throw new ApiError(response.status, data);
  }
  return data;
}

function when(iso) {
  if (!iso) return "";
  const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function badge(status) {
  return el("span", { class: `status ${status}` }, status);
}

// -- sign in ---------------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  await api("/v1/usage"); // throws on a bad key
  sessionStorage.setItem(KEY, key);
  try {
    await api("/v1/admin/overview");
    state.admin = true;
  } catch (error) {
    state.admin = false;
  }
  $("nav-admin").hidden = !state.admin;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  startEvents();
  loadVoiceChoices();
  route();
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.key = null;
  state.jobs.clear();
  for (const url of state.blobs.values()) URL.revokeObjectURL(url);
  state.blobs.clear();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("live").hidden = true;
  $("signin-error").textContent = message;
  show("signin");
}

// -- pages -----------------------------------------------------------------------------------

const PAGES = ["signin", "speak", "jobs", "storybooks", "voices", "admin"];

function show(page) {
  state.page = page;
  for (const name of PAGES) $(`page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  clearInterval(state.adminTimer);
  state.adminTimer = null;
}

function route() {
  if (!state.key) return show("signin");
  let page = location.hash.slice(1) || "speak";
  if (!PAGES.includes(page) || page === "signin" || (page === "admin" && !state.admin)) {
    page = "speak";
  }
  show(page);
  if (page === "jobs") loadJobs(true);
  if (page === "storybooks") loadBooks();
  if (page === "voices") loadVoices();
  if (page === "admin") {
    loadOverview();
    state.adminTimer = setInterval(loadOverview, 5000);
  }
}

// -- audio -----------------------------------------------------------------------------------

// A signed audio_url (it carries its signature in the query) plays as it is; otherwise the
// clip is fetched with the key and played from a blob: URL.
async function audioSource(url) {
  if (url.includes("?")) return url;
  if (!state.blobs.has(url)) {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${state.key}` } });
    if (!response.ok) throw new ApiError(response.status, null);
    state.blobs.set(url, URL.createObjectURL(await response.blob()));
  }
  return state.blobs.get(url);
}

function player(url, id) {
  const audio = el("audio", { controls: true, preload: "metadata" });
  if (id) audio.id = id;
  audioSource(url).then((src) => { audio.src = src; }).catch((error) => {
    audio.replaceWith(el("span", { class: "error" }, `audio: ${error.message}`));
  });
  return audio;
}

function jobAudioUrl(job) {
  if (job.audio_url && job.audio_url.includes("?")) return job.audio_url;
  return job.audio_id ? `/v1/audio/${encodeURIComponent(job.audio_id)}` : null;
}

// -- speak -----------------------------------------------------------------------------------

async function loadVoiceChoices() {
  try {
    const { voices } = await api("/v1/voices?limit=100");
    const select = $("voice");
    select.replaceChildren(el("option", { value: "" }, "default"));
    for (const v of voices.filter((voice) => voice.status === "completed")) {
      select.append(el("option", { value: v.voice_id }, `${v.name} (${v.language || "any"})`));
    }
  } catch (error) {
    $("speak-error").textContent = `Voices: ${error.message}`;
  }
}

async function speak(event) {
  event.preventDefault();
  $("speak-error").textContent = "";
  const body = { text: $("text").value, output_format: $("format").value };
  if ($("voice").value) body.voice_id = $("voice").value;
  if ($("language").value.trim()) body.language = $("language").value.trim();
  $("speak-submit").disabled = true;
  try {
    const job = await api("/v1/jobs", { method: "POST", body });
    state.result = job.id;
    upsertJob(job);
  } catch (error) {
    $("speak-error").textContent = error.message;
  } finally {
    $("speak-submit").disabled = false;
  }
}

function renderResult(job) {
  const card = $("result");
  card.hidden = false;
  card.dataset.jobId = job.id;
  card.replaceChildren(
    el("h2", {}, "Result ", badge(job.status)),
    el("p", { class: "muted mono" }, `job ${job.id}`, job.cached ? " (from the cache)" : ""),
  );
  if (job.error) {
    card.append(el("p", { class: "error job-error" }, `${job.error.code}: ${job.error.message}`));
  }
  const url = job.status === "succeeded" ? jobAudioUrl(job) : null;
  if (url) card.append(player(url, "result-audio"));
}

// -- jobs ------------------------------------------------------------------------------------

function upsertJob(job) {
  const before = state.jobs.get(job.id);
  state.jobs.set(job.id, job);
  if (state.result === job.id && (!before || before.status !== job.status)) renderResult(job);
  const row = document.querySelector(`#jobs-body tr[data-job-id="${CSS.escape(job.id)}"]`);
  if (row) row.replaceWith(jobRow(job));
  else if (state.page === "jobs" && !before) $("jobs-body").prepend(jobRow(job));
}

function jobRow(job) {
  let outcome = "";
  if (job.error) outcome = el("span", { class: "error job-error" }, `${job.error.code}: ${job.error.message}`);
  else if (job.status === "succeeded" && jobAudioUrl(job)) {
    outcome = el("button", {
      class: "small", type: "button",
      onclick: (e) => e.target.replaceWith(player(jobAudioUrl(job))),
    }, "Play");
  }
  return el("tr", { dataset: { jobId: job.id } },
    el("td", { class: "nowrap" }, when(job.created_at)), el("td", { class: "mono nowrap", title: job.id }, `…${job.id.slice(-10)}`),
    el("td", {}, job.voice_id || ""), el("td", {}, job.output_format || ""),
    el("td", {}, job.characters ?? ""), el("td", {}, badge(job.status)), el("td", {}, outcome));
}

async function loadJobs(fresh) {
  const body = $("jobs-body");
  if (fresh) { body.replaceChildren(); state.cursor = null; }
  $("jobs-note").textContent = "";
  try {
    const query = new URLSearchParams({ limit: "20" });
    if (state.cursor) query.set("cursor", state.cursor);
    const page = await api(`/v1/jobs?${query}`);
    for (const job of page.jobs) { state.jobs.set(job.id, job); body.append(jobRow(job)); }
    state.cursor = page.next_cursor;
    $("jobs-more").hidden = !page.next_cursor;
  } catch (error) {
    $("jobs-note").textContent = error.message;
    return;
  }
  if (!body.children.length) $("jobs-note").textContent = "No jobs yet.";
}

async function refreshJob(id) {
  try {
    upsertJob(await api(`/v1/jobs/${encodeURIComponent(id)}`));
  } catch (error) {
    if (error.status !== 404) console.warn("job", id, error.message);
  }
}

// -- storybooks ------------------------------------------------------------------------------

async function loadBooks() {
  $("books-note").textContent = "";
  try {
    const { storybooks } = await api("/v1/storybooks?limit=50");
    $("books-body").replaceChildren(...storybooks.map((b) => el("tr", { dataset: { bookId: b.id } },
      el("td", {}, when(b.created_at)), el("td", {}, b.title || b.id),
      el("td", {}, b.lines_total), el("td", {}, b.round), el("td", {}, badge(b.status)))));
    if (!storybooks.length) $("books-note").textContent = "No storybooks yet.";
  } catch (error) {
    $("books-note").textContent = error.message;
  }
}

// -- voices ----------------------------------------------------------------------------------

async function loadVoices() {
  $("voices-note").textContent = "";
  try {
    const { voices } = await api("/v1/voices?limit=100");
    $("voices-list").replaceChildren(...voices.map((v) => {
      const card = el("div", { class: "voice", dataset: { voiceId: v.voice_id } },
        el("h3", {}, v.name, " ", badge(v.status)),
        el("div", { class: "muted" }, [v.language, v.category, v.visibility].filter(Boolean).join(" · ")),
        el("div", { class: "mono muted" }, v.voice_id));
      if (v.status_reason) card.append(el("div", { class: "error" }, v.status_reason));
      if (v.preview_url) {
        card.append(el("button", {
          class: "small", type: "button",
          onclick: (e) => e.target.replaceWith(player(v.preview_url)),
        }, "Preview"));
      } else if (v.status === "processing") {
        card.append(el("div", { class: "muted" }, "Cloning: the preview follows when ready."));
      }
      return card;
    }));
    if (!voices.length) $("voices-note").textContent = "No voices.";
  } catch (error) {
    $("voices-note").textContent = error.message;
  }
}

// -- admin -----------------------------------------------------------------------------------

function stat(label, value, note = "") {
  return el("div", { class: "card" }, el("div", { class: "muted" }, label),
    el("div", { class: "stat" }, value), el("div", { class: "muted" }, note));
}

async function loadOverview() {
  let o;
  try {
    o = await api("/v1/admin/overview");
    $("admin-error").textContent = "";
  } catch (error) {
    $("admin-error").textContent = error.message;
    return;
  }
  const backlog = o.lanes.reduce((n, lane) => n + lane.length, 0);
  const rate = o.cache.hit_rate === null ? "–" : `${Math.round(o.cache.hit_rate * 100)}%`;
  $("admin-stats").replaceChildren(
    stat("Backlog", backlog, `${o.lanes.reduce((n, l) => n + l.pending, 0)} pending`),
    stat("Dead letters", o.dead_letters),
    stat("Provider slots in use", `${o.slots.in_use} / ${o.slots.limit}`, o.slots.provider),
    stat("Cache hit rate", rate, `${o.cache.cached} of ${o.cache.jobs} jobs, last 24 h`),
    stat("Supervisor restarts", o.processes.reduce((n, p) => n + p.restarts, 0),
      `${o.processes.length} processes`),
  );
  $("lanes-body").replaceChildren(...o.lanes.map((l) => el("tr", {},
    el("td", {}, l.lane), el("td", { class: "mono" }, l.stream), el("td", {}, l.length),
    el("td", {}, l.pending))));
  $("consumers-body").replaceChildren(...o.consumers.map((c) => el("tr", {},
    el("td", {}, c.lane), el("td", { class: "mono" }, c.name), el("td", {}, c.pending),
    el("td", {}, `${(c.idle_ms / 1000).toFixed(1)} s`))));
  $("dead-body").replaceChildren(...o.recent_dead.map((d) => el("tr", { dataset: { deadId: d.id } },
    el("td", {}, when(d.dead_at)), el("td", { class: "mono" }, d.job_id), el("td", {}, d.lane),
    el("td", {}, d.deliveries), el("td", {}, d.reason),
    el("td", {}, el("button", { class: "small", type: "button", onclick: () => redrive(d.id) },
      "Redrive")))));
  $("dead-note").textContent = !o.dead_letters ? "No dead letters."
    : o.dead_letters > o.recent_dead.length
      ? `Showing the oldest ${o.recent_dead.length} of ${o.dead_letters}.` : "";
  $("processes-body").replaceChildren(...o.processes.map((p) => el("tr",
    { dataset: { role: p.role }, class: p.current ? "current" : "" },
    el("td", {}, p.current ? `${p.role} (this)` : p.role), el("td", { class: "mono" }, p.consumer),
    el("td", {}, p.host), el("td", {}, p.pid), el("td", {}, when(p.started_at)),
    el("td", {}, when(p.last_seen)),
    el("td", {}, [p.restarts, ...p.children.map((c) => `${c.id} ×${c.restarts}`)].join(" · ")))));
  $("children-body").replaceChildren(...o.supervision.children.map((c) => el("tr", {},
    el("td", {}, c.supervisor), el("td", {}, c.id), el("td", {}, c.state),
    el("td", {}, c.restarts))));
}

async function redrive(id) {
  try {
    await api(`/v1/admin/dead-letters/${encodeURIComponent(id)}/redrive`, { method: "POST" });
  } catch (error) {
    $("admin-error").textContent = error.message;
  }
  loadOverview();
}

// -- live events -----------------------------------------------------------------------------

function onEvent(event) {
  const kind = event.kind || "";
  if (kind.startsWith("job.") && event.subject) {
    if (state.jobs.has(event.subject) || state.page === "jobs") refreshJob(event.subject);
  }
  else if (kind.startsWith("storybook.") && state.page === "storybooks") loadBooks();
  else if (kind.startsWith("voice.") && state.page === "voices") loadVoices();
}

// One long GET /v1/events, read frame by frame; resumes with Last-Event-ID after a break.
async function startEvents() {
  if (state.stream) state.stream.abort();
  const control = new AbortController();
  state.stream = control;
  let last = null;
  let delay = 1000;
  while (!control.signal.aborted && state.key) {
    try {
      const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = last;
      const response = await fetch("/v1/events", { headers, signal: control.signal, cache: "no-store" });
      if (!response.ok || !response.body) throw new ApiError(response.status, null);
      $("live").hidden = false;
      $("live").classList.remove("off");
      delay = 1000;
      // anything that changed while no stream was open
      for (const job of state.jobs.values()) if (!TERMINAL.has(job.status)) refreshJob(job.id);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("id:")) last = line.slice(3).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (data) {
            try { onEvent(JSON.parse(data)); } catch (error) { console.warn("event", error); }
          }
        }
      }
    } catch (error) {
      if (control.signal.aborted) return;
      if (error.status === 401) return signOut("Your API key was refused.");
    }
    $("live").classList.add("off");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// -- start -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("api-key").value.trim());
      $("api-key").value = "";
    } catch (error) {
      state.key = null;
      $("signin-error").textContent = error.status === 401 ? "That API key is not valid." : error.message;
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("speak-form").addEventListener("submit", speak);
  $("jobs-more").addEventListener("click", () => loadJobs(false));
  window.addEventListener("hashchange", route);
  if (state.key) signIn(state.key).catch(() => signOut("Please sign in again."));
  else show("signin");
});
