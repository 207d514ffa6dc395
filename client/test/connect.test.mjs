// connect(): the recover handshake, server messages, reconnect with backoff.
// Run: node --test client/test/
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStorage, FakeWebSocket, installClock, installWindowEvents, key, SALT_A, SALT_B,
  loadClient,
} from "./fakes.mjs";

const { connect, Stash, DEFAULT_LIMITS, RECONNECT, drainSpread } = await loadClient();

let clock;
let storage;
const sockets = () => FakeWebSocket.instances;
const last = () => FakeWebSocket.last();

/** connect() over a fresh fake storage, recording every hook call in `calls`. */
function start(o = {}) {
  const calls = [];
  const rec = (name) => (...args) => calls.push([name, ...args]);
  const live = connect({
    storage,
    input: () => ({}),
    onOpen: rec("open"),
    onReconnecting: rec("reconnecting"),
    onRecovered: rec("recovered"),
    onMessage: rec("message"),
    onClose: rec("close"),
    onDropped: rec("dropped"),
    ...o,
  });
  return { live, calls, of: (name) => calls.filter((c) => c[0] == name).map((c) => c.slice(1)) };
}

beforeEach(() => {
  FakeWebSocket.instances = [];
  FakeWebSocket.throwNext = null;
  globalThis.WebSocket = FakeWebSocket;
  globalThis.location = { href: "https://app.example/page/x?q=1" };
  storage = new MemoryStorage();
  clock = installClock();
});

afterEach(() => {
  clock.restore();
  delete globalThis.WebSocket;
  delete globalThis.location;
});

describe("connect: handshake", () => {
  it("derives the WebSocket URL from the page", () => {
    const { live } = start();
    assert.equal(last().url, "wss://app.example/ws");
    live.close();
    start({ url: "live/socket" }).live.close();
    assert.equal(last().url, "wss://app.example/page/live/socket");
    globalThis.location = { href: "http://localhost:3000/" };
    start().live.close();
    assert.equal(last().url, "ws://localhost:3000/ws");
    start({ url: "ws://other.example:9/x" }).live.close();
    assert.equal(last().url, "ws://other.example:9/x");
  });

  it("sends the recover message first, before onOpen runs", () => {
    new Stash({ storage }).absorb({ type: "salt", salt: SALT_A });
    new Stash({ storage }).absorb({ type: "state", key: key(1), rev: 2, token: "tok1" });
    let sentAtOpen = -1;
    const { live, of } = start({
      input: () => ({ f: { name: "Zoë" } }),
      onOpen: () => {
        sentAtOpen = last().sent.length;
        assert.equal(live.send({ type: "hello" }), true);
      },
    });
    const ws = last();
    assert.deepEqual(ws.sent, [], "nothing before the socket opens");
    assert.equal(live.connected, false);
    assert.equal(live.send({ type: "early" }), false, "dropped while connecting");
    ws.accept();
    assert.equal(sentAtOpen, 1);
    assert.equal(live.connected, true);
    assert.equal(
      ws.sent[0],
      `{"type":"recover","salt":"${SALT_A}","entries":["tok1"],"input":{"f":{"name":"Zoë"}}}`,
    );
    assert.deepEqual(ws.messages[1], { type: "hello" });
    assert.equal(ws.sent.length, 2);
    assert.deepEqual(of("reconnecting"), []);
    live.close();
  });

  it("sends an empty input when the input hook returns nothing or throws", (t) => {
    const err = t.mock.method(console, "error", () => {});
    let { live } = start({ input: () => undefined });
    last().accept();
    assert.deepEqual(last().messages[0], { type: "recover", salt: null, entries: [], input: {} });
    live.close();
    ({ live } = start({ input: () => { throw new Error("boom"); } }));
    last().accept();
    assert.deepEqual(last().messages[0], { type: "recover", salt: null, entries: [], input: {} });
    assert.equal(err.mock.callCount(), 1, "the hook failure is logged");
    live.close();
  });

  it("defaults the input to formInput() (empty without a document)", () => {
    const { live } = start({ input: undefined });
    last().accept();
    assert.deepEqual(last().messages[0].input, {});
    live.close();
  });
});

