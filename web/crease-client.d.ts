// Type declarations of crease-client, the browser and Node client of the crease gateway.
// Hand-written against crease-client.js and PROTOCOL.md (contract version 2); a test
// (web/pkgtest) checks that every export, option and event of the code is declared here
// and the other way round. JSON Schemas of the same frames are in the repository's schema/.

// ---------------------------------------------------------------------------------------
// JSON and identifiers

/** A JSON value as it comes from the wire. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** A match id: 1 to 64 characters of `A-Z a-z 0-9 _ -`. */
export type MatchId = string;
/** A stream epoch: 1 to 32 characters of `A-Z a-z 0-9 _ -`, new when a stream starts over. */
export type Epoch = string;

/** A position in a match's stream: deltas count from seq 1 within an epoch. */
export interface StreamPosition {
  epoch: Epoch;
  seq: number;
}

// ---------------------------------------------------------------------------------------
// Frames, server to client (one JSON object per WebSocket text frame)

/** The first frame after the upgrade. */
export interface HelloFrame {
  type: "hello";
  /** The gateway's name. */
  node: string;
  /**
   * How often the gateway pings, in seconds (1 to 3600); 3 × this of silence closes with
   * 4000. The client watches with 20 s when it is missing or not positive, and clamps it
   * to 1–3600. A gateway that sends no `hello` within 10 s of the upgrade is left.
   */
  heartbeat_s: number;
}

/** A subscription was accepted. */
export interface SubscribedFrame {
  type: "subscribed";
  match: MatchId;
  /** Only in answer to a subscribe with `since`: true when the deltas after it follow. */
  recovered?: boolean;
}

/** Delta priority: `high` for wickets and boundaries by default. */
export type DeltaPriority = "high" | "normal";

/**
 * A change of the match state: an RFC 7396 JSON Merge Patch against the state at
 * `seq - 1`, or, with `from`, against any state at a seq from `from` to `seq - 1` of the
 * same epoch (a catch-up delta, sent only to connections that opted in).
 */
export interface DeltaFrame<P extends JsonValue = JsonObject> {
  type: "delta";
  match: MatchId;
  epoch: Epoch;
  seq: number;
  prio: DeltaPriority;
  /** Publish time, Unix microseconds. */
  ts: number;
  patch: P;
  from?: number;
}

/** Commentary on a ball: the scoreboard shows `text` (or `comment`/`message`) after `over`. */
export interface CommentaryEvent {
  type: "event";
  kind: "commentary";
  match: MatchId;
  prio: "low";
  ts: number;
  text?: string;
  over?: string;
  [field: string]: JsonValue | undefined;
}

/** Subscribers of the match over all gateways. */
export interface ViewersEvent {
  type: "event";
  kind: "viewers";
  match: MatchId;
  prio: "low";
  ts: number;
  viewers: number;
  [field: string]: JsonValue | undefined;
}

/** An event of a kind this version does not know (publishers may post their own). */
export interface OtherEvent {
  type: "event";
  kind: string;
  match: MatchId;
  prio: "low";
  ts: number;
  [field: string]: JsonValue | undefined;
}

/** An ephemeral message: not part of the state, no seq, may be dropped. */
export type EventFrame = CommentaryEvent | ViewersEvent | OtherEvent;

/** Why a gateway asks for a snapshot refetch. */
export type ResyncReason = "slow" | "gap" | "shed" | "bus" | "epoch";

/** Fetch the snapshot, then go on (the client does this by itself). */
export interface ResyncFrame {
  type: "resync";
  match: MatchId;
  reason: ResyncReason;
}

/**
 * The gateway is draining: close, wait `after_ms`, reconnect (the client does this; it
 * waits the larger of `after_ms`, clamped to 0–300000, and its reconnect backoff).
 */
export interface ReconnectFrame {
  type: "reconnect";
  after_ms: number;
}

/** The error codes of PROTOCOL.md; other strings may come from newer gateways. */
export type ErrorCode =
  | "bad_request"
  | "unknown_op"
  | "too_many_subscriptions"
  | "forbidden"
  | "rate_limited"
  | "unauthorized"
  | "token_expired"
  | (string & {});

/** A client request was refused; the connection stays open unless a close frame follows. */
export interface ErrorFrame {
  type: "error";
  code: ErrorCode;
  message: string;
  match?: MatchId;
}

/** Every frame a gateway sends. */
export type ServerFrame = HelloFrame | SubscribedFrame | DeltaFrame | EventFrame | ResyncFrame | ReconnectFrame | ErrorFrame;

// ---------------------------------------------------------------------------------------
// Messages, client to server

export interface SubscribeOp {
  op: "subscribe";
  match: MatchId;
  /** The position held: the gateway replays what follows when it still has it. */
  since?: StreamPosition;
}

