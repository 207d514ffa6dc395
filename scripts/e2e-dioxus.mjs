// The Dioxus LiveView adapter in a real browser: run by scripts/e2e-dioxus.sh, which starts
// three workers of the adapter's todo example behind nginx (with a short proxy_read_timeout)
// and chromedriver, and passes:
//   DRIVER_URL  chromedriver       APP_URL  the cluster (nginx)    CLUSTER_DIR  w<i>.pid files
//   WORKER_BASE_PORT  workers on +1..+3 (their /healthz)
//   SHOTS       screenshots' dir   PROFILE_DIR  a fresh --user-data-dir
//   IDLE_MS     nginx's proxy_read_timeout in ms (an idle socket is dropped after it)
//   KILLS       how many times the serving worker is SIGKILLed (default 1; figures: median, max)
// Prints one JSON line of figures (`figures {...}`) before PASS.
import { readFileSync } from "node:fs";
import { browser, same } from "./webdriver.mjs";
import { workersUp } from "./wait.mjs";

const { DRIVER_URL, APP_URL, CLUSTER_DIR, SHOTS, PROFILE_DIR, WORKER_BASE_PORT } = process.env;
const IDLE_MS = Number(process.env.IDLE_MS || 3000);
const KILLS = Math.max(1, Number(process.env.KILLS || 1));
const log = (...a) => console.error("[e2e-dioxus]", ...a);
let b;

// What the page shows, read from the DOM (and the adapter's marks on <html>).
const PAGE_STATE = `
  const q = (c) => document.querySelector(c);
  const h = document.documentElement.dataset;
  return {
    status: h.stateRecovery,
    renders: Number(h.renders || 0),
    recovered: h.recovered,
    worker: q("#worker b")?.textContent,
    count: q("#count")?.textContent.trim(),
    todos: [...document.querySelectorAll("#todos li")].map((li) =>
      (li.classList.contains("done") ? "x " : "- ") + li.querySelector(".text").textContent),
    newTodo: q("#new-todo")?.value,
    draft: q("#draft")?.value,
    words: q("#words")?.textContent,
  };`;
const page = () => b.run(PAGE_STATE);
const state = (p) => [p.count, p.todos, p.newTodo, p.draft, p.words];

/** Waits for a render after `renders` (a new connection's), optionally on another worker. */
const renderedAfter = (renders, notWorker = "") =>
  b.until(
    `a new render${notWorker ? " on a worker other than " + notWorker : ""}`,
    `const h = document.documentElement.dataset, w = document.querySelector("#worker b");
     return h.stateRecovery == "live" && Number(h.renders) > arguments[0] && w &&
       w.textContent != arguments[1] && document.querySelector("#count") && h.recovered;`,
    renders,
    notWorker,
  );

const pidOf = (worker) => Number(readFileSync(`${CLUSTER_DIR}/${worker}.pid`, "utf8"));

/** Waits until every worker answers its health check (a killed one is restarted). */
const allUp = () => workersUp(Number(WORKER_BASE_PORT), 3);