describe("connect: server messages", () => {
  it("keeps salt and state in the stash, hands the rest to the application", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "salt", salt: SALT_A });
    ws.receive({ type: "state", key: key(1), rev: 1, token: "t1" });
    ws.receive({ type: "recovered", restored: 0, rejected: 0 });
    ws.receive({ type: "chat", text: "hi", salt: "x" });
    ws.receive({ type: "state", key: key(1), rev: 2, token: "t2" });
    assert.equal(live.stash.salt, SALT_A);
    assert.deepEqual(live.stash.entries(), [[key(1), 2, "t2"]]);
    assert.equal(storage.getItem("state-recovery:salt"), SALT_A);
    assert.deepEqual(of("message"), [[{ type: "chat", text: "hi", salt: "x" }]]);
    assert.deepEqual(of("recovered"), [[{ restored: 0, rejected: 0 }]]);
    live.close();
  });

  it("reports recovered counts, sanitised", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "recovered", restored: 3, rejected: 1 });
    ws.receive({ type: "recovered", restored: -1, rejected: "2" });
    ws.receive({ type: "recovered" });
    ws.receive({ type: "recovered", restored: 1.5, rejected: 1e300 });
    assert.deepEqual(of("recovered"), [
      [{ restored: 3, rejected: 1 }],
      [{ restored: 0, rejected: 0 }],
      [{ restored: 0, rejected: 0 }],
      [{ restored: 0, rejected: 0 }],
    ]);
    assert.deepEqual(of("message"), []);
    live.close();
  });

  it("ignores malformed messages without throwing or corrupting the stash", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "salt", salt: SALT_A });
    ws.receive({ type: "state", key: key(1), rev: 5, token: "good" });
    const before = storage.snapshot();
    const junk = [
      "not json", "", "{", "null", "[]", "[1,2]", '["state"]', '"salt"', "42", "true", "{}",
      '{"type":5}', '{"type":null}', '{"type":["salt"]}', '{"type":{"a":1}}',
      new ArrayBuffer(8),
      { type: "state", key: "zz" + key(1).slice(2), rev: 9, token: "x" },
      { type: "state", key: key(1), rev: -1, token: "x" },
      { type: "state", key: key(1), rev: 1e300, token: "x" },
      '{"type":"state","key":"' + key(1) + '","rev":18446744073709551615,"token":"x"}',
      { type: "state", key: key(1), rev: "9", token: "x" },
      { type: "state", key: key(1), rev: 9, token: "bad token" },
      { type: "state", key: key(1), rev: 9, token: null },
      { type: "state", key: key(1), rev: 9 },
      { type: "state" },
      { type: "salt", salt: "short" },
      { type: "salt", salt: SALT_B + "x" },
      { type: "salt", salt: 7 },
      { type: "salt" },
      { type: "state", key: key(1), rev: 4, token: "older" },
    ];
    for (const m of junk) assert.doesNotThrow(() => ws.receive(m), String(m));
    assert.deepEqual(storage.snapshot(), before);
    assert.deepEqual(of("message"), [], "no malformed or protocol message reaches the app");
    assert.deepEqual(of("recovered"), []);
    assert.equal(live.connected, true);
    ws.receive({ type: "app", n: 1 });
    assert.deepEqual(of("message"), [[{ type: "app", n: 1 }]]);
    live.close();
  });

  it("survives a throwing application handler", (t) => {
    const err = t.mock.method(console, "error", () => {});
    const seen = [];
    const { live } = start({
      onMessage: (m) => {
        seen.push(m.n);
        throw new Error("app bug");
      },
    });
    const ws = last();
    ws.accept();
    assert.doesNotThrow(() => ws.receive({ type: "app", n: 1 }));
    ws.receive({ type: "state", key: key(1), rev: 1, token: "t" });
    ws.receive({ type: "app", n: 2 });
    assert.deepEqual(seen, [1, 2]);
    assert.equal(err.mock.callCount(), 2);
    assert.deepEqual(live.stash.entries(), [[key(1), 1, "t"]]);
    live.close();
  });
});

