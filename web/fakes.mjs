// Test doubles for crease-client.js: a manual clock, a scripted WebSocket and fetch.
// (Not named *.test.mjs, so `node --test web/` does not run it as a test file.)

/** Let pending promise callbacks run. */
export const flush = () => new Promise((r) => setImmediate(r));

export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.maxDelay = 0; // the longest delay asked for
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.maxDelay = Math.max(this.maxDelay, ms || 0);
      // As in browsers and Node: a delay over 2^31-1 ms does not fit and fires after 1 ms.
      const delay = ms > 2 ** 31 - 1 ? 1 : Math.max(0, ms || 0);
      this.timers.set(id, { at: this.now + delay, fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Move time forward by ms, running due timers in order (and the promises they start). */
  async advance(ms) {
    const end = this.now + ms;
    await flush();
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (next === null || t.at < next[1].at)) next = [id, t];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await flush();
    }
    this.now = end;
  }
}

/** A WebSocket class whose instances the test drives from the "server" side. */
export function fakeWebSocketClass() {
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols === undefined ? [] : [].concat(protocols);
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }
    close(code, reason) {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 2;
      // Browsers report the close asynchronously.
      queueMicrotask(() => {
        this.readyState = 3;
        this.onclose?.({ code: code ?? 1005, reason: reason ?? "" });
      });
    }
    // --- the server side
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }
    serverSend(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    serverClose(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: "" });
    }
    ops(op) {
      return this.sent.filter((m) => !op || m.op === op);
    }
  }
  FakeWebSocket.instances = [];
  FakeWebSocket.last = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  return FakeWebSocket;
}

/**
 * A fetch whose answers the test gives: every call is recorded with respond(status, body)
 * and fail(err) to settle it.
 */
export function fakeFetch() {
  const calls = [];
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
      const call = {
        url,
        init,
        settled: false, // answered, failed or aborted
        get aborted() {
          return Boolean(init?.signal?.aborted);
        },
        respond(status, body, headers = {}) {
          this.settled = true;
          resolve({ ok: status >= 200 && status < 300, status, headers: { get: (k) => headers[k] ?? null }, json: async () => body });
        },
        snapshot(seq, state, match, epoch = "e1") {
          this.respond(200, { match: match ?? decodeURIComponent(url.split("/").pop()), epoch, seq, state });
        },
        fail(err = new Error("network down")) {
          this.settled = true;
          reject(err);
        },
      };
      calls.push(call);
      // As fetch does: an aborted request rejects.
      init?.signal?.addEventListener?.("abort", () => {
        call.settled = true;
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  fetch.calls = calls;
  fetch.last = () => calls[calls.length - 1];
  /** The requests neither answered nor aborted. */
  fetch.pending = () => calls.filter((c) => !c.settled);
  return fetch;
}

/** A minimal EventTarget with a visibilityState, standing in for document or window. */
export class FakeTarget {
  constructor(props = {}) {
    Object.assign(this, props);
    this.handlers = new Map();
  }
  addEventListener(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(fn);
  }
  removeEventListener(name, fn) {
    this.handlers.get(name)?.delete(fn);
  }
  dispatch(name) {
    for (const fn of [...(this.handlers.get(name) || [])]) fn({ type: name });
  }
}

export const silentLog = { info() {}, warn() {}, error() {} };

/** A JWT-shaped token with the given claims (unsigned: the client never checks signatures). */
export function fakeJWT(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}
