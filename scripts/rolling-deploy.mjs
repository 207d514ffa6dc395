// Rolling deploy of the demo from "version K" (wizard state schema 1) to "version K+1"
// (schema 2, adds an e-mail) in two phases, under N live clients, each a real connect() from
// client/state-recovery.js with its own stash (node >= 20 with --experimental-websocket).
// Run by scripts/rolling-deploy.sh, which starts a 3-worker cluster (scripts/cluster.sh with
// RESPAWN=1) and passes APP_WS (ws://.../ws), CLUSTER_DIR (w<i>.pid, w<i>.log; this script
// writes w<i>.env), WORKERS, WORKER_BASE_PORT and CLIENTS.
//
//   phase 0   all workers at K; every client builds distinct state in every component, then a
//             forced reconnect checks it (baseline).
//   phase 1   expand: worker by worker, w<i>.env = DEMO_SCHEMA=2 + DEMO_SEAL_AS=1, SIGTERM it,
//             wait for the supervisor's restart; the clients it served reconnect on their own
//             (checked); then every client makes a change, reconnect()s (landing on K or K+1)
//             and checks every component.
//   phase 2   contract: the same with DEMO_SCHEMA=2 only (schema 2 is sealed from now on).
//   final     all at K+1: every client sets an e-mail, reconnect()s, checks it and the rest,
//             and that a schema-2 worker rendered it.
// Before the forced reconnects of a step, it waits until nginx routes to the restarted worker
// again, so they land on K and K+1 alike. A client is lost in a step if its state after the
// step differs from what it expects (every component, and 3 entries restored, 0 rejected), or
// it does not come back within WAIT_MS (10 s). Exits 1 if any client was lost.
// SKIP_EXPAND=1 skips phase 1: a negative control, which must lose clients.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

// CLIENT: another build of the client (to compare releases); by default this checkout's.
const { connect } = await import(
  process.env.CLIENT ? pathToFileURL(process.env.CLIENT).href : "../client/state-recovery.js"
);

