// A small WebDriver client for chromedriver's HTTP API (no npm dependencies): one session of
// headless Chromium, and the few commands the browser tests use. Every wait is bounded.
import { writeFileSync } from "node:fs";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/**
 * Starts headless Chromium through chromedriver at `driverUrl`, with a fresh profile in
 * `profileDir`; `log` prints progress, screenshots go to `shots`.
 */
export async function browser({ driverUrl, profileDir, shots, log, stepTimeout = 15000 }) {
  async function wd(method, path, body) {
    const res = await fetch(driverUrl + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30000),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value).slice(0, 300)}`);
    return json.value;
  }
  const created = await wd("POST", "/session", {
    capabilities: {
      alwaysMatch: {
        browserName: "chrome",
        "goog:chromeOptions": {
          binary: "/usr/bin/chromium",
          args: [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", `--user-data-dir=${profileDir}`, "--window-size=1100,900",
          ],
        },
      },
    },
  });
  const sid = created.sessionId;
  const s = (path) => `/session/${sid}${path}`;
  await wd("POST", s("/timeouts"), { script: 10000, pageLoad: 15000, implicit: 2000 });

  const run = (script, ...args) => wd("POST", s("/execute/sync"), { script, args });
  const find = async (css) =>
    (await wd("POST", s("/element"), { using: "css selector", value: css }))[ELEMENT];
  // Pages re-render, so an element found a moment ago may be gone: find it again.
  async function onElement(css, action, body) {
    for (let i = 0; ; i++) {
      try {
        return await wd("POST", s(`/element/${await find(css)}/${action}`), body);
      } catch (e) {
        if (i >= 10 || !/stale element/.test(e.message)) throw e;
      }
    }
  }
  return {
    wd,
    s,
    run,
    goto: (url) => wd("POST", s("/url"), { url }),
    refresh: () => wd("POST", s("/refresh"), {}),
    click: (css) => onElement(css, "click", {}),
    type: (css, text) => onElement(css, "value", { text }),
    /** Polls `script` in the page until it returns a truthy value (at most stepTimeout). */
    async until(what, script, ...args) {
      const end = Date.now() + stepTimeout;
      let last;
      while (Date.now() < end) {
        try {
          last = await run(script, ...args);
          if (last) return last;
        } catch (e) {
          last = e.message;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    },
    async shot(name) {
      const png = await wd("GET", s("/screenshot"));
      writeFileSync(`${shots}/${name}.png`, Buffer.from(png, "base64"));
      log(`screenshot ${shots}/${name}.png`);
    },
    close: () => wd("DELETE", `/session/${sid}`),
  };
}

/** Throws unless `a` and `b` are the same as JSON. */
export function same(a, b, what) {
  const x = JSON.stringify(a), y = JSON.stringify(b);
  if (x != y) throw new Error(`${what}: expected ${y}, got ${x}`);
}
