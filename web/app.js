// The live scoreboard page. Renders the match state kept by crease-client.js; all DOM is
// built with textContent (names and commentary come from the wire, never as HTML).
import { connect, defaultWsURL } from "./crease-client.js";

const COMMENTARY_MAX = 50;
const LIST_REFRESH_MS = 30000;

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : "–");
const strikeRate = (runs, balls) => (balls > 0 ? ((100 * runs) / balls).toFixed(1) : "–");
const economy = (runs, balls) => (balls > 0 ? ((6 * runs) / balls).toFixed(2) : "–");
const byPos = (obj) => Object.entries(obj || {}).sort((a, b) => (a[1].pos ?? 1e9) - (b[1].pos ?? 1e9));

// The token of a gateway started with --jwt-secret comes in the page's URL (?token=).
// It is moved out of the address bar at once (it would be copied with the URL and sent
// as a Referer) into this tab's session storage, so that a reload keeps it.
const TOKEN_KEY = "crease.token";
function takeToken() {
  const params = new URLSearchParams(location.search);
  let tok = params.get("token");
  try {
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    else tok = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives as long as the page
  }
  if (params.has("token")) {
    params.delete("token");
    const q = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${q ? `?${q}` : ""}${location.hash}`);
  }
  return tok || undefined;
}
const token = takeToken();

async function getJSON(url) {
  const init = { cache: "no-store" };
  if (token) init.headers = { Authorization: `Bearer ${token}` };
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

// The WebSocket listens on another port than this page; the gateway says where.
async function wsURL() {
  try {
    const cfg = await getJSON("/config.json");
    if (cfg && typeof cfg.ws === "string" && cfg.ws) return cfg.ws;
  } catch {
    // older gateway or a static host: same host, port 8080
  }
  return defaultWsURL(location);
}

// ---------------------------------------------------------------------------------------
// Connection status badge

let countdown = null;

function showStatus(status, info = {}) {
  if (info.error) {
    const e = info.error;
    if (e.match && e.match === selected && e.code === "forbidden") {
      $("match-status").textContent = "This token does not allow this match.";
    }
    notice(`Gateway refused a request: ${e.code}${e.match ? ` for match ${e.match}` : ""}${e.message ? ` (${e.message})` : ""}`);
    return;
  }
  document.body.dataset.status = status;
  const badge = $("status");
  clearInterval(countdown);
  countdown = null;
  switch (status) {
    case "live":
      badge.textContent = "Live";
      break;
    case "resyncing":
      badge.textContent = "Resyncing…";
      break;
    case "reconnecting": {
      const until = Date.now() + (info.inMs || 0);
      const tick = () => {
        const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        badge.textContent = `Reconnecting in ${s} s`;
      };
      tick();
      countdown = setInterval(tick, 1000);
      break;
    }
    case "offline":
      badge.textContent = "Offline";
      break;
    default:
      badge.textContent = "Connecting…";
  }
}

let noticeTimer = null;
function notice(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (el.hidden = true), 6000);
}

// ---------------------------------------------------------------------------------------
// Match list

let matches = [];
let selected = null;

function renderList() {
  const ul = $("matches");
  ul.replaceChildren();
  if (!matches.length) {
    ul.append(h("li", { class: "muted" }, "No live matches right now."));
    return;
  }
  for (const m of matches) {
    const a = h(
      "a",
      { href: `?match=${encodeURIComponent(m.match)}`, dataset: { match: m.match }, "aria-current": m.match === selected ? "page" : null },
      h("span", { class: "mtitle" }, m.title || m.match),
      Number.isFinite(m.viewers) ? h("span", { class: "viewers", title: "watching now" }, `${m.viewers.toLocaleString()} watching`) : null,
    );
    a.addEventListener("click", (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
      ev.preventDefault();
      history.pushState({ match: m.match }, "", a.getAttribute("href"));
      select(m.match);
    });
    ul.append(h("li", {}, a));
  }
}

async function refreshList() {
  try {
    const list = await getJSON("/v1/matches");
    matches = Array.isArray(list) ? list : [];
    listLoaded = true;
    renderList();
    if (!selected && matches.length) select(matches[0].match);
    else if (!selected) showEmpty("No live matches right now.");
  } catch (e) {
    if (!matches.length) $("matches").replaceChildren(h("li", { class: "muted" }, "Could not load the match list."));
  }
}

// ---------------------------------------------------------------------------------------
// The selected match

let client = null;
let unsubscribe = null;
let lastInnings = null; // scorecards rebuild only when the innings object changed (merge patch keeps untouched branches)

function select(match) {
  if (match === selected) return;
  if (unsubscribe) unsubscribe();
  selected = match;
  lastInnings = null;
  resetBoard();
  renderList();
  unsubscribe = client.subscribe(match, render);
}

function showEmpty(text) {
  $("title").textContent = text;
}

function resetBoard() {
  const board = $("board");
  board.dataset.seq = "0";
  board.dataset.match = selected || "";
  $("title").textContent = selected ? `Match ${selected}` : "";
  for (const id of ["meta", "batting-team", "crr", "chase", "match-status", "partnership"]) $(id).textContent = "";
  $("score").textContent = "–";
  $("overs").textContent = "–";
  $("result").hidden = true;
  $("batters").tBodies[0].replaceChildren();
  $("bowler").tBodies[0].replaceChildren();
  $("last6").replaceChildren();
  $("scorecards").replaceChildren();
  $("commentary").replaceChildren(h("li", { class: "muted empty" }, "No commentary yet."));
}

const ballClass = (b) => {
  const s = String(b);
  if (/W/.test(s)) return "wicket";
  if (s === "6") return "six";
  if (s === "4") return "four";
  if (/wd|nb|lb|b/.test(s)) return "extra";
  if (s === "0") return "dot";
  return "run";
};

// A match that went live after the list was loaded would stay out of it until the next
// poll (30 s), beside a board showing it: its first state refreshes the list once.
let listedOnce = null;
let listLoaded = false;

function render(state, info) {
  const board = $("board");
  board.dataset.seq = String(info.seq);
  if (!state) {
    $("match-status").textContent = "Not started yet.";
    return;
  }
  if (listLoaded && listedOnce !== selected && !matches.some((m) => m.match === selected)) {
    listedOnce = selected;
    refreshList();
  }
  $("title").textContent = state.title || `Match ${selected}`;
  $("meta").textContent = [state.event, state.venue, state.date].filter(Boolean).join(" · ");
  $("batting-team").textContent = state.batting || "";
  const score = state.score;
  $("score").textContent = score ? `${score.runs ?? 0}/${score.wickets ?? 0}` : "–";
  $("overs").textContent = state.over ?? "–";
  $("crr").textContent = Number.isFinite(state.crr) ? `CRR ${fmt2(state.crr)}` : "";
  const chase = [];
  if (Number.isFinite(state.target)) chase.push(`Target ${state.target}`);
  if (state.need && Number.isFinite(state.need.runs)) {
    chase.push(`need ${state.need.runs} from ${state.need.balls} ball${state.need.balls === 1 ? "" : "s"}`);
  }
  if (Number.isFinite(state.rrr)) chase.push(`RRR ${fmt2(state.rrr)}`);
  $("chase").textContent = chase.join(" · ");
  const statusText = { scheduled: "Not started yet.", innings_break: "Innings break.", live: state.toss || "", finished: "" }[state.status] ?? "";
  $("match-status").textContent = statusText;
  const result = $("result");
  result.hidden = !state.result;
  result.textContent = state.result || "";
  document.title = score ? `${state.batting || ""} ${score.runs}/${score.wickets} (${state.over ?? "0.0"}) · crease` : "crease · live cricket";

  const inn = state.innings && state.inn != null ? state.innings[String(state.inn)] : null;
  renderBatters(state, inn);
  renderBowler(state, inn);
  $("last6").replaceChildren(...(state.last6 || []).map((b) => h("li", { class: `ball ${ballClass(b)}` }, b)));
  const p = state.partnership;
  $("partnership").textContent = p && Number.isFinite(p.runs) ? `Partnership ${p.runs} (${p.balls})` : "";

  if (state.innings !== lastInnings) {
    lastInnings = state.innings;
    renderScorecards(state);
  }
  if (info.cause === "delta" && info.patch && "last6" in info.patch) flash(state.last6);
}

function renderBatters(state, inn) {
  const rows = [];
  for (const [name, mark] of [[state.striker, "*"], [state.non_striker, ""]]) {
    if (!name) continue;
    const b = (inn && inn.batters && inn.batters[name]) || {};
    rows.push(
      h("tr", { class: mark ? "striker" : null },
        h("td", {}, name, mark ? h("span", { class: "mark", title: "on strike" }, "*") : null),
        h("td", { class: "num strong" }, b.runs ?? 0),
        h("td", { class: "num" }, b.balls ?? 0),
        h("td", { class: "num" }, b.fours ?? 0),
        h("td", { class: "num" }, b.sixes ?? 0),
        h("td", { class: "num" }, strikeRate(b.runs ?? 0, b.balls ?? 0)),
      ),
    );
  }
  $("batters").tBodies[0].replaceChildren(...rows);
}

function renderBowler(state, inn) {
  const rows = [];
  if (state.bowler) {
    const b = (inn && inn.bowlers && inn.bowlers[state.bowler]) || {};
    rows.push(
      h("tr", {},
        h("td", {}, state.bowler),
        h("td", { class: "num" }, b.overs ?? "0.0"),
        h("td", { class: "num" }, b.maidens ?? 0),
        h("td", { class: "num" }, b.runs ?? 0),
        h("td", { class: "num strong" }, b.wickets ?? 0),
        h("td", { class: "num" }, economy(b.runs ?? 0, b.balls ?? 0)),
      ),
    );
  }
  $("bowler").tBodies[0].replaceChildren(...rows);
}

function renderScorecards(state) {
  const keys = Object.keys(state.innings || {}).sort((a, b) => Number(a) - Number(b));
  const cards = keys.map((k) => {
    const inn = state.innings[k];
    const title = `${inn.team || `Innings ${k}`}${inn.super_over ? " (super over)" : ""} ${inn.runs ?? 0}/${inn.wickets ?? 0} (${inn.overs ?? "0.0"} ov)`;
    const bat = h("table", { class: "figures" },
      h("thead", {}, h("tr", {}, h("th", {}, "Batter"), h("th", { class: "how" }, ""), h("th", {}, "R"), h("th", {}, "B"), h("th", {}, "4s"), h("th", {}, "6s"), h("th", {}, "SR"))),
      h("tbody", {}, byPos(inn.batters).map(([name, b]) =>
        h("tr", {},
          h("td", {}, name),
          h("td", { class: "how muted" }, b.out || "not out"),
          h("td", { class: "num strong" }, b.runs ?? 0),
          h("td", { class: "num" }, b.balls ?? 0),
          h("td", { class: "num" }, b.fours ?? 0),
          h("td", { class: "num" }, b.sixes ?? 0),
          h("td", { class: "num" }, strikeRate(b.runs ?? 0, b.balls ?? 0)),
        ))),
    );
    const e = inn.extras || {};
    const extras = h("p", { class: "muted" },
      `Extras ${e.total ?? 0} (w ${e.wides ?? 0}, nb ${e.noballs ?? 0}, b ${e.byes ?? 0}, lb ${e.legbyes ?? 0}${e.penalty ? `, pen ${e.penalty}` : ""})`);
    const fow = (inn.fow || []).length
      ? h("p", { class: "muted fow" }, "Fall of wickets: ", (inn.fow || []).map((f) => `${f.runs}-${f.wicket} (${f.player}, ${f.over})`).join(", "))
      : null;
    const bowl = h("table", { class: "figures" },
      h("thead", {}, h("tr", {}, h("th", {}, "Bowler"), h("th", {}, "O"), h("th", {}, "M"), h("th", {}, "R"), h("th", {}, "W"), h("th", {}, "Econ"))),
      h("tbody", {}, byPos(inn.bowlers).map(([name, b]) =>
        h("tr", {},
          h("td", {}, name),
          h("td", { class: "num" }, b.overs ?? "0.0"),
          h("td", { class: "num" }, b.maidens ?? 0),
          h("td", { class: "num" }, b.runs ?? 0),
          h("td", { class: "num strong" }, b.wickets ?? 0),
          h("td", { class: "num" }, economy(b.runs ?? 0, b.balls ?? 0)),
        ))),
    );
    return h("details", { class: "innings", open: String(k) === String(state.inn), dataset: { inn: k } },
      h("summary", {}, title), h("div", { class: "scroll" }, bat), extras, fow, h("div", { class: "scroll" }, bowl));
  });
  $("scorecards").replaceChildren(...cards);
}

// A wicket or boundary with the latest ball flashes the score.
function flash(last6) {
  const ball = (last6 || []).at(-1);
  if (ball === undefined) return;
  const kind = ballClass(ball);
  if (kind !== "wicket" && kind !== "four" && kind !== "six") return;
  const el = $("score").parentElement;
  el.classList.remove("flash-wicket", "flash-four", "flash-six");
  void el.offsetWidth; // restart the animation when two come in a row
  el.classList.add(`flash-${kind}`);
  el.dataset.flash = kind;
}

// ---------------------------------------------------------------------------------------
// Commentary (event frames, kind "commentary"), newest first

function onEvent(f) {
  if (f.match !== selected || f.kind !== "commentary") return;
  const list = $("commentary");
  list.querySelector(".empty")?.remove();
  const text = f.text ?? f.comment ?? f.message ?? "";
  const item = h("li", {}, f.over != null ? h("span", { class: "cover" }, f.over) : null, h("span", {}, text));
  list.prepend(item);
  while (list.children.length > COMMENTARY_MAX) list.lastElementChild.remove();
}

// ---------------------------------------------------------------------------------------

async function main() {
  // Snapshots come from this page's origin: the gateway's HTTP listener serves both.
  // catchup: a phone that falls behind (or comes back from a tunnel) gets one composed
  // delta instead of a resync and a snapshot: ~0.8x the bytes and 0.65x the time of a
  // resync over 2G, where a plain replay costs ~10x (bench/analysis.md, recovery).
  client = connect({ url: await wsURL(), token, httpBase: location.origin, catchup: true });
  client.on("status", showStatus);
  client.on("event", onEvent);
  const fromURL = new URLSearchParams(location.search).get("match");
  if (fromURL) select(fromURL);
  await refreshList();
  setInterval(() => document.visibilityState !== "hidden" && refreshList(), LIST_REFRESH_MS); // a hidden tab polls nothing
  addEventListener("popstate", () => {
    const m = new URLSearchParams(location.search).get("match") || (matches[0] && matches[0].match);
    if (m) select(m);
  });
}

main();
