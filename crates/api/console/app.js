// crsd console: a client of crsd's public API 3.0, in the browser.
//
// Every request is signed here with TC3-HMAC-SHA256 (WebCrypto), exactly as the SDKs sign:
// POST / with a JSON body, SignedHeaders content-type;host. The SecretKey stays in this page's
// memory (and in the tab's sessionStorage only if the user asks); it is never sent, and
// nothing is kept in a cookie. Everything shown is what the account's keys see through the
// API. Text from the API is only ever put into the page as text (textContent), never as HTML.
"use strict";

const REDIS = { service: "redis", version: "2018-04-12" };
const MONITOR = { service: "monitor", version: "2018-07-24" };
const STATUS = { 0: "creating", 1: "busy", 2: "running", "-2": "isolated", "-3": "deleted" };
const STORE_KEY = "crsd-console-credentials";
const POLL_MS = 1000;
const LIST_LIMIT = 100; // instances listed (the API's page)
const WAIT_LIMIT_MS = 10 * 60 * 1000;
const CHARTS = [
  { metric: "MemUsed", title: "Memory used (MB)" },
  { metric: "Commands", title: "Operations per second" },
  { metric: "Connections", title: "Connections" },
  { metric: "CmdHitsRatio", title: "Hit ratio (%)" },
];

const $ = (sel) => document.querySelector(sel);
const enc = new TextEncoder();

let creds = null; // { id, key }
let instances = [];
let selected = null; // an instance id
let products = []; // DescribeProductInfo's ProductSet of the first zone
let zoneId = null;
let clockOffset = 0; // seconds to add to this machine's clock to get crsd's
let charts = [];

// ---- signing ---------------------------------------------------------------------------

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", enc.encode(text)));
}

async function hmac(key, text) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" },
    false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(text)));
}

// The Authorization header of a POST of `body` to / at this page's host, for `service`.
async function authorization(service, body, ts) {
  const date = new Date(ts * 1000).toISOString().slice(0, 10);
  const canonical = "POST\n/\n\ncontent-type:application/json\nhost:" + location.host +
    "\n\ncontent-type;host\n" + await sha256Hex(body);
  const scope = date + "/" + service + "/tc3_request";
  const toSign = "TC3-HMAC-SHA256\n" + ts + "\n" + scope + "\n" + await sha256Hex(canonical);
  const kDate = await hmac(enc.encode("TC3" + creds.key), date);
  const kService = await hmac(kDate, service);
  const kSigning = await hmac(kService, "tc3_request");
  const signature = hex(await hmac(kSigning, toSign));
  return "TC3-HMAC-SHA256 Credential=" + creds.id + "/" + scope +
    ", SignedHeaders=content-type;host, Signature=" + signature;
}

// crsd takes a signature that changes something once. The signature covers the body and the
// second, not the action: two requests with the same body in the same second (a
// DescribeInstanceBackups then a ManualBackupInstance of one instance) would sign alike, and
// the second would be refused as a replay. So no two requests of this page share a body and a
// second: a repeat is signed one second later (the server's window allows minutes).
const lastSecond = new Map(); // service + body -> the last second it was signed for
const MAX_AHEAD = 2; // seconds a request may be signed ahead of the clock

async function freshSecond(service, body) {
  const key = service + "\n" + body;
  for (;;) {
    const now = Math.floor(Date.now() / 1000) + clockOffset;
    const last = lastSecond.get(key);
    const ts = last !== undefined && last >= now ? last + 1 : now;
    // Repeats faster than one a second wait rather than drift out of the server's window.
    if (ts - now > MAX_AHEAD) {
      await sleep(250);
      continue;
    }
    lastSecond.set(key, ts);
    if (lastSecond.size > 500) {
      for (const [k, t] of lastSecond) if (t < now - 5) lastSecond.delete(k);
    }
    return ts;
  }
}

