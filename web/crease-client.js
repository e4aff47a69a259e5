// crease browser client: the client algorithm of PROTOCOL.md, no dependencies.
//
// One WebSocket carries every subscribed match; each match has a MatchStream that turns
// (snapshot + ordered deltas) into a state. Everything the environment provides
// (WebSocket, fetch, timers, randomness, document, window) is injectable for tests.

// ---------------------------------------------------------------------------------------
// Pure helpers

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// Assigning "__proto__" would change the prototype instead of adding a key, and JSON
// from the wire can hold that key.
function setKey(obj, k, v) {
  if (k === "__proto__") {
    Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else {
    obj[k] = v;
  }
}

/**
 * RFC 7396 JSON Merge Patch. Returns the patched value and leaves target untouched
 * (objects on the patched path are copied), so callers can compare old and new states.
 */
export function mergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  const out = {};
  if (isObject(target)) {
    for (const k of Object.keys(target)) setKey(out, k, target[k]);
  }
  for (const k of Object.keys(patch)) {
    const v = patch[k];
    if (v === null) {
      delete out[k];
    } else {
      setKey(out, k, mergePatch(Object.prototype.hasOwnProperty.call(out, k) ? out[k] : undefined, v));
    }
  }
  return out;
}

/**
 * Full-jitter exponential backoff: a uniform delay in [0, min(cap, base * 2^attempt)).
 */
export function backoffDelay(attempt, { base = 500, cap = 30000 } = {}, random = Math.random) {
  const window = Math.min(cap, base * Math.pow(2, Math.max(0, attempt)));
  return Math.floor(random() * window);
}

/**
 * The delay before reconnect number `attempt` (0 = the first after a drop). The window
 * never drops below the initial spread: when a gateway dies, all its clients reconnect
 * at once, and a window that shrank after the first try would bunch them up again.
 */
export function reconnectDelay(attempt, { base = 500, cap = 30000, initialSpreadMs = 5000 } = {}, random = Math.random) {
  const window = Math.min(cap, Math.max(initialSpreadMs, base * Math.pow(2, Math.max(0, attempt))));
  return Math.floor(random() * window);
}

