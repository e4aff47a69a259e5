// A consumer of every declaration, type-checked by TestTypesCheckForAConsumer. The lines
// marked as expected errors are wrong uses the declarations must refuse.
import { WebSocket as WsWebSocket } from "ws";
import {
  backoffDelay,
  connect,
  defaultWsURL,
  MatchStream,
  mergePatch,
  reconnectDelay,
  type ClientOp,
  type DeltaFrame,
  type ErrorFrame,
  type EventFrame,
  type MatchState,
  type MatchSummary,
  type ResyncFrame,
  type ServerFrame,
  type Snapshot,
  type Status,
} from "crease-client";

// Every server frame, narrowed by its type; the default proves the union is exhaustive.
export function describe(f: ServerFrame): string {
  switch (f.type) {
    case "hello":
      return `${f.node} pings every ${f.heartbeat_s}s`;
    case "subscribed":
      return `${f.match} recovered=${f.recovered ?? "n/a"}`;
    case "delta":
      return `${f.match} ${f.epoch}.${f.seq} ${f.prio} ${f.ts} from=${f.from ?? "-"} ${JSON.stringify(f.patch)}`;
    case "event":
      return f.kind === "commentary" ? `${f.over ?? ""} ${f.text ?? ""}` : `${f.kind} ${JSON.stringify(f)}`;
    case "resync":
      return `${f.match} ${f.reason}`;
    case "reconnect":
      return `in ${f.after_ms} ms`;
    case "error":
      return `${f.code}: ${f.message} ${f.match ?? ""}`;
    default: {
      const never: never = f;
      return never;
    }
  }
}

export const frames: ServerFrame[] = [
  { type: "hello", node: "gw1", heartbeat_s: 25 },
  { type: "subscribed", match: "m123", recovered: true },
  { type: "delta", match: "m123", epoch: "k3x9", seq: 42, prio: "high", ts: 1764322000123456, patch: { score: { runs: 187, wickets: 4 }, over: "14.3" } },
  { type: "delta", match: "m123", epoch: "k3x9", seq: 45, prio: "normal", ts: 1, patch: {}, from: 41 },
  { type: "event", match: "m123", prio: "low", ts: 1, kind: "commentary", text: "FOUR", over: "14.3" },
  { type: "event", match: "m123", prio: "low", ts: 1, kind: "viewers", viewers: 120000 },
  { type: "resync", match: "m123", reason: "epoch" },
  { type: "reconnect", after_ms: 2500 },
  { type: "error", code: "forbidden", message: "not in the token's matches", match: "m9" },
];

export const ops: ClientOp[] = [
  { op: "subscribe", match: "m123" },
  { op: "subscribe", match: "m123", since: { epoch: "k3x9", seq: 41 } },
  { op: "unsubscribe", match: "m123" },
  { op: "auth", token: "eyJ..." },
];

// @ts-expect-error a subscribe needs its match
export const noMatch: ClientOp = { op: "subscribe" };
// @ts-expect-error no such resync reason
export const badReason: ResyncFrame = { type: "resync", match: "m", reason: "tired" };
// @ts-expect-error a delta's prio is high or normal
export const badPrio: DeltaFrame = { type: "delta", match: "m", epoch: "e", seq: 1, prio: "low", ts: 1, patch: {} };
// @ts-expect-error since needs the epoch as well
export const noEpoch: ClientOp = { op: "subscribe", match: "m", since: { seq: 3 } };

// The client in Node with ws, a token provider and catch-up; and with the browser's WebSocket.
const client = connect({
  url: () => "ws://localhost:8080/ws",
  snapshotURL: (id) => `http://localhost:8081/v1/matches/${id}`,
  WebSocket: WsWebSocket,
  token: async () => "jwt",
  catchup: true,
  fetch,
  timers: { setTimeout, clearTimeout },
  document: null,
  window: null,
  backoff: { base: 250, cap: 10000, initialSpreadMs: 2000 },
  log: console,
});
connect({ WebSocket: globalThis.WebSocket, token: "static-jwt" });
connect({ url: "wss://scores.example/ws", httpBase: "https://scores.example:8081", tokenRefreshMarginMs: 60000, now: Date.now });
// @ts-expect-error url is a string or a function returning one
connect({ url: 8080 });
// @ts-expect-error the token provider returns a string
connect({ token: () => 42 });

client.on("status", (status, info) => {
  const s: Status = status;
  return [s, info.inMs, info.error?.code, info.error?.match];
});
export const refused: string | undefined = client.refusal("m123")?.code;
client.on("event", (ev: EventFrame) => ev.kind);
client.on("error", (frame: ErrorFrame) => frame.code);
// @ts-expect-error there is no "delta" event: deltas arrive as states
client.on("delta", () => {});

const stop = client.subscribe("1298150", (state, info) => {
  // @ts-expect-error the state is null for a match that has not started
  state.score.runs;
  if (info.cause === "delta") {
    const hi: "high" | "normal" = info.prio;
    void [hi, info.patch, info.ts];
  }
  if (!state) return;
  const runs: number = state.score.runs;
  const kohli = state.innings["2"]?.batters["V Kohli"];
  const chase = state.need ? `${state.need.runs} from ${state.need.balls ?? "-"}` : "";
  // @ts-expect-error status is one of four values
  const over: boolean = state.status === "abandoned";
  void [runs, kohli?.runs, chase, over, state.last6.at(-1)];
});
stop();
const held: MatchState | null | undefined = client.state("1298150");
void held;
client.close();

// A feed of one's own: the state type is a parameter.
type Football = { home: number; away: number; minute: number };
const football = connect<Football>({ url: "ws://localhost:8080/ws" });
football.subscribe("derby", (s) => s && s.home + s.away);
// @ts-expect-error a Football state has no score
football.subscribe("derby", (s) => s?.score);

// HTTP shapes and the helpers.
export async function snapshot(id: string): Promise<Snapshot> {
  const res = await fetch(`http://localhost:8081/v1/matches/${id}`);
  return (await res.json()) as Snapshot;
}
export const list: MatchSummary[] = [{ match: "1298150", title: "Pakistan v India", epoch: "k3x9", seq: 240 }];
export const patched = mergePatch<MatchState>({ score: { runs: 1, wickets: 0 } }, { score: { runs: 5 } });
export const delays = [backoffDelay(3), backoffDelay(3, { base: 100 }, () => 0.5), reconnectDelay(0, { initialSpreadMs: 5000 })];
export const wsURL: string = defaultWsURL({ protocol: "https:", hostname: "scores.example" });
const stream = new MatchStream("m123", { fetchSnapshot: (id) => ({ match: id, seq: 0, state: null }), maxBuffer: 100 });
stream.subscribing();
stream.subscribed();
stream.delta({ type: "delta", match: "m123", epoch: "e1", seq: 1, prio: "high", ts: 1, patch: { over: "0.1" } });
stream.resync("gap");
export const phase: "idle" | "subscribing" | "fetching" | "live" | "refused" = stream.phase;
export const since: { epoch: string; seq: number } | undefined = stream.position();
stream.subscribing(true);
stream.subscribed(true);
stream.refused("forbidden", "not in the claim");
stream.stop();
