// Events exactly once: numbering, the queue in storage, resends after `recovered`, batches
// taken all or nothing, acknowledgements, the new-salt policy, caps.
// Run: node --test client/test/
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, FakeWebSocket, installClock, key, SALT_A, SALT_B, loadClient } from "./fakes.mjs";

const { connect, Stash } = await loadClient();

let clock;
let storage;
const last = () => FakeWebSocket.last();

function start(o = {}) {
  const calls = [];
  const rec = (name) => (...args) => calls.push([name, ...args]);
  const live = connect({
    storage,
    input: () => ({}),
    onRecovered: rec("recovered"),
    onMessage: rec("message"),
    onDropped: rec("dropped"),
    onEventDropped: rec("eventDropped"),
    ...o,
  });
  return { live, calls, of: (name) => calls.filter((c) => c[0] == name).map((c) => c.slice(1)) };
}

/** A socket that opened and recovered, with `applied` (undefined: an old server). */
function recovered(applied, salt = SALT_A) {
  const ws = last();
  ws.accept();
  ws.receive({ type: "salt", salt });
  ws.receive({ type: "recovered", restored: 0, rejected: 0, ...(applied === undefined ? {} : { applied }) });
  return ws;
}

const sentAfterHello = (ws) => ws.messages.slice(1);
const state = (n, rev, token) => ({ type: "state", key: key(n), rev, token });
const stored = () => JSON.parse(storage.getItem("state-recovery:events") || "null");

beforeEach(() => {
  FakeWebSocket.instances = [];
  globalThis.WebSocket = FakeWebSocket;
  globalThis.location = { href: "https://app.example/" };
  storage = new MemoryStorage();
  clock = installClock();
});

afterEach(() => {
  clock.restore();
  delete globalThis.WebSocket;
  delete globalThis.location;
});

describe("events: numbering and the queue", () => {
  it("numbers every object once the server announced applied, and keeps it in storage", async () => {
    const { live } = start();
    const ws = recovered(0);
    assert.equal(live.send({ type: "inc" }), true);
    assert.equal(live.send({ type: "add", value: "milk", $seq: 99 }), true);
    assert.deepEqual(sentAfterHello(ws), [
      { type: "inc", $seq: 1 },
      { type: "add", value: "milk", $seq: 2 }, // the application's own $seq is overwritten
    ]);
    assert.equal(live.pending, 2);
    await null; // written once, at the end of the turn
    assert.deepEqual(stored(), { next: 2, queue: [[1, ws.sent[1]], [2, ws.sent[2]]] });
    // A reload (a new client on the same storage) goes on counting.
    assert.deepEqual(new Stash({ storage }).events, stored());
    live.close();
  });

  it("sends arrays, strings and class instances unnumbered, and resend:false as is", () => {
    const { live } = start();
    const ws = recovered(0);
    class Ping {
      constructor() {
        this.type = "ping";
      }
    }
    live.send(["a"]);
    live.send("text");
    live.send(new Ping());
    live.send({ type: "kill" }, { resend: false });
    assert.deepEqual(sentAfterHello(ws), [["a"], "text", { type: "ping" }, { type: "kill" }]);
    assert.equal(live.pending, 0);
    live.close();
  });

  it("without applied (an old server) sends unnumbered and keeps the queue", async () => {
    const s = new Stash({ storage });
    s.absorb({ type: "salt", salt: SALT_A });
    s.enqueue({ type: "old" });
    await null;
    const { live, of } = start();
    const ws = recovered(undefined);
    live.send({ type: "inc" });
    assert.deepEqual(sentAfterHello(ws), [{ type: "inc" }], "nothing resent, nothing numbered");
    assert.equal(live.pending, 1, "kept for a server that announces applied");
    assert.deepEqual(of("eventDropped"), []);
    live.close();
  });
});

