// Clicks in flight when a worker dies, through nginx, with the real JS client (node >= 20 with
// --experimental-websocket). Run by scripts/inflight.sh, which passes APP_WS (ws://.../ws),
// CLUSTER_DIR (w<i>.pid files), WORKERS, WORKER_BASE_PORT, KILLS, CLICK_MS and CLIENT (the
// client module to load; by default this checkout's).
//
// One tab clicks the counter every CLICK_MS while the worker serving it is SIGKILLed KILLS
// times (the cluster restarts it); then the clicking stops, the tab settles, reconnects once
// more and reads the counter it restored. Every click `send` accepted must be counted, once.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { sleep, until as untilWithin, workersUp } from "./wait.mjs";

const CLIENT = process.env.CLIENT || new URL("../client/state-recovery.js", import.meta.url).href;
const { connect } = await import(CLIENT.startsWith("file:") ? CLIENT : pathToFileURL(CLIENT).href);
const APP_WS = process.env.APP_WS;
const CLUSTER_DIR = process.env.CLUSTER_DIR;
const WORKERS = Number(process.env.WORKERS || 3);
const BASE = Number(process.env.WORKER_BASE_PORT || 3870);
const KILLS = Number(process.env.KILLS || 20);
const CLICK_MS = Number(process.env.CLICK_MS || 2);
const log = (...a) => console.error("[inflight]", ...a);
const until = (what, test, ms = 15000) => untilWithin(what, test, ms);

const page = { gen: 0, worker: null, recovered: null, html: {}, renders: 0, lastRender: 0 };
const atReopen = []; // clicks unacknowledged when a new socket opened (resent after recovered)
const live = connect({
  url: APP_WS,
  onOpen: () => {
    if (page.gen) atReopen.push(pending());
    page.gen++;
    page.recovered = null;
    page.renders = 0;
  },
  onRecovered: (r) => {
    page.recovered = r;
  },
  onMessage: (m) => {
    if (m.type == "worker") page.worker = m.id;
    if (m.type == "render") {
      page.html[m.id] = m.html;
      page.renders++;
      page.lastRender = Date.now();
    }
  },
  onEventDropped: (m, reason) => log("event dropped:", reason, JSON.stringify(m)),
});
const pending = () => live?.pending ?? 0; // an older client has no queue
const count = () => Number((page.html.counter || "").match(/data-count="(-?\d+)"/)?.[1]);
const ready = () => live.connected && page.recovered && page.renders >= 3 && page.worker;

const healthy = () => workersUp(BASE, WORKERS);

async function main() {
  await until("the first recovery", ready);
  const start = count();
  let sent = 0;
  let refused = 0;
  let clicking = true;
  const inFlight = [];
  const clicker = (async () => {
    while (clicking) {
      if (live.send({ type: "event", target: "counter", action: "inc", value: null })) sent++;
      else refused++;
      await sleep(CLICK_MS);
    }
  })();
  for (let k = 1; k <= KILLS; k++) {
    await healthy();
    await until(`kill ${k}: the tab live`, ready);
    await sleep(50 + Math.random() * 150);
    const victim = page.worker;
    const pid = Number(readFileSync(`${CLUSTER_DIR}/${victim}.pid`, "utf8"));
    inFlight.push(pending());
    const gen = page.gen;
    process.kill(pid, "SIGKILL");
    await until(`kill ${k}: back after killing ${victim}`, () => page.gen > gen && ready());
  }
  clicking = false;
  await clicker;
  // Settle: every click acknowledged (or, for an older client, no render for a while).
  await until("every click acknowledged", () => ready() && pending() == 0 && Date.now() - page.lastRender > 500);
  // What the stash restores, read back through one more connection.
  const gen = page.gen;
  live.reconnect();
  await until("the last reconnect", () => page.gen > gen && ready());
  const counted = count() - start;
  const lost = sent - counted;
  const f = (xs) => `${xs.reduce((a, b) => a + b, 0)} (max ${Math.max(...xs)})`;
  log(`client ${CLIENT.split("/").slice(-2).join("/")}`);
  log(`${KILLS} kills, ${sent} clicks sent (${refused} refused while disconnected), ${counted} counted: ` +
    `${lost > 0 ? lost + " LOST" : lost < 0 ? -lost + " DOUBLED" : "none lost, none doubled"}`);
  log(`clicks unacknowledged at the kills: ${f(inFlight)}; when the next socket opened: ${f(atReopen.slice(0, KILLS))}`);
  console.log(JSON.stringify({ kills: KILLS, sent, refused, counted, lost, inFlight, atReopen }));
  if (lost != 0) throw new Error(`${lost} clicks lost`);
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
