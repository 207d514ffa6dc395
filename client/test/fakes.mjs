// Minimal browser fakes for the state-recovery client tests (Node 20, no npm packages).
// Not a test file itself: node --test runs it too (everything under test/ matches), and it
// simply declares no tests.

/** A Map-backed Web Storage. `failWrites(pred)` makes setItem throw (quota, privacy mode). */
export class MemoryStorage {
  constructor(init = {}) {
    this.map = new Map(Object.entries(init));
    this.fail = null;
  }
  get length() {
    return this.map.size;
  }
  key(i) {
    return [...this.map.keys()][i] ?? null;
  }
  getItem(k) {
    return this.map.has(String(k)) ? this.map.get(String(k)) : null;
  }
  setItem(k, v) {
    if (this.fail && this.fail(String(k), String(v))) {
      throw new Error("QuotaExceededError");
    }
    this.map.set(String(k), String(v));
  }
  removeItem(k) {
    this.map.delete(String(k));
  }
  clear() {
    this.map.clear();
  }
  failWrites(pred) {
    this.fail = pred;
  }
  /** A plain-object copy, to compare before/after. */
  snapshot() {
    return Object.fromEntries(this.map);
  }
}

/** A WebSocket whose peer is the test: `accept()`, `receive(msg)`, `drop(code)`. */
export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static instances = [];
  /** Set to an Error to make the next constructor call throw it. */
  static throwNext = null;

  constructor(url) {
    if (FakeWebSocket.throwNext) {
      const e = FakeWebSocket.throwNext;
      FakeWebSocket.throwNext = null;
      throw e;
    }
    this.url = url;
    this.sent = [];
    this.readyState = FakeWebSocket.CONNECTING;
    this.closeCalls = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  send(data) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error("InvalidStateError");
    this.sent.push(data);
  }

  /** Client-side close: like a browser, the close event comes later (see `drop`). */
  close() {
    this.closeCalls++;
    this.readyState = FakeWebSocket.CLOSING;
  }

  // ---- test side ----

  accept() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen?.({ type: "open" });
  }

  /** Delivers a server message: objects are JSON-encoded, strings/other data sent as is. */
  receive(msg) {
    const data = typeof msg == "string" || msg instanceof ArrayBuffer ? msg : JSON.stringify(msg);
    this.onmessage?.({ type: "message", data });
  }

  /** The connection ends (server close, network loss, or a refused connection). */
  drop(code = 1006, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ type: "close", code, reason, wasClean: code === 1000 });
  }

  get messages() {
    return this.sent.map((s) => JSON.parse(s));
  }

  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }
}

/**
 * Replaces globalThis.setTimeout/clearTimeout with a manual clock. `run()` fires the next
 * pending timer (advancing the clock to it); `restore()` puts the real ones back.
 */
export function installClock() {
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
  const pending = new Map();
  let now = 0;
  let seq = 0;
  globalThis.setTimeout = (fn, ms = 0, ...args) => {
    const id = ++seq;
    pending.set(id, { fn, args, ms, at: now + Math.max(0, Number(ms) || 0) });
    return id;
  };
  globalThis.clearTimeout = (id) => {
    pending.delete(id);
  };
  return {
    pending,
    get now() {
      return now;
    },
    /** Delays of the pending timers, in creation order. */
    get delays() {
      return [...pending.values()].map((t) => t.ms);
    },
    /** Fires the earliest pending timer; returns false if there is none. */
    run() {
      let best = null;
      for (const [id, t] of pending) if (!best || t.at < best[1].at) best = [id, t];
      if (!best) return false;
      pending.delete(best[0]);
      now = best[1].at;
      best[1].fn(...best[1].args);
      return true;
    },
    restore() {
      globalThis.setTimeout = real.setTimeout;
      globalThis.clearTimeout = real.clearTimeout;
    },
  };
}

/** A minimal `window` event target on globalThis (for the `online` listener). */
export function installWindowEvents() {
  const listeners = new Map();
  globalThis.addEventListener = (type, fn) => {
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
  };
  globalThis.removeEventListener = (type, fn) => listeners.get(type)?.delete(fn);
  return {
    listeners,
    dispatch(type) {
      for (const fn of [...(listeners.get(type) || [])]) fn({ type });
    },
    count(type) {
      return listeners.get(type)?.size || 0;
    },
    restore() {
      delete globalThis.addEventListener;
      delete globalThis.removeEventListener;
    },
  };
}

// ---- a minimal DOM for formInput ----

/** A stand-in for File: FormData yields it as a non-string value. */
export class FakeFile {
  constructor(name) {
    this.name = name;
  }
}

/**
 * A form: `fields` is a list of {name, value, type}; `value` may be a FakeFile. Only what
 * formInput touches: id, getAttribute, elements, and FormData's view of it.
 */
export function fakeForm({ id = "", name = null, recover = true, fields = [] }) {
  return {
    id,
    recover,
    getAttribute: (a) => (a == "name" ? name : null),
    elements: fields.map((f) => ({ name: f.name, type: f.type || "text" })),
    fields,
  };
}

/** A document whose querySelectorAll("form[data-recover]") returns the forms marked so. */
export function fakeDocument(forms) {
  return {
    querySelectorAll(sel) {
      if (sel !== "form[data-recover]") throw new Error("unexpected selector " + sel);
      return forms.filter((f) => f.recover);
    },
  };
}

/** FormData over a fake form: every named field's value, in order (like the real one). */
export class FakeFormData {
  constructor(form) {
    this.list = (form?.fields || [])
      .filter((f) => f.name)
      .map((f) => [f.name, f.value ?? ""]);
  }
  [Symbol.iterator]() {
    return this.list[Symbol.iterator]();
  }
}

// ---- helpers ----

/** Decodes an unpadded base64url header value back to the object. */
export const decodeHeader = (v) => JSON.parse(Buffer.from(v, "base64url").toString("utf8"));

export const key = (n) => n.toString(16).padStart(32, "0");
export const SALT_A = "AAAAAAAAAAAAAAAAAAAAAA";
export const SALT_B = "bbbbbbbbbbbbbbbbbbbb-_";

/**
 * Imports the client. Node ≥ 20.19 detects ES module syntax in a `.js` file outside any
 * package.json; older Node 20 releases read it as CommonJS, so fall back to a data: URL.
 */
export async function loadClient() {
  const url = new URL("../state-recovery.js", import.meta.url);
  try {
    return await import(url.href);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    const { readFile } = await import("node:fs/promises");
    const src = await readFile(url, "utf8");
    return import("data:text/javascript;charset=utf-8," + encodeURIComponent(src));
  }
}