describe("events: after recovered", () => {
  it("forgets what the restored state has, resends the rest in order, before anything new", async () => {
    const s = new Stash({ storage });
    for (const v of ["a", "b", "c", "d"]) s.enqueue({ type: "log", value: v });
    await null;
    let hooks = 0;
    const { live } = start({
      onRecovered: () => {
        hooks++;
        assert.equal(live.send({ type: "log", value: "in-hook" }), true);
      },
    });
    const ws = last();
    ws.accept();
    // Sent between opening and recovered: held, so it cannot overtake a resend.
    assert.equal(live.send({ type: "log", value: "early" }), true);
    assert.equal(ws.sent.length, 1, "only the recover message so far");
    ws.receive({ type: "recovered", restored: 2, rejected: 0, applied: 2 });
    assert.deepEqual(
      sentAfterHello(ws).map((m) => [m.value, m.$seq]),
      [["c", 3], ["d", 4], ["early", 5], ["in-hook", 6]],
    );
    await null;
    assert.deepEqual(stored().queue.map((e) => e[0]), [3, 4, 5, 6]);
    assert.equal(hooks, 1);
    live.close();
  });

  it("holds messages sent before recovered once a server announced applied, even with nothing queued", () => {
    const { live } = start();
    recovered(0);
    last().drop();
    clock.run();
    const ws = last();
    ws.accept();
    assert.equal(live.send({ type: "inc" }), true);
    assert.equal(ws.sent.length, 1, "held");
    ws.receive({ type: "recovered", restored: 0, rejected: 0, applied: 0 });
    assert.deepEqual(sentAfterHello(ws), [{ type: "inc", $seq: 1 }]);
    live.close();
  });

  it("resends across a reconnect what was never acknowledged, byte for byte", () => {
    const { live } = start();
    const first = recovered(0);
    live.send({ type: "inc" });
    live.send({ type: "inc" });
    first.receive({ type: "batch", seq: 1, messages: [state(1, 1, "t1")] });
    first.drop();
    clock.run();
    const second = last();
    second.accept();
    second.receive({ type: "recovered", restored: 1, rejected: 0, applied: 1 });
    assert.deepEqual(second.sent.slice(1), [first.sent[2]]);
    live.close();
  });

  it("raises the counter to applied, so no new event reuses a number the server has", () => {
    storage.setItem("state-recovery:events", "garbage");
    const { live } = start();
    const ws = recovered(41);
    live.send({ type: "inc" });
    assert.deepEqual(sentAfterHello(ws), [{ type: "inc", $seq: 42 }]);
    live.close();
  });
});

describe("events: batches", () => {
  it("stores every entry in one write, then hands over the app messages, then acknowledges", async () => {
    const order = [];
    const spy = new MemoryStorage();
    const set = spy.setItem.bind(spy);
    spy.setItem = (k, v) => {
      order.push(k.replace("state-recovery:", ""));
      set(k, v);
    };
    storage = spy;
    const { live, of } = start({ onMessage: (m) => order.push(m.type) });
    const ws = recovered(0);
    live.send({ type: "inc" });
    order.length = 0;
    ws.receive({
      type: "batch",
      seq: 1,
      messages: [state(9, 1, "applied1"), state(1, 3, "count3"), { type: "render", id: "c" }, "junk", null],
    });
    await null;
    // The acknowledgement is written after the entries (a crash in between resends an event
    // the server then drops); the page renders after its state is stored.
    assert.deepEqual(order, ["entries", "render", "events"]);
    assert.deepEqual(live.stash.entries(), [[key(9), 1, "applied1"], [key(1), 3, "count3"]]);
    assert.equal(live.pending, 0);
    assert.deepEqual(of("message"), [], "rendered through the spy only");
    live.close();
  });

  it("refuses a malformed batch whole: no entry, no acknowledgement", (t) => {
    t.mock.method(console, "warn", () => {});
    const { live, of } = start();
    const ws = recovered(0);
    live.send({ type: "inc" });
    for (const bad of [
      { type: "batch", seq: 1, messages: [state(1, 1, "ok"), state(2, -1, "bad rev")] },
      { type: "batch", seq: 1, messages: [state(1, 1, "ok"), { type: "drop", key: "nope" }] },
      { type: "batch", seq: "1", messages: [] },
      { type: "batch", seq: 0, messages: [] },
      { type: "batch", seq: 1, messages: {} },
    ]) {
      ws.receive(bad);
    }
    assert.deepEqual(live.stash.entries(), []);
    assert.equal(live.pending, 1);
    assert.deepEqual(of("message"), []);
    live.close();
  });

  it("does not acknowledge a batch storage refused (the event is resent, applied to what is stored)", (t) => {
    t.mock.method(console, "warn", () => {});
    const { live, of } = start();
    const ws = recovered(0);
    live.send({ type: "inc" });
    storage.failWrites((k) => k.endsWith("entries"));
    ws.receive({ type: "batch", seq: 1, messages: [state(1, 1, "t1"), { type: "render" }] });
    assert.equal(live.pending, 1, "kept");
    assert.deepEqual(of("dropped"), [[key(1), "storage-failed"]]);
    assert.deepEqual(of("message"), [[{ type: "render" }]], "the page still renders");
    storage.failWrites(null);
    ws.receive({ type: "batch", seq: 1, messages: [state(1, 1, "t1")] });
    assert.equal(live.pending, 0);
    live.close();
  });

  it("an acknowledgement removes every event up to its seq; drops inside a batch apply", async () => {
    new Stash({ storage }).absorb({ type: "salt", salt: SALT_A });
    new Stash({ storage }).absorb(state(5, 1, "old"));
    const { live, of } = start();
    const ws = recovered(0);
    for (let i = 0; i < 4; i++) live.send({ type: "inc" });
    ws.receive({ type: "batch", seq: 3, messages: [{ type: "drop", key: key(5) }] });
    await null;
    assert.deepEqual(stored().queue.map((e) => e[0]), [4]);
    assert.deepEqual(live.stash.entries(), []);
    assert.deepEqual(of("dropped"), [[key(5), "server-drop"]]);
    ws.receive({ type: "batch", seq: 2, messages: [] }); // a late duplicate's: nothing changes
    await null;
    assert.deepEqual(stored().queue.map((e) => e[0]), [4]);
    live.close();
  });

  it("keeps the highest revision per key within and across batches", () => {
    const { live } = start();
    const ws = recovered(0);
    live.send({ type: "inc" });
    ws.receive({ type: "batch", seq: 1, messages: [state(1, 5, "five"), state(1, 4, "four")] });
    ws.receive({ type: "batch", seq: 1, messages: [state(1, 3, "three")] });
    assert.deepEqual(live.stash.entries(), [[key(1), 5, "five"]]);
    live.close();
  });
});

