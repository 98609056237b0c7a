// Homeline agent desk: the browser agent client of docs/agent-protocol.md (version 1).
//
// One module, no build step, no external resources (CSP: script-src 'self'). It talks to the
// server only through the protocol: HTTPS login/logout, one WebSocket for signalling, one
// RTCPeerConnection for audio that carries every call of the session.
//
// Test hook: window.homeline = {state, lastEvent, stats, ...} is kept up to date (see `hook`).

const API = "/api/v1";
const PROTOCOL = 1;
const CLIENT = { name: "homeline-web", version: "1.0" };
const SESSION_KEY = "homeline.session"; // sessionStorage: survives a reload, not a new tab
const PREFS_KEY = "homeline.prefs"; // localStorage: chosen devices
const CONSULT_KEY = "homeline.consult"; // sessionStorage: a running consultation, across a reload
const REQUEST_TIMEOUT_MS = 10000;
const OFFER_TIMEOUT_MS = 20000;
const ICE_GATHER_TIMEOUT_MS = 5000;
const ICE_BAD_GRACE_MS = 5000; // §3.4: failed/disconnected this long -> new peer connection
const STATS_EVERY_MS = 2000;
const LIMITS = { rtt_ms: 400, jitter_ms: 30, loss_pct: 3, mos: 3.5 }; // same as the echo test (§3.8)
const DTMF_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const DTMF_FREQS = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477], 4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477], "*": [941, 1209], 0: [941, 1336], "#": [941, 1477],
};
const SYSTEM_BREAKS = {
  "no-answer": ["Paused", "You missed calls, so you were paused. Press Available when you are back."],
  recovery: ["Recovery break", "Take a moment after a difficult call. You will be available again soon."],
  disconnected: ["Disconnected", "Your connection dropped. Press Available when you are ready."],
};
const ERROR_TEXT = {
  "invalid-state": "That is not possible right now.",
  "media-not-ready": "Your audio is not connected yet. Wait a moment and try again.",
  "no-such-call": "That call has already ended.",
  "no-such-queue": "There is no queue with that name.",
  "no-such-agent": "There is no agent with that ID.",
  "no-such-break": "That break reason does not exist.",
  forbidden: "You are not allowed to do that.",
  internal: "The server had a problem. Please try again.",
  offline: "You are not connected to the server right now.",
  timeout: "The server did not answer in time.",
};

const $ = (id) => document.getElementById(id);

// ---- state -------------------------------------------------------------------------------

const S = {
  session: loadSession(), // {token, agent, name, expires_at}
  welcome: null,
  agentState: { state: "logged-out", reason: "", since: 0, pending: "" },
  offer: null, // {call, at}: call.ring_until says when it stops ringing here
  call: null, // the call object (connected / held); `since` is when it was connected to us
  lastCall: null, // the call that ended: for the wrap-up panel
  consult: null, // our attended transfer: {call, kind, to, target, state, reason, at}
  difficult: "", // id of the call flagged difficult
  muted: false,
  breaks: [],
  queues: [],
  iceServers: [],
  heartbeatS: 10,
  skew: null, // local clock minus server clock: the smallest of (local now - server time sent) seen
  media: "new",
  conn: "offline",
};

const hook = {
  state: "signed-out", // the agent state, or "signed-out"
  agentState: null,
  lastEvent: null,
  events: [],
  stats: null, // live quality: {rtt_ms, jitter_ms, loss_pct, mos, packets_received, ...}
  call: null,
  offer: null,
  consult: null, // {call, kind, to, target, state, reason} while we consult (attended transfer)
  media: "new", // our peer connection: new, connecting, connected, failed, closed
  serverMedia: "", // the server's view (media events)
  connection: "offline", // the WebSocket: offline, connecting, online
  muted: false,
  remote: { level_db: -120, freq_hz: 0 }, // what the agent hears (analysed)
  remoteStream: null,
  localStream: null,
  echo: null, // the last echo-test-result
};
window.homeline = hook;

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return s && s.token && (!s.expires_at || s.expires_at > Date.now() / 1000) ? s : null;
  } catch {
    return null;
  }
}

function saveSession() {
  if (S.session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(S.session));
  else sessionStorage.removeItem(SESSION_KEY);
}

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function savePrefs(p) {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify({ ...loadPrefs(), ...p }));
  } catch { /* private mode */ }
}

// ---- small UI helpers ----------------------------------------------------------------------

function show(el, on) {
  (typeof el === "string" ? $(el) : el).hidden = !on;
}

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function serverNow() {
  return Date.now() / 1000 - (S.skew ?? 0);
}

function toast(message, kind = "info", ms = 6000) {
  const box = document.createElement("div");
  box.className = "toast";
  box.dataset.kind = kind;
  box.dataset.testid = "toast";
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const span = document.createElement("span");
  span.className = "toast-text";
  span.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => box.remove());
  box.append(span, close);
  const area = $("toasts");
  area.append(box);
  while (area.children.length > 4) area.firstElementChild.remove();
  setTimeout(() => box.remove(), ms);
}

function errorText(err, what) {
  const code = err && err.code;
  if (code === "unsupported") return `${what} is not available on this server yet.`;
  const known = ERROR_TEXT[code];
  const detail = err && err.message && !known ? err.message : known || (err && err.message) || "unknown error";
  return `${what} failed: ${detail}`;
}

function banner(message, kind = "warn", action = null) {
  if (!message) {
    show("banner", false);
    return;
  }
  text("banner-text", message);
  $("banner").dataset.kind = kind;
  const btn = $("banner-action");
  if (action) {
    btn.textContent = action.label;
    btn.onclick = action.run;
    show(btn, true);
  } else {
    show(btn, false);
    btn.onclick = null;
  }
  show("banner", true);
}

function setConn(state) {
  S.conn = hook.connection = state;
  const el = $("conn");
  el.dataset.state = state;
  text("conn-text", { online: "Connected", connecting: "Connecting…", offline: "Offline" }[state]);
  if (S.session) render();
}

// ---- signing in and out --------------------------------------------------------------------

let lockTimer = null;

function showLogin(message = "", kind = "error") {
  show("view-desk", false);
  show("topbar-session", false);
  show("view-login", true);
  hook.state = "signed-out";
  loginError(message, kind);
  setTimeout(() => ($("login-agent").value ? $("login-password") : $("login-agent")).focus(), 0);
}

function loginError(message, kind = "error") {
  const el = $("login-error");
  el.textContent = message;
  el.dataset.kind = kind;
  show(el, !!message);
}

function showDesk() {
  show("view-login", false);
  show("view-desk", true);
  show("topbar-session", true);
  text("who", S.session.name || S.session.agent);
  render();
}

