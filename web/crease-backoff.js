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
