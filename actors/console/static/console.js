// striata intervene: the page. It shows what the hub sends over /ws and sends commands back; the hub
// (actors/console/hub.py, protocol in its docstring) enforces who may control, never this page.
"use strict";

const SEND_HZ = 20;            // actions while the env is taken over (the actor drops ones older than 0.3 s)
const PLOT_STEPS = 400;        // steps kept on the plot
const DEADZONE = 0.1;          // gamepad sticks

// Everything the page knows, readable from the devtools (and from tests).
const S = (window.striataConsole = {
  state: {}, connected: false, frames: 0, frameSums: [], steps: 0, last: null,
  history: [], episodes: [], controls: [], refused: [], notices: [], errors: [],
  action: [], sentActions: 0, gripper: -1, gamepad: null,
});

const $ = (id) => document.getElementById(id);
const keys = new Set();
let ws = null;
let frameUrl = null;

// ---- websocket ---------------------------------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { S.connected = true; };
  ws.onclose = () => {
    S.connected = false;
    $("role").textContent = "disconnected";
    $("role").className = "badge off";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (event) => {
    if (event.data instanceof ArrayBuffer) onFrame(event.data);
    else onMessage(JSON.parse(event.data));
  };
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function onMessage(m) {
  switch (m.type) {
    case "state": S.state = m; renderState(); break;
    case "steps": for (const step of m.items) onStep(step); renderStep(); break;
    case "episode_end": onEpisodeEnd(m); break;
    case "control":
      S.controls.push(m);
      log("notice", m.controlled ? "taken over" :
        `control back to the policy (${m.reason}${m.latency_ms != null ? `, ${m.latency_ms} ms` : ""})`);
      break;
    case "refused": S.refused.push(m); log("refused", `refused ${m.command}: ${m.reason}`); break;
    case "error": S.errors.push(m); log("error", `actor: ${m.reason} ${m.detail || ""}`); break;
    case "notice": S.notices.push(m.text); log("notice", m.text); break;
  }
}

function onFrame(buffer) {
  const bytes = new Uint8Array(buffer);
  // A cheap fingerprint of the JPEG, to tell frames apart (shown nowhere; for the devtools and tests).
  let sum = 0x811c9dc5;
  const stride = Math.max(1, Math.floor(bytes.length / 4096));
  for (let i = 0; i < bytes.length; i += stride) sum = Math.imul(sum ^ bytes[i], 0x01000193) >>> 0;
  S.frames += 1;
  S.frameSums.push(sum);
  if (S.frameSums.length > 50) S.frameSums.shift();
  const url = URL.createObjectURL(new Blob([buffer], { type: "image/jpeg" }));
  $("frame").src = url;
  if (frameUrl) URL.revokeObjectURL(frameUrl);
  frameUrl = url;
}

function onStep(step) {
  S.steps += 1;
  S.last = step;
  S.history.push(step);
  if (S.history.length > PLOT_STEPS) S.history.shift();
}

function onEpisodeEnd(m) {
  S.episodes.push(m);
  const label = m.label === 1 ? "success" : m.label === 0 ? "failure" : "none";
  const line = document.createElement("div");
  line.textContent = `episode ${m.episode}: return ${fmt(m.return)}, ${m.length} steps, success ${m.success}, ` +
    `label ${label}, ${m.interventions} steps taken over in ${m.takeovers} takeovers`;
  $("episodes").prepend(line);
  while ($("episodes").childElementCount > 8) $("episodes").lastChild.remove();
}

function log(kind, text) {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("messages").prepend(line);
  while ($("messages").childElementCount > 30) $("messages").lastChild.remove();
}

// ---- rendering ---------------------------------------------------------------------------------

const fmt = (x, digits = 2) => (x == null ? "–" : typeof x === "number" ? x.toFixed(digits) : String(x));

function renderState() {
  const s = S.state;
  $("task").textContent = s.task ? `${s.task}: ${s.task_text || ""}` : "waiting for the actor…";
  $("role").textContent = s.you_control ? "controller" : "read-only";
  $("role").className = "badge" + (s.you_control ? " controller" : "");
  $("link").textContent = s.finished ? "job finished" : s.connected ? `actor ${s.actor}: connected` : `actor ${s.actor}: not connected`;
  $("link").className = "badge " + (s.connected && !s.finished ? "on" : "off");
  $("control").textContent = s.takeover ? "person (taken over)" : "policy";
  $("paused").textContent = s.paused ? "yes" : "no";
  $("pause").classList.toggle("active", !!s.paused);
  $("camera").textContent = s.camera ? `camera: ${s.camera}` : "";
  $("spacemouse").textContent = s.spacemouse ? `SpaceMouse: ${s.spacemouse}` : "";
  $("recording").textContent = s.recording ? `recording episodes into ${s.recording}` : "not recording";
  // Read-only pages keep their buttons: the hub refuses what they send, and the page shows why.
  for (const button of document.querySelectorAll("button[data-cmd]")) {
    button.classList.toggle("readonly", !s.you_control && button.dataset.cmd !== "claim");
  }
  $("claim").disabled = !!s.you_control;
  fillSelect($("actor"), s.actors || [], s.actor);
  fillSelect($("env"), [...Array(s.num_envs || 0).keys()], s.env);
}

function fillSelect(select, values, current) {
  const wanted = values.map(String).join(",");
  if (select.dataset.values !== wanted) {
    select.replaceChildren(...values.map((v) => new Option(String(v), String(v))));
    select.dataset.values = wanted;
  }
  if (current != null) select.value = String(current);
}

function renderStep() {
  const st = S.last;
  if (!st) return;
  $("episode").textContent = st.episode;
  $("step").textContent = st.t;
  $("return").textContent = fmt(st.return);
  $("success").textContent = st.success ? "yes" : "no";
  $("progress").textContent = fmt(st.progress);
  $("label").textContent = st.label === 1 ? "success" : st.label === 0 ? "failure" : "–";
  drawPlot();
}

function drawPlot() {
  const canvas = $("plot");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 6;
  g.clearRect(0, 0, w, h);
  const hist = S.history;
  if (!hist.length) return;
  const dx = (w - 2 * pad) / Math.max(PLOT_STEPS - 1, 1);
  const x = (i) => pad + i * dx;
  // Taken-over steps as bands, episode starts as grey lines.
  hist.forEach((st, i) => {
    if (st.intervention) { g.fillStyle = "rgba(230,150,0,0.35)"; g.fillRect(x(i) - dx / 2, 0, Math.max(dx, 1), h); }
    if (i > 0 && st.episode !== hist[i - 1].episode) { g.fillStyle = "#555"; g.fillRect(x(i), 0, 1, h); }
  });
  const hasProgress = hist.some((st) => st.progress != null);
  const values = hist.map((st) => (hasProgress ? st.progress : st.return));
  let lo = 0, hi = 1;
  if (!hasProgress) {
    const finite = values.filter((v) => v != null);
    lo = Math.min(0, ...finite); hi = Math.max(1e-6, ...finite);
  }
  const y = (v) => h - pad - ((v - lo) / (hi - lo || 1)) * (h - 2 * pad);
  g.strokeStyle = hasProgress ? "#6c6" : "#69f";
  g.lineWidth = 1.5;
  g.beginPath();
  let pen = false;
  values.forEach((v, i) => {
    if (v == null) { pen = false; return; }
    if (pen) g.lineTo(x(i), y(v)); else g.moveTo(x(i), y(v));
    pen = true;
  });
  g.stroke();
  g.fillStyle = "#aaa";
  g.font = "11px sans-serif";
  g.fillText(hasProgress ? "reward model progress (0..1)" : `return (${fmt(lo)} .. ${fmt(hi)})`, pad + 2, 12);
}

// ---- commands and teleop -------------------------------------------------------------------------

function command(name) {
  if (name === "success" || name === "failure") send({ type: "label", success: name === "success" });
  else if (name === "pause") send({ type: "pause", paused: !S.state.paused });
  else send({ type: name });
}

const COMMAND_KEYS = { c: "claim", t: "takeover", b: "handback", y: "success", n: "failure", r: "reset", p: "pause" };
// key -> [action index, sign]
const MOTION_KEYS = {
  w: [0, 1], s: [0, -1], arrowup: [0, 1], arrowdown: [0, -1],
  a: [1, 1], d: [1, -1], arrowleft: [1, 1], arrowright: [1, -1],
  q: [2, 1], e: [2, -1],
};

function onKey(event, down) {
  if (event.target.closest && event.target.closest("input, select, textarea")) return;
  const key = event.key.toLowerCase();
  if (key === " " || key === "shift") {
    if (down) S.gripper = key === " " ? 1 : -1;
    event.preventDefault();
    return;
  }
  if (key in MOTION_KEYS) {
    if (down) keys.add(key); else keys.delete(key);
    event.preventDefault();
    return;
  }
  if (down && !event.repeat && !event.ctrlKey && !event.metaKey && !event.altKey && key in COMMAND_KEYS) {
    command(COMMAND_KEYS[key]);
  }
}

// Gamepads are polled (the Gamepad API has no events for axes), once per animation frame.
function pollGamepad() {
  const pads = navigator.getGamepads ? Array.from(navigator.getGamepads()).filter(Boolean) : [];
  const pad = pads[0] || null;
  if (pad) {
    const axis = (i) => { const v = pad.axes[i] || 0; return Math.abs(v) < DEADZONE ? 0 : v; };
    const pressed = (i) => !!(pad.buttons[i] && pad.buttons[i].pressed);
    // Sticks report up as -1: pushing forward is +action[0], left +action[1], up +action[2].
    S.gamepad = { id: pad.id, motion: [-axis(1), -axis(0), -axis(3)] };
    if (pressed(0)) S.gripper = 1;
    if (pressed(1)) S.gripper = -1;
  } else {
    S.gamepad = null;
  }
  $("gamepad").textContent = S.gamepad ? `gamepad: ${S.gamepad.id}` : "gamepad: none";
  requestAnimationFrame(pollGamepad);
}

function currentAction() {
  const s = S.state;
  const dim = s.action_dim || 0;
  const speed = parseFloat($("speed").value);
  const motion = [0, 0, 0];
  for (const key of keys) { const [i, sign] = MOTION_KEYS[key]; motion[i] += sign * speed; }
  if (S.gamepad) S.gamepad.motion.forEach((v, i) => { motion[i] += v * speed; });
  const action = new Array(dim).fill(0);
  for (let i = 0; i < Math.min(3, dim); i++) action[i] = motion[i];
  if (dim >= 4) action[dim - 1] = S.gripper;
  const low = s.action_low || [], high = s.action_high || [];
  return action.map((v, i) => Math.min(high[i] ?? 1, Math.max(low[i] ?? -1, v)));
}

function tick() {
  S.action = currentAction();
  $("action").textContent = S.action.length ? `[${S.action.map((v) => v.toFixed(2)).join(", ")}]` : "–";
  if (S.state.you_control && S.state.takeover) {
    send({ type: "action", action: S.action });
    S.sentActions += 1;
  }
}

// ---- wiring --------------------------------------------------------------------------------------

for (const button of document.querySelectorAll("button[data-cmd]")) {
  // Blur after a click, so that Space (the gripper) never clicks a focused button.
  button.addEventListener("click", () => { command(button.dataset.cmd); button.blur(); });
}
$("actor").addEventListener("change", () => send({ type: "select", actor: Number($("actor").value), env: 0 }));
$("env").addEventListener("change", () => send({ type: "select", env: Number($("env").value) }));
document.addEventListener("keydown", (e) => onKey(e, true));
document.addEventListener("keyup", (e) => onKey(e, false));
window.addEventListener("blur", () => keys.clear());   // a key released in another window never comes up here
setInterval(tick, 1000 / SEND_HZ);
requestAnimationFrame(pollGamepad);
connect();