export interface UnsubscribeOp {
  op: "unsubscribe";
  match: MatchId;
}

/** Replaces the connection's token before it expires. */
export interface AuthOp {
  op: "auth";
  token: string;
}

/** Every message a client may send. */
export type ClientOp = SubscribeOp | UnsubscribeOp | AuthOp;

// ---------------------------------------------------------------------------------------
// HTTP

/** `GET /v1/matches/{id}`. A match that has not started has no snapshot (404). */
export interface Snapshot<S = MatchState> {
  match: MatchId;
  epoch: Epoch;
  seq: number;
  state: S;
}

/** One entry of `GET /v1/matches`. */
export interface MatchSummary {
  match: MatchId;
  title: string;
  epoch: Epoch;
  seq: number;
  viewers?: number;
}

// ---------------------------------------------------------------------------------------
// The cricket match state crease's ingest publishes (schema/state.schema.json). Members
// the publisher has no value for are absent, never null (a null in a merge patch deletes).

export type MatchStatus = "scheduled" | "live" | "innings_break" | "finished";

export interface Score {
  runs: number;
  wickets: number;
}

export interface Need {
  runs: number;
  /** Absent when the innings has no ball limit. */
  balls?: number;
}

export interface Partnership {
  /** Extras included. */
  runs: number;
  /** Legal balls. */
  balls: number;
}

export interface Extras {
  /** Penalty runs included. */
  total: number;
  wides: number;
  noballs: number;
  byes: number;
  legbyes: number;
  penalty: number;
}

export interface BatterCard {
  /** Batting position, from 1. */
  pos: number;
  runs: number;
  balls: number;
  fours: number;
  sixes: number;
  /** `not out` while batting, else how (`lbw b Arshdeep Singh`, `retired hurt`...). */
  out: string;
}

export interface BowlerCard {
  pos: number;
  /** Legal balls. */
  balls: number;
  overs: string;
  maidens: number;
  /** Byes, leg byes and penalties excluded. */
  runs: number;
  /** Run outs and retirements excluded. */
  wickets: number;
  /** Runs from wides. */
  wides: number;
  /** No-balls bowled. */
  noballs: number;
}

export interface FallOfWicket {
  wicket: number;
  runs: number;
  over: string;
  player: string;
}

export interface InningsCard {
  team: string;
  runs: number;
  wickets: number;
  balls: number;
  overs: string;
  super_over: boolean;
  /** A chase: the runs to reach, kept after the innings ends. */
  target?: number;
  /** The innings' overs when a revised target shortened it (`18.4`). */
  max_overs?: string;
  /** At the end of the innings, when the data lists the players. */
  did_not_bat?: string[];
  extras: Extras;
  batters: { [name: string]: BatterCard };
  bowlers: { [name: string]: BowlerCard };
  fow: FallOfWicket[];
}

export interface MatchState {
  match: MatchId;
  title: string;
  /** The format's overs per innings; absent: no limit. */
  overs_limit?: number;
  event?: string;
  venue?: string;
  date?: string;
  teams: string[];
  toss?: string;
  status: MatchStatus;
  /** The current innings, from 1 (0 before the first ball). */
  inn: number;
  batting?: string;
  bowling?: string;
  score: Score;
  /** Overs bowled in the current innings, `14.3`. */
  over: string;
  /** Current run rate. */
  crr: number;
  target?: number;
  /** Required run rate. */
  rrr?: number;
  need?: Need;
  striker?: string;
  non_striker?: string;
  bowler?: string;
  /** The last six balls, newest last: `1`, `4`, `W`, `1wd`... */
  last6: string[];
  partnership: Partnership;
  /** Scorecards by innings number, `"1"`, `"2"`... */
  innings: { [inning: string]: InningsCard };
  /** `Scores level — super over` at such a break. */
  note?: string;
  result?: string;
  winner?: string;
  /** With the result, when the data has it: `D/L`, `VJD`... */
  method?: string;
  /** With the result, when the data has it. */
  player_of_match?: string[];
}

// ---------------------------------------------------------------------------------------
// The client

/** `connecting`, `live`, `resyncing` (refetching snapshots), `reconnecting`, `offline`. */
export type Status = "connecting" | "live" | "resyncing" | "reconnecting" | "offline";

export interface StatusInfo {
  /** With `reconnecting`: the wait before the next try, in ms. */
  inMs?: number;
  /** Set when an `error` frame arrived (the status itself is unchanged); `match` when it concerns one. */
  error?: { code: ErrorCode; message: string; match?: MatchId };
}

/** How a state came: a first snapshot, a delta, or a snapshot refetched after a gap. */
export type StateCause = "snapshot" | "delta" | "resync";

