// Waiting helpers shared by the Node harnesses (soak.mjs, inflight.mjs, e2e-dioxus.mjs).
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `test` every 2 ms until it is true; throws after `ms` milliseconds. */
export async function until(what, test, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (test()) return;
    await sleep(2);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Waits until workers 1..`workers` (on 127.0.0.1, ports `base`+i) answer /healthz (a killed
 * one is restarted by the cluster); throws after `ms` milliseconds.
 */
export async function workersUp(base, workers, ms = 15000) {
  const end = Date.now() + ms;
  for (let i = 1; i <= workers; i++) {
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${base + i}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.ok) break;
      } catch {}
      if (Date.now() > end) throw new Error(`worker w${i} is not back`);
      await sleep(20);
    }
  }
}
