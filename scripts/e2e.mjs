// Drives headless Chromium through chromedriver's WebDriver HTTP API (no npm dependencies).
// Run by scripts/e2e.sh, which starts the cluster and chromedriver and passes:
//   DRIVER_URL  chromedriver (http://127.0.0.1:PORT)      APP_URL  the cluster (nginx)
//   CLUSTER_DIR the cluster's dir (w<i>.pid files)         SHOTS    where screenshots go
//   PROFILE_DIR a fresh --user-data-dir
import { readFileSync } from "node:fs";
import { browser, same } from "./webdriver.mjs";

const { DRIVER_URL, APP_URL, CLUSTER_DIR, SHOTS, PROFILE_DIR } = process.env;
const log = (...a) => console.error("[e2e]", ...a);

let b; // the browser (scripts/webdriver.mjs)
const wd = (...a) => b.wd(...a);
const s = (path) => b.s(path);
const run = (...a) => b.run(...a);
const click = (css) => b.click(css);
const type = (css, text) => b.type(css, text);
const until = (...a) => b.until(...a);
const shot = (name) => b.shot(name);

// What the page shows, read from the DOM.
const PAGE_STATE = `
  const q = (c) => document.querySelector(c);
  const draft = q("#wizard-draft");
  return {
    live: document.body.dataset.live,
    worker: document.body.dataset.worker,
    recovered: document.body.dataset.recovered,
    status: q("#status").textContent,
    count: q("[data-count]")?.dataset.count,
    todos: [...document.querySelectorAll("[data-todo]")].map((li) =>
      (li.classList.contains("done") ? "x " : "- ") + li.querySelector("span").textContent),
    step: q("[data-step]")?.dataset.step,
    name: q("#wizard-name")?.value,
    draft: draft && draft.value,
    stash: Object.keys(sessionStorage).filter((k) => k.startsWith("state-recovery:")).length,
  };`;
const page = () => run(PAGE_STATE);
const liveOn = (notWorker) =>
  until(
    `the page live${notWorker ? " on a worker other than " + notWorker : ""}`,
    `const b = document.body.dataset;
     return b.live == "live" && b.worker && b.worker != arguments[0] && document.querySelector("[data-count]") && b.recovered;`,
    notWorker || "",
  );