class ApiError extends Error {
  constructor(code, message) {
    super(code + ": " + message);
    this.code = code;
  }
}

// The `Response` of `action`, or an ApiError with the API's code and message.
async function api(action, params = {}, which = REDIS, retried = false) {
  const body = JSON.stringify(params);
  const ts = await freshSecond(which.service, body);
  const resp = await fetch("/", {
    method: "POST",
    cache: "no-store",
    credentials: "omit",
    headers: {
      "Content-Type": "application/json",
      "Authorization": await authorization(which.service, body, ts),
      "X-TC-Action": action,
      "X-TC-Version": which.version,
      "X-TC-Timestamp": String(ts),
    },
    body,
  });
  let json;
  try {
    json = await resp.json();
  } catch (e) {
    throw new ApiError("HTTP" + resp.status, "crsd answered " + resp.status);
  }
  const r = json.Response || {};
  if (r.Error) {
    // This machine's clock is off: learn crsd's from its Date header, then once more.
    if (r.Error.Code === "AuthFailure.SignatureExpire" && !retried && resp.headers.get("Date")) {
      const server = Date.parse(resp.headers.get("Date")) / 1000;
      clockOffset = Math.round(server - Date.now() / 1000);
      return api(action, params, which, true);
    }
    throw new ApiError(r.Error.Code, r.Error.Message);
  }
  return r;
}

// ---- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function show(node, on) {
  node.hidden = !on;
}

function say(text, kind = "error") {
  const m = $("#message");
  m.textContent = text;
  m.className = kind;
  show(m, true);
}

function clearMessage() {
  show($("#message"), false);
}