export interface SnapshotInfo {
  cause: "snapshot" | "resync";
  seq: number;
  epoch?: Epoch;
}

export interface DeltaInfo {
  cause: "delta";
  seq: number;
  epoch?: Epoch;
  patch: JsonValue;
  prio: DeltaPriority;
  ts: number;
  /** Set when the delta was a catch-up delta (it applied to a state from `from` on). */
  from?: number;
}

/** The second argument of a state listener. */
export type StateInfo = SnapshotInfo | DeltaInfo;

/**
 * Called with every new state of a match: a new object each time (never mutated),
 * sharing the members a patch did not touch. `null` for a match that has not started.
 */
export type StateListener<S = MatchState> = (state: S | null, info: StateInfo) => void;

/** The events of `client.on`. */
export interface ClientEvents {
  /** Called at once with the current status, then on each change (and on error frames). */
  status: (status: Status, info: StatusInfo) => void;
  /** Low-priority event frames (commentary, viewers) of every subscribed match. */
  event: (frame: EventFrame) => void;
  /** Error frames from the gateway. */
  error: (frame: ErrorFrame) => void;
}

export interface Client<S = MatchState> {
  /** Subscribe to a match; returns the function that ends this listener's subscription. */
  subscribe(match: MatchId, onState?: StateListener<S>): () => void;
  /** Listen to `status`, `event` or `error`; returns the function that removes the listener. */
  on<E extends keyof ClientEvents>(name: E, listener: ClientEvents[E]): () => void;
  /** The current status (`null` only inside `connect`, before the first one). */
  readonly status: Status | null;
  /** The held state of a subscribed match, or undefined. */
  state(match: MatchId): S | null | undefined;
  /** Why the gateway refused the subscription of `match` on this connection, or null. */
  refusal(match: MatchId): { code: ErrorCode; message: string } | null;
  /** Closes the connection (1000) and stops reconnecting. */
  close(): void;
}

/** What the client needs of a WebSocket: the browser's, Node 22's, or `ws`'s. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // Handler parameters are `any` so that every implementation's own event types fit.
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What the client needs of `fetch` (the snapshot requests). */
export type FetchLike = (
  url: string,
  init?: { cache?: "no-store"; headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<{ ok: boolean; status: number; json(): Promise<any> }>;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: any): void;
}