async function onLoginSubmit(ev) {
  ev.preventDefault();
  unlockAudio(); // a user gesture: the page may play sound from now on
  const agent = $("login-agent").value.trim();
  const password = $("login-password").value;
  if (!agent || !password) {
    loginError("Enter your agent ID and your password.");
    return;
  }
  const submit = $("login-submit");
  submit.disabled = true;
  submit.textContent = "Signing in…";
  let locked = false;
  try {
    const r = await fetch(`${API}/login`, {
      method: "POST", headers: { "Content-Type": "application/json" }, cache: "no-store",
      body: JSON.stringify({ agent, password }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok && body.token) {
      S.session = { token: body.token, agent: body.agent, name: body.name, expires_at: body.expires_at };
      saveSession();
      $("login-password").value = "";
      loginError("");
      showDesk();
      connect();
      return;
    }
    const err = body.error || {};
    if (err.code === "bad-credentials") {
      loginError("Wrong agent ID or password. Please try again.");
      $("login-password").select();
    } else if (err.code === "locked") {
      locked = true;
      startLockout(Number(err.retry_after_s) || 60);
    } else {
      loginError(err.message ? `Sign-in failed: ${err.message}` : `Sign-in failed (HTTP ${r.status}).`);
    }
  } catch {
    loginError("Cannot reach the server. Check your internet connection and try again.");
  } finally {
    if (!locked) {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  }
}

function startLockout(seconds) {
  const until = Date.now() + seconds * 1000;
  const at = new Date(until).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const submit = $("login-submit");
  clearInterval(lockTimer);
  const update = () => {
    const left = (until - Date.now()) / 1000;
    if (left <= 0) {
      clearInterval(lockTimer);
      submit.disabled = false;
      submit.textContent = "Sign in";
      loginError("You can try again now.", "info");
      return;
    }
    submit.disabled = true;
    submit.textContent = `Locked — ${fmtDuration(left)}`;
    loginError(`Too many wrong passwords: this account is locked. Try again in ${fmtDuration(left)} (at ${at}), `
      + "or ask your supervisor.");
  };
  update();
  lockTimer = setInterval(update, 1000);
}

async function signOut() {
  if (S.call || S.offer) {
    toast("Finish or decline the call before signing out.", "warn");
    return;
  }
  const token = S.session && S.session.token;
  if (S.agentState.state !== "logged-out" && wsOpen()) {
    await request("logout").catch(() => {}); // leave the ACD cleanly (no connection-lost grace)
  }
  signingOut = true;
  if (token) {
    await fetch(`${API}/logout`, { method: "POST", headers: { Authorization: `Bearer ${token}` }, cache: "no-store" })
      .catch(() => {});
  }
  endSession("You have signed out.", "info");
}

/** Back to the sign-in form: the socket, media and ring tone go. */
function endSession(message, kind = "error") {
  disconnect();
  stopMedia();
  stopRing();
  S.session = null;
  saveSession();
  S.welcome = null;
  S.offer = S.call = S.lastCall = null;
  S.agentState = { state: "logged-out", reason: "", since: 0, pending: "" };
  S.consult = null;
  banner("");
  signingOut = false;
  syncHook();
  showLogin(message, kind);
}

// ---- the WebSocket ---------------------------------------------------------------------------

let ws = null;
let wsGen = 0;
let nextId = 1;
const pending = new Map(); // id -> {resolve, reject, timer, type}
let reconnectAttempt = 0;
let reconnectTimer = null;
let heartbeatTimer = null;
let lastHeard = 0;
let signingOut = false;

class ServerError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    Object.assign(this, extra);
  }
}

function wsOpen() {
  return ws !== null && ws.readyState === WebSocket.OPEN;
}

function connect() {
  clearTimeout(reconnectTimer);
  if (!S.session) return;
  const gen = ++wsGen;
  if (ws) {
    try { ws.close(1000); } catch { /* already closed */ }
  }
  setConn("connecting");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${API}/ws`;
  let sock;
  try {
    sock = new WebSocket(url);
  } catch {
    scheduleReconnect();
    return;
  }
  ws = sock;
  sock.onopen = () => gen === wsGen && sayHello();
  sock.onmessage = (m) => gen === wsGen && onFrame(m.data);
  sock.onclose = (e) => gen === wsGen && onClose(e.code, e.reason);
}

function disconnect() {
  wsGen++;
  clearTimeout(reconnectTimer);
  clearInterval(heartbeatTimer);
  failPending();
  if (ws) {
    try { ws.close(1000); } catch { /* already closed */ }
  }
  ws = null;
  setConn("offline");
}

function failPending() {
  for (const [id, p] of pending) {
    clearTimeout(p.timer);
    p.reject(new ServerError("offline", "not connected"));
    pending.delete(id);
  }
}

/** A request with an id: resolves with the result, rejects with a ServerError. */
function request(type, fields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    if (!wsOpen()) {
      reject(new ServerError("offline", "not connected"));
      return;
    }
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new ServerError("timeout", `no answer to ${type}`));
    }, timeoutMs);
    pending.set(id, { resolve, reject, timer, type });
    ws.send(JSON.stringify({ type, id, ...fields }));
  });
}

async function sayHello() {
  try {
    const w = await request("hello", { version: PROTOCOL, token: S.session.token, client: CLIENT });
    onWelcome(w);
  } catch (err) {
    if (err.code === "not-authenticated" || err.code === "token-expired") {
      endSession(err.code === "token-expired" ? "Your session has expired. Please sign in again."
        : "Please sign in again.");
    } else if (err.code === "unsupported-version") {
      disconnect();
      banner("This page is out of date. Reload it to continue.", "error",
        { label: "Reload", run: () => location.reload() });
    } else if (err.code === "forbidden") {
      endSession("This account cannot take calls. Ask your supervisor.");
    }
    // offline / timeout: onClose reconnects
  }
}

function onClose(code) {
  clearInterval(heartbeatTimer);
  failPending();
  ws = null;
  setConn("offline");
  if (signingOut) return;
  if (code === 4008) { // replaced by another tab or window (§3.2)
    stopMedia();
    stopRing();
    hook.state = "replaced";
    banner("Homeline is open in another window or tab, so this one has stopped.", "info",
      { label: "Use this window", run: () => { banner(""); connect(); } });
    return;
  }
  if (code === 4001) {
    endSession("You were signed out. Please sign in again.");
    return;
  }
  if (code === 4000) {
    banner("This page is out of date. Reload it to continue.", "error",
      { label: "Reload", run: () => location.reload() });
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(reconnectTimer);
  const delay = Math.min(15000, 500 * 2 ** reconnectAttempt) * (0.75 + Math.random() * 0.5);
  reconnectAttempt += 1;
  banner(`Connection lost — reconnecting… (attempt ${reconnectAttempt})`, "warn",
    { label: "Retry now", run: () => connect() });
  reconnectTimer = setTimeout(connect, delay);
}

function startHeartbeat() {
  clearInterval(heartbeatTimer);
  lastHeard = Date.now();
  const every = Math.max(1, S.heartbeatS) * 1000;
  const gen = wsGen;
  heartbeatTimer = setInterval(() => {
    if (gen !== wsGen || !wsOpen()) return;
    if (Date.now() - lastHeard > 3 * every) { // a half-open socket: drop it and reconnect
      disconnect();
      scheduleReconnect();
      return;
    }
    ws.send(JSON.stringify({ type: "ping" }));
  }, every);
}

function onFrame(data) {
  lastHeard = Date.now();
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  if (!msg || typeof msg !== "object") return;
  if (msg.re !== undefined && msg.re !== null && (msg.type === "result" || msg.type === "error")) {
    const p = pending.get(msg.re);
    if (p) {
      pending.delete(msg.re);
      clearTimeout(p.timer);
      if (msg.type === "result") p.resolve(msg);
      else p.reject(new ServerError(msg.code, msg.message, msg));
    }
    return;
  }
  if (msg.type !== "pong") {
    hook.lastEvent = msg;
    hook.events.push(msg);
    if (hook.events.length > 100) hook.events.shift();
  }
  switch (msg.type) {
    case "pong":
      break;
    case "state":
      applyState(msg, true);
      break;
    case "offer":
      onOffer(msg.call, msg.ring_timeout_s);
      break;
    case "offer-cancelled":
      onOfferCancelled(msg);
      break;
    case "call":
      setCall(msg.call);
      break;
    case "call-ended":
      onCallEnded(msg);
      break;
    case "media":
      hook.serverMedia = msg.state;
      break;
    case "replaced":
      hook.state = "replaced";
      break;
    case "echo-test-result":
      showEchoResult(msg);
      break;
    case "consult":
      onConsultEvent(msg);
      break;
    case "error":
      toast(`Server: ${msg.message || msg.code}`, "error");
      break;
    default:
      break; // forward compatibility
  }
  syncHook();
}

function onWelcome(w) {
  S.welcome = w;
  if (hook.state === "replaced") hook.state = "";
  reconnectAttempt = 0;
  banner(audioLocked ? AUDIO_LOCKED_TEXT : "", "info", audioLocked ? { label: "Turn on sound", run: unlockAudio } : null);
  setConn("online");
  S.breaks = Array.isArray(w.breaks) ? w.breaks : [];
  S.queues = Array.isArray(w.queues) ? w.queues : [];
  S.iceServers = Array.isArray(w.ice_servers) ? w.ice_servers : [];
  S.heartbeatS = Number(w.heartbeat_s) || 10;
  if (w.agent) {
    S.session.name = w.agent.name || S.session.name;
    text("who", S.session.name || S.session.agent);
  }
  if (w.expires_at) S.session.expires_at = w.expires_at;
  saveSession();
  fillBreaks();
  fillQueues();
  startHeartbeat();
  applyState(w.state, false);
  S.call = w.call && w.call.state !== "ended" ? w.call : null;
  if (!S.consult && S.call) { // the welcome does not tell about a consultation: our own note does
    const saved = loadConsult();
    if (saved && saved.call === S.call.id && saved.state !== "ended") {
      S.consult = { ...saved, state: saved.state === "starting" ? "ringing" : saved.state, restored: true };
    }
  }
  if (!S.call || (S.consult && S.consult.call !== S.call.id)) S.consult = null;
  if (w.offer) onOffer(w.offer, null);
  else clearOffer();
  request("mute", { on: S.muted }).catch(() => {}); // the server's switch follows ours after a reload
  startMedia("welcome"); // §3.2: after a reload or reconnect the client renegotiates media
  render();
}

// ---- agent state -----------------------------------------------------------------------------

/** A server time stamp taken when the message was sent: it bounds the clock difference. */
function noteServerTime(t) {
  if (typeof t !== "number" || !Number.isFinite(t)) return;
  const skew = Date.now() / 1000 - t; // network delay only adds: the smallest value is the best
  if (Math.abs(skew) < 86400) S.skew = S.skew === null ? skew : Math.min(S.skew, skew);
}

function applyState(st, fromEvent) {
  if (!st || !st.state) return;
  const prev = S.agentState.state;
  // a state object is complete (§3.5): wrapup_until only exists during wrap-up
  S.agentState = { reason: "", since: 0, pending: "", call: null, ...st };
  if (st.state !== "wrap-up") delete S.agentState.wrapup_until;
  if (fromEvent) noteServerTime(st.since); // an event announces a change that just happened
  if (st.state !== "reserved") clearOffer();
  if (st.state !== "on-call" && S.call) {
    S.lastCall = S.lastCall && S.lastCall.id === S.call.id ? S.lastCall : { ...S.call };
    S.call = null;
  }
  if (!S.call) S.consult = null;
  if (st.state !== prev && st.state === "available") S.lastCall = null;
  render();
}

function fillBreaks() {
  const sel = $("break-reason");
  const keep = sel.value;
  sel.replaceChildren(...S.breaks.map((b) => new Option(b.label || b.reason, b.reason)));
  if (S.breaks.some((b) => b.reason === keep)) sel.value = keep;
  sel.disabled = S.breaks.length === 0;
}

function fillQueues() {
  const ul = $("queue-list");
  ul.replaceChildren(...S.queues.map((q) => {
    const li = document.createElement("li");
    li.textContent = q;
    return li;
  }));
  $("transfer-queues").replaceChildren(...S.queues.map((q) => new Option(q, q)));
}

async function goAvailable() {
  try {
    const st = S.agentState.state;
    // §3.5: wrap-up ends with `wrapup-done`; during wrap-up (as during a call) `ready` only
    // cancels a pending break or logout, which is what the button offers then
    const type = st === "logged-out" ? "login" : st === "wrap-up" && !S.agentState.pending ? "wrapup-done" : "ready";
    const r = await request(type);
    applyState(r.state, false);
    if (type === "ready" && ["wrap-up", "on-call", "reserved"].includes(r.state.state)) {
      toast(`You will stay available after ${r.state.state === "wrap-up" ? "wrap-up" : "this call"}.`, "ok", 3000);
    }
  } catch (err) {
    toast(errorText(err, "Going available"), "error");
  }
}

async function takeBreak() {
  const reason = $("break-reason").value;
  if (!reason) {
    toast("No break reasons are configured.", "warn");
    return;
  }
  try {
    if (S.agentState.state === "logged-out") applyState((await request("login", { ready: false })).state, false);
    const r = await request("break", { reason });
    applyState(r.state, false);
    if (r.state.pending) toast("Your break starts after this call.", "info");
  } catch (err) {
    toast(errorText(err, "Break"), "error");
  }
}

async function acdLogout() {
  try {
    const r = await request("logout");
    applyState(r.state, false);
    if (r.state.pending) toast("You will be logged out after this call.", "info");
  } catch (err) {
    toast(errorText(err, "Logging out"), "error");
  }
}

// ---- calls ---------------------------------------------------------------------------------

/** A consultation between agents (§3.7): its id is "<customer call>/consult-N", its caller an agent. */
function isConsultation(call) {
  return !!call && typeof call.id === "string" && call.id.includes("/consult");
}

/** The customer call a consultation is about ("c-1/consult-2" -> "c-1"). */
function consultedAbout(call) {
  return isConsultation(call) ? call.id.slice(0, call.id.indexOf("/consult")) : "";
}

function onOffer(call, ringTimeout) {
  if (!call) return;
  if (typeof call.ring_until === "number" && typeof ringTimeout === "number") {
    noteServerTime(call.ring_until - ringTimeout); // the offer event leaves as the ringing starts
  }
  S.offer = { call, at: Date.now() };
  startRing();
  render();
}

function clearOffer() {
  if (!S.offer) return;
  S.offer = null;
  stopRing();
}

function onOfferCancelled(msg) {
  if (!S.offer || S.offer.call.id !== msg.call) return;
  const internal = isConsultation(S.offer.call);
  clearOffer();
  const why = internal ? {
    timeout: "Missed consultation: you did not answer in time.",
    "caller-gone": `${S.offer?.call.caller || "The other agent"} cancelled the consultation.`,
  }[msg.reason] || "The consultation is no longer offered to you." : {
    timeout: "Missed call: it was not answered in time and went to another agent.",
    "caller-gone": "The caller hung up before you answered.",
    "answered-elsewhere": "Another agent took that call.",
  }[msg.reason] || "The call is no longer offered to you.";
  toast(why, msg.reason === "timeout" ? "warn" : "info");
  render();
}

function setCall(call) {
  if (!call || !call.id) return;
  if (call.state === "ended") {
    if (S.call && S.call.id === call.id) S.call = null;
    if (!S.call) S.consult = null;
    render();
    return;
  }
  if (S.offer && S.offer.call.id === call.id && call.state !== "ringing") clearOffer();
  if (call.state === "ringing") return;
  const prev = S.call;
  const wasNew = !prev || prev.id !== call.id;
  S.call = { ...(prev && prev.id === call.id ? prev : {}), ...call };
  if (wasNew) {
    S.lastCall = null;
    S.consult = null;
    hideKeypad();
    hideTransfer();
    text("keypad-sent", "");
    if (prev && isConsultation(prev) && consultedAbout(prev) === call.id) {
      // §3.7: the consulting agent completed the transfer; the customer is ours now
      toast(`${prev.caller || "The other agent"} transferred the caller to you: you are now talking with ${call.caller || "the caller"}.`, "ok");
    }
  }
  render();
}

function onCallEnded(msg) {
  const ended = S.call && S.call.id === msg.call ? S.call : null;
  if (ended) {
    S.lastCall = { ...ended, endedBy: msg.by, endReason: msg.reason || "" };
    S.call = null;
    S.consult = null;
  } else if (S.lastCall && S.lastCall.id === msg.call) {
    S.lastCall.endedBy = S.lastCall.endedBy || msg.by;
    S.lastCall.endReason = S.lastCall.endReason || msg.reason || "";
  }
  hideKeypad();
  hideTransfer();
  if (ended && isConsultation(ended)) {
    toast(`The consultation with ${ended.caller || "the other agent"} ended${msg.reason ? ` (${reasonText(msg.reason)})` : ""}.`, "info");
  } else if (ended && msg.by === "caller") toast("The caller hung up.", "info");
  else if (ended && msg.by === "system") toast(`The call ended${msg.reason ? ` (${reasonText(msg.reason)})` : ""}.`, "info");
  if (S.muted) setMuted(false); // a new call never starts muted by surprise
  render();
}

async function answer() {
  const offer = S.offer;
  if (!offer) return;
  $("btn-answer").disabled = true;
  unlockAudio();
  try {
    await mediaReady(5000);
    await request("answer", { call: offer.call.id });
    stopRing();
    if (S.offer && S.offer.call.id === offer.call.id) {
      S.offer = null;
      if (!S.call) { // the `call` event confirms it (with the connect time)
        S.call = { ...offer.call, state: "connected", since: serverNow() };
        delete S.call.ring_until;
      }
    }
  } catch (err) {
    toast(errorText(err, "Answering"), "error");
  } finally {
    $("btn-answer").disabled = false;
    render();
  }
}

async function reject() {
  const offer = S.offer;
  if (!offer) return;
  try {
    await request("reject", { call: offer.call.id });
    clearOffer();
  } catch (err) {
    toast(errorText(err, "Declining"), "error");
  }
  render();
}

async function hangup() {
  if (!S.call || consultRunning()) return;
  $("btn-hangup").disabled = true;
  try {
    await request("hangup", { call: S.call.id });
  } catch (err) {
    toast(errorText(err, "Hanging up"), "error");
  } finally {
    $("btn-hangup").disabled = false;
    render();
  }
}

async function toggleHold() {
  if (!S.call || !callActionsAllowed()) return;
  const type = S.call.state === "held" ? "resume" : "hold";
  $("btn-hold").disabled = true;
  try {
    const r = await request(type, { call: S.call.id });
    if (r.call) setCall(r.call);
  } catch (err) {
    toast(errorText(err, type === "hold" ? "Hold" : "Resume"), "error");
  } finally {
    $("btn-hold").disabled = false;
    render();
  }
}

function setMuted(on) {
  S.muted = hook.muted = on;
  if (M.track) M.track.enabled = !on; // locally silent at once, whatever the server says
  request("mute", { on }).catch((err) => {
    if (err.code !== "offline") toast(errorText(err, "Mute"), "error");
  });
  render();
}

async function sendDtmf(digit) {
  if (!S.call || !callActionsAllowed()) return;
  playDigitTone(digit);
  const sent = $("keypad-sent");
  sent.textContent = (sent.textContent + digit).slice(-24);
  try {
    await request("dtmf", { call: S.call.id, digits: digit });
  } catch (err) {
    toast(errorText(err, "Sending the key"), "error");
  }
}

/** Hold, keypad, transfer and consult act on the caller: not while they wait for a consultation
 *  to end, and not on a consultation itself (there is no caller on it). */
function callActionsAllowed() {
  return !!S.call && !consultRunning() && !isConsultation(S.call);
}

function toggleKeypad(force) {
  const open = (force ?? $("keypad").hidden) && callActionsAllowed();
  if (open) hideTransfer();
  show("keypad", open);
  $("btn-keypad").setAttribute("aria-expanded", String(open));
}

function hideKeypad() {
  toggleKeypad(false);
  blurInside("keypad");
}

/** Hidden panels must not keep the focus (Space would press a button nobody sees). */
function blurInside(id) {
  const el = document.activeElement;
  if (el && el !== document.body && $(id).contains(el)) el.blur();
}

// The target picker serves the blind transfer and the consultation (attended transfer).
const PICKER = {
  transfer: "Blind transfer: the call leaves you at once.",
  consult: "Consult first: the caller waits on hold while you talk with the target.",
};

function pickerMode() {
  return $("transfer-form").dataset.mode === "consult" ? "consult" : "transfer";
}

function togglePicker(mode, force) {
  const form = $("transfer-form");
  const openInMode = !form.hidden && pickerMode() === mode;
  const open = (force ?? !openInMode) && callActionsAllowed();
  if (open && !openInMode) { // opened, or switched between transfer and consult
    hideKeypad();
    transferError("");
    form.dataset.mode = mode;
    text("transfer-title", PICKER[mode]);
    show("transfer-submit", mode === "transfer");
    show("consult-submit", mode === "consult");
    form.querySelector(".transfer-kinds").setAttribute("aria-label", mode === "consult" ? "Consult" : "Transfer to");
    $("transfer-target").setAttribute("aria-label", mode === "consult" ? "Who to consult" : "Transfer target");
  }
  if (!open) transferError("");
  show(form, open);
  $("btn-transfer").setAttribute("aria-expanded", String(open && mode === "transfer"));
  $("btn-consult").setAttribute("aria-expanded", String(open && mode === "consult"));
  if (open && !openInMode) setTimeout(() => $("transfer-target").focus(), 0);
}

function toggleTransfer(force) {
  togglePicker("transfer", force);
}

function hideTransfer() {
  togglePicker(pickerMode(), false);
  blurInside("transfer-form");
}

function transferError(message) {
  const el = $("transfer-error");
  el.textContent = message;
  show(el, !!message);
}

function transferKind() {
  const checked = document.querySelector('input[name="transfer-kind"]:checked');
  return checked ? checked.value : "queue";
}

function onTransferKind() {
  const kind = transferKind();
  const input = $("transfer-target");
  input.placeholder = { queue: "Queue name", agent: "Agent ID", number: "Phone number, e.g. +33612345678" }[kind];
  input.inputMode = kind === "number" ? "tel" : "text";
  if (kind === "queue") input.setAttribute("list", "transfer-queues");
  else input.removeAttribute("list");
  transferError("");
}

const KIND_LABEL = { queue: "queue", agent: "agent", number: "number" };

/** What went wrong with a transfer or consultation target, in plain words. */
function targetErrorText(err, what, kind, target) {
  const code = err && err.code;
  if (code === "unsupported") return `${what} is not available on this server.`;
  if (code === "no-such-agent") return `${what} failed: there is no agent "${target}".`;
  if (code === "no-such-queue") return `${what} failed: there is no queue "${target}".`;
  if (code === "invalid-state" && kind === "agent" && /not available/.test(err.message || "")) {
    return `${what} failed: ${target} is not available right now (they must be waiting for calls).`;
  }
  if ((code === "invalid-state" || code === "bad-request") && err.message) return `${what} failed: ${err.message}.`;
  return errorText(err, what);
}

async function onTransferSubmit(ev) {
  ev.preventDefault();
  if (!S.call || !callActionsAllowed()) return;
  const mode = pickerMode();
  const kind = transferKind();
  const target = $("transfer-target").value.trim();
  if (!target) {
    transferError(`Enter the ${KIND_LABEL[kind]} to ${mode === "consult" ? "consult" : "transfer the call to"}.`);
    return;
  }
  if (mode === "consult") {
    await startConsult(kind, target);
    return;
  }
  try {
    await request("transfer", { call: S.call.id, to: { [kind]: target } });
    toast(`Call transferred to ${target}.`, "ok");
    hideTransfer();
  } catch (err) {
    transferError(targetErrorText(err, "Transfer", kind, target));
  }
}

// ---- attended transfer (§3.7) ----------------------------------------------------------------

function consultRunning() {
  return !!S.consult && S.consult.state !== "ended";
}

async function startConsult(kind, target) {
  const call = S.call.id;
  const submit = $("consult-submit");
  submit.disabled = true;
  S.consult = { call, kind, to: target, target, state: "starting", reason: "", at: Date.now() };
  hideTransfer();
  render();
  try {
    await request("consult", { call, to: { [kind]: target } });
    if (S.consult && S.consult.call === call && S.consult.state === "starting") S.consult.state = "ringing";
  } catch (err) {
    if (S.consult && S.consult.call === call && S.consult.state === "starting") S.consult = null;
    if (S.call && S.call.id === call) {
      togglePicker("consult", true);
      transferError(targetErrorText(err, "Consult", kind, target));
    } else {
      toast(targetErrorText(err, "Consult", kind, target), "error");
    }
  } finally {
    submit.disabled = false;
    render();
  }
}

function onConsultEvent(msg) {
  if (!S.call || msg.call !== S.call.id) return;
  const c = S.consult && S.consult.call === msg.call ? S.consult
    : { call: msg.call, kind: "", to: msg.target || "", target: msg.target || "", at: Date.now() };
  const was = c.state;
  c.state = msg.state;
  c.reason = msg.reason || "";
  if (msg.target) c.target = msg.target; // "connected" names who answered (a queue's agent)
  if (msg.state !== was) c.at = Date.now();
  S.consult = c;
  if (msg.state === "connected") toast(`${c.target} answered: the caller is still on hold.`, "ok", 3000);
  if (msg.state === "ended") toast(`Consultation ended: ${reasonText(c.reason)}. You are back with the caller.`, "info");
  render();
}

async function completeConsult() {
  if (!S.call || !S.consult || S.consult.state !== "connected") return;
  const { call, target } = S.consult;
  $("btn-consult-complete").disabled = true;
  try {
    const r = await request("consult-complete", { call });
    toast(`Call transferred to ${target}.`, "ok");
    if (r.state) applyState(r.state, false);
  } catch (err) {
    toast(targetErrorText(err, "Completing the transfer", "", target), "error");
    if (err.code === "invalid-state" && S.consult && S.consult.restored) S.consult = null; // it ended meanwhile
  } finally {
    render();
  }
}

async function cancelConsult() {
  const c = S.consult;
  if (!c) return;
  if (c.state === "ended") { // the panel only tells how it ended: close it
    S.consult = null;
    render();
    return;
  }
  $("btn-consult-cancel").disabled = true;
  try {
    await request("consult-cancel", { call: c.call });
    if (S.consult === c && c.state !== "ended") { // the `consult` event (ended) normally came first
      c.state = "ended";
      c.reason = "cancelled";
      c.at = Date.now();
    }
  } catch (err) {
    if (err.code === "invalid-state" && S.consult === c) { // it had ended already (we missed the event)
      S.consult = null;
      toast("The consultation had already ended: you are with the caller.", "info");
    } else {
      toast(targetErrorText(err, "Cancelling the consultation", "", c.target), "error");
    }
  } finally {
    render();
  }
}

const REASONS = {
  cancelled: "you cancelled it",
  "caller-hangup": "the caller hung up",
  "caller-gone": "the caller hung up",
  "agent-hangup": "the other side hung up",
  "far-end-hangup": "the other side hung up",
  "no-answer": "no answer",
  timeout: "no answer in time",
  busy: "busy",
  rejected: "declined",
  transferred: "transferred",
  completed: "transferred",
};

function reasonText(reason) {
  return REASONS[reason] || reason || "ended";
}

async function wrapupDone() {
  try {
    const r = await request("wrapup-done");
    applyState(r.state, false);
  } catch (err) {
    toast(errorText(err, "Ending wrap-up"), "error");
  }
}

async function flagDifficult() {
  const call = S.call || S.lastCall;
  if (!call || S.difficult === call.id) return;
  try {
    await request("difficult");
    S.difficult = call.id;
    toast("Marked as a difficult call: a short recovery break follows it.", "ok");
  } catch (err) {
    toast(errorText(err, "Marking the call"), "error");
  }
  render();
}

// ---- echo test -------------------------------------------------------------------------------

const ECHO_SECONDS = 8;
let echoRunning = false;
let echoTimer = null;

/** The readiness check (§3.8): the server returns our audio for a few seconds, then judges. */
async function echoTest() {
  if (echoRunning) return;
  const box = $("echo-result");
  try {
    await mediaReady(5000);
    unlockAudio();
    await request("echo-test", { seconds: ECHO_SECONDS });
    echoRunning = true;
    box.dataset.passed = "";
    box.textContent = `Echo test running: say a few words, you should hear yourself (${ECHO_SECONDS} s)…`;
    show(box, true);
    clearTimeout(echoTimer);
    echoTimer = setTimeout(() => { // no result came: the test was stopped (a call, going available)
      echoRunning = false;
      if (!box.dataset.passed) show(box, false);
      render();
    }, (ECHO_SECONDS + 10) * 1000);
  } catch (err) {
    toast(errorText(err, "The echo test"), err.code === "unsupported" ? "warn" : "error");
  }
  render();
}

function showEchoResult(r) {
  hook.echo = r;
  echoRunning = false;
  clearTimeout(echoTimer);
  const box = $("echo-result");
  box.dataset.passed = String(!!r.passed);
  const parts = [
    r.rtt_ms != null ? `delay ${Math.round(r.rtt_ms)} ms` : "",
    r.jitter_ms != null ? `jitter ${Number(r.jitter_ms).toFixed(1)} ms` : "",
    r.loss_pct != null ? `loss ${Number(r.loss_pct).toFixed(1)} %` : "",
    r.mos != null ? `MOS ${Number(r.mos).toFixed(1)}` : "",
  ].filter(Boolean).join(", ");
  const head = r.passed ? "Audio check passed." : "Audio check failed.";
  const why = !r.passed && r.reasons && r.reasons.length ? ` Problems: ${r.reasons.join("; ")}.` : "";
  box.textContent = `${head} ${parts}.${why}`;
  show(box, true);
}

// ---- rendering -------------------------------------------------------------------------------

const STATE_LABELS = {
  "logged-out": "Logged out", available: "Available", reserved: "Ringing", "on-call": "On a call",
  "wrap-up": "Wrap-up", break: "On break",
};

function breakLabel(reason) {
  const b = S.breaks.find((x) => x.reason === reason);
  return b ? b.label || b.reason : reason;
}

function render() {
  const st = S.agentState;
  const state = st.state;
  const badge = $("state-badge");
  badge.dataset.state = state;
  let label = STATE_LABELS[state] || state;
  let detail = {
    "logged-out": "You are not receiving calls.",
    available: "Waiting for the next call.",
    reserved: S.offer && isConsultation(S.offer.call) ? "Another agent wants to consult you."
      : "A call is waiting for you.",
    "on-call": S.call && isConsultation(S.call) ? "You are in a consultation with another agent."
      : consultRunning() ? "You are consulting; the caller is on hold." : "You are talking with a caller.",
    "wrap-up": "Finish your notes, then press Done.",
  }[state] || "";
  if (state === "break") {
    const sys = SYSTEM_BREAKS[st.reason];
    label = sys ? sys[0] : `Break: ${breakLabel(st.reason)}`;
    detail = sys ? sys[1] : "Press Available when you are back.";
  }
  if (st.pending) {
    const p = st.pending;
    const next = p === "logout" ? "you will be logged out" : p === "recovery" ? "a recovery break follows"
      : p.startsWith("break:") ? `your break (${breakLabel(p.slice(6))}) starts` : p;
    detail = `${state === "wrap-up" ? "After wrap-up" : state === "break" ? "Then" : "After this call"}, ${next}.`;
  }
  const online = S.conn === "online";
  if (!online) detail = "Not connected to the server: calls cannot reach you until the connection is back.";
  badge.dataset.offline = String(!online);
  text("state-label", label);
  text("state-detail", detail);

  // §3.5: during a call or wrap-up `ready` only cancels a pending break or logout (offered as
  // such); with nothing pending, in wrap-up the button ends the wrap-up (`wrapup-done`)
  const busy = state === "reserved" || state === "on-call";
  $("btn-available").disabled = state === "available" || (busy && !st.pending);
  $("btn-available").textContent = state === "logged-out" ? "Start taking calls"
    : busy && st.pending ? "Stay available after this call"
      : state === "wrap-up" && st.pending ? "Stay available after wrap-up" : "Available";
  $("btn-break").disabled = S.breaks.length === 0 || (state === "break" && st.reason === $("break-reason").value);
  $("btn-acd-logout").disabled = state === "logged-out" || st.pending === "logout";
  $("btn-signout").disabled = !!(S.call || S.offer);
  if (!online) for (const id of ["btn-available", "btn-break", "btn-acd-logout"]) $(id).disabled = true;

  // the call card: ringing, talking, wrap-up, or idle
  const ringing = !!S.offer;
  const talking = !ringing && !!S.call;
  const wrapping = !ringing && !talking && state === "wrap-up";
  show("panel-incoming", ringing);
  show("panel-call", talking);
  show("panel-wrapup", wrapping);
  show("panel-idle", !ringing && !talking && !wrapping);

  if (ringing) renderIncoming(S.offer.call);
  if (talking) renderCall(S.call);
  if (wrapping) {
    const c = S.lastCall;
    let info = "";
    if (c && isConsultation(c)) {
      info = `Consultation with ${c.caller || "another agent"} ended${c.endReason && c.endReason !== "consult"
        ? ` (${reasonText(c.endReason)})` : ""}.`;
    } else if (c) {
      const by = c.endReason === "transferred" ? "You transferred the call"
        : c.endedBy ? { caller: "The caller hung up", agent: "You hung up", system: "The call ended" }[c.endedBy] : "";
      info = `${by ? `${by}. ` : ""}Last caller: ${c.caller || "unknown"}`;
    }
    text("wrapup-info", info);
  }
  if (!ringing && !talking && !wrapping) {
    const idle = {
      available: ["Waiting for calls", "A call will ring here. Keep your headset on."],
      break: ["You are on a break", "Press Available when you are back."],
      "logged-out": ["You are not taking calls", "Press Start taking calls when you are ready."],
    }[state] || ["", ""];
    text("idle-title", idle[0]);
    text("idle-sub", idle[1]);
  }
  const flagCall = S.call || (wrapping ? S.lastCall : null);
  const flaggable = !!flagCall && !isConsultation(flagCall); // a consultation is not a customer call
  show("btn-difficult", flaggable);
  const flagged = flaggable && S.difficult === flagCall.id;
  $("btn-difficult").setAttribute("aria-pressed", String(flagged));
  $("btn-difficult").textContent = flagged ? "Marked as a difficult call ✓" : "Mark as a difficult call";
  $("btn-echo").disabled = !echoAllowed();
  text("btn-echo", echoRunning ? "Echo test running…" : "Test my audio (echo test)");
  document.title = ringing ? (isConsultation(S.offer.call) ? "● Consultation — Homeline" : "● Incoming call — Homeline")
    : "Homeline — Agent";
  tick();
  syncHook();
}

function renderIncoming(c) {
  const internal = isConsultation(c);
  $("panel-incoming").dataset.kind = internal ? "consult" : "customer";
  text("incoming-kind", internal ? "Internal consultation" : "Incoming call");
  text("incoming-caller", internal ? `From ${c.caller || "another agent"}` : c.caller || "Unknown caller");
  const note = $("incoming-note");
  note.textContent = internal ? `Agent ${c.caller || "?"} wants to talk with you before transferring a caller`
    + `${c.queue ? ` from the ${c.queue} queue` : ""}. The caller waits on hold meanwhile.` : "";
  show(note, internal);
  text("incoming-queue", c.queue || "—");
  show("incoming-waited-row", !internal);
  show("incoming-ivr-row", !internal);
  show("incoming-skills-row", !internal);
  text("incoming-ivr", c.ivr_path && c.ivr_path.length ? c.ivr_path.join(" › ") : "—");
  text("incoming-skills", c.skills && c.skills.length ? c.skills.join(", ") : "—");
  show("incoming-callback-row", !internal && !!c.callback_number);
  text("incoming-callback", c.callback_number || "");
}

function renderCall(c) {
  const internal = isConsultation(c);
  const consulting = consultRunning();
  show("call-kind", internal);
  text("call-caller", internal ? c.caller || "Another agent" : c.caller || "Unknown caller");
  text("call-queue", c.queue || "—");
  show("call-ivr-row", !internal);
  show("call-skills-row", !internal);
  text("call-ivr", c.ivr_path && c.ivr_path.length ? c.ivr_path.join(" › ") : "—");
  text("call-skills", c.skills && c.skills.length ? c.skills.join(", ") : "—");
  const held = c.state === "held";
  const onHold = held || consulting; // during a consultation the caller hears music on hold
  text("call-status", consulting ? "On hold — consulting" : held ? "On hold" : internal ? "Consultation" : "Talking");
  $("call-status").dataset.held = String(onHold);
  const hold = $("btn-hold");
  hold.setAttribute("aria-pressed", String(held));
  hold.querySelector(".btn-text").textContent = held ? "Resume" : "Hold";
  const mute = $("btn-mute");
  mute.setAttribute("aria-pressed", String(S.muted));
  mute.querySelector(".btn-text").textContent = S.muted ? "Unmute" : "Mute";
  const flags = [S.muted ? "Your microphone is muted" : "",
    onHold ? "The caller is on hold and hears music" : ""];
  text("call-flags", flags.filter(Boolean).join(" · "));

  const allowed = callActionsAllowed();
  for (const id of ["btn-hold", "btn-keypad", "btn-transfer", "btn-consult"]) $(id).disabled = !allowed;
  if (!allowed) {
    if (!$("keypad").hidden) hideKeypad();
    if (!$("transfer-form").hidden) hideTransfer();
  }
  const hang = $("btn-hangup");
  hang.disabled = consulting;
  hang.title = consulting ? "Complete or cancel the consultation first" : "";
  hang.firstChild.textContent = internal ? "End consultation " : "Hang up ";

  const k = S.consult;
  show("consult-panel", !!k);
  if (k) {
    const panel = $("consult-panel");
    panel.dataset.state = k.state;
    const who = k.kind === "queue" && k.target !== k.to ? `${k.target} (queue ${k.to})`
      : k.kind === "queue" ? `Queue ${k.to}` : k.kind === "agent" ? `Agent ${k.target}`
        : k.kind === "number" ? k.target : k.target || "—";
    text("consult-target", who);
    text("consult-state", {
      starting: "Calling…", ringing: "Ringing…", connected: "Connected", ended: `Ended — ${reasonText(k.reason)}`,
    }[k.state] || k.state);
    text("consult-note", {
      starting: "The caller is on hold.",
      ringing: `The caller is on hold. Waiting for ${k.kind === "queue" && k.target === k.to ? "an agent of the queue" : who} to answer…`,
      connected: "You are talking with them; the caller is on hold and cannot hear you. "
        + "Complete the transfer to hand the caller over, or cancel to go back to the caller.",
      ended: `You are back with the caller${held ? " (still on hold: press Resume)" : ""}.`,
    }[k.state] || "") + (k.restored && k.state !== "ended" ? " (After the reload: its state may have changed.)" : "");
    const complete = $("btn-consult-complete");
    complete.disabled = k.state !== "connected";
    show(complete, k.state !== "ended");
    $("btn-consult-cancel").disabled = k.state === "starting";
    $("btn-consult-cancel").textContent = k.state === "ended" ? "Close" : "Cancel";
    $("btn-consult-cancel").title = k.state === "ended" ? "" : "End the consultation and go back to the caller";
  }
}

/** The clocks: time in state, talk time, ring time left, wrap-up time left. */
function tick() {
  if ($("view-desk").hidden) return;
  const st = S.agentState;
  const now = serverNow();
  text("state-timer", st.since ? fmtDuration(now - st.since) : "");
  if (S.offer) {
    // §3.6: while ringing, `since` is when the caller entered the queue and `ring_until` when
    // the offer times out (also in the welcome's offer, so the countdown survives a reload)
    const c = S.offer.call;
    text("incoming-waited", typeof c.since === "number" ? fmtDuration(now - c.since) : "—");
    text("ring-left", typeof c.ring_until === "number" ? `${Math.max(0, Math.ceil(c.ring_until - now))} s left` : "");
  }
  if (S.call) { // once connected, `since` is the connect time (§3.6)
    text("call-timer", typeof S.call.since === "number" ? fmtDuration(now - S.call.since) : "");
  }
  if (S.consult && S.consult.state !== "ended") {
    text("consult-timer", fmtDuration((Date.now() - S.consult.at) / 1000));
  } else if (S.consult) {
    text("consult-timer", "");
  }
  if (st.state === "wrap-up") {
    if (typeof st.wrapup_until === "number") {
      const left = Math.max(0, Math.ceil(st.wrapup_until - now));
      text("wrapup-timer", left > 0 ? `Wrap-up ends in ${fmtDuration(left)}` : "Wrap-up is ending…");
    } else { // no automatic end: count up
      text("wrapup-timer", `Wrap-up: ${fmtDuration(now - st.since)} so far`);
    }
  }
}

function loadConsult() {
  try {
    return JSON.parse(sessionStorage.getItem(CONSULT_KEY) || "null");
  } catch {
    return null;
  }
}

function saveConsult() {
  try {
    if (S.consult && S.consult.state !== "ended") sessionStorage.setItem(CONSULT_KEY, JSON.stringify(S.consult));
    else sessionStorage.removeItem(CONSULT_KEY);
  } catch { /* private mode */ }
}

function syncHook() {
  if (S.session) saveConsult();
  hook.agentState = { ...S.agentState };
  if (S.session && hook.state !== "replaced") hook.state = S.agentState.state;
  hook.call = S.call ? { ...S.call } : null;
  hook.offer = S.offer ? { ...S.offer.call } : null;
  hook.consult = S.consult ? { ...S.consult } : null;
  hook.media = S.media;
  hook.muted = S.muted;
}

// ---- audio: context, ringer, meters ---------------------------------------------------------

let ctx = null;
let audioLocked = false;
const AUDIO_LOCKED_TEXT = "Your browser blocked sound. Click anywhere on the page to turn it on.";

function audioContext() {
  if (!ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    ctx = new Ctx({ latencyHint: "interactive" });
  }
  return ctx;
}

/** Call from a user gesture (and at start): resumes sound if the browser held it back. */
function unlockAudio() {
  const c = audioContext();
  const p = c.state === "suspended" ? c.resume() : Promise.resolve();
  p.then(() => {
    const remote = $("remote-audio");
    if (remote.srcObject && remote.paused) return remote.play();
    return undefined;
  }).then(() => {
    if (audioLocked && c.state === "running") {
      audioLocked = false;
      if ($("banner-text").textContent === AUDIO_LOCKED_TEXT) banner("");
    }
  }).catch(() => {});
}

function checkAudioLocked() {
  const c = audioContext();
  if (c.state === "suspended") {
    c.resume().catch(() => {});
    setTimeout(() => {
      if (c.state === "suspended" && S.session) {
        audioLocked = true;
        banner(AUDIO_LOCKED_TEXT, "info", { label: "Turn on sound", run: unlockAudio });
      }
    }, 500);
  }
}

// The ring tone: two soft tones in a double-ring cadence, played through the chosen speaker
// (WebAudio -> MediaStreamDestination -> <audio> with setSinkId).
const ring = { nodes: null, timer: null };

function startRing() {
  if (ring.nodes) return;
  const c = audioContext();
  const out = c.createMediaStreamDestination();
  const gain = c.createGain();
  gain.gain.value = 0;
  const oscs = [523.25, 659.25].map((f) => {
    const o = c.createOscillator();
    o.type = "sine";
    o.frequency.value = f;
    o.connect(gain);
    o.start();
    return o;
  });
  gain.connect(out);
  ring.nodes = { out, gain, oscs };
  const el = $("ring-audio");
  el.srcObject = out.stream;
  el.play().catch(() => {});
  const burst = () => {
    const t = c.currentTime + 0.02;
    const g = gain.gain;
    g.cancelScheduledValues(t);
    for (const start of [0, 0.6]) {
      g.setValueAtTime(0, t + start);
      g.linearRampToValueAtTime(0.18, t + start + 0.03);
      g.setValueAtTime(0.18, t + start + 0.4);
      g.linearRampToValueAtTime(0, t + start + 0.45);
    }
  };
  burst();
  ring.timer = setInterval(burst, 3000);
}

function stopRing() {
  clearInterval(ring.timer);
  ring.timer = null;
  if (!ring.nodes) return;
  for (const o of ring.nodes.oscs) {
    try { o.stop(); } catch { /* stopped */ }
    o.disconnect();
  }
  ring.nodes.gain.disconnect();
  ring.nodes = null;
  $("ring-audio").srcObject = null;
}

function playDigitTone(digit) {
  const f = DTMF_FREQS[digit];
  if (!f) return;
  const c = audioContext();
  const out = ring.nodes ? ring.nodes.out : null;
  const gain = c.createGain();
  gain.gain.value = 0.08;
  const t = c.currentTime;
  for (const hz of f) {
    const o = c.createOscillator();
    o.frequency.value = hz;
    o.connect(gain);
    o.start(t);
    o.stop(t + 0.12);
  }
  gain.connect(out || c.destination);
  setTimeout(() => gain.disconnect(), 300);
}

// Meters: the microphone (the bar in "Headset") and what the agent hears (for the test hook).
const meters = { mic: null, remote: null, timer: null, micSource: null, remoteSource: null };

function analyse(stream, fftSize) {
  const c = audioContext();
  const source = c.createMediaStreamSource(stream);
  const analyser = c.createAnalyser();
  analyser.fftSize = fftSize;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser); // not to the destination: nothing is played twice
  return { source, analyser, time: new Float32Array(fftSize), freq: new Float32Array(analyser.frequencyBinCount) };
}

function levelDb(m) {
  m.analyser.getFloatTimeDomainData(m.time);
  let sum = 0;
  for (let i = 0; i < m.time.length; i++) sum += m.time[i] * m.time[i];
  return 10 * Math.log10(sum / m.time.length + 1e-12);
}

/** The dominant frequency (Hz) of the analyser's spectrum, with parabolic interpolation. */
function dominantHz(m) {
  m.analyser.getFloatFrequencyData(m.freq);
  const f = m.freq;
  let best = 1;
  for (let i = 2; i < f.length - 1; i++) if (f[i] > f[best]) best = i;
  const a = f[best - 1];
  const b = f[best];
  const c = f[best + 1];
  const d = a - 2 * b + c;
  const shift = Number.isFinite(d) && d !== 0 ? (0.5 * (a - c)) / d : 0;
  return ((best + shift) * m.analyser.context.sampleRate) / m.analyser.fftSize;
}

function meterMic(stream) {
  if (meters.mic) meters.mic.source.disconnect();
  meters.mic = stream ? analyse(stream, 1024) : null;
  ensureMeterTimer();
}

function meterRemote(stream) {
  if (meters.remote) meters.remote.source.disconnect();
  meters.remote = stream ? analyse(stream, 8192) : null;
  ensureMeterTimer();
}

function ensureMeterTimer() {
  if (meters.timer) return;
  meters.timer = setInterval(() => {
    const fill = $("mic-meter-fill");
    if (meters.mic) {
      const db = levelDb(meters.mic);
      const pct = S.muted ? 0 : Math.max(0, Math.min(100, ((db + 60) / 60) * 100)); // -60..0 dBFS
      fill.style.width = `${pct}%`;
      $("mic-meter").setAttribute("aria-valuenow", String(Math.round(pct)));
    } else {
      fill.style.width = "0%";
    }
    if (meters.remote) {
      const db = levelDb(meters.remote);
      hook.remote = { level_db: Math.round(db * 10) / 10, freq_hz: db > -60 ? Math.round(dominantHz(meters.remote) * 10) / 10 : 0 };
    } else {
      hook.remote = { level_db: -120, freq_hz: 0 };
    }
  }, 100);
}

// ---- media: microphone and the peer connection ---------------------------------------------

const M = {
  pc: null, stream: null, track: null, transceiver: null, gen: 0, badTimer: null, retryTimer: null,
  ready: false, waiters: [], statsTimer: null, prevStats: null, failures: 0,
};

function setMedia(state, why = "") {
  S.media = hook.media = state;
  $("media-dot").dataset.state = state;
  text("media-text", {
    new: "Audio not connected", connecting: "Connecting audio…", connected: "Audio connected",
    failed: `Audio problem${why ? `: ${why}` : ""} — retrying`, closed: "Audio off",
  }[state] || state);
  $("btn-echo").disabled = !echoAllowed();
}

/** The server runs the echo test while the agent takes no calls: logged out or on a break. */
function echoAllowed() {
  return !echoRunning && S.media === "connected" && ["logged-out", "break"].includes(S.agentState.state);
}

async function openMic(deviceId) {
  const want = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: deviceId ? { ...want, deviceId: { exact: deviceId } } : want });
  } catch (err) {
    if (!deviceId || !["OverconstrainedError", "NotFoundError"].includes(err.name)) throw err;
    stream = await navigator.mediaDevices.getUserMedia({ audio: want }); // that device is gone: the default
  }
  return stream;
}

function micError(err) {
  if (err && err.name === "NotAllowedError") return "the microphone is blocked. Allow it in the browser's address bar, then reload.";
  if (err && err.name === "NotFoundError") return "no microphone found. Plug in your headset.";
  return `the microphone could not be opened (${err && (err.message || err.name)}).`;
}

async function ensureMic() {
  if (M.track && M.track.readyState === "live") return;
  const stream = await openMic(loadPrefs().mic || "");
  useMicStream(stream);
  refreshDevices();
}

function useMicStream(stream) {
  const old = M.stream;
  M.stream = hook.localStream = stream;
  M.track = stream.getAudioTracks()[0];
  M.track.enabled = !S.muted;
  M.track.onended = () => { toast("Your microphone was disconnected.", "error"); };
  meterMic(stream);
  if (old && old !== stream) for (const t of old.getTracks()) t.stop();
}

function mediaReady(timeoutMs) {
  if (M.ready) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs); // let the server answer media-not-ready if so
    M.waiters.push(() => { clearTimeout(timer); resolve(); });
  });
}

function closePc() {
  clearTimeout(M.badTimer);
  if (M.pc) {
    M.pc.oniceconnectionstatechange = M.pc.ontrack = M.pc.onconnectionstatechange = null;
    try { M.pc.close(); } catch { /* closed */ }
  }
  M.pc = M.transceiver = null;
  M.ready = false;
  M.prevStats = null;
}

/** A new peer connection and a media-offer (§3.4): at every welcome and when ICE fails. */
async function startMedia(why) {
  const gen = ++M.gen;
  clearTimeout(M.retryTimer);
  closePc();
  setMedia("connecting");
  try {
    await ensureMic();
    if (gen !== M.gen) return;
    const pc = new RTCPeerConnection({ iceServers: S.iceServers });
    M.pc = pc;
    M.transceiver = pc.addTransceiver(M.track, { direction: "sendrecv", streams: [M.stream] });
    pc.ontrack = (ev) => gen === M.gen && playRemote(ev.streams[0] || new MediaStream([ev.track]));
    pc.oniceconnectionstatechange = () => gen === M.gen && watchIce(pc, gen);
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    if (gen !== M.gen) return;
    const r = await request("media-offer", { sdp: pc.localDescription.sdp }, OFFER_TIMEOUT_MS);
    if (gen !== M.gen) return;
    await pc.setRemoteDescription({ type: "answer", sdp: r.sdp });
    M.ready = true;
    M.failures = 0;
    for (const w of M.waiters.splice(0)) w();
    watchIce(pc, gen);
    startStats();
    console.info(`homeline: media negotiated (${why})`);
  } catch (err) {
    if (gen !== M.gen) return;
    // no track yet: getUserMedia failed; a code: the server refused the offer; else WebRTC itself
    const msg = !M.track ? micError(err)
      : err.code ? errorText(err, "Connecting audio") : `Connecting audio failed: ${err.message || err}`;
    setMedia("failed", err.code || err.name || "");
    if (!M.track) { // the agent must act (allow the microphone, plug a headset): no retry loop
      banner(`Cannot use your microphone: ${msg}`, "error",
        { label: "Try again", run: () => { banner(""); startMedia("retry"); } });
      return;
    }
    if (err.code === "offline" || !S.session) return; // the next welcome negotiates again
    M.failures += 1;
    if (M.failures === 1) toast(msg, "error");
    const delay = Math.min(30000, 3000 * 2 ** (M.failures - 1));
    M.retryTimer = setTimeout(() => wsOpen() && startMedia("retry"), delay);
  }
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => { // use what we have (host candidates come at once)
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, ICE_GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function watchIce(pc, gen) {
  const st = pc.iceConnectionState;
  if (st === "connected" || st === "completed") {
    clearTimeout(M.badTimer);
    M.badTimer = null;
    if (M.ready) setMedia("connected");
  } else if (st === "failed" || st === "disconnected") {
    setMedia("failed", "connection interrupted");
    if (!M.badTimer) {
      M.badTimer = setTimeout(() => {
        M.badTimer = null;
        const now = pc.iceConnectionState;
        if (gen === M.gen && (now === "failed" || now === "disconnected") && wsOpen()) startMedia("ice " + now);
      }, ICE_BAD_GRACE_MS);
    }
  } else if (st === "checking" || st === "new") {
    setMedia("connecting");
  }
  render();
}

function playRemote(stream) {
  const el = $("remote-audio");
  if (el.srcObject !== stream) {
    el.srcObject = stream;
    hook.remoteStream = stream;
    meterRemote(stream); // Chrome feeds WebAudio from a remote stream once an element plays it
  }
  applySpeaker(loadPrefs().speaker || "");
  el.play().catch(() => {
    audioLocked = true;
    banner(AUDIO_LOCKED_TEXT, "info", { label: "Turn on sound", run: unlockAudio });
  });
}

function stopMedia() {
  M.gen++;
  clearTimeout(M.retryTimer);
  clearInterval(M.statsTimer);
  closePc();
  if (M.stream) for (const t of M.stream.getTracks()) t.stop();
  M.stream = M.track = hook.localStream = null;
  meterMic(null);
  meterRemote(null);
  $("remote-audio").srcObject = null;
  hook.remoteStream = null;
  setMedia("closed");
}

// ---- devices ---------------------------------------------------------------------------------

async function refreshDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    return;
  }
  const prefs = loadPrefs();
  const fill = (sel, kind, chosen, fallback) => {
    const list = devices.filter((d) => d.kind === kind && d.deviceId !== "communications");
    const opts = list.map((d, i) => new Option(d.label || `${fallback} ${i + 1}`, d.deviceId));
    if (!opts.length) opts.push(new Option("System default", ""));
    sel.replaceChildren(...opts);
    const active = kind === "audioinput" && M.track ? M.track.getSettings().deviceId : chosen;
    if (list.some((d) => d.deviceId === active)) sel.value = active;
    else if (list.some((d) => d.deviceId === "default")) sel.value = "default";
  };
  fill($("mic-select"), "audioinput", prefs.mic, "Microphone");
  fill($("speaker-select"), "audiooutput", prefs.speaker, "Speaker");
  $("speaker-select").disabled = typeof HTMLMediaElement.prototype.setSinkId !== "function";
}

async function onMicChange() {
  const id = $("mic-select").value;
  savePrefs({ mic: id });
  try {
    const stream = await openMic(id);
    const track = stream.getAudioTracks()[0];
    if (M.transceiver) await M.transceiver.sender.replaceTrack(track); // no renegotiation needed
    useMicStream(stream);
    toast(`Microphone: ${$("mic-select").selectedOptions[0]?.textContent || "default"}`, "ok", 3000);
  } catch (err) {
    toast(`Cannot use that microphone: ${micError(err)}`, "error");
  }
}

async function applySpeaker(id) {
  const sinks = [$("remote-audio"), $("ring-audio")];
  if (ctx && typeof ctx.setSinkId === "function") sinks.push(ctx); // keypad tones
  for (const el of sinks) {
    if (typeof el.setSinkId !== "function") continue;
    try {
      if (el.sinkId !== id) await el.setSinkId(id === "default" ? "" : id);
    } catch (err) {
      console.warn("homeline: setSinkId", err);
    }
  }
}

function onSpeakerChange() {
  const id = $("speaker-select").value;
  savePrefs({ speaker: id });
  applySpeaker(id);
}

// ---- live quality ----------------------------------------------------------------------------

/**
 * Estimated MOS, simplified ITU-T G.107 E-model (the usual "Cole & Rosenbluth" shortcut):
 *   effective latency  Le = RTT/2 + 2 × jitter + 10 ms        (one-way delay, jitter buffer, codec)
 *   R = 93.2 − Le/40                 if Le < 160 ms
 *   R = 93.2 − (Le − 120)/10         otherwise
 *   R = R − 2.5 × loss%                                         (packet loss impairment)
 *   MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R),  R clamped to 0..100 (MOS 1..4.5)
 */
export function estimateMos(rttMs, jitterMs, lossPct) {
  const le = (rttMs || 0) / 2 + 2 * (jitterMs || 0) + 10;
  let r = le < 160 ? 93.2 - le / 40 : 93.2 - (le - 120) / 10;
  r -= 2.5 * (lossPct || 0);
  r = Math.max(0, Math.min(100, r));
  return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
}

function startStats() {
  clearInterval(M.statsTimer);
  M.statsTimer = setInterval(collectStats, STATS_EVERY_MS);
}

async function collectStats() {
  const pc = M.pc;
  if (!pc || pc.connectionState === "closed") return;
  let report;
  try {
    report = await pc.getStats();
  } catch {
    return;
  }
  let rtt = null;
  let jitter = null;
  let received = 0;
  let lost = 0;
  let remoteLoss = null;
  let pairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === "candidate-pair" && (s.id === pairId || (!pairId && s.nominated && s.state === "succeeded"))
        && typeof s.currentRoundTripTime === "number") {
      rtt = s.currentRoundTripTime * 1000;
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      jitter = typeof s.jitter === "number" ? s.jitter * 1000 : jitter;
      received += s.packetsReceived || 0;
      lost += Math.max(0, s.packetsLost || 0);
    } else if (s.type === "remote-inbound-rtp" && s.kind === "audio") {
      if (typeof s.fractionLost === "number") remoteLoss = s.fractionLost * 100;
      if (rtt === null && typeof s.roundTripTime === "number") rtt = s.roundTripTime * 1000;
    }
  });
  // loss over the last interval (both directions: what we lose, what the server reports losing)
  const prev = M.prevStats;
  let loss = 0;
  if (prev) {
    const dLost = lost - prev.lost;
    const dAll = dLost + (received - prev.received);
    loss = dAll > 0 ? (100 * Math.max(0, dLost)) / dAll : 0;
  }
  M.prevStats = { lost, received };
  if (remoteLoss !== null) loss = Math.max(loss, remoteLoss);
  const mos = estimateMos(rtt, jitter, loss);
  const warnings = [];
  if (rtt !== null && rtt > LIMITS.rtt_ms) warnings.push(`high delay (${Math.round(rtt)} ms)`);
  if (jitter !== null && jitter > LIMITS.jitter_ms) warnings.push(`unsteady connection (jitter ${Math.round(jitter)} ms)`);
  if (loss > LIMITS.loss_pct) warnings.push(`lost audio (${loss.toFixed(1)} % packets)`);
  if (mos < LIMITS.mos) warnings.push(`poor voice quality (MOS ${mos.toFixed(1)})`);
  hook.stats = {
    rtt_ms: rtt, jitter_ms: jitter, loss_pct: loss, mos, packets_received: received, packets_lost: lost,
    warnings, at: Date.now(),
  };
  showStats(hook.stats);
}

function showStats(s) {
  const set = (id, value, bad) => {
    text(id, value);
    $(id).closest(".q").dataset.bad = String(!!bad);
  };
  set("q-rtt", s.rtt_ms === null ? "—" : `${Math.round(s.rtt_ms)} ms`, s.rtt_ms > LIMITS.rtt_ms);
  set("q-jitter", s.jitter_ms === null ? "—" : `${s.jitter_ms.toFixed(1)} ms`, s.jitter_ms > LIMITS.jitter_ms);
  set("q-loss", `${s.loss_pct.toFixed(1)} %`, s.loss_pct > LIMITS.loss_pct);
  set("q-mos", s.mos.toFixed(1), s.mos < LIMITS.mos);
  const warn = $("quality-warn");
  warn.textContent = s.warnings.length ? `Weak connection: ${s.warnings.join(", ")}. Callers may hear you badly.` : "";
  show(warn, s.warnings.length > 0);
}

// ---- keyboard --------------------------------------------------------------------------------

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  const tag = ev.target && ev.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
    if (ev.key === "Escape") hideTransfer();
    return;
  }
  if (tag === "BUTTON" && (ev.key === " " || ev.key === "Enter")) return; // the button handles it
  if ($("view-desk").hidden) return;
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (!$("keypad").hidden && S.call && DTMF_KEYS.includes(ev.key)) {
    ev.preventDefault();
    sendDtmf(ev.key);
    return;
  }
  const actions = {
    a: () => S.offer && answer(),
    r: () => S.offer && reject(),
    h: () => S.call && hangup(),
    m: () => S.call && setMuted(!S.muted),
    " ": () => S.call && toggleHold(),
    k: () => S.call && toggleKeypad(),
    t: () => S.call && toggleTransfer(),
    c: () => S.call && togglePicker("consult"),
    d: () => S.agentState.state === "wrap-up" && wrapupDone(),
    Escape: () => { hideKeypad(); hideTransfer(); },
  };
  const run = actions[key];
  if (run) {
    ev.preventDefault();
    run();
  }
}

// ---- start -----------------------------------------------------------------------------------

function buildKeypad() {
  const grid = $("keypad-grid");
  for (const d of DTMF_KEYS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn";
    b.textContent = d;
    b.dataset.testid = `keypad-${d === "*" ? "star" : d === "#" ? "hash" : d}`;
    b.addEventListener("click", () => sendDtmf(d));
    grid.append(b);
  }
}

function init() {
  buildKeypad();
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("btn-signout").addEventListener("click", signOut);
  $("btn-available").addEventListener("click", goAvailable);
  $("btn-break").addEventListener("click", takeBreak);
  $("break-reason").addEventListener("change", render);
  $("btn-acd-logout").addEventListener("click", acdLogout);
  $("btn-answer").addEventListener("click", answer);
  $("btn-reject").addEventListener("click", reject);
  $("btn-hangup").addEventListener("click", hangup);
  $("btn-hold").addEventListener("click", toggleHold);
  $("btn-mute").addEventListener("click", () => setMuted(!S.muted));
  $("btn-keypad").addEventListener("click", () => toggleKeypad());
  $("btn-transfer").addEventListener("click", () => toggleTransfer());
  $("btn-consult").addEventListener("click", () => togglePicker("consult"));
  $("btn-consult-complete").addEventListener("click", completeConsult);
  $("btn-consult-cancel").addEventListener("click", cancelConsult);
  $("transfer-target").addEventListener("input", () => transferError(""));
  $("transfer-form").addEventListener("submit", onTransferSubmit);
  for (const r of document.querySelectorAll('input[name="transfer-kind"]')) r.addEventListener("change", onTransferKind);
  $("btn-wrapup-done").addEventListener("click", wrapupDone);
  $("btn-difficult").addEventListener("click", flagDifficult);
  $("btn-echo").addEventListener("click", echoTest);
  $("mic-select").addEventListener("change", onMicChange);
  $("speaker-select").addEventListener("change", onSpeakerChange);
  document.addEventListener("keydown", onKey);
  // a button clicked with the mouse gives the focus back, so that Space means hold/resume
  // (a button reached with Tab keeps it: Space and Enter press that button)
  document.addEventListener("click", (ev) => {
    const btn = ev.target instanceof Element ? ev.target.closest("button") : null;
    if (btn && ev.detail > 0) btn.blur();
  });
  document.addEventListener("pointerdown", () => audioLocked && unlockAudio());
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", refreshDevices);
  }
  setInterval(tick, 500);
  setMedia("new");
  setConn("offline");
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    banner("This browser cannot make calls. Use a recent Chrome, Edge or Firefox.", "error");
  }
  if (S.session) {
    showDesk();
    checkAudioLocked();
    connect();
  } else {
    showLogin();
  }
}

init();
