// deepfake-monitor join page: camera + microphone -> WebRTC -> live score.
// Served by monitor/live/sources/webrtc.py. No dependencies, no build step.
// The token comes from the form or the URL fragment (#token=...&name=...); it is kept in
// memory and in the form only, the fragment is removed from the address bar at once.
"use strict";

const ICE_GATHERING_TIMEOUT_MS = 5000; // the server does not trickle: send all candidates
const DEFAULT_POLL_MS = 500;

const $ = (id) => document.getElementById(id);
let pc = null;
let localStream = null;
let pollTimer = null;
let streamId = null;
let session = 0; // bumps on every start/stop so stale async work can tell it is stale

function readFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (params.has("token")) $("token").value = params.get("token");
  if (params.has("name")) $("name").value = params.get("name");
  if (window.location.hash) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return params.get("autostart") === "1";
}

function setPhase(phase) {
  document.body.dataset.phase = phase; // loading (HTML) -> idle | starting | live | ended | error
  $("start").disabled = phase === "starting" || phase === "live";
  $("stop").disabled = !(phase === "starting" || phase === "live");
}

function setMessage(text) {
  $("message").textContent = text;
}

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, authHeaders());
  const resp = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    body = null;
  }
  if (!resp.ok) {
    const err = new Error(body && body.error ? body.error : resp.status + " " + resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function waitForIceGathering(conn, timeoutMs) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      conn.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (conn.iceGatheringState === "complete") done();
    }
    conn.addEventListener("icegatheringstatechange", check);
  });
}

function fmtProb(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}

function showStatus(st) {
  const state = $("state");
  state.textContent = st.state;
  state.className = "state state-" + st.state;
  for (const key of ["fused", "audio", "visual"]) {
    $(key).textContent = fmtProb(st[key]);
    $(key + "-meter").value = st[key] === null ? 0 : st[key];
  }
  $("fps").textContent = st.fps.toFixed(1);
  $("windows").textContent = String(st.windows_scored);
  $("dropped").textContent = String(st.windows_dropped);
  $("latency").textContent = st.latency_ms === null ? "–" : Math.round(st.latency_ms) + " ms";
}

function schedulePoll(mySession, intervalMs) {
  pollTimer = setTimeout(async () => {
    if (mySession !== session) return;
    try {
      showStatus(await api("/api/status/" + encodeURIComponent(streamId)));
    } catch (err) {
      if (mySession !== session) return;
      if (err.status === 404) {
        setMessage("The monitor ended this stream.");
        stop("ended");
        return;
      }
      setMessage("Status: " + err.message);
    }
    if (mySession === session) schedulePoll(mySession, intervalMs);
  }, intervalMs);
}

async function start(event) {
  if (event) event.preventDefault();
  const mySession = ++session;
  setMessage("");
  setPhase("starting");
  try {
    const name = $("name").value.trim() || "browser";
    const cfg = await api("/api/config");
    localStream = await navigator.mediaDevices.getUserMedia({
      // the raw voice: echo cancelling, noise suppression and gain control reshape exactly
      // the signal the detector judges (and suppress steady tones altogether)
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
    });
    if (mySession !== session) return;
    $("preview").srcObject = localStream;
    pc = new RTCPeerConnection({ iceServers: cfg.ice_servers });
    const conn = pc;
    conn.addEventListener("connectionstatechange", () => {
      if (mySession !== session) return;
      $("connection").textContent = conn.connectionState;
      if (conn.connectionState === "failed") {
        setMessage("The connection failed (no network path to the monitor?).");
        stop("error");
      }
    });
    for (const track of localStream.getTracks()) {
      conn.addTransceiver(track, { direction: "sendonly", streams: [localStream] });
    }
    await conn.setLocalDescription(await conn.createOffer());
    await waitForIceGathering(conn, ICE_GATHERING_TIMEOUT_MS);
    const offer = conn.localDescription;
    const answer = await api("/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: offer.sdp, type: offer.type, name }),
    });
    if (mySession !== session) return;
    streamId = answer.stream_id;
    $("stream-id").textContent = streamId;
    await conn.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    setPhase("live");
    $("state").textContent = "STARTING";
    schedulePoll(mySession, cfg.status_interval_ms || DEFAULT_POLL_MS);
  } catch (err) {
    if (mySession !== session) return;
    if (err.status === 401) {
      setMessage("The monitor needs a token: enter it and press Start again.");
      $("token").focus();
    } else {
      setMessage(String(err.message || err));
    }
    stop("error");
  }
}

function stop(phase) {
  session++;
  clearTimeout(pollTimer);
  if (pc) pc.close(); // sends RTCP BYE: the monitor closes the stream at once
  pc = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  $("preview").srcObject = null;
  $("connection").textContent = "closed";
  setPhase(typeof phase === "string" ? phase : "idle");
}

document.addEventListener("DOMContentLoaded", () => {
  $("join").addEventListener("submit", start);
  $("stop").addEventListener("click", () => stop("idle"));
  window.addEventListener("pagehide", () => stop("idle"));
  const autostart = readFragment(); // first: the token leaves the address bar at once
  setPhase("idle");
  if (autostart) start();
});