describe("connect: reconnect", () => {
  it("a failed handshake that fires only `error` (Node's WebSocket) still reconnects, once", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100 });
    const s = last();
    s.readyState = FakeWebSocket.CLOSED;
    s.onerror?.({ type: "error" });
    assert.deepEqual(clock.delays, [RECONNECT.firstJitter]);
    // A browser also fires `close` afterwards: it must not schedule a second attempt.
    s.drop();
    assert.deepEqual(clock.delays, [RECONNECT.firstJitter]);
    assert.equal(of("close").length, 1);
    // An error on an open socket is followed by its close: nothing happens on the error.
    clock.run();
    last().accept();
    last().onerror?.({ type: "error" });
    assert.deepEqual(clock.delays, []);
    live.close();
  });

  it("retries at once, then backs off exponentially up to maxDelay (jitter at its top)", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100, maxDelay: 1000 });
    last().accept();
    last().drop();
    const expected = [25, 100, 200, 400, 800, 1000, 1000, 1000];
    for (let i = 0; i < expected.length; i++) {
      assert.deepEqual(clock.delays, [expected[i]], `attempt ${i + 1}`);
      const n = sockets().length;
      clock.run();
      assert.equal(sockets().length, n + 1, "the timer opens a new socket");
      if (i < expected.length - 1) last().drop(); // refused again
    }
    assert.deepEqual(of("reconnecting"), expected.map((d, i) => [i + 1, d]));
    assert.equal(of("close").length, expected.length);
    live.close();
  });

  it("uses the documented defaults: 25 ms first, 250 ms base, 15 s max", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: undefined, maxDelay: undefined });
    for (let i = 0; i < 9; i++) {
      last().drop();
      clock.run();
    }
    assert.deepEqual(
      of("reconnecting").map((c) => c[1]),
      [25, 250, 500, 1000, 2000, 4000, 8000, 15000, 15000],
    );
    live.close();
  });

  it("takes its defaults from the exported, frozen RECONNECT table", (t) => {
    assert.ok(Object.isFrozen(RECONNECT));
    assert.deepEqual({ ...RECONNECT }, {
      firstJitter: 25, baseDelay: 250, maxDelay: 15000, drainJitter: 50, maxDoublings: 30,
      drainCloseCode: 1012,
    });
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: undefined, maxDelay: undefined });
    last().drop(RECONNECT.drainCloseCode);
    clock.run();
    last().drop();
    clock.run();
    last().drop();
    assert.deepEqual(of("reconnecting"), [
      [1, RECONNECT.drainJitter], [1, RECONNECT.firstJitter], [2, RECONNECT.baseDelay],
    ]);
    live.close();
  });

  it("jitters the whole range: delay = random × cap", (t) => {
    const rolls = [0.5, 0, 0.25, 0.75];
    t.mock.method(Math, "random", () => rolls.shift());
    const { live, of } = start({ baseDelay: 1000, maxDelay: 4000 });
    for (let i = 0; i < 4; i++) {
      last().drop();
      clock.run();
    }
    // caps 25 (first), 1000, 2000, 4000
    assert.deepEqual(of("reconnecting"), [[1, 13], [2, 0], [3, 500], [4, 3000]]);
    live.close();
  });

  it("keeps every delay within [0, first] then [0, min(max, base·2^(n-2))], even after many attempts", () => {
    const { live, of } = start({ baseDelay: 250, maxDelay: 15000 });
    for (let i = 0; i < 60; i++) {
      last().drop();
      clock.run();
    }
    const got = of("reconnecting");
    assert.equal(got.length, 60);
    for (const [n, d] of got) {
      const cap = n == 1 ? 25 : Math.min(15000, 250 * 2 ** (n - 2));
      assert.ok(Number.isInteger(d) && d >= 0 && d <= cap, `attempt ${n}: ${d} ∉ [0, ${cap}]`);
    }
    live.close();
  });

  it("sends the recover message first on every reconnect, with what the stash learnt", (t) => {
    t.mock.method(Math, "random", () => 0);
    let form = { f: { draft: "v1" } };
    const { live, of } = start({ input: () => form });
    const first = last();
    first.accept();
    assert.deepEqual(first.messages[0], { type: "recover", salt: null, entries: [], input: form });
    first.receive({ type: "salt", salt: SALT_A });
    first.receive({ type: "state", key: key(1), rev: 1, token: "a1" });
    first.receive({ type: "state", key: key(2), rev: 1, token: "b1" });
    first.receive({ type: "recovered", restored: 0, rejected: 0 });
    first.receive({ type: "state", key: key(1), rev: 2, token: "a2" });
    assert.equal(live.send({ type: "event" }), true);
    first.drop();

    assert.equal(live.connected, false);
    assert.equal(live.send({ type: "lost" }), false, "dropped while disconnected");
    form = { f: { draft: "v2 ✓" } };
    clock.run();
    const second = last();
    assert.notEqual(second, first);
    assert.deepEqual(second.sent, []);
    second.accept();
    assert.equal(live.send({ type: "after" }), true);
    assert.deepEqual(second.messages, [
      { type: "recover", salt: SALT_A, entries: ["b1", "a2"], input: { f: { draft: "v2 ✓" } } },
      { type: "after" },
    ]);
    second.receive({ type: "recovered", restored: 2, rejected: 0 });
    assert.deepEqual(of("recovered").at(-1), [{ restored: 2, rejected: 0 }]);
    assert.deepEqual(of("open").length, 2);
    live.close();
  });

  it("a recovered message resets the backoff", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100, maxDelay: 10000 });
    for (let i = 0; i < 3; i++) {
      last().drop();
      clock.run();
    }
    last().accept();
    last().drop(); // opened but never recovered: the backoff goes on
    clock.run();
    last().accept();
    last().receive({ type: "recovered", restored: 1, rejected: 0 });
    last().drop();
    assert.deepEqual(of("reconnecting"), [[1, 25], [2, 100], [3, 200], [4, 400], [1, 25]]);
    live.close();
  });

  it("retries when the WebSocket constructor throws", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const err = t.mock.method(console, "error", () => {});
    FakeWebSocket.throwNext = new SyntaxError("bad url");
    const { live, of } = start();
    assert.equal(sockets().length, 0);
    assert.equal(err.mock.callCount(), 1);
    assert.deepEqual(of("reconnecting"), [[1, 25]]);
    clock.run();
    assert.equal(sockets().length, 1);
    live.close();
  });

  it("close() stops for good", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    live.close();
    assert.equal(ws.closeCalls, 1);
    assert.equal(live.connected, false);
    assert.equal(live.send({ type: "x" }), false);
    ws.receive({ type: "app" }); // late events from the closed socket
    ws.drop(1000);
    assert.deepEqual(of("message"), []);
    assert.deepEqual(of("reconnecting"), []);
    assert.equal(clock.pending.size, 0);
    live.reconnect();
    assert.equal(sockets().length, 1, "reconnect() after close() does nothing");
  });

  it("close() cancels a pending retry", () => {
    const { live } = start();
    last().drop();
    assert.equal(clock.pending.size, 1);
    live.close();
    assert.equal(clock.pending.size, 0);
    assert.equal(sockets().length, 1);
  });

  it("reconnect() replaces the socket at once and ignores the old one", () => {
    const { live, of } = start();
    const old = last();
    old.accept();
    live.reconnect();
    const fresh = last();
    assert.notEqual(fresh, old);
    assert.equal(old.closeCalls, 1);
    old.receive({ type: "app", from: "old" });
    old.receive({ type: "state", key: key(1), rev: 1, token: "stale" });
    old.drop();
    assert.deepEqual(of("message"), []);
    assert.deepEqual(of("close"), [], "the old socket's close is not reported");
    assert.deepEqual(live.stash.entries(), []);
    assert.equal(clock.pending.size, 0, "no retry scheduled");
    fresh.accept();
    assert.equal(fresh.messages[0].type, "recover");
    live.close();
  });

  it("reconnect() during the backoff skips the wait", () => {
    const { live } = start();
    last().drop();
    assert.equal(clock.pending.size, 1);
    live.reconnect();
    assert.equal(clock.pending.size, 0);
    assert.equal(sockets().length, 2);
    live.close();
  });

  it("going back online skips the rest of the backoff", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const win = installWindowEvents();
    t.after(() => win.restore());
    const { live, of } = start();
    assert.equal(win.count("online"), 1);
    win.dispatch("online"); // connected or connecting: nothing to do
    assert.equal(sockets().length, 1);
    last().drop();
    assert.equal(clock.pending.size, 1);
    win.dispatch("online");
    assert.equal(clock.pending.size, 0);
    assert.equal(sockets().length, 2);
    last().accept();
    assert.equal(last().messages[0].type, "recover");
    assert.equal(of("reconnecting").length, 1);
    live.close();
    assert.equal(win.count("online"), 0, "close() removes the listener");
  });
});