const APP_WS = process.env.APP_WS;
const CLUSTER_DIR = process.env.CLUSTER_DIR;
const WORKERS = Number(process.env.WORKERS || 3);
const BASE = Number(process.env.WORKER_BASE_PORT || 3410);
const CLIENTS = Number(process.env.CLIENTS || 60);
const WAIT_MS = Number(process.env.WAIT_MS || 10000);
const log = (...a) => console.error("[rolling-deploy]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const PLANS = ["basic", "team", "enterprise"];
const APP_HTTP = APP_WS && APP_WS.replace(/^ws/, "http").replace(/\/ws$/, "");

// Node 20's WebSocket (undici 6) fires `error` but never `close` when the handshake fails
// (nodejs/undici#3546); the client treats an error before the socket opened as its close.
if (!globalThis.WebSocket) throw new Error("no WebSocket: run node >= 20 with --experimental-websocket");

/** A Map-backed Web Storage: one per client, so every client has its own stash. */
class MemoryStorage {
  constructor() {
    this.m = new Map();
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

const unescape = (s) =>
  s === undefined
    ? undefined
    : s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[e]);

/** One simulated tab: a real connect() and what its page shows. */
class Client {
  constructor(idx) {
    this.idx = idx;
    this.gen = 0; // connections opened
    this.worker = null; // from the server's {"type":"worker"} message
    this.recovered = null;
    this.renders = 0; // on the current connection
    this.burstAt = 0; // when the 3rd render of the current connection arrived
    this.html = {};
    this.waiters = new Set();
    this.expected = null;
    this.live = connect({
      url: APP_WS,
      storage: new MemoryStorage(),
      input: () => ({}), // no DOM, no form input
      onOpen: () => {
        this.gen++;
        this.worker = null;
        this.recovered = null;
        this.renders = 0;
        this.burstAt = 0;
        this.html = {};
        this.poke();
      },
      onRecovered: (r) => {
        this.recovered = r;
        this.poke();
      },
      onClose: () => this.poke(),
      onMessage: (m) => {
        if (m.type == "worker") this.worker = m.id;
        if (m.type == "render") {
          this.html[m.id] = m.html;
          if (++this.renders == 3) this.burstAt = now();
        }
        this.poke();
      },
    });
  }

  get ready() {
    return this.live.connected && !!this.recovered && this.renders >= 3 && !!this.worker;
  }

  poke() {
    for (const w of this.waiters) w();
  }

  /** Resolves when `test()` holds (checked on every client event), rejects after `ms`. */
  until(what, test, ms = WAIT_MS) {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!test()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.waiters.add(check);
    });
  }

  event(target, action, value = null) {
    if (!this.live.send({ type: "event", target, action, value })) throw new Error("not connected");
  }

  /** What the page shows, read back from the last renders. */
  state() {
    const c = this.html.counter || "", t = this.html.todos || "", w = this.html.wizard || "";
    const schema = Number(w.match(/data-schema="(\d+)"/)?.[1]);
    return {
      count: Number(c.match(/data-count="(-?\d+)"/)?.[1]),
      todos: [...t.matchAll(/<li class="([^"]*)" data-todo="\d+">.*?<span>([^<]*)<\/span>/g)].map(
        (m) => ({ text: unescape(m[2]), done: m[1] == "done" })),
      step: Number(w.match(/data-step="(\d+)"/)?.[1]),
      name: unescape(w.match(/<input name="name"[^>]*? value="([^"]*)"/)?.[1]),
      plan: w.match(/value="([a-z]+)" data-set="plan" checked/)?.[1],
      draft: unescape(w.match(/<textarea[^>]*>([^<]*)<\/textarea>/)?.[1]),
      // Only schema-2 workers render the field.
      email: schema >= 2 ? unescape(w.match(/<input name="email"[^>]*? value="([^"]*)"/)?.[1]) : undefined,
      schema,
    };
  }

  /** Differences between what the page shows and what this client expects ("" when none). */
  diff({ requireSchema, fresh } = {}) {
    const got = this.state(), exp = this.expected, out = [];
    for (const k of ["count", "step", "name", "plan", "draft"]) {
      if (got[k] !== exp[k]) out.push(`${k}: expected ${JSON.stringify(exp[k])}, got ${JSON.stringify(got[k])}`);
    }
    if (JSON.stringify(got.todos) != JSON.stringify(exp.todos)) {
      out.push(`todos: expected ${JSON.stringify(exp.todos)}, got ${JSON.stringify(got.todos)}`);
    }
    // A schema-1 worker has no e-mail to show; a schema-2 worker must show the expected one.
    if (got.schema >= 2 && got.email !== exp.email) {
      out.push(`email: expected ${JSON.stringify(exp.email)}, got ${JSON.stringify(got.email)}`);
    }
    if (got.schema == 1 && exp.email !== "") out.push(`email: expected ${JSON.stringify(exp.email)}, rendered by a schema-1 worker`);
    if (requireSchema && got.schema !== requireSchema) out.push(`data-schema: expected ${requireSchema}, got ${got.schema}`);
    const r = this.recovered;
    if (!fresh && r && (r.restored != 3 || r.rejected != 0)) out.push(`recovered ${JSON.stringify(r)}, expected 3 restored, 0 rejected`);
    return out.join("; ");
  }
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))];
};
const ms = (x) => (Number.isFinite(x) ? `${x.toFixed(0)}` : "-");
const tally = (xs) => {
  const m = {};
  for (const x of xs) m[x] = (m[x] || 0) + 1;
  return Object.keys(m).sort().map((k) => `${k}:${m[k]}`).join(" ") || "-";
};

// -------------------------------------------------------------------------------------------
// The cluster side: w<i>.env, w<i>.pid, /healthz, w<i>.log.

const pidOf = (i) => Number(readFileSync(`${CLUSTER_DIR}/w${i}.pid`, "utf8").trim());

function writeEnv(i, text) {
  const f = `${CLUSTER_DIR}/w${i}.env`;
  writeFileSync(`${f}.tmp`, text);
  renameSync(`${f}.tmp`, f);
}

/** The schema the newest start of w<i> announced ("worker w1 (state schema 2) listening ..."). */
function loggedSchema(i) {
  const lines = readFileSync(`${CLUSTER_DIR}/w${i}.log`, "utf8").match(/state schema (\d+)\) listening/g) || [];
  return Number(lines.at(-1)?.match(/(\d+)/)?.[1]);
}

async function healthz(i) {
  try {
    const r = await fetch(`http://127.0.0.1:${BASE + i}/healthz`, { signal: AbortSignal.timeout(1000) });
    return r.ok && (await r.text()).trim() == `ok w${i}`;
  } catch {
    return false;
  }
}

/**
 * Waits until nginx routes to w<i> again: it keeps a server it failed to connect to out of the
 * rotation for fail_timeout (1 s in cluster.sh), and the clients that reconnected while w<i>
 * was down made it fail. Without this every forced reconnect would avoid the new release.
 */
