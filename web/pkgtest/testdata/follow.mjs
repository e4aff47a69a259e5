// Follows one match with the installed crease-client package, as an app would, and
// reports on stdout, one JSON object a line: {"status"} on each status, {"seq","cause"}
// on each state, then {"final": state, "seq"} once the held seq reaches the one the
// test writes on stdin (the snapshot's, after the replay ended).
//   node follow.mjs WS_URL HTTP_BASE MATCH ws|builtin [catchup]
import { connect } from "crease-client";

const [url, httpBase, match, mode, catchup] = process.argv.slice(2);
const options = {
  url,
  snapshotURL: (id) => `${httpBase}/v1/matches/${encodeURIComponent(id)}`,
  document: null,
  window: null,
  log: { warn: (...a) => console.error(...a), error: (...a) => console.error(...a) },
  catchup: catchup === "catchup",
};
if (mode === "ws") options.WebSocket = (await import("ws")).WebSocket;
else if (typeof globalThis.WebSocket !== "function") throw new Error("no built-in WebSocket in this Node");

const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
let want = null;
let held = { seq: -1, state: undefined };
const client = connect(options);
const done = () => {
  if (want === null || held.seq < want) return;
  say({ final: held.state, seq: held.seq });
  client.close();
  process.exit(0);
};
client.on("status", (status) => say({ status }));
client.on("error", (frame) => say({ error: frame }));
client.subscribe(match, (state, info) => {
  held = { seq: info.seq, state };
  say({ seq: info.seq, cause: info.cause });
  done();
});
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
  if (input.includes("\n")) {
    want = Number(input.trim());
    done();
  }
});
