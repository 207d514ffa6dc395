// The guard across two demo workers sharing one Redis (run by scripts/guard-e2e.sh, which
// starts redis-server and the workers and passes W1, W2 (ports) and REDIS_PID). Each "tab" is
// a WebSocket with its own stash (salt + newest token per key, as the JS client keeps them)
// and, for a logged-in user, the demo's `demo_user` cookie. Checks, from what the workers
// say (the demo's hello message tells why entries were refused; `recovered` the counts):
//   1. an older revision captured on worker 1, replayed to worker 2: `rolled-back`, the other
//      entry restored;
//   2. the current stash on worker 2: everything restored;
//   3. logout (POST /logout) on worker 1, reconnect to worker 2: every entry `revoked`, a
//      fresh salt, the state gone; another user untouched;
//   4. an anonymous tab's salt revoked on worker 1: `revoked` on worker 2;
//   5. Redis paused (SIGSTOP): worker 2 fails closed within its timeout (`guard-unavailable`,
//      the salt kept); resumed: restored again.
// Every wait is bounded (10 s); exits 1 on any mismatch.

const W1 = Number(process.env.W1), W2 = Number(process.env.W2);
const REDIS_PID = Number(process.env.REDIS_PID);
const WAIT_MS = 10000;
const log = (...a) => console.error("[guard-e2e]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
if (!globalThis.WebSocket) throw new Error("no WebSocket: run node >= 20 with --experimental-websocket");

let failures = 0;
function check(what, got, want) {
  const ok = JSON.stringify(got) === JSON.stringify(want);
  if (!ok) failures++;
  log(`${ok ? "ok  " : "FAIL"} ${what}: ${JSON.stringify(got)}${ok ? "" : ` (expected ${JSON.stringify(want)})`}`);
}

/** A browser tab: its stash, its user cookie, and at most one live connection. */
class Tab {
  constructor(user) {
    this.user = user;
    this.salt = null;
    this.entries = new Map(); // key -> {rev, token}
    this.history = []; // every state message seen, in order
  }
  clone() {
    const t = new Tab(this.user);
    t.salt = this.salt;
    t.entries = new Map(this.entries);
    return t;
  }
  recoverMessage() {
    return { type: "recover", salt: this.salt, entries: [...this.entries.values()].map((e) => e.token), input: {} };
  }
  headerValue() {
    return Buffer.from(JSON.stringify(this.recoverMessage())).toString("base64url");
  }
  absorb(m) {
    if (m.type == "salt") {
      if (m.salt !== this.salt) this.entries.clear();
      this.salt = m.salt;
      this.saltIssued = true;
    } else if (m.type == "state") {
      const old = this.entries.get(m.key);
      if (!old || old.rev <= m.rev) this.entries.set(m.key, { rev: m.rev, token: m.token });
      this.history.push(m);
    } else if (m.type == "drop") {
      this.entries.delete(m.key);
    }
  }

  /** Connects to `port`, sends the stash, waits for the first full render. */
  async connect(port) {
    this.close();
    const headers = this.user ? { cookie: `demo_user=${this.user}` } : {};
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers });
    this.ws = ws;
    this.conn = { worker: null, recovered: null, html: {}, states: 0, renders: 0 };
    this.saltIssued = false;
    this.waiters = new Set();
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      this.absorb(m);
      const c = this.conn;
      if (m.type == "worker") c.worker = m;
      if (m.type == "recovered") c.recovered = { restored: m.restored, rejected: m.rejected };
      if (m.type == "state") c.states++;
      if (m.type == "render") {
        c.html[m.id] = m.html;
        c.renders++;
      }
      for (const w of this.waiters) w();
    };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot connect to worker on ${port}`));
    });
    ws.send(JSON.stringify(this.recoverMessage()));
    await this.until("the first render", () => this.conn.worker && this.conn.recovered && Object.keys(this.conn.html).length == 3);
    return this.conn;
  }
  until(what, test) {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!test()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
      this.waiters.add(check);
    });
  }
  /** Sends an event and waits for its state update and render. */
  async event(target, action, value = null) {
    const { states, renders } = this.conn;
    this.ws.send(JSON.stringify({ type: "event", target, action, value }));
    await this.until(`${target} ${action}`, () => this.conn.states > states && this.conn.renders > renders);
  }
  count() {
    return Number(this.conn.html.counter?.match(/data-count="(-?\d+)"/)?.[1]);
  }
  todos() {
    return [...(this.conn.html.todos || "").matchAll(/<span>([^<]*)<\/span>/g)].map((m) => m[1]);
  }
  guard() {
    return this.conn.worker?.guard || {};
  }
  close() {
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}

async function post(port, path, { user, header } = {}) {
  const headers = { "content-type": "application/json" };
  if (user) headers.cookie = `demo_user=${user}`;
  if (header) headers["state-recovery"] = header;
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    headers,
    body: "{}",
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/**
 * The write-behind writes a mark once it is 1 s old (the guard's default mark delay, so a
 * worker killed right after sealing leaves no mark that would refuse what its client holds),
 * at the next 25 ms flush: wait past that.
 */
const settle = () => sleep(1300);

async function main() {
  // Alice builds state on worker 1: a todo (rev 1), the counter at 1 (captured), then 3.
  const alice = new Tab("alice");
  await alice.connect(W1);
  check("alice's first connection, worker", alice.conn.worker.id, "w1");
  await alice.event("todos", "add", "milk");
  await alice.event("counter", "inc");
  const old = alice.clone(); // counter at rev 1
  await alice.event("counter", "inc");
  await alice.event("counter", "inc");
  const revs = Object.fromEntries([...alice.entries].map(([k, e]) => [k.slice(0, 6), e.rev]));
  log("alice's stash on worker 1 (key prefix: revision):", JSON.stringify(revs));
  alice.close();
  await settle();

  // 1. The older revision, replayed to worker 2.
  await old.connect(W2);
  check("1. replay of counter rev 1 on worker 2: refused", old.guard().refused, { "rolled-back": 1 });
  check("1. the todo list (not older) restored, the counter fresh", [old.todos(), old.count()], [["milk"], 0]);
  check("1. recovered counts", old.conn.recovered, { restored: 1, rejected: 1 });
  old.close();

  // 2. The current stash on worker 2.
  await alice.connect(W2);
  check("2. alice's current stash on worker 2", [alice.guard().refused, alice.count(), alice.todos()], [{}, 3, ["milk"]]);
  alice.close();

  // Bob, on worker 1.
  const bob = new Tab("bob");
  await bob.connect(W1);
  await bob.event("counter", "inc");
  bob.close();

  // 3. Alice logs out on worker 1; her stash is refused on worker 2.
  const out = await post(W1, "/logout", { user: "alice" });
  check("3. POST /logout on worker 1", [out.status, out.body?.revoked], [200, "subject"]);
  const saltBefore = alice.salt;
  await alice.connect(W2);
  check("3. alice on worker 2 after logout: verdict", alice.guard().verdict, "revoked");
  check("3. refused", alice.guard().refused, { revoked: 2 });
  check("3. recovered counts", alice.conn.recovered, { restored: 0, rejected: 2 });
  check("3. a fresh salt, the stash dropped, the state gone",
    [alice.saltIssued, alice.salt !== saltBefore, alice.count(), alice.todos()], [true, true, 0, []]);
  alice.close();
  await bob.connect(W2);
  check("3. bob on worker 2: untouched", [bob.guard().refused, bob.count()], [{}, 1]);
  bob.close();

  // 4. An anonymous tab's salt, revoked on worker 1.
  const anon = new Tab(null);
  await anon.connect(W1);
  await anon.event("counter", "inc");
  anon.close();
  const gone = await post(W1, "/logout", { header: anon.headerValue() });
  check("4. POST /logout without a user on worker 1", [gone.status, gone.body?.revoked], [200, "salt"]);
  await anon.connect(W2);
  check("4. the anonymous tab on worker 2", anon.guard().refused, { revoked: 1 });
  anon.close();

  // 5. Redis hangs: worker 2 fails closed (the default policy) within its timeout.
  process.kill(REDIS_PID, "SIGSTOP");
  try {
    const salt = bob.salt;
    const t0 = performance.now();
    await bob.connect(W2);
    const ms = performance.now() - t0;
    check("5. Redis paused: bob on worker 2", [bob.guard().verdict, bob.guard().refused], ["unavailable-fail-closed", { "guard-unavailable": 1 }]);
    check("5. his salt kept (no salt message), within 1 s", [bob.saltIssued, bob.salt === salt, ms < 1000], [false, true, true]);
    log(`5. the reconnect took ${ms.toFixed(0)} ms (guard timeout 100 ms)`);
    bob.close();
  } finally {
    process.kill(REDIS_PID, "SIGCONT");
  }
  let back = null;
  for (let i = 0; i < 20 && back != "checked"; i++) {
    await bob.connect(W2);
    back = bob.guard().verdict;
    bob.close();
    if (back != "checked") await sleep(200);
  }
  check("5. Redis resumed: bob restored again", [back, bob.count()], ["checked", 1]);
}

try {
  await main();
} catch (e) {
  failures++;
  log("FAIL:", e.message);
}
log(failures ? `FAIL (${failures})` : "PASS");
process.exitCode = failures ? 1 : 0;
