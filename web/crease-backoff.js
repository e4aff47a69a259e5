// Reconnect and retry delays of the crease client (PROTOCOL.md, client algorithm step 5).

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

/** A connection open this long, even without a delta, proves the gateway works (step 5). */
export const STABLE_CONNECTION_MS = 30000;

/**
 * The longest delay setTimeout takes: browsers and Node fire a longer one after about
 * 1 ms, so an unclamped delay from a frame (after_ms, heartbeat_s) could become a loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** ms clamped to what setTimeout honours: [0, MAX_TIMER_MS]; NaN is 0. */
export function timerMs(ms) {
  return ms > 0 ? Math.min(ms, MAX_TIMER_MS) : 0;
}

/** The environment's timers; every module takes them as an option so tests can move time. */
export const defaultTimers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
};

// A gateway sends `hello` first (PROTOCOL.md); one that has not within this long after
// the upgrade is not working: close and reconnect with backoff (the Go client's
// DefaultHelloTimeout). Without it a silent gateway would hold the client for ever.
export const HELLO_TIMEOUT_MS = 10000;

// heartbeat_s is a whole number from 1 to 3600 (PROTOCOL.md, the gateway's --heartbeat,
// default 20). A hello without a usable one gets the default watch rather than none
// (none: a dead link would go unnoticed for ever); one above the range is clamped (3 ×
// 1e7 s overflows setTimeout, which then fires at once and drops every connection).
const DEFAULT_HEARTBEAT_S = 20;
const MAX_HEARTBEAT_S = 3600;

/** The ping interval a hello's heartbeat_s stands for, in ms. */
export function heartbeatMsOf(v) {
  const s = typeof v === "number" ? v : NaN;
  if (!Number.isFinite(s) || s <= 0) return DEFAULT_HEARTBEAT_S * 1000;
  return Math.min(Math.max(s, 1), MAX_HEARTBEAT_S) * 1000;
}

// The longest wait a `reconnect` frame may ask for, as in the Go client: a drain spreads
// its clients over seconds, and a garbage after_ms (1e10, beyond the timers' range) must
// neither freeze the client nor, overflowing, make it loop.
const MAX_RECONNECT_AFTER_MS = 5 * 60 * 1000;

/** A reconnect frame's after_ms within [0, MAX_RECONNECT_AFTER_MS]; garbage is 0 (the backoff alone). */
export function reconnectAfterMs(v) {
  const ms = Number(v);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RECONNECT_AFTER_MS) : 0;
}