// Runs an action of the user; an error is shown, never thrown away.
async function guarded(fn) {
  try {
    clearMessage();
    await fn();
  } catch (e) {
    say(e instanceof ApiError ? e.message : "Error: " + e.message);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mb(n) {
  n = Number(n) || 0;
  return n >= 1024 ? (n / 1024).toFixed(n % 1024 ? 1 : 0) + " GB" : n + " MB";
}

function bytes(n) {
  n = Number(n) || 0;
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KB";
  return n + " B";
}

function current() {
  return instances.find((i) => i.InstanceId === selected);
}

// ---- sign in ---------------------------------------------------------------------------

async function signIn(id, key, remember) {
  creds = { id, key };
  try {
    await api("DescribeInstances", { Limit: 1, Offset: 0 });
  } catch (e) {
    creds = null;
    throw e;
  }
  if (remember) sessionStorage.setItem(STORE_KEY, JSON.stringify(creds));
  $("#secret-key").value = "";
  $("#who").textContent = id;
  show($("#signin"), false);
  show($("#signout"), true);
  show($("#instances"), true);
  await loadProducts().catch(() => {});
  await refresh();
}

function signOut() {
  sessionStorage.removeItem(STORE_KEY);
  creds = null;
  instances = [];
  selected = null;
  lastSecond.clear();
  destroyCharts();
  $("#who").textContent = "";
  for (const s of ["#signout", "#instances", "#detail", "#tasks"]) show($(s), false);
  $("#task-list").replaceChildren();
  show($("#signin"), true);
  clearMessage();
}

// ---- instances -------------------------------------------------------------------------

async function refresh() {
  const r = await api("DescribeInstances", { Limit: LIST_LIMIT, Offset: 0 });
  instances = (r.InstanceSet || []).filter((i) => i.Status !== -3);
  renderInstances();
  const more = $("#more-instances");
  more.textContent = "The first " + LIST_LIMIT + " of " + r.TotalCount + " instances.";
  show(more, r.TotalCount > LIST_LIMIT);
  if (selected && !current()) {
    selected = null;
    show($("#detail"), false);
  }
  if (selected) renderDetailHead();
}

function renderInstances() {
  const body = $("#instance-table tbody");
  body.replaceChildren(...instances.map((i) => {
    const row = el("tr", { "data-id": i.InstanceId, class: i.InstanceId === selected ? "selected" : "" },
      el("td", {}, el("a", { href: "#" + i.InstanceId, class: "open" }, i.InstanceName || i.InstanceId)),
      el("td", { class: "mono" }, i.InstanceId),
      el("td", { class: "status s" + i.Status }, STATUS[i.Status] || String(i.Status)),
      el("td", {}, i.Type === 18 ? "cluster " + i.RedisShardNum + " shards" : "standard",
        " · ", i.RedisReplicasNum + (i.RedisReplicasNum === 1 ? " replica" : " replicas")),
      el("td", { class: "mono" }, i.WanIp + ":" + i.Port),
      el("td", {}, mb(i.Size)),
      el("td", {}, mb(i.SizeUsed)),
      el("td", {}, i.BillingMode === 1 ? "monthly" : "hourly"));
    row.addEventListener("click", (ev) => {
      ev.preventDefault();
      guarded(() => select(i.InstanceId));
    });
    return row;
  }));
  show($("#no-instances"), instances.length === 0);
}

async function select(id) {
  selected = id;
  renderInstances();
  renderDetailHead();
  show($("#detail"), true);
  $("#downloads").replaceChildren();
  await openTab(currentTab());
}

function renderDetailHead() {
  const i = current();
  if (!i) return;
  $("#detail-title").textContent = (i.InstanceName || i.InstanceId) + " (" + i.InstanceId + ") — " +
    (STATUS[i.Status] || i.Status);
}

function currentTab() {
  return document.querySelector("#tabs .current").dataset.tab;
}

async function openTab(tab) {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.classList.toggle("current", b.dataset.tab === tab);
  }
  for (const t of ["charts", "backups", "slowlog"]) show($("#tab-" + t), t === tab);
  if (tab === "charts") await drawCharts();
  if (tab === "backups") await loadBackups();
  if (tab === "slowlog") await loadSlowLog();
}

// ---- progress ---------------------------------------------------------------------------

// A line in the progress list, updated as `wait` runs; ends with its outcome.
async function track(label, wait) {
  show($("#tasks"), true);
  const state = el("span", { class: "state" }, "running");
  const item = el("li", {}, label, " — ", state);
  $("#task-list").prepend(item);
  try {
    const outcome = await wait((text) => { state.textContent = text; });
    state.textContent = outcome || "done";
    state.className = "state done";
  } catch (e) {
    state.textContent = e.message;
    state.className = "state failed";
    throw e;
  } finally {
    await refresh().catch(() => {});
  }
}

async function waitTask(taskId, progress) {
  const until = Date.now() + WAIT_LIMIT_MS;
  for (;;) {
    const r = await api("DescribeTaskInfo", { TaskId: Number(taskId) });
    progress("task " + taskId + ": " + r.Status);
    if (r.Status === "succeed") return "done (task " + taskId + ")";
    if (r.Status === "failed" || r.Status === "error") {
      throw new Error("task " + taskId + " " + r.Status + (r.TaskMessage ? ": " + r.TaskMessage : ""));
    }
    if (Date.now() > until) throw new Error("task " + taskId + " still " + r.Status);
    await sleep(POLL_MS);
  }
}

// Polls the instance until `done(instance)`; its status is shown meanwhile.
async function waitInstance(id, done, progress) {
  const until = Date.now() + WAIT_LIMIT_MS;
  for (;;) {
    const r = await api("DescribeInstances", { InstanceId: id, Limit: 1, Offset: 0 });
    const i = (r.InstanceSet || [])[0];
    if (i && done(i)) return "done: " + (STATUS[i.Status] || String(i.Status));
    if (!i) throw new Error(id + " is gone");
    progress(STATUS[i.Status] || String(i.Status));
    if (Date.now() > until) throw new Error(id + " is still " + (STATUS[i.Status] || i.Status));
    await sleep(POLL_MS);
  }
}

// ---- create, resize, password, delete --------------------------------------------------

async function loadProducts() {
  const r = await api("DescribeProductInfo", {});
  const zone = ((r.RegionSet || [])[0] || {}).ZoneSet || [];
  if (zone.length) {
    // ZoneId is the zone's name (ap-guangzhou-2); CreateInstances takes the number.
    zoneId = Number(zone[0].OldZoneId);
    products = zone[0].ProductSet || [];
  }
}

function product(type) {
  return products.find((p) => Number(p.Type) === Number(type));
}

function options(select, values, label = (v) => v) {
  select.replaceChildren(...values.map((v) => el("option", { value: v }, label(v))));
}

function fillCreateChoices() {
  const f = $("#create-form");
  const p = product(f.type.value);
  const sizes = p ? p.ShardSize.map((gb) => Math.round(Number(gb) * 1024)) : [1024, 2048, 4096];
  options(f.mem, sizes, mb);
  options(f.shards, p && Number(f.type.value) === 18 ? p.ShardNum : ["1"]);
  options(f.replicas, p ? p.ReplicaNum : ["1"]);
}

function openDialog(id) {
  const d = $(id);
  d.querySelector("form").reset();
  d.showModal();
  return d;
}

async function create(form) {
  const billing = Number(form.billing.value);
  const params = {
    TypeId: Number(form.type.value),
    MemSize: Number(form.mem.value),
    GoodsNum: 1,
    BillingMode: billing,
    Password: form.password.value,
    RedisShardNum: Number(form.shards.value),
    RedisReplicasNum: Number(form.replicas.value),
  };
  if (billing === 1) params.Period = 1;
  if (zoneId !== null) params.ZoneId = zoneId;
  if (form.name.value.trim()) params.InstanceName = form.name.value.trim();
  const r = await api("CreateInstances", params);
  $("#create-dialog").close();
  await refresh();
  for (const id of r.InstanceIds || []) {
    track("Create " + id, (p) => waitInstance(id, (i) => i.Status === 2, p)).catch(() => {});
  }
}

async function resize(form) {
  const i = current();
  const mem = Number(form.mem.value);
  await api("UpgradeInstance", {
    InstanceId: i.InstanceId, MemSize: mem,
    RedisShardNum: i.RedisShardNum, RedisReplicasNum: i.RedisReplicasNum,
  });
  $("#resize-dialog").close();
  await refresh();
  track("Resize " + i.InstanceId + " to " + mb(mem),
    (p) => waitInstance(i.InstanceId, (x) => x.Status === 2 && x.RedisShardSize === mem, p))
    .catch(() => {});
}

async function resetPassword(form) {
  const id = selected;
  const r = await api("ResetPassword", { InstanceId: id, Password: form.password.value });
  $("#password-dialog").close();
  track("Reset the password of " + id, (p) => waitTask(r.TaskId, p)).catch(() => {});
}

async function remove(i) {
  const id = i.InstanceId;
  await track("Delete " + id, async (p) => {
    if (i.Status !== -2) {
      const action = i.BillingMode === 1 ? "DestroyPrepaidInstance" : "DestroyPostpaidInstance";
      await api(action, { InstanceId: id });
      p("isolating");
      await waitInstance(id, (x) => x.Status === -2, p);
    }
    const r = await api("CleanUpInstance", { InstanceId: id });
    return waitTask(r.TaskId, p);
  });
}

// A confirmation dialog; resolves true when confirmed.
function confirmed(title, text) {
  return new Promise((resolve) => {
    const d = openDialog("#confirm-dialog");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    const form = $("#confirm-form");
    const done = (answer) => {
      form.removeEventListener("submit", onSubmit);
      d.removeEventListener("close", onClose);
      if (d.open) d.close();
      resolve(answer);
    };
    const onSubmit = (ev) => { ev.preventDefault(); done(true); };
    const onClose = () => done(false);
    form.addEventListener("submit", onSubmit);
    d.addEventListener("close", onClose);
  });
}

// ---- backups ---------------------------------------------------------------------------

async function backupNow() {
  const id = selected;
  const r = await api("ManualBackupInstance", { InstanceId: id, Remark: "console" });
  track("Back up " + id, (p) => waitTask(r.TaskId, p))
    .then(() => { if (selected === id && currentTab() === "backups") return loadBackups(); })
    .catch(() => {});
}

const BACKUP_STATUS = { 1: "in use", 2: "ready", 3: "exporting", 4: "exported", "-1": "expired" };

async function loadBackups() {
  const id = selected;
  const r = await api("DescribeInstanceBackups", { InstanceId: id, Limit: 100, Offset: 0 });
  if (id !== selected) return;
  const list = r.BackupSet || [];
  $("#backup-table tbody").replaceChildren(...list.map((b) => el("tr", { "data-backup": b.BackupId },
    el("td", { class: "mono" }, b.BackupId),
    el("td", {}, b.StartTime),
    el("td", {}, b.BackupType === "0" ? "manual" : "daily"),
    el("td", {}, BACKUP_STATUS[b.Status] || String(b.Status)),
    el("td", {}, bytes(b.BackupSize)),
    el("td", {}, b.Remark || ""),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "download", onclick: () => guarded(() => links(b)) }, "Download"),
      el("button", { type: "button", class: "restore", onclick: () => restoreDialog(b) }, "Restore")))));
  show($("#no-backups"), list.length === 0);
}

