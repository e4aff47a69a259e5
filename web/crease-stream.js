// MatchStream: the per-match state machine of the crease client (PROTOCOL.md, client
// algorithm steps 1-4 and 6). Pure but for the snapshot fetch it is given.

import { mergePatch } from "./crease-merge-patch.js";
import { backoffDelay, defaultTimers, timerMs } from "./crease-backoff.js";

/** How long one snapshot request may take (the Go client's DefaultFetchTimeout). */
export const FETCH_TIMEOUT_MS = 10000;

/** Two epochs may be one stream; "" (a version 1 gateway says none) is compatible with any. */
function sameEpoch(a, b) {
  return !a || !b || a === b;
}

function epochOf(x) {
  return x && typeof x.epoch === "string" ? x.epoch : "";
}

/** A JSON object (not an array, not null): what merge patches and match states are. */
function isObject(x) {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

/**
 * Why snap is no snapshot of match (a string), or "" if it is one. Checked as the Go
 * client does: any JSON a server answers 200 with must not become the state shown (an
 * error body, another match's state). The state is an object, or null for a match that
 * has not started (the client's reading of a 404: seq 0, no state yet).
 */
export function snapshotProblem(match, snap) {
  if (!isObject(snap)) return "the body is not a JSON object";
  if (snap.match !== match) return `it is of match ${JSON.stringify(snap.match)}`;
  if (snap.epoch !== undefined && snap.epoch !== null && typeof snap.epoch !== "string") return "its epoch is not a string";
  if (!Number.isSafeInteger(snap.seq) || snap.seq < 0) return "its seq is not a whole number >= 0";
  if (!isObject(snap.state) && !(snap.state === null && snap.seq === 0)) return "its state is not a JSON object";
  return "";
}

/** The lowest held seq a delta applies to: `from` for a catch-up delta, else seq-1. */
function baseOf(d) {
  return Number.isFinite(d.from) ? d.from : d.seq - 1;
}

/** fn, with what it throws logged instead of thrown. */
function guarded(fn, name, log) {
  return (...args) => {
    try {
      fn(...args);
    } catch (e) {
      log.error?.(`crease: ${name} failed`, e);
    }
  };
}

/**
 * Phases:
 *   idle        not subscribed on a live socket; deltas are ignored
 *   subscribing subscribe sent, waiting for `subscribed`; deltas are buffered
 *   fetching    snapshot request in flight; deltas are buffered
 *   live        state held at (epoch, seq); deltas applied in order
 *   refused     the gateway refused the subscription (`refusal` says why); deltas are ignored
 *
 * The snapshot is fetched only after `subscribed`: the gateway delivers every delta
 * published after that frame, so a snapshot taken later cannot leave a hole. A
 * subscribe sent with `since` (the position held) that the gateway answers with
 * `recovered:true` goes on from the state held, without a snapshot.
 */
export class MatchStream {
  constructor(match, { fetchSnapshot, onState = () => {}, onPhase = () => {}, timers = defaultTimers, random = Math.random, retry = { base: 1000, cap: 30000 }, maxBuffer = 5000, fetchTimeoutMs = FETCH_TIMEOUT_MS, log = console } = {}) {
    this.match = match;
    this.fetchSnapshot = fetchSnapshot;
    // The app's callbacks run inside the stream's own steps: one that throws must not
    // stop a step half-way (a retry never armed would freeze the match), so each call is
    // guarded and the error logged.
    this.onState = guarded(onState, "onState", log);
    this.onPhase = guarded(onPhase, "onPhase", log);
    this.timers = timers;
    this.random = random;
    this.retry = retry;
    this.maxBuffer = maxBuffer;
    this.fetchTimeoutMs = fetchTimeoutMs > 0 ? fetchTimeoutMs : FETCH_TIMEOUT_MS;
    this.log = log;
    this.phase = "idle";
    this.state = undefined; // undefined until the first snapshot
    this.epoch = ""; // epoch of the held state ("" unknown: a version 1 gateway)
    this.seq = 0;
    this.buffer = [];
    // The epoch deltas are expected in: that of the last delta or snapshot; undefined
    // after a (re)subscribe or resync, whose snapshot covers any change before it.
    this.expect = undefined;
    // At most one snapshot request is out per match (inFlight); a resync storm or deltas
    // flipping between epochs would otherwise start one per frame, none landing.
    this.inFlight = null; // the request out: {abort}, or null
    this.again = false; // something after the request was sent says it may be too old
    this.againFrom = null; // the first delta after that: the answer is current if it covers it
    this.retryTimer = null; // the next request is due then (a backoff wait)
    // Snapshots in a row that failed or did not bring the stream current; the next
    // request waits backoffDelay(fetchAttempt - 1). Only a snapshot that brings the
    // stream current (or a new subscription) resets it.
    this.fetchAttempt = 0;
    this.hasState = false;
    this.sentSince = false;
    this.refusal = null; // {code, message} while refused
    this.fetches = 0; // snapshot requests made, for tests and diagnostics
  }

  setPhase(p) {
    if (this.phase === p) return;
    this.phase = p;
    this.onPhase(p);
  }

  /** The position to subscribe `since`: a state of a known epoch, or undefined. */
  position() {
    return this.hasState && this.epoch ? { epoch: this.epoch, seq: this.seq } : undefined;
  }

  /** The subscribe op went out (with `since` = position() if since): buffer until `subscribed`. */
  subscribing(since = false) {
    this.cancel();
    // A new subscription (a new connection, as the Go client counts): the retries of
    // the last one are over; the reconnect backoff spaces the connections.
    this.fetchAttempt = 0;
    this.buffer = [];
    this.expect = undefined;
    this.sentSince = Boolean(since) && this.position() !== undefined;
    this.refusal = null;
    this.setPhase("subscribing");
  }

  /**
   * The gateway confirmed the subscription; recovered is its answer to `since`. A repeat
   * (e.g. a liveness probe) changes nothing.
   */
  subscribed(recovered = false) {
    if (this.phase !== "subscribing") return;
    if (recovered === true && this.sentSince) this.resume();
    else this.sync();
  }

  /** Go on from the state held: the gateway replays every delta after it. */
  resume() {
    this.cancel();
    this.expect = this.epoch || undefined;
    this.buffer = this.buffer.filter((d) => sameEpoch(epochOf(d), this.epoch));
    const before = this.seq;
    const gap = this.drain();
    this.setPhase("live");
    if (this.seq !== before) this.onState(this.state, { seq: this.seq, epoch: this.epoch, cause: "delta" });
    if (gap) this.sync();
  }

  /** A `resync` frame: keep the connection, refetch the snapshot, go on. */
  resync() {
    if (this.phase === "idle" || this.phase === "subscribing" || this.phase === "refused") return;
    this.expect = undefined;
    this.sync();
  }

  /** The gateway refused the subscription (an `error` frame with this match). */
  refused(code, message) {
    this.cancel();
    this.buffer = [];
    this.refusal = { code, message };
    this.setPhase("refused");
  }

  /** The socket is gone; the held state stays for display until the next sync. */
  stop() {
    this.cancel();
    this.buffer = [];
    this.setPhase("idle");
  }

  /** Forget the request out (aborted) and the retry due: nothing they bring is wanted. */
  cancel() {
    if (this.inFlight) {
      const req = this.inFlight;
      this.inFlight = null; // first: its late answer or rejection is ignored
      req.abort();
    }
    this.again = false;
    this.againFrom = null;
    if (this.retryTimer !== null) {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  /**
   * A snapshot is needed (a gap, another epoch, a resync, a bad patch): buffer deltas
   * until one brings the stream current. Buffered deltas are kept: they may follow it.
   * A request already out is not cancelled (it would never land in a storm): it is
   * marked, and when it lands it is asked for again unless the deltas since prove it
   * current. A retry already due is not brought forward (the backoff holds).
   */
  sync() {
    this.setPhase("fetching");
    if (this.inFlight) {
      this.again = true;
      this.againFrom = null;
      return;
    }
    if (this.retryTimer !== null) return;
    this.startFetch();
  }

  /** Ask again after the backoff of fetchAttempt (counting this one), and not before retryAfterMs. */
  retryLater(why, retryAfterMs = 0) {
    let ms = backoffDelay(this.fetchAttempt++, this.retry, this.random);
    // Not before a 503's Retry-After (up to the cap), and spread after it.
    if (retryAfterMs > 0) ms += Math.min(retryAfterMs, this.retry.cap ?? 30000);
    ms = timerMs(ms);
    this.log.warn?.(`crease: snapshot of ${this.match}: ${why}; asked again in ${ms} ms`);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.startFetch();
    }, ms);
  }

  startFetch() {
    // The request is aborted on cancel and after fetchTimeoutMs: a server that never
    // answers must not leave the match waiting for ever (it is asked again instead).
    const ctl = typeof AbortController === "function" ? new AbortController() : null;
    let timer = null;
    let settle = null; // rejects the request's promise at the timeout
    const req = {
      abort: () => {
        if (timer !== null) this.timers.clearTimeout(timer);
        timer = null;
        try {
          ctl?.abort();
        } catch {}
      },
    };
    this.inFlight = req;
    this.again = false;
    this.againFrom = null;
    this.fetches++;
    const timeout = new Promise((_, reject) => {
      settle = reject;
    });
    timer = this.timers.setTimeout(() => {
      timer = null;
      settle(new Error(`no answer in ${this.fetchTimeoutMs} ms`));
      req.abort();
    }, timerMs(this.fetchTimeoutMs));
    let p;
    try {
      p = Promise.resolve(this.fetchSnapshot(this.match, ctl ? { signal: ctl.signal } : {}));
    } catch (e) {
      p = Promise.reject(e);
    }
    Promise.race([p, timeout])
      .then((snap) => {
        const problem = snapshotProblem(this.match, snap);
        if (problem) throw new Error(`not a snapshot: ${problem}`);
        return snap;
      })
      .then(
        (snap) => {
          if (this.inFlight !== req) return; // cancelled meanwhile
          req.abort(); // only clears the timeout: the answer is in
          this.inFlight = null;
          const again = this.again;
          const proof = this.againFrom;
          this.again = false;
          this.againFrom = null;
          if (this.applySnapshot(snap, again, proof)) this.fetchAttempt = 0;
          else this.retryLater("it does not bring the stream current");
        },
        (err) => {
          if (this.inFlight !== req) return;
          req.abort();
          this.inFlight = null;
          this.again = false;
          this.againFrom = null;
          this.retryLater(`failed (${err && err.message ? err.message : err})`, err && err.retryAfterMs);
        },
      );
  }

  /**
   * Take a snapshot {match, epoch, seq, state} and apply the buffered deltas of its
   * epoch after it. A snapshot of another epoch sets the position even when its seq is
   * lower (the stream started over); one of the held epoch older than the held state is
   * no step back. Returns whether the stream is now current (live); if not, the state
   * is still shown but the phase stays "fetching" and the caller asks again. It is not
   * current when a buffered delta is left that nothing continues (a gap), when the
   * deltas are of another epoch than the snapshot (the store is behind the stream), or
   * when `superseded` (a resync or new epoch came after the request was sent) unless
   * the state now covers `proof`, the first delta that came after that.
   */
  applySnapshot(snap, superseded = false, proof = null) {
    const cause = this.hasState ? "resync" : "snapshot";
    const epoch = epochOf(snap);
    const seq = snap && Number.isFinite(snap.seq) ? snap.seq : 0;
    // expect is the epoch of the last delta (that of the state held if none came since,
    // none after a resync). A snapshot of another epoch than the deltas may be a store
    // behind a restarted stream: not current until one of theirs comes (asked again with
    // backoff, not on every delta).
    const otherEpoch = Boolean(epoch && this.expect && epoch !== this.expect);
    if (!this.hasState || !sameEpoch(epoch, this.epoch) || seq >= this.seq) {
      this.state = snap && snap.state !== undefined ? snap.state : null;
      this.epoch = epoch;
      this.seq = seq;
    }
    this.hasState = true;
    let gap = true;
    if (!otherEpoch) {
      this.expect = this.epoch || undefined;
      this.buffer = this.buffer.filter((d) => sameEpoch(epochOf(d), this.epoch));
      gap = this.drain();
    } // else the deltas buffered (of the epoch expected) wait for a snapshot of theirs
    const current = !gap && (!superseded || Boolean(proof && sameEpoch(epochOf(proof), this.epoch) && proof.seq <= this.seq));
    this.setPhase(current ? "live" : "fetching");
    this.onState(this.state, { seq: this.seq, epoch: this.epoch, cause });
    return current;
  }

  /**
   * Apply the buffered deltas that continue the held state; true if a buffered delta
   * above it is left that none continues (a gap).
   */
  drain() {
    for (;;) {
      this.buffer = this.buffer.filter((d) => d.seq > this.seq);
      if (this.buffer.length === 0) return false;
      // The one reaching furthest among those that apply: a catch-up delta may cover others.
      let best = null;
      for (const d of this.buffer) {
        if (baseOf(d) <= this.seq && (best === null || d.seq > best.seq)) best = d;
      }
      if (best === null) return true;
      this.apply(best);
    }
  }

  apply(d) {
    this.state = mergePatch(this.state, d.patch);
    this.seq = d.seq;
    if (!this.epoch) this.epoch = epochOf(d); // a version 1 snapshot learns its epoch from the deltas
  }

  bufferDelta(frame) {
    const epoch = epochOf(frame);
    // Deltas arrive in stream order: one of a new epoch makes the others' obsolete.
    if (epoch) this.buffer = this.buffer.filter((d) => sameEpoch(epochOf(d), epoch));
    if (this.buffer.length >= this.maxBuffer) this.buffer.shift(); // a hole here is caught as a gap after the snapshot
    this.buffer.push(frame);
  }

  /** A `delta` frame of this match. */
  delta(frame) {
    if (!frame || !Number.isFinite(frame.seq)) return;
    if (this.phase === "idle" || this.phase === "refused") return;
    const epoch = epochOf(frame);
    if (this.hasState && sameEpoch(epoch, this.epoch) && frame.seq <= this.seq) return; // stale
    if (!isObject(frame.patch)) {
      // Not a merge patch of a state (an array, a string, none): merging it would replace
      // the whole state with it. Skipped, it leaves the state behind by this delta: a gap,
      // as the Go client treats it. While subscribing, the snapshot comes after anyway.
      this.log.warn?.(`crease: delta ${frame.seq} of ${this.match} has no object patch; resyncing`);
      if (this.phase === "live" || this.phase === "fetching") this.sync();
      return;
    }
    const newEpoch = Boolean(epoch && this.expect && epoch !== this.expect);
    if (epoch) this.expect = epoch;
    if (this.phase !== "live") {
      this.bufferDelta(frame);
      // The snapshot in flight was asked for before the stream started over: ask again.
      if (newEpoch && this.phase === "fetching") this.sync();
      // The first delta after something made the request out too old: the answer is
      // current if its state covers this delta (it came later).
      if (this.again && this.againFrom === null) this.againFrom = frame;
      return;
    }
    if (!sameEpoch(epoch, this.epoch) || baseOf(frame) > this.seq) {
      // A gap, or a new stream: a resync; this delta may well follow the new snapshot.
      this.buffer = [frame];
      this.sync();
      return;
    }
    this.apply(frame);
    const info = { seq: this.seq, epoch: this.epoch, cause: "delta", patch: frame.patch, prio: frame.prio, ts: frame.ts };
    if (Number.isFinite(frame.from)) info.from = frame.from;
    this.onState(this.state, info);
  }
}

/**
 * fetchSnapshotFrom GETs a match's snapshot at url with fetchFn (token, when set, as
 * Authorization: Bearer; signal aborts it). A match that has not started (404) is
 * {match, seq: 0, state: null}; another status throws, with retryAfterMs from a 503's
 * Retry-After. MatchStream checks the body (a 200 with an error body is no snapshot).
 */
export async function fetchSnapshotFrom(fetchFn, url, match, token, signal) {
  if (!fetchFn) throw new Error("no fetch");
  const init = { cache: "no-store" };
  if (signal) init.signal = signal;
  if (token) init.headers = { Authorization: `Bearer ${token}` };
  const res = await fetchFn(url, init);
  // A match that has not started has no snapshot yet; its deltas start at seq 1.
  if (res.status === 404) return { match, seq: 0, state: null };
  if (!res.ok) {
    const err = new Error(`HTTP ${res.status}`);
    // A 503 says when to ask again (the store is behind what the gateway delivered).
    const ra = res.status === 503 ? Number(res.headers?.get?.("Retry-After")) : NaN;
    if (Number.isFinite(ra) && ra > 0) err.retryAfterMs = ra * 1000;
    throw err;
  }
  return await res.json();
}
