// crease browser and Node client: the client algorithm of PROTOCOL.md (contract
// version 2), no dependencies.
//
// One WebSocket carries every subscribed match; each match has a MatchStream that turns
// (snapshot + ordered deltas) into a state. Everything the environment provides
// (WebSocket, fetch, timers, clock, randomness, document, window) is injectable for tests.
//
// This module is the package's entry: connect() is here; the pieces it is made of are
// re-exported from their own modules.

import { MatchStream, fetchSnapshotFrom } from "./crease-stream.js";
import { reconnectDelay, backoffDelay, defaultTimers, timerMs, STABLE_CONNECTION_MS, HELLO_TIMEOUT_MS, heartbeatMsOf, reconnectAfterMs } from "./crease-backoff.js";
import { tokenSource, tokenRefreshDelay, MIN_TOKEN_REFRESH_MS, DEFAULT_TOKEN_REFRESH_MARGIN_MS } from "./crease-token.js";
import { defaultWsURL, httpBaseFromWsURL, withQuery } from "./crease-urls.js";

export { mergePatch } from "./crease-merge-patch.js";
export { backoffDelay, reconnectDelay } from "./crease-backoff.js";
export { MatchStream } from "./crease-stream.js";
export { tokenExpiryMs, tokenRefreshDelay } from "./crease-token.js";
export { defaultWsURL, httpBaseFromWsURL } from "./crease-urls.js";

// The refusals of a subscription: the match waits for nothing on this connection.
const REFUSALS = new Set(["forbidden", "bad_request", "too_many_subscriptions", "rate_limited"]);

const OPEN = 1;

/**
 * connect(options) opens the gateway connection and returns the client. See README.md.
 */