async function links(b) {
  const r = await api("DescribeBackupUrl", { InstanceId: selected, BackupId: b.BackupId });
  const urls = r.DownloadUrl || [];
  $("#downloads").replaceChildren(el("h4", {}, "Download " + b.BackupId + " (links expire)"),
    ...urls.map((u, n) => el("p", {}, el("a", { href: u, rel: "noopener noreferrer", class: "mono" },
      (r.Filenames || [])[n] || u))));
}

let restoring = null;

function restoreDialog(b) {
  restoring = b;
  openDialog("#restore-dialog");
  $("#restore-what").textContent = "Replace the data of " + selected + " with backup " +
    b.BackupId + " of " + b.StartTime + ".";
}

async function restore(form) {
  const id = selected;
  const b = restoring;
  const r = await api("RestoreInstance", { InstanceId: id, BackupId: b.BackupId, Password: form.password.value });
  $("#restore-dialog").close();
  track("Restore " + id + " from " + b.BackupId, (p) => waitTask(r.TaskId, p)).catch(() => {});
}

// ---- slow log --------------------------------------------------------------------------

async function loadSlowLog() {
  const id = selected;
  const r = await api("DescribeSlowLog", { InstanceId: id, Limit: 100, Offset: 0 });
  if (id !== selected) return;
  const list = r.InstanceSlowLogDetail || r.InstanceSlowlogDetail || [];
  $("#slowlog-table tbody").replaceChildren(...list.map((s) => el("tr", {},
    el("td", {}, s.ExecuteTime), el("td", {}, s.Duration), el("td", { class: "mono" }, s.Client),
    el("td", { class: "mono" }, s.Node), el("td", { class: "mono" }, s.CommandLine))));
  show($("#no-slowlog"), list.length === 0);
}

