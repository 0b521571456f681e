// deepfake-monitor operator view: every stream's state and recent scores, live.
// Served by monitor/live/operator.py. No dependencies, no build step. The token comes
// from the form or the URL fragment (#token=...); it is kept in memory and in the form
// only, and the fragment is removed from the address bar at once.
"use strict";

const POLL_MS = 1000;
const MIN_SPAN_S = 60; // a young stream's curves fill at least the last minute
const HEADS = ["fused", "audio", "visual", "sync"];
const COLORS = { fused: "#1d2430", audio: "#7b1fa2", visual: "#1a73e8", sync: "#e37400" };
const STATE_BANDS = { SUSPICIOUS: "#fde7c8", ALERT: "#f9cccb", NO_FACE: "#dbe6fb",
                      NO_AUDIO: "#dbe6fb", SILENCE: "#dbe6fb", DOWN: "#e3e5e8" };
const $ = (id) => document.getElementById(id);

function readFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (params.has("token")) $("token").value = params.get("token");
  if (window.location.hash) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function fmt(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}

function card(stream) {
  let el = document.querySelector(`.card[data-stream="${CSS.escape(stream.stream_id)}"]`);
  if (el) return el;
  el = document.createElement("article");
  el.className = "card";
  el.dataset.stream = stream.stream_id;
  el.innerHTML =
    '<h3><span class="id"></span><span class="state"></span></h3>' +
    '<p class="meta"><span class="raised"></span> <span class="scores"></span></p>' +
    '<canvas width="640" height="160"></canvas>' +
    '<p class="meta counters"></p>';
  el.querySelector(".id").textContent = stream.stream_id;
  $("streams").appendChild(el);
  return el;
}

function draw(canvas, stream, thresholds, maxSpan) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const hist = stream.history;
  const oldest = hist.t.length ? -hist.t[0] + 2 : 0;
  const span = Math.min(maxSpan, Math.max(MIN_SPAN_S, oldest));
  const x = (t) => w * (1 + t / span);
  const y = (v) => h - v * h;
  for (let i = 0; i < hist.t.length; i++) {
    const band = STATE_BANDS[hist.state[i]];
    if (!band) continue;
    const x0 = x(hist.t[i] - 1), x1 = x(hist.t[i]);
    ctx.fillStyle = band;
    ctx.fillRect(x0, 0, Math.max(1, x1 - x0), h);
  }
  const th = thresholds.fused || {};
  ctx.setLineDash([6, 5]);
  for (const [key, color] of [["alert_on", "#c5221f"], ["suspicious_on", "#e37400"]]) {
    if (th[key] === undefined) continue;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, y(th[key]));
    ctx.lineTo(w, y(th[key]));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const head of HEADS) {
    ctx.strokeStyle = COLORS[head];
    ctx.lineWidth = head === "fused" ? 2.5 : 1.5;
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < hist.t.length; i++) {
      const v = hist[head][i];
      if (v === null || v === undefined) { pen = false; continue; }
      if (pen) ctx.lineTo(x(hist.t[i]), y(v)); else ctx.moveTo(x(hist.t[i]), y(v));
      pen = true;
    }
    ctx.stroke();
  }
}

function render(data) {
  const seen = new Set();
  for (const stream of data.streams) {
    seen.add(stream.stream_id);
    const el = card(stream);
    const state = el.querySelector(".state");
    state.textContent = stream.state;
    state.className = "state state-" + stream.state;
    el.dataset.state = stream.state;
    el.querySelector(".raised").textContent = stream.raised_by ? "raised by " + stream.raised_by : "";
    const s = stream.scores;
    el.querySelector(".scores").textContent =
      `fused ${fmt(s.fused)} · voice ${fmt(s.audio)} · face ${fmt(s.visual)} · sync ${fmt(s.sync)}`;
    el.querySelector(".counters").textContent =
      `${stream.kind} · ${stream.fps} fps · ${stream.windows_scored} windows · ${stream.windows_dropped} dropped`;
    draw(el.querySelector("canvas"), stream, data.thresholds, data.history_s);
  }
  for (const el of document.querySelectorAll(".card")) {
    if (!seen.has(el.dataset.stream)) el.remove();
  }
  $("empty").hidden = data.streams.length > 0;
  const rows = data.events.map((e) => {
    const tr = document.createElement("tr");
    const fused = e.scores ? e.scores.fused : null;
    for (const text of [e.time.slice(11, 19), e.stream, e.state, e.raised_by || "", fmt(fused)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  });
  $("events").replaceChildren(...rows);
}

async function poll() {
  const token = $("token").value.trim();
  const headers = token ? { Authorization: "Bearer " + token } : {};
  try {
    const resp = await fetch("/api/operator", { headers, cache: "no-store" });
    if (resp.status === 401) {
      $("status").textContent = "token required";
      document.body.dataset.phase = "locked";
    } else if (!resp.ok) {
      $("status").textContent = "error " + resp.status;
    } else {
      render(await resp.json());
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.phase = "live";
    }
  } catch (err) {
    $("status").textContent = "monitor unreachable";
    document.body.dataset.phase = "offline";
  }
  setTimeout(poll, POLL_MS);
}

readFragment();
$("auth").addEventListener("submit", (ev) => ev.preventDefault());
poll();
