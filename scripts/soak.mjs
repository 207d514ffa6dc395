// Kill-and-reconnect soak through nginx, with the real JS client (node >= 20 with
// --experimental-websocket). Run by scripts/soak.sh, which passes APP_WS (ws://.../ws),
// CLUSTER_DIR (w<i>.pid files), WORKERS, WORKER_BASE_PORT and CYCLES.
import { readFileSync } from "node:fs";
import { connect } from "../client/state-recovery.js";
import { sleep, until, workersUp } from "./wait.mjs";

const APP_WS = process.env.APP_WS;
const CLUSTER_DIR = process.env.CLUSTER_DIR;
const WORKERS = Number(process.env.WORKERS || 3);
const BASE = Number(process.env.WORKER_BASE_PORT || 3100);
const CYCLES = Number(process.env.CYCLES || 100);
const log = (...a) => console.error("[soak]", ...a);

// What the "page" holds.
const page = { gen: 0, worker: null, recovered: null, html: {}, renders: 0, openAt: 0, recoveredAt: 0 };
let reconnectDelay = 0;
const live = connect({
  url: APP_WS,
  onOpen: () => {
    page.gen++;
    page.recovered = null;
    page.renders = 0;
    page.openAt = performance.now();
  },
  onReconnecting: (_attempt, delay) => {
    reconnectDelay += delay;
  },
  onRecovered: (r) => {
    page.recovered = r;
    page.recoveredAt = performance.now();
  },
  onMessage: (m) => {
    if (m.type == "worker") page.worker = m.id;
    if (m.type == "render") {
      page.html[m.id] = m.html;
      page.renders++;
    }
  },
});

const event = (target, action, value = null) => {
  if (!live.send({ type: "event", target, action, value })) throw new Error("not connected");
};
const count = () => Number((page.html.counter || "").match(/data-count="(-?\d+)"/)?.[1]);
const todos = () => [...(page.html.todos || "").matchAll(/<span>([^<]*)<\/span>/g)].map((m) => m[1]);
const draft = () => (page.html.wizard || "").match(/<textarea[^>]*>([^<]*)<\/textarea>/)?.[1];

const healthy = () => workersUp(BASE, WORKERS);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

async function main() {
  await until("the first recovery", () => page.recovered && page.renders >= 3);
  // Every component gets an entry before the first kill.
  event("todos", "add", "first");
  await until("the first todo", () => todos().length == 1);
  const expected = { count: count(), todos: todos(), draft: draft() };
  const total = [], serverSide = [], delays = [];
  const workersSeen = new Set();
  for (let i = 1; i <= CYCLES; i++) {
    await healthy();
    // Change every component: the draft quietly, then the counter (whose render, ordered after
    // every earlier state message, tells us the stash has both); a todo every tenth cycle.
    expected.draft = `draft of cycle ${i}`;
    event("wizard", "set", { field: "draft", text: expected.draft });
    if (i % 10 == 0) {
      expected.todos.push(`todo ${i}`);
      event("todos", "add", `todo ${i}`);
    }
    event("counter", "inc");
    expected.count++;
    await until(`cycle ${i}: count ${expected.count}`, () =>
      count() == expected.count && todos().length == expected.todos.length);

    // Kill the worker serving us, and time until every component is back.
    const victim = page.worker;
    const pid = Number(readFileSync(`${CLUSTER_DIR}/${victim}.pid`, "utf8"));
    const gen = page.gen;
    const entries = live.stash.entries().length;
    reconnectDelay = 0;
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    await until(`cycle ${i}: reconnect after killing ${victim}`, () =>
      page.gen > gen && page.recovered && page.renders >= 3);
    const t = performance.now() - t0;
    total.push(t);
    serverSide.push(page.recoveredAt - page.openAt);
    delays.push(reconnectDelay);
    workersSeen.add(page.worker);

    const got = { count: count(), todos: todos(), draft: draft() };
    const r = page.recovered;
    // Three components and the applied-events entry (the demo has events on; that entry is
    // not counted in `recovered`).
    if (entries != 4 || r.restored != 3 || r.rejected != 0 || live.pending != 0 ||
        JSON.stringify(got) != JSON.stringify(expected)) {
      throw new Error(`cycle ${i}: state lost: recovered ${JSON.stringify(r)}, ` +
        `got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    }
    if (i % 10 == 0) log(`cycle ${i}: ${victim} -> ${page.worker} in ${t.toFixed(1)} ms`);
  }
  const f = (x) => x.toFixed(1);
  log(`${CYCLES} kill-and-reconnect cycles, no state lost (count ${expected.count}, ` +
    `${expected.todos.length} todos, draft intact); workers seen: ${[...workersSeen].sort().join(" ")}`);
  log(`kill -> every component restored: median ${f(pct(total, 50))} ms, p99 ${f(pct(total, 99))} ms, max ${f(Math.max(...total))} ms`);
  log(`  of which backoff delay (full jitter, base 250 ms): median ${f(pct(delays, 50))} ms, p99 ${f(pct(delays, 99))} ms`);
  log(`  socket open -> recovered: median ${f(pct(serverSide, 50))} ms, p99 ${f(pct(serverSide, 99))} ms`);
}

try {
  await main();
  log("PASS");
} catch (e) {
  log("FAIL:", e.message);
  process.exitCode = 1;
} finally {
  live.close();
}