const bytes = (text) => Buffer.byteLength(text, "utf8");
const tok = (i) => ("t" + i).padEnd(10, "x"); // 12 bytes in JSON, with its quotes
const emptyRecover = (salt) => bytes(JSON.stringify({ type: "recover", salt, entries: [], input: {} }));

describe("connect: limits, drops and onDropped", () => {
  it("obeys the limits of the recovered message on every later recover message", (t) => {
    t.mock.method(Math, "random", () => 0);
    const big = { f: { note: "é".repeat(300) } };
    const cap = emptyRecover(SALT_A) + 3 * 12 + 2; // room for three tokens, and no input
    const l = { maxTokenBytes: 64, maxBundleBytes: cap, maxEntries: 4 };
    const { live, of } = start({ input: () => big });
    const first = last();
    first.accept();
    first.receive({ type: "salt", salt: SALT_A });
    for (let i = 1; i <= 5; i++) first.receive({ type: "state", key: key(i), rev: 1, token: tok(i) });
    assert.deepEqual(of("dropped"), [], "the default limits hold five small entries");
    first.receive({ type: "recovered", restored: 0, rejected: 0, limits: l });
    assert.deepEqual(of("recovered"), [[{ restored: 0, rejected: 0 }]]);
    assert.deepEqual(of("message"), [], "recovered (with its limits) is not an application message");
    assert.deepEqual(storage.getItem("state-recovery:limits"), JSON.stringify(l));
    assert.deepEqual(of("dropped"), [[key(1), "over-byte-limit"], [key(2), "over-byte-limit"]]);
    first.receive({ type: "state", key: key(6), rev: 1, token: "y".repeat(65) });
    assert.deepEqual(of("dropped").at(-1), [key(6), "token-too-large"]);
    first.drop();

    clock.run();
    last().accept();
    const sent = last().sent[0];
    assert.ok(bytes(sent) <= cap, `${bytes(sent)} > ${cap}`);
    assert.deepEqual(JSON.parse(sent), {
      type: "recover", salt: SALT_A, entries: [tok(3), tok(4), tok(5)], input: {},
    });
    assert.equal(of("dropped").length, 3, "each entry reported once");
    live.close();

    // A reload over the same storage keeps obeying them before any recovered message.
    const again = start({ input: () => big });
    last().accept();
    assert.ok(bytes(last().sent[0]) <= cap);
    assert.deepEqual(again.live.stash.limits, l);
    assert.deepEqual(again.of("dropped"), []);
    again.live.close();
  });

  it("trims the recover message to an announced maxEntries, input kept when it fits", (t) => {
    t.mock.method(Math, "random", () => 0);
    const input = { f: { a: "1" } };
    const { live, of } = start({ input: () => input });
    last().accept();
    for (let i = 1; i <= 4; i++) last().receive({ type: "state", key: key(i), rev: 1, token: tok(i) });
    last().receive({ type: "recovered", restored: 0, rejected: 0, limits: { ...DEFAULT_LIMITS, maxEntries: 2 } });
    last().drop();
    clock.run();
    last().accept();
    assert.deepEqual(last().messages[0], { type: "recover", salt: null, entries: [tok(3), tok(4)], input });
    assert.deepEqual(of("dropped"), [[key(1), "over-entry-limit"], [key(2), "over-entry-limit"]]);
    live.close();
  });

  it("ignores garbage limits in the recovered message", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "state", key: key(1), rev: 1, token: tok(1) });
    const before = storage.snapshot();
    for (const limits of [
      null, "big", 7, [], {}, { maxTokenBytes: 10 },
      { maxTokenBytes: -1, maxBundleBytes: 10, maxEntries: 1 },
      { maxTokenBytes: "10", maxBundleBytes: 10, maxEntries: 1 },
      { maxTokenBytes: 10, maxBundleBytes: 1e300, maxEntries: 1 },
      { maxTokenBytes: 10, maxBundleBytes: 10, maxEntries: 0 },
    ]) {
      ws.receive({ type: "recovered", restored: 1, rejected: 0, limits });
    }
    ws.receive('{"type":"recovered","restored":1,"rejected":0,"limits":{"maxTokenBytes":1e999,"maxBundleBytes":9,"maxEntries":9}}');
    assert.deepEqual(storage.snapshot(), before);
    assert.equal(live.stash.limits, DEFAULT_LIMITS);
    assert.equal(of("recovered").length, 11, "still reported to onRecovered");
    assert.deepEqual(of("dropped"), []);
    live.close();
  });

  it("a drop message removes exactly that key and never reaches onMessage", (t) => {
    t.mock.method(Math, "random", () => 0);
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "salt", salt: SALT_A });
    for (let i = 1; i <= 3; i++) ws.receive({ type: "state", key: key(i), rev: 4, token: tok(i) });
    ws.receive({ type: "drop", key: key(2) });
    assert.deepEqual(live.stash.entries(), [[key(1), 4, tok(1)], [key(3), 4, tok(3)]]);
    assert.deepEqual(of("dropped"), [[key(2), "server-drop"]]);
    assert.deepEqual(of("message"), []);
    ws.drop();
    clock.run();
    last().accept();
    assert.deepEqual(last().messages[0].entries, [tok(1), tok(3)], "the dead token is not resent");
    live.close();
  });

  it("ignores malformed drop messages, which never reach onMessage either", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    for (let i = 1; i <= 2; i++) ws.receive({ type: "state", key: key(i), rev: 1, token: tok(i) });
    const before = storage.snapshot();
    for (const m of [
      { type: "drop" }, { type: "drop", key: null }, { type: "drop", key: 2 },
      { type: "drop", key: key(1).toUpperCase() + "X" }, { type: "drop", key: key(1).slice(2) },
      { type: "drop", key: [key(1)] }, { type: "drop", key: { k: key(1) } }, { type: "drop", key: key(7) },
      { type: "drop", keys: [key(1)] }, '{"type":"drop","key":"' + key(1) + ' "}',
    ]) {
      assert.doesNotThrow(() => ws.receive(m), JSON.stringify(m));
    }
    assert.deepEqual(storage.snapshot(), before);
    assert.deepEqual(of("dropped"), []);
    assert.deepEqual(of("message"), []);
    live.close();
  });

  it("a salt change over the socket reports each wiped entry", () => {
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "salt", salt: SALT_A });
    ws.receive({ type: "state", key: key(1), rev: 1, token: tok(1) });
    ws.receive({ type: "state", key: key(2), rev: 1, token: tok(2) });
    ws.receive({ type: "salt", salt: SALT_B });
    assert.deepEqual(of("dropped"), [[key(1), "salt-changed"], [key(2), "salt-changed"]]);
    assert.equal(live.stash.salt, SALT_B);
    assert.deepEqual(live.stash.entries(), []);
    live.close();
  });

  it("reports entries storage refused to save", (t) => {
    t.mock.method(console, "warn", () => {});
    const { live, of } = start();
    const ws = last();
    ws.accept();
    ws.receive({ type: "state", key: key(1), rev: 1, token: tok(1) });
    storage.failWrites((k) => k.endsWith(":entries"));
    ws.receive({ type: "state", key: key(2), rev: 1, token: tok(2) });
    assert.deepEqual(of("dropped"), [[key(2), "storage-failed"]]);
    assert.deepEqual(live.stash.entries(), [[key(1), 1, tok(1)]]);
    live.close();
  });
});