async function main() {
  b = await browser({ driverUrl: DRIVER_URL, profileDir: PROFILE_DIR, shots: SHOTS, log });
  const figures = {};

  // 1. A fresh page.
  await b.goto(APP_URL);
  await renderedAfter(0);
  const fresh = await page();
  log("fresh page", JSON.stringify(fresh));
  same(
    [fresh.renders, fresh.recovered, ...state(fresh)],
    [1, "0/0", "0", [], "", "", "0 words"],
    "fresh page",
  );

  // 2. State in every component.
  for (let i = 0; i < 3; i++) await b.click("#inc");
  await b.until("count 3", `return document.querySelector("#count").textContent.trim() == "3"`);
  for (const t of ["buy milk", "call <Bob> & co"]) {
    await b.type("#new-todo", t + "\uE007"); // Enter adds it
    await b.until(`todo ${t}`,
      `return [...document.querySelectorAll("#todos .text")].some((s) => s.textContent == arguments[0])`, t);
  }
  await b.click("#todos li:first-child input[type=checkbox]");
  await b.until("todo 1 done", `return document.querySelector("#todos li:first-child").classList.contains("done")`);
  await b.type("#new-todo", "half a todo");
  const draft = "a draft, half typed: e2e 123";
  await b.type("#draft", draft);
  // Every component's entry is in the stash, the draft's with the whole text (signed entries
  // carry their payload in base64url).
  await b.until(
    "the draft sealed into the stash",
    `const e = JSON.parse(sessionStorage.getItem("state-recovery:entries") || "[]");
     return e.length == 4 &&
       e.some((x) => atob(x[2].replace(/-/g, "+").replace(/_/g, "/")).includes(arguments[0]));`,
    draft,
  );
  const before = await page();
  log("before", JSON.stringify(before));
  same(
    state(before),
    ["3", ["x buy milk", "- call <Bob> & co"], "half a todo", draft, "6 words"],
    "state built",
  );
  await b.shot("1-before-kill");

  // 3. SIGKILL the worker serving the page while the user is in the draft: back on another,
  //    everything intact, the caret where it was.
  await b.run(`const d = document.querySelector("#draft"); d.focus(); d.setSelectionRange(2, 7);`);
  const victim = before.worker;
  const t0 = Date.now();
  process.kill(pidOf(victim), "SIGKILL");
  await renderedAfter(before.renders, victim);
  figures.kill_ms = Date.now() - t0;
  const afterKill = await page();
  log(`SIGKILL of ${victim}: restored on ${afterKill.worker} in ${figures.kill_ms} ms`, JSON.stringify(afterKill));
  same(afterKill.recovered, "4/0", "recovered counts after the kill");
  same(state(afterKill), state(before), "state after the kill");
  same(
    await b.run(`const e = document.activeElement; return [e.id, e.selectionStart, e.selectionEnd];`),
    ["draft", 2, 7],
    "focus and selection after the kill",
  );
  await b.shot("2-after-kill");

  // 3a. More kills, for the figures: each time the serving worker, each time all back.
  const kills = [figures.kill_ms];
  for (let i = 1; i < KILLS; i++) {
    await allUp(); // kills spaced as a worker's restart (one down at a time)
    const p = await page();
    const t = Date.now();
    process.kill(pidOf(p.worker), "SIGKILL");
    await renderedAfter(p.renders, p.worker);
    kills.push(Date.now() - t);
    same(state(await page()), state(before), `state after kill ${i + 1}`);
  }
  const sorted = [...kills].sort((x, y) => x - y);
  figures.kills = kills.length;
  figures.kill_median_ms = sorted[Math.floor((sorted.length - 1) / 2)];
  figures.kill_max_ms = sorted[sorted.length - 1];
  log(`${kills.length} SIGKILLs: kill -> restored ${JSON.stringify(kills)} ms`);

  // 3b. It still works there: one more click.
  await b.click("#inc");
  await b.until("count 4", `return document.querySelector("#count").textContent.trim() == "4"`);

  // 4. The page's own "kill this worker" (DEMO_ALLOW_KILL=1): the worker exits mid-session.
  await allUp();
  const pressed = await page();
  const victim2 = pressed.worker;
  const t1 = Date.now();
  await b.click("#kill");
  await renderedAfter(pressed.renders, victim2);
  figures.kill_button_ms = Date.now() - t1;
  const afterButton = await page();
  log(`kill button on ${victim2}: restored on ${afterButton.worker} in ${figures.kill_button_ms} ms`);
  same(afterButton.count, "4", "count after the kill button");
  same(state(afterButton).slice(1), state(before).slice(1), "state after the kill button");

  // 5. Idle: nginx drops a socket its worker sent nothing on for IDLE_MS; the page reconnects
  //    by itself, with nothing lost.
  const idle = await page();
  const t2 = Date.now();
  await b.until(
    "the idle socket dropped and the page back",
    `const h = document.documentElement.dataset;
     return h.stateRecovery == "live" && Number(h.renders) > arguments[0];`,
    idle.renders,
  );
  figures.idle_drop_after_ms = Date.now() - t2;
  const afterIdle = await page();
  log(`idle for ${figures.idle_drop_after_ms} ms: dropped and restored on ${afterIdle.worker}`);
  if (figures.idle_drop_after_ms < IDLE_MS * 0.8) throw new Error("reconnected before the idle timeout");
  same(state(afterIdle), state(afterButton), "state after the idle drop");
  await b.shot("3-after-idle");

  // 6. SIGTERM (a drain): the worker tells the page to go elsewhere (1012) and exits.
  await allUp();
  const victim3 = (await page()).worker;
  const t3 = Date.now();
  process.kill(pidOf(victim3), "SIGTERM");
  await renderedAfter(afterIdle.renders, victim3);
  figures.drain_ms = Date.now() - t3;
  const afterDrain = await page();
  log(`SIGTERM of ${victim3}: restored on ${afterDrain.worker} in ${figures.drain_ms} ms`);
  same(state(afterDrain), state(afterButton), "state after the drain");

  // 7. Reload the tab: the stash is in sessionStorage.
  await b.refresh();
  await renderedAfter(0);
  const reloaded = await page();
  same(state(reloaded), state(afterButton), "state after reload");
  same(reloaded.recovered, "4/0", "recovered counts after reload");
  await b.shot("4-after-reload");

  // 8. A second tab: its own stash, fresh state; the first is untouched.
  const first = await b.wd("GET", b.s("/window"));
  const tab = await b.wd("POST", b.s("/window/new"), { type: "tab" });
  await b.wd("POST", b.s("/window"), { handle: tab.handle });
  await b.goto(APP_URL);
  await renderedAfter(0);
  same(state(await page()), ["0", [], "", "", "0 words"], "second tab");
  await b.wd("POST", b.s("/window"), { handle: first });
  same(state(await page()), state(afterButton), "first tab after the second");

  console.log("figures " + JSON.stringify(figures));
  log("PASS");
}

try {
  await main();
} catch (e) {
  log("FAIL:", e.message);
  if (b) await b.shot("failure").catch(() => {});
  process.exitCode = 1;
} finally {
  if (b) await b.close().catch(() => {});
}