/** The WebSocket URL when /config.json is unavailable: the page's host, port 8080. */
export function defaultWsURL(loc = globalThis.location) {
  if (!loc) return "ws://localhost:8080/ws";
  const scheme = loc.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${loc.hostname || "localhost"}:8080/ws`;
}

const defaultTimers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
};

// ---------------------------------------------------------------------------------------
// MatchStream: the per-match state machine

/**
 * Phases:
 *   idle        not subscribed on a live socket; deltas are ignored
 *   subscribing subscribe sent, waiting for `subscribed`; deltas are buffered
 *   fetching    snapshot request in flight; deltas are buffered
 *   live        state held at `seq`; deltas applied in order
 *
 * The snapshot is fetched only after `subscribed`: the gateway delivers every delta
 * published after that frame, so a snapshot taken later cannot leave a hole.
 */
export class MatchStream {
  constructor(match, { fetchSnapshot, onState = () => {}, onPhase = () => {}, timers = defaultTimers, random = Math.random, retry = { base: 1000, cap: 30000 }, maxBuffer = 5000, log = console } = {}) {
    this.match = match;
    this.fetchSnapshot = fetchSnapshot;
    this.onState = onState;
    this.onPhase = onPhase;
    this.timers = timers;
    this.random = random;
    this.retry = retry;
    this.maxBuffer = maxBuffer;
    this.log = log;
    this.phase = "idle";
    this.state = undefined; // undefined until the first snapshot
    this.seq = 0;
    this.buffer = [];
    this.gen = 0; // bumped to orphan an in-flight fetch or retry
    this.retryTimer = null;
    this.fetchAttempt = 0;
    this.hasState = false;
    this.fetches = 0; // snapshot requests made, for tests and diagnostics
  }

  setPhase(p) {
    if (this.phase === p) return;
    this.phase = p;
    this.onPhase(p);
  }

  /** The subscribe op went out: buffer until `subscribed`. */
  subscribing() {
    this.cancel();
    this.buffer = [];
    this.setPhase("subscribing");
  }

  /** The gateway confirmed the subscription. A repeat (e.g. a liveness probe) changes nothing. */
  subscribed() {
    if (this.phase === "subscribing") this.sync();
  }

  /** A `resync` frame: keep the connection, refetch the snapshot, go on. */
  resync() {
    if (this.phase === "idle" || this.phase === "subscribing") return;
    this.sync();
  }

  /** The socket is gone; the held state stays for display until the next sync. */
  stop() {
    this.cancel();
    this.buffer = [];
    this.setPhase("idle");
  }

  cancel() {
    this.gen++;
    if (this.retryTimer !== null) {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  /** (Re)fetch the snapshot, buffering deltas meanwhile. Buffered deltas are kept: they may follow the snapshot. */
  sync() {
    this.cancel();
    this.fetchAttempt = 0;
    this.setPhase("fetching");
    this.startFetch();
  }

  startFetch() {
    const gen = this.gen;
    this.fetches++;
    let p;
    try {
      p = Promise.resolve(this.fetchSnapshot(this.match));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (snap) => {
        if (gen !== this.gen) return;
        this.applySnapshot(snap);
      },
      (err) => {
        if (gen !== this.gen) return;
        const ms = backoffDelay(this.fetchAttempt++, this.retry, this.random);
        this.log.warn?.(`crease: snapshot of ${this.match} failed (${err && err.message ? err.message : err}); retry in ${ms} ms`);
        this.retryTimer = this.timers.setTimeout(() => {
          this.retryTimer = null;
          if (gen === this.gen) this.startFetch();
        }, ms);
      },
    );
  }

  applySnapshot(snap) {
    const cause = this.hasState ? "resync" : "snapshot";
    let state = snap && snap.state !== undefined ? snap.state : null;
    let last = snap && Number.isFinite(snap.seq) ? snap.seq : 0;
    this.buffer.sort((a, b) => a.seq - b.seq);
    let gapAt = -1;
    for (let i = 0; i < this.buffer.length; i++) {
      const d = this.buffer[i];
      if (d.seq <= last) continue; // the snapshot already holds it
      if (d.seq !== last + 1) {
        gapAt = i;
        break;
      }
      state = mergePatch(state, d.patch);
      last = d.seq;
    }
    this.buffer = gapAt < 0 ? [] : this.buffer.slice(gapAt);
    this.state = state;
    this.seq = last;
    this.hasState = true;
    this.setPhase("live");
    this.onState(state, { seq: last, cause });
    if (gapAt >= 0) this.sync();
  }

  /** A `delta` frame of this match. */
  delta(frame) {
    if (!frame || !Number.isFinite(frame.seq)) return;
    switch (this.phase) {
      case "idle":
        return;
      case "subscribing":
      case "fetching":
        if (this.buffer.length >= this.maxBuffer) this.buffer.shift(); // a hole here is caught as a gap after the snapshot
        this.buffer.push(frame);
        return;
      case "live":
        if (frame.seq <= this.seq) return; // stale
        if (frame.seq > this.seq + 1) {
          // A gap is a resync; this delta may well follow the new snapshot.
          this.buffer = [frame];
          this.sync();
          return;
        }
        this.state = mergePatch(this.state, frame.patch);
        this.seq = frame.seq;
        this.onState(this.state, { seq: this.seq, cause: "delta", patch: frame.patch, prio: frame.prio, ts: frame.ts });
    }
  }
}

// ---------------------------------------------------------------------------------------
// The connection

const OPEN = 1;

/**
 * connect(options) opens the gateway connection and returns the client. See README.md.
 */
export function connect(options = {}) {
  const {
    url,
    snapshotURL = (id) => `/v1/matches/${encodeURIComponent(id)}`,
    backoff: backoffOpts = {},
    WebSocket: WS = globalThis.WebSocket,
    fetch: fetchFn = globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined,
    timers = defaultTimers,
    random = Math.random,
    document: doc = globalThis.document,
    window: win = globalThis.window,
    navigator: nav = globalThis.navigator,
    log = console,
  } = options;
  const backoff = { base: 500, cap: 30000, initialSpreadMs: 5000, ...backoffOpts };
  if (!WS) throw new Error("crease: no WebSocket implementation");

  const listeners = { status: new Set(), event: new Set(), error: new Set() };
  const subs = new Map(); // match -> {stream, fns:Set}
  let ws = null;
  let status = null;
  let statusInfo = {};
  let everLive = false;
  let attempt = 0;
  let reconnectTimer = null;
  let reconnectAt = 0;
  let reconnectInMs = 0;
  let serverDelayMs = null; // from reconnect{after_ms}, used once
  let heartbeatMs = 0;
  let probeTimer = null;
  let deadTimer = null;
  let probingWithPing = false;
  let closed = false;
  let hidden = false;
  let offline = false;

  function emit(name, ...args) {
    for (const fn of [...listeners[name]]) {
      try {
        fn(...args);
      } catch (e) {
        log.error?.("crease: listener failed", e);
      }
    }
  }

  function paused() {
    return closed || hidden || offline;
  }

  function computeStatus() {
    if (paused()) return ["offline", {}];
    if (reconnectTimer !== null) return ["reconnecting", { inMs: reconnectInMs }];
    if (!ws || ws.readyState !== OPEN) return ["connecting", {}];
    for (const { stream } of subs.values()) {
      if (stream.phase === "subscribing" || stream.phase === "fetching") return [everLive ? "resyncing" : "connecting", {}];
    }
    return ["live", {}];
  }

  // Transitions (drop socket, stop streams, schedule) pass through intermediate states
  // that must not be reported; they run inside quietly().
  let quiet = 0;
  function quietly(fn) {
    quiet++;
    try {
      fn();
    } finally {
      quiet--;
    }
    updateStatus();
  }

  function updateStatus() {
    if (quiet) return;
    const [s, info] = computeStatus();
    if (s === status && info.inMs === statusInfo.inMs) return;
    status = s;
    statusInfo = info;
    if (s === "live") everLive = true;
    emit("status", s, info);
  }

  function send(obj) {
    if (ws && ws.readyState === OPEN) ws.send(JSON.stringify(obj));
  }

  async function fetchSnapshot(match) {
    if (!fetchFn) throw new Error("no fetch");
    const res = await fetchFn(snapshotURL(match), { cache: "no-store" });
    // A match that has not started has no snapshot yet; its deltas start at seq 1.
    if (res.status === 404) return { match, seq: 0, state: null };
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.json();
  }

  function newStream(match) {
    const stream = new MatchStream(match, {
      fetchSnapshot,
      timers,
      random,
      log,
      onPhase: updateStatus,
      onState: (state, info) => {
        const sub = subs.get(match);
        if (!sub) return;
        for (const fn of [...sub.fns]) {
          try {
            fn(state, info);
          } catch (e) {
            log.error?.("crease: onState failed", e);
          }
        }
      },
    });
    return stream;
  }

  // --- heartbeat: browsers answer pings without telling JS, so silence is only
  // suspicious, not proof. After 2 heartbeats of silence a repeated subscribe (answered
  // `subscribed`, counted once) asks the gateway for a frame; after 3 the link is dead.
  function clearHeartbeat() {
    if (probeTimer !== null) timers.clearTimeout(probeTimer);
    if (deadTimer !== null) timers.clearTimeout(deadTimer);
    probeTimer = deadTimer = null;
  }

  function armHeartbeat() {
    clearHeartbeat();
    if (!heartbeatMs) return;
    const sock = ws;
    probeTimer = timers.setTimeout(() => {
      probeTimer = null;
      if (sock !== ws) return;
      const first = subs.keys().next();
      if (!first.done) send({ op: "subscribe", match: first.value });
      else {
        probingWithPing = true;
        send({ op: "ping" }); // answered with error unknown_op, which is also a frame
      }
    }, 2 * heartbeatMs);
    deadTimer = timers.setTimeout(() => {
      deadTimer = null;
      if (sock !== ws) return;
      log.warn?.(`crease: nothing from the gateway for ${3 * heartbeatMs} ms; reconnecting`);
      quietly(() => {
        dropSocket(4000, "heartbeat timeout");
        scheduleReconnect();
      });
    }, 3 * heartbeatMs);
  }

  // --- socket lifecycle
  function open() {
    if (paused() || ws) return;
    const target = typeof url === "function" ? url() : url || defaultWsURL();
    let sock;
    try {
      sock = new WS(target);
    } catch (e) {
      log.warn?.("crease: WebSocket failed", e);
      scheduleReconnect();
      return;
    }
    ws = sock;
    heartbeatMs = 0;
    probingWithPing = false;
    sock.onopen = () => {
      if (sock !== ws) return;
      for (const [match, { stream }] of subs) {
        stream.subscribing();
        send({ op: "subscribe", match });
      }
      updateStatus();
    };
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      onFrame(ev.data);
    };
    sock.onerror = () => {
      // A close event follows an error in browsers; only nudge implementations that do not.
      if (sock === ws && sock.readyState === OPEN) {
        try {
          sock.close();
        } catch {}
      }
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      log.info?.(`crease: connection closed (${ev && ev.code})`);
      quietly(() => {
        dropSocket();
        scheduleReconnect();
      });
    };
    updateStatus();
  }

  // Forget the current socket at once; its late events are ignored (sock !== ws).
  // Without a code the socket is already closed.
  function dropSocket(code, reason) {
    const sock = ws;
    ws = null;
    clearHeartbeat();
    for (const { stream } of subs.values()) stream.stop();
    if (sock && code !== undefined) {
      try {
        sock.close(code, reason);
      } catch {
        try {
          sock.close();
        } catch {}
      }
    }
  }

  function scheduleReconnect() {
    if (paused() || reconnectTimer !== null) return;
    let ms;
    if (serverDelayMs !== null) {
      ms = serverDelayMs;
      serverDelayMs = null;
    } else {
      ms = reconnectDelay(attempt++, backoff, random);
    }
    reconnectInMs = ms;
    reconnectTimer = timers.setTimeout(() => {
      reconnectTimer = null;
      open();
      updateStatus();
    }, ms);
    updateStatus();
  }

  function cancelReconnect() {
    if (reconnectTimer !== null) timers.clearTimeout(reconnectTimer);
    reconnectTimer = null;
  }

  function onFrame(data) {
    armHeartbeat(); // any frame proves the link
    let f;
    try {
      f = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      log.warn?.("crease: frame is not JSON");
      return;
    }
    if (!f || typeof f !== "object") return;
    const sub = typeof f.match === "string" ? subs.get(f.match) : undefined;
    switch (f.type) {
      case "hello":
        attempt = 0; // a gateway accepted us: the next drop starts the backoff afresh
        heartbeatMs = Number(f.heartbeat_s) > 0 ? Number(f.heartbeat_s) * 1000 : 0;
        armHeartbeat();
        return;
      case "subscribed":
        if (sub) sub.stream.subscribed();
        updateStatus();
        return;
      case "delta":
        if (sub) sub.stream.delta(f);
        return;
      case "resync":
        if (sub) sub.stream.resync(f.reason);
        return;
      case "event":
        emit("event", f);
        return;
      case "reconnect": {
        const ms = Number(f.after_ms);
        serverDelayMs = Number.isFinite(ms) && ms >= 0 ? ms : null;
        quietly(() => {
          dropSocket(1000, "reconnect requested");
          scheduleReconnect();
        });
        return;
      }
      case "error":
        if (probingWithPing && f.code === "unknown_op") {
          probingWithPing = false; // the answer to our own liveness probe
          return;
        }
        log.warn?.(`crease: gateway error ${f.code}: ${f.message}`);
        emit("error", f);
        emit("status", status, { ...statusInfo, error: { code: f.code, message: f.message } });
        return;
      default:
        return; // unknown frame types are for newer clients
    }
  }

  // --- page visibility and network: a hidden tab or an offline browser holds no socket.
  function pause() {
    quietly(() => {
      cancelReconnect();
      dropSocket(1000, "paused");
    });
  }

  function resume() {
    if (paused()) return;
    quietly(() => {
      cancelReconnect();
      attempt = 0;
      serverDelayMs = null;
      if (!ws) open();
    });
  }

  const onVisibility = () => {
    const h = doc.visibilityState === "hidden";
    if (h === hidden) return;
    hidden = h;
    if (hidden) pause();
    else resume();
  };
  const onOffline = () => {
    offline = true;
    pause();
  };
  const onOnline = () => {
    offline = false;
    resume();
  };
  if (doc && doc.addEventListener) {
    hidden = doc.visibilityState === "hidden";
    doc.addEventListener("visibilitychange", onVisibility);
  }
  if (win && win.addEventListener) {
    win.addEventListener("offline", onOffline);
    win.addEventListener("online", onOnline);
  }
  if (nav && nav.onLine === false) offline = true;

  const client = {
    /** Subscribe to a match; onState(state, {seq, cause}) on every change. Returns the unsubscribe function. */
    subscribe(match, onState) {
      let sub = subs.get(match);
      if (!sub) {
        sub = { stream: newStream(match), fns: new Set() };
        subs.set(match, sub);
        if (ws && ws.readyState === OPEN) {
          sub.stream.subscribing();
          send({ op: "subscribe", match });
        }
        updateStatus();
      } else if (sub.stream.hasState && onState) {
        // A late subscriber gets the current state at once.
        const { state, seq } = sub.stream;
        timers.setTimeout(() => {
          if (sub.fns.has(onState) && sub.stream.seq === seq) onState(state, { seq, cause: "snapshot" });
        }, 0);
      }
      if (onState) sub.fns.add(onState);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        if (onState) sub.fns.delete(onState);
        if (sub.fns.size === 0 && subs.get(match) === sub) {
          sub.stream.stop();
          subs.delete(match);
          send({ op: "unsubscribe", match });
          updateStatus();
        }
      };
    },
    /** on("status"|"event"|"error", fn): returns the removal function. A status listener is called at once with the current status. */
    on(name, fn) {
      if (!listeners[name]) throw new Error(`crease: unknown event ${name}`);
      listeners[name].add(fn);
      if (name === "status" && status) fn(status, statusInfo);
      return () => listeners[name].delete(fn);
    },
    get status() {
      return status;
    },
    /** The held state of a subscribed match, or undefined. */
    state(match) {
      const sub = subs.get(match);
      return sub ? sub.stream.state : undefined;
    },
    close() {
      if (closed) return;
      closed = true;
      quietly(() => {
        cancelReconnect();
        dropSocket(1000, "client closed");
      });
      if (doc && doc.removeEventListener) doc.removeEventListener("visibilitychange", onVisibility);
      if (win && win.removeEventListener) {
        win.removeEventListener("offline", onOffline);
        win.removeEventListener("online", onOnline);
      }
    },
  };

  if (paused()) updateStatus();
  else open();
  return client;
}