describe("connect: drain (close 1012)", () => {
  it("reconnects within 0–50 ms and resets the backoff", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100, maxDelay: 10000 });
    for (let i = 0; i < 3; i++) {
      last().drop();
      clock.run();
    }
    last().accept();
    last().receive({ type: "state", key: key(1), rev: 1, token: tok(1) });
    const before = clock.now;
    last().drop(1012);
    assert.deepEqual(of("close").at(-1)[0].code, 1012);
    assert.deepEqual(clock.delays, [50]);
    assert.equal(of("reconnecting").length, 4);
    assert.deepEqual(of("reconnecting").at(-1), [1, 50]);
    clock.run();
    assert.ok(clock.now - before <= 50);
    assert.equal(sockets().length, 5, "a new socket");
    last().accept();
    assert.deepEqual(last().messages[0].entries, [tok(1)], "recovering as usual");
    last().drop(); // a failure right after the drain: attempt 1 again, then the base delay
    clock.run();
    last().drop();
    assert.deepEqual(of("reconnecting"), [[1, 25], [2, 100], [3, 200], [1, 50], [1, 25], [2, 100]]);
    live.close();
  });

  it("spreads drain reconnects over the whole 0–50 ms", (t) => {
    const rolls = [0, 0.5, 0.999999];
    t.mock.method(Math, "random", () => rolls.shift());
    const { live, of } = start();
    for (let i = 0; i < 3; i++) {
      last().accept();
      last().drop(1012);
      clock.run();
    }
    assert.deepEqual(of("reconnecting"), [[1, 0], [1, 25], [1, 50]]);
    live.close();
  });

  it("keeps every drain delay an integer within [0, 50] (real Math.random)", () => {
    const { live, of } = start();
    for (let i = 0; i < 200; i++) {
      last().accept();
      last().drop(1012);
      clock.run();
    }
    const got = of("reconnecting");
    assert.equal(got.length, 200);
    for (const [n, d] of got) assert.ok(n == 1 && Number.isInteger(d) && d >= 0 && d <= 50, `${n}, ${d}`);
    live.close();
  });

  it("drainJitter sets the window; invalid values fall back to 50", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    for (const [jitter, want] of [
      [0, 0], [10, 10], [200, 200], [undefined, 50], [null, 50], [-1, 50], [NaN, 50], [Infinity, 50], ["20", 50],
    ]) {
      const { live, of } = start({ drainJitter: jitter });
      last().drop(1012);
      assert.deepEqual(of("reconnecting"), [[1, want]], String(jitter));
      live.close();
    }
  });

  it("firstJitter sets the first retry's window; invalid values fall back to 25", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    for (const [jitter, want] of [
      [0, 0], [10, 10], [250, 250], [undefined, 25], [null, 25], [-1, 25], [NaN, 25], [Infinity, 25], ["20", 25],
    ]) {
      const { live, of } = start({ firstJitter: jitter, baseDelay: 100 });
      last().drop();
      clock.run();
      last().drop();
      assert.deepEqual(of("reconnecting"), [[1, want], [2, 100]], String(jitter));
      live.close();
    }
  });

  it("other close codes keep the exponential backoff", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100, maxDelay: 10000 });
    for (const code of [1006, 1000, 1001, 1011, 1013, 4012, 1006]) {
      last().accept();
      last().drop(code);
      clock.run();
    }
    assert.deepEqual(of("reconnecting").map((c) => c[1]), [25, 100, 200, 400, 800, 1600, 3200]);
    live.close();
  });

  it("the drain's reason shortens the window, never lengthens it", (t) => {
    t.mock.method(Math, "random", () => 0.999999);
    const { live, of } = start({ baseDelay: 100 });
    for (const reason of ["drain 1", "drain 0", "drain 30", "drain 500", "drain", "", "drain x",
      "drain 123456", " drain 1", "drain 1 ", "going away"]) {
      last().accept();
      last().drop(1012, reason);
      clock.run();
    }
    assert.deepEqual(of("reconnecting").map((c) => c[1]), [1, 0, 30, 50, 50, 50, 50, 50, 50, 50, 50]);
    assert.ok(of("reconnecting").every((c) => c[0] == 1), "every one an attempt 1 (no backoff)");
    last().accept();
    last().drop(1006, "drain 1"); // the reason counts only with 1012
    assert.deepEqual(of("reconnecting").at(-1), [1, 25]);
    live.close();
  });

  it("drainSpread reads `drain <ms>` and nothing else", () => {
    for (const [reason, want] of [["drain 7", 7], ["drain 00050", 50], ["drain", true], [undefined, true],
      [7, true], ["drain -1", true], ["drain 1.5", true], ["DRAIN 7", true]]) {
      assert.equal(drainSpread(reason), want, String(reason));
    }
  });

  it("close() during the drain wait cancels the reconnect", () => {
    const { live } = start();
    last().accept();
    last().drop(1012);
    assert.equal(clock.pending.size, 1);
    live.close();
    assert.equal(clock.pending.size, 0);
    assert.equal(sockets().length, 1);
  });
});

