// MatchStream: the per-match state machine of the crease client (PROTOCOL.md, client
// algorithm steps 1-4 and 6). Pure but for the snapshot fetch it is given.

import { mergePatch } from "./crease-merge-patch.js";
import { backoffDelay, defaultTimers } from "./crease-backoff.js";

/** Two epochs may be one stream; "" (a version 1 gateway says none) is compatible with any. */
function sameEpoch(a, b) {
  return !a || !b || a === b;
}

function epochOf(x) {
  return x && typeof x.epoch === "string" ? x.epoch : "";
}

/** The lowest held seq a delta applies to: `from` for a catch-up delta, else seq-1. */
function baseOf(d) {
  return Number.isFinite(d.from) ? d.from : d.seq - 1;
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
    this.epoch = ""; // epoch of the held state ("" unknown: a version 1 gateway)
    this.seq = 0;
    this.buffer = [];
    // The epoch deltas are expected in: that of the last delta or snapshot; undefined
    // after a (re)subscribe or resync, whose snapshot covers any change before it.
    this.expect = undefined;
    this.gen = 0; // bumped to orphan an in-flight fetch or retry
    this.retryTimer = null;
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
        let ms = backoffDelay(this.fetchAttempt++, this.retry, this.random);
        // Not before a 503's Retry-After (up to the cap), and spread after it.
        if (err && err.retryAfterMs > 0) ms += Math.min(err.retryAfterMs, this.retry.cap);
        this.log.warn?.(`crease: snapshot of ${this.match} failed (${err && err.message ? err.message : err}); retry in ${ms} ms`);
        this.retryTimer = this.timers.setTimeout(() => {
          this.retryTimer = null;
          if (gen === this.gen) this.startFetch();
        }, ms);
      },
    );
  }

  /**
   * Take a snapshot {match, epoch, seq, state} and apply the buffered deltas of its
   * epoch after it. A snapshot of another epoch sets the position even when its seq is
   * lower (the stream started over); one of the held epoch older than the held state is
   * no step back.
   */
  applySnapshot(snap) {
    const cause = this.hasState ? "resync" : "snapshot";
    const epoch = epochOf(snap);
    const seq = snap && Number.isFinite(snap.seq) ? snap.seq : 0;
    if (!this.hasState || !sameEpoch(epoch, this.epoch) || seq >= this.seq) {
      this.state = snap && snap.state !== undefined ? snap.state : null;
      this.epoch = epoch;
      this.seq = seq;
    }
    this.hasState = true;
    this.expect = this.epoch || undefined;
    this.buffer = this.buffer.filter((d) => sameEpoch(epochOf(d), this.epoch));
    const gap = this.drain();
    this.setPhase("live");
    this.onState(this.state, { seq: this.seq, epoch: this.epoch, cause });
    if (gap) this.sync();
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
    const newEpoch = Boolean(epoch && this.expect && epoch !== this.expect);
    if (epoch) this.expect = epoch;
    if (this.phase !== "live") {
      this.bufferDelta(frame);
      // The snapshot in flight was asked for before the stream started over: ask again.
      if (newEpoch && this.phase === "fetching") this.sync();
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
