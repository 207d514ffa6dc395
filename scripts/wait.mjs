// Waiting helpers shared by the Node harnesses (soak.mjs, inflight.mjs).
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