async function routable(i) {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    try {
      const r = await fetch(`${APP_HTTP}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.ok && (await r.text()).trim() == `ok w${i}`) return;
    } catch {}
    if (Date.now() > end) throw new Error(`nginx did not route to w${i} within ${WAIT_MS} ms`);
    await sleep(50);
  }
}

/** Waits until the supervisor restarted w<i> (a new pid) and it answers /healthz. */
async function restarted(i, oldPid, schema) {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    let pid = NaN;
    try {
      pid = pidOf(i);
    } catch {}
    if (pid && pid != oldPid && (await healthz(i))) {
      const s = loggedSchema(i);
      if (s != schema) throw new Error(`w${i} restarted with state schema ${s}, not ${schema} (was w${i}.env read?)`);
      return;
    }
    if (Date.now() > end) throw new Error(`w${i} was not restarted within ${WAIT_MS} ms`);
    await sleep(20);
  }
}

// -------------------------------------------------------------------------------------------

const clients = [];
const steps = [];
const lostEver = new Set();
const failures = [];

/**
 * Records that `c` is lost in `step`. Its expectation stays what it should have, so a client
 * whose state is wrong after several steps counts in each (and one whose entry comes back
 * later, from a worker that can read it, stops counting).
 */
function lose(step, c, why) {
  step.lost.add(c.idx);
  lostEver.add(c.idx);
  failures.push(`${step.name}: client ${c.idx} (on ${c.worker ?? "no worker"}): ${why}`);
}

/** Phase 0 for one client: distinct state in every component. */
async function build(c) {
  const i = c.idx;
  await c.until("the first connection", () => c.ready);
  const exp = {
    count: i + 1,
    todos: [{ text: `todo one of client ${i}`, done: i % 3 == 0 }],
    step: 2,
    name: `Client ${i} "Zoë" & <co>`,
    plan: PLANS[i % 3],
    draft: `draft of client ${i}\nline two <b>&</b>`,
    email: "",
  };
  if (i % 2 == 0) exp.todos.push({ text: `client ${i}: <milk> & "eggs"`, done: false });
  for (let k = 0; k < exp.count; k++) c.event("counter", "inc");
  for (const t of exp.todos) c.event("todos", "add", t.text);
  if (exp.todos[0].done) c.event("todos", "toggle", 0);
  c.event("wizard", "set", { field: "name", text: exp.name });
  c.event("wizard", "set", { field: "plan", text: exp.plan });
  c.event("wizard", "set", { field: "draft", text: exp.draft });
  c.event("wizard", "next"); // renders: the wizard's state messages are in by then
  c.expected = exp;
  // The first connection restored nothing: only what the page shows counts here.
  await c.until("the built state", () => c.diff({ fresh: true }) == "").catch((e) => {
    throw new Error(`${e.message}: ${c.diff({ fresh: true })}`);
  });
}

/** Every client: one change (counter +1, a draft edit, or `change`), reconnect(), check. */
async function changeAndReconnect(step, c, { change, requireSchema } = {}) {
  try {
    await c.until("connected and recovered", () => c.ready);
    if (change) change(c);
    else {
      c.expected.draft = `draft of client ${c.idx} after ${step.name}`;
      c.event("wizard", "set", { field: "draft", text: c.expected.draft }); // quiet: seal only
    }
    c.expected.count++;
    c.event("counter", "inc"); // its render comes after the wizard's new entry
    await c.until(`count ${c.expected.count}`, () => c.state().count == c.expected.count);
    const gen = c.gen;
    const t0 = now();
    c.live.reconnect();
    await c.until("the reconnect", () => c.gen > gen && c.ready);
    step.forced.push(c.burstAt - t0);
    step.schemas.push(c.state().schema);
    step.workers.push(c.worker);
    const d = c.diff({ requireSchema });
    if (d) lose(step, c, `after reconnect() to ${c.worker}: ${d}`);
  } catch (e) {
    lose(step, c, e.message);
  }
}

function newStep(name) {
  const s = { name, affected: 0, lost: new Set(), killed: [], forced: [], schemas: [], workers: [], t0: now() };
  steps.push(s);
  return s;
}

function report(s) {
  s.secs = (now() - s.t0) / 1000;
  log(`${s.name.padEnd(14)} clients ${CLIENTS}, affected ${String(s.affected).padStart(2)}, lost ${s.lost.size}; ` +
    `SIGTERM -> restored: median ${ms(pct(s.killed, 50))} ms, p99 ${ms(pct(s.killed, 99))} ms; ` +
    `reconnect() -> restored: median ${ms(pct(s.forced, 50))} ms, p99 ${ms(pct(s.forced, 99))} ms; ` +
    `rendered by schema ${tally(s.schemas)}, workers ${tally(s.workers)}; ${s.secs.toFixed(1)} s`);
}

/** One deploy step: w<i> gets `env`, is SIGTERMed and restarted; then every client reconnects. */
async function deployStep(name, i, env) {
  const step = newStep(name);
  for (const c of clients) if (!c.ready) lose(step, c, "not connected at the start of the step");
  writeEnv(i, env);
  const victim = `w${i}`;
  const affected = clients.filter((c) => c.worker == victim);
  const gens = new Map(clients.map((c) => [c, c.gen]));
  step.affected = affected.length;
  const oldPid = pidOf(i);
  const t0 = now();
  process.kill(oldPid, "SIGTERM");
  const back = affected.map(async (c) => {
    try {
      await c.until(`the reconnect after SIGTERM to ${victim}`, () => c.gen > gens.get(c) && c.ready);
      step.killed.push(c.burstAt - t0);
      const d = c.diff();
      if (d) lose(step, c, `after SIGTERM to ${victim}, on ${c.worker}: ${d}`);
    } catch (e) {
      lose(step, c, e.message);
    }
  });
  await restarted(i, oldPid, 2);
  await Promise.all(back);
  await routable(i);
  const moved = clients.filter((c) => c.worker != victim && c.gen != gens.get(c) && !affected.includes(c));
  if (moved.length) log(`${name}: note: ${moved.length} clients not on ${victim} reconnected too`);
  await Promise.all(clients.map((c) => changeAndReconnect(step, c)));
  report(step);
}

async function main() {
  if (!APP_WS || !CLUSTER_DIR) throw new Error("APP_WS and CLUSTER_DIR are required (run scripts/rolling-deploy.sh)");
  const t0 = now();
  for (let i = 1; i <= WORKERS; i++) {
    if (loggedSchema(i) != 1) throw new Error(`w${i} does not run state schema 1 at the start`);
  }
  for (let i = 0; i < CLIENTS; i++) clients.push(new Client(i));

  // Phase 0: distinct state everywhere, then a baseline reconnect among K workers.
  const s0 = newStep("0 build (K)");
  await Promise.all(clients.map(async (c) => {
    try {
      await build(c);
    } catch (e) {
      lose(s0, c, `building: ${e.message}`);
    }
  }));
  await Promise.all(clients.map((c) => changeAndReconnect(s0, c, { requireSchema: 1 })));
  report(s0);

  // Phase 1, expand: K+1 reads 1 and 2, still seals 1 (K workers can read what it writes).
  // SKIP_EXPAND=1 is a negative control: schema-2 entries reach K workers, which cannot read
  // them (the wizard starts fresh there), so clients are lost.
  if (process.env.SKIP_EXPAND != "1") {
    for (let i = 1; i <= WORKERS; i++) await deployStep(`1 expand w${i}`, i, "DEMO_SCHEMA=2\nDEMO_SEAL_AS=1\n");
  }
  // Phase 2, contract: K+1 seals 2 (every worker reads it by now).
  for (let i = 1; i <= WORKERS; i++) await deployStep(`2 contract w${i}`, i, "DEMO_SCHEMA=2\n");

  // Final: every client sets an e-mail (schema 2 only), reconnects, gets it back.
  const fin = newStep("3 final (K+1)");
  await Promise.all(clients.map((c) => changeAndReconnect(fin, c, {
    requireSchema: 2,
    change: (c) => {
      c.expected.email = `o'neil.${c.idx}+a&b@example.com`;
      c.event("wizard", "set", { field: "email", text: c.expected.email });
    },
  })));
  report(fin);

  const deploy = steps.slice(1);
  const killed = deploy.flatMap((s) => s.killed), forced = steps.flatMap((s) => s.forced);
  for (const f of failures.slice(0, 20)) log("LOST", f);
  if (failures.length > 20) log(`... and ${failures.length - 20} more`);
  log(`rolling deploy: ${CLIENTS} clients, ${deploy.length} steps, lost ${lostEver.size}` +
    ` (build ${steps[0].lost.size}; steps ${deploy.map((s) => s.lost.size).join(" ")}); ` +
    `affected ${killed.length}: SIGTERM -> restored median ${ms(pct(killed, 50))} ms, p99 ${ms(pct(killed, 99))} ms; ` +
    `${forced.length} reconnect(): median ${ms(pct(forced, 50))} ms, p99 ${ms(pct(forced, 99))} ms; ` +
    `${((now() - t0) / 1000).toFixed(1)} s`);
  if (lostEver.size) {
    const ok = clients.filter((c) => lostEver.has(c.idx) && c.ready && c.diff() == "").length;
    log(`of the ${lostEver.size} clients lost, ${ok} show the expected state again at the end`);
  }
  if (lostEver.size) process.exitCode = 1;
}

try {
  await main();
  log(process.exitCode ? "FAIL" : "PASS");
} catch (e) {
  log("FAIL:", e.message);
  for (const f of failures.slice(0, 20)) log("LOST", f);
  process.exitCode = 1;
} finally {
  for (const c of clients) c.live.close();
}