describe("connect: another protocol on the same socket", () => {
  it("hands binary frames to onBinary untouched and sends text as it is", () => {
    const got = [];
    const { live, of } = start({ binaryType: "arraybuffer", onBinary: (d) => got.push(d) });
    const ws = last();
    assert.equal(ws.binaryType, "arraybuffer");
    assert.equal(live.sendText("__ping__"), false, "not while connecting");
    ws.accept();
    ws.receive({ type: "salt", salt: SALT_A });
    const frame = new Uint8Array([1, 2, 3]).buffer;
    ws.receive(frame);
    assert.deepEqual(got, [frame]);
    assert.deepEqual(of("message"), [], "a binary frame is not an application message");
    assert.equal(live.stash.salt, SALT_A, "the protocol's messages still go to the stash");
    assert.equal(live.sendText("__ping__"), true);
    assert.equal(live.sendText('{"method":"user_event"}'), true);
    assert.deepEqual(ws.sent.slice(1), ["__ping__", '{"method":"user_event"}'], "sent as they are");
    live.close();
  });

  it("ignores binary frames without onBinary, and a throwing onBinary breaks nothing", (t) => {
    t.mock.method(console, "error", () => {});
    let { live, of } = start();
    last().accept();
    last().receive(new Uint8Array([0]).buffer);
    last().receive({ type: "hello" });
    assert.deepEqual(of("message"), [[{ type: "hello" }]]);
    live.close();
    ({ live, of } = start({ onBinary: () => { throw new Error("boom"); } }));
    last().accept();
    last().receive(new Uint8Array([0]).buffer);
    last().receive({ type: "hello" });
    assert.deepEqual(of("message"), [[{ type: "hello" }]]);
    live.close();
  });
});