async function main() {
  b = await browser({ driverUrl: DRIVER_URL, profileDir: PROFILE_DIR, shots: SHOTS, log });

  // 1. A fresh page.
  await wd("POST", s("/url"), { url: APP_URL });
  await liveOn();
  const fresh = await page();
  log("fresh page", JSON.stringify(fresh));
  same([fresh.count, fresh.todos, fresh.step, fresh.recovered], ["0", [], "1", "0/0"], "fresh page");

  // 2. Click and type in every component.
  for (let i = 0; i < 3; i++) await click("#inc");
  await until("count 3", `return document.querySelector("[data-count]").dataset.count == "3"`);
  for (const t of ["buy milk", "call <Bob> & co"]) {
    await type("#todo-text", t + "\uE007"); // Enter submits
    await until(`todo ${t}`, `return [...document.querySelectorAll("[data-todo] span")].some((s) => s.textContent == arguments[0])`, t);
  }
  await click('[data-todo="0"] input[type=checkbox]');
  await until("todo 0 done", `return document.querySelector('[data-todo="0"]').classList.contains("done")`);
  await type("#wizard-name", "Ada");
  await click("#wizard-next");
  await until("step 2", `return document.querySelector("[data-step]").dataset.step == "2"`);
  await click("#wizard-next");
  await until("step 3", `return document.querySelector("[data-step]").dataset.step == "3"`);
  const draft = "half-typed draft, e2e 123";
  await type("#wizard-draft", draft);
  // The server sealed the whole draft: it is in the newest wizard entry of the stash (beside
  // the other two components' and the applied-events entry), and every event is acknowledged.
  await until(
    "the draft in the stash",
    `const e = JSON.parse(sessionStorage.getItem("state-recovery:entries") || "[]");
     const q = JSON.parse(sessionStorage.getItem("state-recovery:events") || "{}").queue || [];
     return e.length == 4 && q.length == 0 &&
       e.some((x) => atob(x[2].replace(/-/g, "+").replace(/_/g, "/")).includes(arguments[0]));`,
    draft,
  );
  const before = await page();
  log("before", JSON.stringify(before));
  same(
    [before.count, before.todos, before.step, before.name, before.draft],
    ["3", ["x buy milk", "- call <Bob> & co"], "3", "Ada", draft],
    "state built",
  );
  await shot("1-before-kill");

  // 3. Kill the worker that serves this page (SIGKILL), wait for another one.
  const victim = before.worker;
  const pid = Number(readFileSync(`${CLUSTER_DIR}/${victim}.pid`, "utf8"));
  log(`killing worker ${victim} (pid ${pid})`);
  const t0 = Date.now();
  process.kill(pid, "SIGKILL");
  await liveOn(victim);
  const after = await page();
  log(`reconnected in ${Date.now() - t0} ms:`, JSON.stringify(after));
  if (after.worker == victim) throw new Error("still on the killed worker");
  same(after.recovered, "3/0", "recovered counts after the kill");
  same(
    [after.count, after.todos, after.step, after.name, after.draft],
    [before.count, before.todos, before.step, before.name, before.draft],
    "state after the kill",
  );
  await shot("2-after-kill");

  // 3b. The page's own "kill this worker" (shown because the workers run with
  //     DEMO_ALLOW_KILL=1): a same-origin WebSocket message through nginx; the worker exits,
  //     the page comes back on the last one.
  const victim2 = after.worker;
  await until("the kill button shown", `return !document.querySelector("#kill").hidden`);
  const t1 = Date.now();
  await click("#kill");
  await liveOn(victim2);
  const afterButton = await page();
  log(`reconnected after the kill button in ${Date.now() - t1} ms:`, JSON.stringify(afterButton));
  if ([victim, victim2].includes(afterButton.worker)) throw new Error("still on a killed worker");
  same(afterButton.recovered, "3/0", "recovered counts after the kill button");
  same(
    [afterButton.count, afterButton.todos, afterButton.step, afterButton.name, afterButton.draft],
    [before.count, before.todos, before.step, before.name, before.draft],
    "state after the kill button",
  );

  // 4. Reload the tab: restored from sessionStorage (no form on the page when it recovers).
  await wd("POST", s("/refresh"), {});
  await liveOn();
  const reloaded = await page();
  log("reloaded", JSON.stringify(reloaded));
  same(reloaded.recovered, "3/0", "recovered counts after reload");
  same(
    [reloaded.count, reloaded.todos, reloaded.step, reloaded.name, reloaded.draft],
    [before.count, before.todos, before.step, before.name, before.draft],
    "state after reload",
  );
  await shot("3-after-reload");

  // 5. A second tab: its own stash, so its own fresh state.
  const first = await wd("GET", s("/window"));
  const tab = await wd("POST", s("/window/new"), { type: "tab" });
  await wd("POST", s("/window"), { handle: tab.handle });
  await wd("POST", s("/url"), { url: APP_URL });
  await liveOn();
  const second = await page();
  log("second tab", JSON.stringify(second));
  same([second.count, second.todos, second.step, second.recovered], ["0", [], "1", "0/0"], "second tab");
  await click("#inc");
  await until("count 1 in tab 2", `return document.querySelector("[data-count]").dataset.count == "1"`);
  await shot("4-second-tab");

  // 6. The first tab is untouched by the second.
  await wd("POST", s("/window"), { handle: first });
  const again = await page();
  same([again.count, again.draft], [before.count, before.draft], "first tab after the second");
  log("PASS");
}

try {
  await main();
} catch (e) {
  log("FAIL:", e.message);
  if (b) await shot("failure").catch(() => {});
  process.exitCode = 1;
} finally {
  if (b) await b.close().catch(() => {});
}