export interface Logger {
  debug?(...args: unknown[]): void;
  info?(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
  error?(...args: unknown[]): void;
}

export interface BackoffOptions {
  /** ms; default 500. */
  base?: number;
  /** ms; default 30000. */
  cap?: number;
}

export interface ReconnectBackoffOptions extends BackoffOptions {
  /** The window of the first reconnect after a drop, and the least of any later one; default 5000 ms. */
  initialSpreadMs?: number;
}

/** A token, or a function giving a fresh one (called on every connect and before expiry). */
export type TokenProvider = string | (() => string | Promise<string>);

export interface ConnectOptions {
  /** The gateway's WebSocket URL, or a function returning it; default `ws(s)://HOST:8080/ws`. */
  url?: string | (() => string);
  /**
   * The gateway's HTTP listener (snapshots are `httpBase/v1/matches/{id}`); default: the
   * WebSocket URL's host on port 8081, `http` for `ws` and `https` for `wss`.
   */
  httpBase?: string;
  /** The snapshot URL of a match; overrides `httpBase`. */
  snapshotURL?: (match: MatchId) => string;
  /**
   * With `--jwt-secret` gateways: sent as the `bearer.<jwt>` subprotocol (never in the URL)
   * and as `Authorization: Bearer` with snapshots. A function is called before every
   * connection and again `tokenRefreshMarginMs` before the token's `exp`, the fresh token
   * then going with `{"op":"auth"}` on the live connection.
   */
  token?: TokenProvider;
  /** How long before `exp` a token is replaced (at most half its remaining lifetime); default 30000 ms. */
  tokenRefreshMarginMs?: number;
  /** Opt in to catch-up deltas (`?catchup=1`): one delta with `from` instead of a resync when possible. */
  catchup?: boolean;
  backoff?: ReconnectBackoffOptions;
  /** Default `globalThis.WebSocket`; in Node 20 pass `WebSocket` from the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Default `globalThis.fetch`. */
  fetch?: FetchLike;
  timers?: Timers;
  /** The clock tokens' `exp` is compared with, ms since the Unix epoch; default `Date.now`. */
  now?: () => number;
  random?: () => number;
  /** Page visibility: a hidden page holds no socket. Default `globalThis.document`. */
  document?: {
    readonly visibilityState?: string;
    addEventListener(type: "visibilitychange", fn: () => void): void;
    removeEventListener(type: "visibilitychange", fn: () => void): void;
  } | null;
  /** `online`/`offline` events. Default `globalThis.window`. */
  window?: {
    addEventListener(type: "online" | "offline", fn: () => void): void;
    removeEventListener(type: "online" | "offline", fn: () => void): void;
  } | null;
  /** `navigator.onLine === false` starts offline. Default `globalThis.navigator`. */
  navigator?: { readonly onLine?: boolean } | null;
  /** Default `console`. */
  log?: Logger;
}

/** Opens the gateway connection (at once) and returns the client. */
export function connect<S = MatchState>(options?: ConnectOptions): Client<S>;

// ---------------------------------------------------------------------------------------
// Pure helpers

/** RFC 7396 JSON Merge Patch; returns a new value and leaves `target` untouched. */
export function mergePatch<T = JsonValue>(target: unknown, patch: JsonValue): T;

/** Full-jitter backoff: a uniform delay in [0, min(cap, base · 2^attempt)) ms. */
export function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;

/** The reconnect delay: like backoffDelay, with a window never below `initialSpreadMs`. */
export function reconnectDelay(attempt: number, options?: ReconnectBackoffOptions, random?: () => number): number;

/** The WebSocket URL of a page's host, port 8080: `ws(s)://HOST:8080/ws`. */
export function defaultWsURL(location?: { protocol?: string; hostname?: string } | null): string;

/** The gateway's HTTP base from its WebSocket URL: ws -> http, wss -> https, same host, `port` (default "8081"). */
export function httpBaseFromWsURL(wsURL: string, port?: string): string;

/** The `exp` claim of a JWT in ms since the Unix epoch (the signature is not checked), or undefined. */
export function tokenExpiryMs(token: string | undefined): number | undefined;

/** How long after nowMs a token expiring at expMs is replaced: marginMs before, at most half the lifetime left, at least 1000 ms. */
export function tokenRefreshDelay(nowMs: number, expMs: number, marginMs?: number): number;

export type MatchPhase = "idle" | "subscribing" | "fetching" | "live" | "refused";

export interface MatchStreamOptions<S = MatchState> {
  /**
   * One snapshot request. `signal` aborts it at fetchTimeoutMs or when the answer is no
   * longer wanted. An answer whose match differs, whose epoch is not a string, whose seq
   * is not a whole number ≥ 0 or whose state is not an object (null only at seq 0: a
   * match not started) is a failed request, retried with backoff.
   */
  fetchSnapshot: (
    match: MatchId,
    options: { signal?: AbortSignal },
  ) => Snapshot<S> | Promise<Snapshot<S>> | { match: MatchId; seq: number; state: S | null; epoch?: Epoch } | Promise<{ match: MatchId; seq: number; state: S | null; epoch?: Epoch }>;
  onState?: StateListener<S>;
  onPhase?: (phase: MatchPhase) => void;
  timers?: Timers;
  random?: () => number;
  /** Snapshot retry backoff; default base 1000, cap 30000. */
  retry?: BackoffOptions;
  /** Deltas buffered while a snapshot loads; default 5000. */
  maxBuffer?: number;
  /** How long one snapshot request may take before it is aborted and retried; default 10000 ms. */
  fetchTimeoutMs?: number;
  log?: Logger;
}

/** The per-match state machine of the client (exported for tests and custom transports). */
export class MatchStream<S = MatchState> {
  constructor(match: MatchId, options: MatchStreamOptions<S>);
  readonly match: MatchId;
  readonly phase: MatchPhase;
  readonly state: S | null | undefined;
  /** The epoch of the state held; "" when no gateway said one (version 1). */
  readonly epoch: Epoch;
  readonly seq: number;
  /** While `refused`: why. */
  readonly refusal: { code: ErrorCode; message: string } | null;
  /** Snapshot requests made (at most one is out at a time). */
  readonly fetches: number;
  /** The position to subscribe `since`: a state of a known epoch, or undefined. */
  position(): StreamPosition | undefined;
  /** The subscribe op went out (with `since` = position() if since): buffer deltas until `subscribed`. */
  subscribing(since?: boolean): void;
  /** The gateway confirmed the subscription: go on from the state held if recovered (and since was sent), else fetch the snapshot. */
  subscribed(recovered?: boolean): void;
  /** A delta frame of this match. */
  delta(frame: DeltaFrame): void;
  /** A resync frame: refetch the snapshot, keep the connection. */
  resync(reason?: ResyncReason): void;
  /** The gateway refused the subscription: deltas are ignored until the next subscribing(). */
  refused(code: ErrorCode, message?: string): void;
  /** The socket is gone; the held state stays for display. */
  stop(): void;
}
