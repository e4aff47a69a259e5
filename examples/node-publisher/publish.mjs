// A crease publisher in JavaScript (Node.js, npm `redis`): it writes one match to Redis
// exactly as PROTOCOL.md "Publishing (Redis)" says, with crease's own publish script
// (bus/redis/publish.lua) for the atomic snapshot + seq + history + PUBLISH step, and
// the live-match index. The sport does not matter to crease: this one is football.
//
//   node publish.mjs --redis 127.0.0.1:6379 --match cup-final [--steps 30] [--interval-ms 50]
//
// It resumes a match the store already holds (same epoch, the stored seq + 1), starts a
// new epoch when the store holds nothing, and prints the final state as JSON on stdout.
import { createClient } from 'redis';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = {
  redis: '127.0.0.1:6379', match: 'cup-final', steps: '30', prefix: 'crease', 'interval-ms': '0',
  script: path.join(here, '..', '..', 'bus', 'redis', 'publish.lua'),
};
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in opts) || i + 1 >= process.argv.length) {
    console.error(`usage: node publish.mjs --redis HOST:PORT --match ID [--steps N] [--interval-ms MS] [--prefix P]`);
    process.exit(2);
  }
  opts[k] = process.argv[i + 1];
}
const id = opts.match;
if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new Error(`bad match id ${id}`);
const steps = Number(opts.steps);
const channel = `${opts.prefix}:{${id}}`; // the braces: one Redis Cluster slot per match
const keys = [':seq', ':snap', ':info', ':hist', ':balls'].map((k) => channel + k);
const title = 'Harbour FC v Valley United';

// The state after step n (deterministic, so a restarted publisher continues exactly).
function stateAt(n) {
  const goals = [[7, 'home', 'Okafor'], [15, 'away', 'Lindqvist'], [22, 'home', 'Okafor'], [27, 'away', 'Mendes']]
    .filter(([at]) => at <= n);
  const score = { home: 0, away: 0 };
  for (const [, side] of goals) score[side]++;
  const st = {
    title, sport: 'football', teams: { home: 'Harbour FC', away: 'Valley United' },
    status: n >= steps ? 'full_time' : 'live', minute: Math.min(3 * n, 90), score,
    scorers: goals.map(([at, side, who]) => ({ minute: 3 * at, side, player: who })),
  };
  if (n % 10 === 5) st.var_check = true; // present for one step: the patch deletes it after
  return st;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// The RFC 7396 merge patch that turns a into b.
function mergeDiff(a, b) {
  const patch = {};
  for (const k of Object.keys(a)) if (!(k in b)) patch[k] = null;
  for (const [k, v] of Object.entries(b)) {
    if (isObject(v) && isObject(a[k])) {
      const sub = mergeDiff(a[k], v);
      if (Object.keys(sub).length > 0) patch[k] = sub;
    } else if (JSON.stringify(v) !== JSON.stringify(a[k])) {
      patch[k] = v;
    }
  }
  return patch;
}

const epochChars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const newEpoch = () => Array.from({ length: 12 }, () => epochChars[randomInt(epochChars.length)]).join('');

const client = createClient({ url: `redis://${opts.redis}` });
client.on('error', (e) => console.error('redis:', e.message));
await client.connect();
const script = readFileSync(opts.script, 'utf8');
let sha = await client.scriptLoad(script);

// Resume what the store holds, or start a new stream (a new epoch, seq 1).
let epoch = newEpoch();
let seq = 0;
let state = {};
const stored = await client.get(keys[0]);
if (stored) {
  const at = stored.lastIndexOf(':');
  epoch = stored.slice(0, at);
  seq = Number(stored.slice(at + 1));
  state = JSON.parse(await client.get(keys[1])).state;
  console.error(`resuming ${id} at ${epoch}:${seq}`);
}

async function publishDelta(next, prio) {
  const n = seq + 1;
  const ts = Date.now() * 1000; // Unix microseconds
  const frame = JSON.stringify({ type: 'delta', match: id, epoch, seq: n, prio, ts, patch: mergeDiff(state, next) });
  const snapshot = JSON.stringify({ match: id, epoch, seq: n, state: next });
  const args = [epoch, String(n), snapshot, title, channel, frame, 'PUBLISH', '0',
    '300', String(10 * 60 * 1000), String(1 << 20), String(Math.floor(ts / 1000)), ''];
  let rule;
  try {
    rule = await client.evalSha(sha, { keys, arguments: args });
  } catch (e) {
    if (!String(e.message).startsWith('NOSCRIPT')) throw e; // SEQCONFLICT: another publisher
    sha = await client.scriptLoad(script);
    rule = await client.evalSha(sha, { keys, arguments: args });
  }
  // The live-match index is its own slot in a cluster: a separate command, after.
  await client.zAdd(`${opts.prefix}:matches`, { score: Date.now(), value: id });
  seq = n;
  state = next;
  return rule;
}

for (let n = seq + 1; n <= steps; n++) {
  const next = stateAt(n);
  const goal = JSON.stringify(next.score) !== JSON.stringify(state.score);
  const rule = await publishDelta(next, goal || n === steps ? 'high' : 'normal');
  if (rule !== 'applied' && rule !== 'new_epoch') console.error(`seq ${seq}: ${rule}`);
  if (goal) {
    const ev = { type: 'event', match: id, prio: 'low', ts: Date.now() * 1000, kind: 'commentary', text: `GOAL! ${next.score.home}-${next.score.away}` };
    await client.publish(channel, JSON.stringify(ev));
  }
  if (Number(opts['interval-ms']) > 0) await new Promise((r) => setTimeout(r, Number(opts['interval-ms'])));
}
process.stdout.write(JSON.stringify({ match: id, epoch, seq, state }) + '\n');
await client.quit();