// ---- charts ----------------------------------------------------------------------------

function destroyCharts() {
  for (const c of charts) c.destroy();
  charts = [];
  $("#charts").replaceChildren();
}

async function drawCharts() {
  const id = selected;
  const [span, period] = $("#range").value.split(":").map(Number);
  const end = new Date(Date.now() + clockOffset * 1000);
  const start = new Date(end.getTime() - span * 1000);
  const iso = (d) => d.toISOString().replace(/\.\d+Z$/, "Z");
  const answers = await Promise.all(CHARTS.map((c) => api("GetMonitorData", {
    Namespace: "QCE/REDIS_MEM",
    MetricName: c.metric,
    Period: period,
    StartTime: iso(start),
    EndTime: iso(end),
    Instances: [{ Dimensions: [{ Name: "instanceid", Value: id }] }],
  }, MONITOR)));
  if (id !== selected) return;
  destroyCharts();
  const box = $("#charts");
  const width = Math.max(300, Math.floor((box.clientWidth || 900) / 2) - 24);
  CHARTS.forEach((c, n) => {
    const point = (answers[n].DataPoints || [])[0] || { Timestamps: [], Values: [] };
    const holder = el("div", { class: "chart", "data-metric": c.metric,
      "data-points": point.Timestamps.length });
    box.append(holder);
    if (!point.Timestamps.length) holder.append(el("p", { class: "hint" }, c.title + ": no data yet"));
    const opts = {
      title: c.title,
      width,
      height: 200,
      series: [{}, { label: c.metric, stroke: "#2563eb", fill: "rgba(37,99,235,0.08)", width: 2,
        points: { show: point.Timestamps.length < 60 } }],
      axes: [{}, { size: 60 }],
      scales: {
        // The whole time asked, whatever part of it has points.
        x: { time: true, range: () => [Math.floor(start / 1000), Math.ceil(end / 1000)] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
    };
    charts.push(new uPlot(opts, [point.Timestamps, point.Values], holder));
  });
}

// ---- wiring ----------------------------------------------------------------------------

function onSubmit(id, fn) {
  $(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(() => fn(ev.target));
  });
}

function init() {
  if (!window.crypto || !crypto.subtle) {
    say("This page needs WebCrypto, which browsers give only to secure pages: open it over " +
      "HTTPS (or at localhost).");
    $("#signin-form button").disabled = true;
    return;
  }
  onSubmit("#signin-form", () =>
    signIn($("#secret-id").value.trim(), $("#secret-key").value, $("#remember").checked));
  $("#signout").addEventListener("click", signOut);
  $("#refresh").addEventListener("click", () => guarded(refresh));
  $("#create").addEventListener("click", () => {
    openDialog("#create-dialog");
    fillCreateChoices();
  });
  $("#create-form").type.addEventListener("change", fillCreateChoices);
  onSubmit("#create-form", create);
  $("#resize").addEventListener("click", () => {
    const i = current();
    if (!i) return;
    openDialog("#resize-dialog");
    const p = product(i.Type);
    const sizes = p ? p.ShardSize.map((gb) => Math.round(Number(gb) * 1024)) : [i.RedisShardSize];
    options($("#resize-form").mem, sizes, mb);
    $("#resize-form").mem.value = String(i.RedisShardSize);
  });
  onSubmit("#resize-form", resize);
  $("#reset-password").addEventListener("click", () => openDialog("#password-dialog"));
  onSubmit("#password-form", resetPassword);
  onSubmit("#restore-form", restore);
  $("#backup").addEventListener("click", () => guarded(backupNow));
  $("#delete").addEventListener("click", async () => {
    const i = current();
    if (!i) return;
    if (await confirmed("Delete " + i.InstanceId, "The instance and its data are removed. " +
      "Its backups are kept until they expire.")) {
      guarded(() => remove(i));
    }
  });
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => guarded(() => openTab(b.dataset.tab)));
  }
  $("#range").addEventListener("change", () => guarded(drawCharts));
  $("#charts-refresh").addEventListener("click", () => guarded(drawCharts));
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  // Instances that are changing are polled while the page shows them.
  setInterval(() => {
    if (creds && instances.some((i) => i.Status === 0 || i.Status === 1)) {
      refresh().catch(() => {});
    }
  }, 3000);
  const kept = sessionStorage.getItem(STORE_KEY);
  if (kept) {
    const c = JSON.parse(kept);
    guarded(() => signIn(c.id, c.key, true));
  }
}

init();