describe("events: a new salt and the caps", () => {
  it("a new salt drops the queue (reported) and the counter goes on", () => {
    const { live, of } = start();
    const first = recovered(0);
    live.send({ type: "inc", n: 1 });
    live.send({ type: "inc", n: 2 });
    first.drop();
    clock.run();
    const second = recovered(0, SALT_B);
    assert.deepEqual(of("eventDropped"), [
      [{ type: "inc", n: 1, $seq: 1 }, "salt-changed"],
      [{ type: "inc", n: 2, $seq: 2 }, "salt-changed"],
    ]);
    assert.deepEqual(sentAfterHello(second), [], "nothing resent");
    live.send({ type: "inc" });
    assert.deepEqual(sentAfterHello(second), [{ type: "inc", $seq: 3 }]);
    live.close();
  });

  it("refuses an event past maxEvents or maxEventBytes, and reports it", () => {
    const { live, of } = start({ maxEvents: 2, maxEventBytes: 60 });
    const ws = recovered(0);
    assert.equal(live.send({ type: "a" }), true);
    assert.equal(live.send({ type: "b", v: "x".repeat(40) }), false, "over the bytes");
    assert.equal(live.send({ type: "c" }), true);
    assert.equal(live.send({ type: "d" }), false, "over the count");
    assert.deepEqual(of("eventDropped").map(([m, r]) => [m.type, r]), [
      ["b", "over-event-limit"],
      ["d", "over-event-limit"],
    ]);
    assert.deepEqual(sentAfterHello(ws).map((m) => m.type), ["a", "c"]);
    ws.receive({ type: "batch", seq: 2, messages: [] });
    assert.equal(live.send({ type: "e" }), true, "room again once acknowledged");
    // Held messages count too.
    ws.drop();
    clock.run();
    last().accept();
    assert.equal(live.send({ type: "f" }), true);
    assert.equal(live.send({ type: "g" }), false);
    live.close();
  });

  it("a burst of sends writes the queue once, and fits the default caps", async () => {
    let writes = 0;
    const set = storage.setItem.bind(storage);
    storage.setItem = (k, v) => {
      if (k.endsWith("events")) writes++;
      set(k, v);
    };
    const { live } = start();
    const ws = recovered(0);
    for (let i = 0; i < 1000; i++) assert.equal(live.send({ type: "inc", i }), true);
    await null;
    assert.equal(writes, 1);
    assert.equal(stored().queue.length, 1000);
    ws.receive({ type: "batch", seq: 1000, messages: [] });
    await null;
    assert.equal(writes, 2);
    assert.equal(live.pending, 0);
    live.close();
  });

  it("a queue storage cannot save still works for the page's lifetime", async (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    storage.failWrites((k) => k.endsWith("events"));
    const { live } = start();
    const first = recovered(0);
    assert.equal(live.send({ type: "inc" }), true);
    await null;
    assert.ok(warn.mock.callCount() >= 1);
    first.drop();
    clock.run();
    const second = recovered(0);
    assert.deepEqual(sentAfterHello(second), [{ type: "inc", $seq: 1 }], "resent from memory");
    live.close();
  });

  it("reads back only a well-formed queue", () => {
    for (const [raw, want] of [
      ['{"next":3,"queue":[[1,"a"],[3,"c"]]}', { next: 3, queue: [[1, "a"], [3, "c"]] }],
      ['{"next":1,"queue":[[2,"b"]]}', { next: 2, queue: [[2, "b"]] }],
      ['{"next":5,"queue":[[2,"b"],[1,"a"],["x","y"],[3,4]]}', { next: 5, queue: [[2, "b"]] }],
      ['{"next":-1,"queue":"no"}', { next: 0, queue: [] }],
      ["[1,2]", { next: 0, queue: [] }],
      ["{", { next: 0, queue: [] }],
    ]) {
      storage.setItem("state-recovery:events", raw);
      assert.deepEqual(new Stash({ storage }).events, want, raw);
    }
  });
});