export function connect(options = {}) {
  const {
    url,
    token,
    tokenRefreshMarginMs = DEFAULT_TOKEN_REFRESH_MARGIN_MS,
    httpBase,
    snapshotURL,
    catchup = false,
    backoff: backoffOpts = {},
    WebSocket: WS = globalThis.WebSocket,
    fetch: fetchFn = globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined,
    timers = defaultTimers,
    now = () => Date.now(),
    random = Math.random,
    document: doc = globalThis.document,
    window: win = globalThis.window,
    navigator: nav = globalThis.navigator,
    log = console,
  } = options;
  const backoff = { base: 500, cap: 30000, initialSpreadMs: 5000, ...backoffOpts };
  if (!WS) throw new Error("crease: no WebSocket implementation (pass options.WebSocket, e.g. the ws package's)");
  const tokens = tokenSource(token);

  const listeners = { status: new Set(), event: new Set(), error: new Set() };
  const subs = new Map(); // match -> {stream, fns:Set, sentAt, sentAuths, limited, retryTimer}
  let ws = null;
  let opening = 0; // the generation of an open waiting for its token (0: none)
  let openGen = 0;
  let lastTarget = null; // the WebSocket URL last dialled, for the default HTTP base
  let status = null;
  let statusInfo = {};
  let everLive = false;
  let attempt = 0;
  let reconnectTimer = null;
  let reconnectInMs = 0;
  let serverDelayMs = null; // from reconnect{after_ms}, used once
  let proved = false; // the current connection delivered a delta or stayed open 30 s
  let heartbeatMs = 0;
  let helloTimer = null;
  let probeTimer = null;
  let deadTimer = null;
  let stableTimer = null;
  let refreshTimer = null;
  let refreshFailures = 0;
  let connTokenExpMs; // exp of the token the connection holds
  let authPrevExpMs; // connTokenExpMs before the last auth sent (undefined: none outstanding)
  let unsubs = 0; // unsubscribes sent on this connection
  let auths = 0; // auth ops sent on this connection
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
    // A refused match waits for nothing on this connection: it does not hold the status.
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

  function snapshotURLOf(match) {
    if (snapshotURL) return snapshotURL(match);
    const base = httpBase || httpBaseFromWsURL(lastTarget || (typeof url === "function" ? url() : url || defaultWsURL()));
    return `${base.replace(/\/+$/, "")}/v1/matches/${encodeURIComponent(match)}`;
  }

  // signal aborts the request: the stream's timeout, or a request no longer wanted.
  function fetchSnapshot(match, { signal } = {}) {
    return fetchSnapshotFrom(fetchFn, snapshotURLOf(match), match, tokens.current, signal);
  }

  function newStream(match) {
    return new MatchStream(match, {
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
  }

  /** Send sub's subscribe, with `since` = the position held when there is one. */
  function subscribeOn(match, sub) {
    const since = sub.stream.position();
    sub.stream.subscribing(Boolean(since));
    sub.sentAt = unsubs;
    sub.sentAuths = auths;
    send(since ? { op: "subscribe", match, since } : { op: "subscribe", match });
  }

  function clearTimer(t) {
    if (t !== null) timers.clearTimeout(t);
    return null;
  }

  // --- heartbeat: browsers answer pings without telling JS, so silence is only
  // suspicious, not proof. After 2 heartbeats of silence a repeated subscribe (answered
  // `subscribed`, counted once) asks the gateway for a frame; after 3 the link is dead.
  function clearHeartbeat() {
    probeTimer = clearTimer(probeTimer);
    deadTimer = clearTimer(deadTimer);
  }

  function armHeartbeat() {
    clearHeartbeat();
    if (!heartbeatMs) return;
    const sock = ws;
    probeTimer = timers.setTimeout(() => {
      probeTimer = null;
      if (sock !== ws) return;
      const probe = [...subs].find(([, s]) => s.stream.phase !== "refused");
      if (probe) send({ op: "subscribe", match: probe[0] });
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

  // --- token refresh: a fresh token goes with `auth` on the live connection before the
  // one it holds expires; the subscriptions the old claim forbade are tried again.
  function armRefresh(delayMs) {
    refreshTimer = clearTimer(refreshTimer);
    if (!tokens.refreshable || connTokenExpMs === undefined) return;
    // Clamped: a token valid for more than 24.8 days would otherwise overflow the timer,
    // which fires at once, and every refresh would bring another such token (an auth flood).
    const ms = timerMs(delayMs ?? tokenRefreshDelay(now(), connTokenExpMs, tokenRefreshMarginMs));
    const sock = ws;
    refreshTimer = timers.setTimeout(() => {
      refreshTimer = null;
      if (sock !== ws) return;
      tokens.fresh().then(
        ({ token: tok, expMs }) => {
          if (sock !== ws) return;
          if (expMs === undefined || expMs <= connTokenExpMs) return refreshFailed(sock, new Error("the token provider returned no newer token"));
          refreshFailures = 0;
          // Optimistic: the gateway answers only a refused token (`unauthorized`).
          authPrevExpMs = connTokenExpMs;
          connTokenExpMs = expMs;
          send({ op: "auth", token: tok });
          auths++;
          for (const [match, sub] of subs) if (sub.stream.refusal?.code === "forbidden") subscribeOn(match, sub);
          armRefresh();
          updateStatus();
        },
        (e) => refreshFailed(sock, e),
      );
    }, ms);
  }

  function refreshFailed(sock, err) {
    if (sock !== ws) return;
    const ms = Math.max(MIN_TOKEN_REFRESH_MS, backoffDelay(refreshFailures++, backoff, random));
    log.warn?.(`crease: token refresh failed (${err && err.message ? err.message : err}); retry in ${ms} ms`);
    armRefresh(ms);
  }

  // --- socket lifecycle
  function open() {
    if (paused() || ws || opening) return;
    const gen = ++openGen;
    if (!tokens.refreshable) {
      startSocket(tokens.enabled ? token : undefined);
      return;
    }
    // A fresh token for every connection; the status says connecting meanwhile.
    opening = gen;
    tokens.fresh().then(
      ({ token: tok }) => {
        if (opening !== gen) return;
        opening = 0;
        if (!paused()) startSocket(tok);
      },
      (e) => {
        if (opening !== gen) return;
        opening = 0;
        log.warn?.(`crease: the token provider failed (${e && e.message ? e.message : e})`);
        scheduleReconnect();
      },
    );
    updateStatus();
  }

  function startSocket(tok) {
    let target = typeof url === "function" ? url() : url || defaultWsURL();
    if (catchup) target = withQuery(target, "catchup", "1");
    lastTarget = target;
    connTokenExpMs = tok ? tokens.expMs : undefined;
    authPrevExpMs = undefined;
    let sock;
    try {
      // The token goes as a subprotocol, never in the URL (access logs keep URLs).
      sock = tok ? new WS(target, [`bearer.${tok}`]) : new WS(target);
    } catch (e) {
      log.warn?.("crease: WebSocket failed", e);
      scheduleReconnect();
      return;
    }
    ws = sock;
    proved = false;
    heartbeatMs = 0;
    probingWithPing = false;
    unsubs = 0;
    auths = 0;
    sock.onopen = () => {
      if (sock !== ws) return;
      helloTimer = timers.setTimeout(() => {
        helloTimer = null;
        if (sock !== ws) return;
        log.warn?.(`crease: no hello from the gateway in ${HELLO_TIMEOUT_MS} ms; reconnecting`);
        quietly(() => {
          dropSocket(4000, "hello timeout");
          scheduleReconnect();
        });
      }, HELLO_TIMEOUT_MS);
      // Open 30 s: the gateway works, even if no delta came (a `hello` alone proves nothing).
      stableTimer = timers.setTimeout(() => {
        stableTimer = null;
        if (sock === ws) {
          attempt = 0;
          proved = true;
        }
      }, STABLE_CONNECTION_MS);
      refreshFailures = 0;
      armRefresh();
      for (const [match, sub] of subs) subscribeOn(match, sub);
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
    opening = 0;
    helloTimer = clearTimer(helloTimer);
    clearHeartbeat();
    stableTimer = clearTimer(stableTimer);
    refreshTimer = clearTimer(refreshTimer);
    for (const sub of subs.values()) {
      sub.retryTimer = clearTimer(sub.retryTimer ?? null);
      sub.stream.stop();
    }
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
    // A drain of a connection that proved the gateway works: its after_ms exactly (the
    // gateway spread its clients already). Any other end counts as an attempt, a
    // `reconnect` frame's too: a gateway that sends it right after `hello` must see the
    // delays grow, not a loop, and after_ms is then waited at least.
    let ms;
    if (serverDelayMs !== null && proved) {
      ms = serverDelayMs;
    } else {
      ms = Math.max(reconnectDelay(attempt++, backoff, random), serverDelayMs ?? 0);
    }
    serverDelayMs = null;
    ms = timerMs(ms);
    reconnectInMs = ms;
    reconnectTimer = timers.setTimeout(() => {
      reconnectTimer = null;
      open();
      updateStatus();
    }, ms);
    updateStatus();
  }

  function cancelReconnect() {
    reconnectTimer = clearTimer(reconnectTimer);
  }

  // A refused subscription: the match is left out until it may pass.
  function refuse(match, sub, f) {
    sub.stream.refused(f.code, f.message);
    if (f.code === "rate_limited") {
      // The rate is per second: try again after a jittered wait of at least that order.
      const ms = backoffDelay(sub.limited++, { base: Math.max(1000, backoff.base), cap: backoff.cap }, random);
      const sock = ws;
      sub.retryTimer = clearTimer(sub.retryTimer ?? null);
      sub.retryTimer = timers.setTimeout(() => {
        sub.retryTimer = null;
        if (sock === ws && subs.get(match) === sub && sub.stream.phase === "refused") subscribeOn(match, sub);
        updateStatus();
      }, ms);
    } else if (f.code === "too_many_subscriptions" && unsubs > sub.sentAt) {
      subscribeOn(match, sub); // a slot was freed after this subscribe went out
    } else if (f.code === "forbidden" && auths > sub.sentAuths) {
      subscribeOn(match, sub); // a fresh token went out after it: the old claim was judged
    }
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
        // No reset of the attempts here: a gateway that closes right after `hello`
        // must not drive the client into a tight loop.
        helloTimer = clearTimer(helloTimer);
        heartbeatMs = heartbeatMsOf(f.heartbeat_s);
        armHeartbeat();
        return;
      case "subscribed":
        if (sub) {
          sub.limited = 0;
          sub.stream.subscribed(f.recovered === true);
        }
        updateStatus();
        return;
      case "delta":
        if (!sub) return;
        attempt = 0; // a delta came: the gateway works, the next drop starts afresh
        proved = true;
        sub.stream.delta(f);
        return;
      case "resync":
        if (sub) sub.stream.resync(f.reason);
        return;
      case "event":
        emit("event", f);
        return;
      case "reconnect": {
        serverDelayMs = reconnectAfterMs(f.after_ms);
        quietly(() => {
          dropSocket(1000, "reconnect requested");
          scheduleReconnect();
        });
        return;
      }
      case "error": {
        if (probingWithPing && f.code === "unknown_op") {
          probingWithPing = false; // the answer to our own liveness probe
          return;
        }
        if (sub && REFUSALS.has(f.code)) refuse(f.match, sub, f);
        if (f.code === "unauthorized" && authPrevExpMs !== undefined) {
          // The fresh token was refused; the one held stays until it expires: retry.
          connTokenExpMs = authPrevExpMs;
          authPrevExpMs = undefined;
          refreshFailed(ws, new Error(`the gateway refused the fresh token: ${f.message}`));
        }
        log.warn?.(`crease: gateway error ${f.code}${f.match ? ` (match ${f.match})` : ""}: ${f.message}`);
        emit("error", f);
        const error = { code: f.code, message: f.message };
        if (typeof f.match === "string") error.match = f.match;
        emit("status", status, { ...statusInfo, error });
        updateStatus();
        return;
      }
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
    /** Subscribe to a match; onState(state, {seq, epoch, cause}) on every change. Returns the unsubscribe function. */
    subscribe(match, onState) {
      let sub = subs.get(match);
      if (!sub) {
        sub = { stream: newStream(match), fns: new Set(), sentAt: 0, sentAuths: 0, limited: 0, retryTimer: null };
        subs.set(match, sub);
        if (ws && ws.readyState === OPEN) subscribeOn(match, sub);
        updateStatus();
      } else if (sub.stream.hasState && onState) {
        // A late subscriber gets the current state at once.
        const { state, seq, epoch } = sub.stream;
        timers.setTimeout(() => {
          if (sub.fns.has(onState) && sub.stream.seq === seq) onState(state, { seq, epoch, cause: "snapshot" });
        }, 0);
      }
      if (onState) sub.fns.add(onState);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        if (onState) sub.fns.delete(onState);
        if (sub.fns.size === 0 && subs.get(match) === sub) {
          const heldSlot = sub.stream.phase !== "refused";
          sub.retryTimer = clearTimer(sub.retryTimer);
          sub.stream.stop();
          subs.delete(match);
          if (ws && ws.readyState === OPEN) {
            send({ op: "unsubscribe", match });
            unsubs++;
            // A subscription slot is free: a match refused for the limit may pass now.
            if (heldSlot) {
              for (const [m, s] of subs) if (s.stream.refusal?.code === "too_many_subscriptions") subscribeOn(m, s);
            }
          }
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
    /** Why the gateway refused the subscription of match ({code, message}), or null. */
    refusal(match) {
      const sub = subs.get(match);
      return sub ? sub.stream.refusal : null;
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
