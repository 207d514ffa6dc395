// state-recovery client: keeps the signed state entries a server hands out and hands them
// back when the connection comes back (to any worker sharing the key ring).
// ES module, no build step, no dependencies. Wire protocol: see the crate's README.
//
//   import { connect } from "/state-recovery.js";
//   const live = connect({ url: "/ws", onMessage: (m) => render(m) });
//   live.send({ type: "event", name: "inc" });
//
// The stash (salt + newest token per state key) lives in sessionStorage: one tab, one stash.
// Tokens are signed, not encrypted: the server never puts secrets in them.

const KEY = /^[0-9a-f]{32}$/;
const SALT = /^[A-Za-z0-9_-]{22}$/;
const TOKEN = /^[A-Za-z0-9_-]+$/;
// A well-formed [key, rev, token] (also applied to what comes back out of storage).
const valid = (key, rev, token) =>
  typeof key == "string" && KEY.test(key) && Number.isSafeInteger(rev) && rev >= 0 &&
  typeof token == "string" && TOKEN.test(token);

const call = (f, ...args) => {
  try {
    if (typeof f == "function") return f(...args);
  } catch (e) {
    console.error("state-recovery: handler failed", e);
  }
};

const pickStorage = (s) => {
  try {
    s = s == "local" ? localStorage : s && typeof s == "object" ? s : sessionStorage;
    const probe = "__sr_probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    // Storage disabled (privacy mode, sandboxed frame): keep the stash in memory.
    const m = new Map();
    return {
      getItem: (k) => (m.has(k) ? m.get(k) : null),
      setItem: (k, v) => m.set(k, String(v)),
      removeItem: (k) => m.delete(k),
    };
  }
};

/**
 * The salt and the newest token per state key, in Web Storage under `prefix`.
 * Options: `storage` ("session" (default), "local" or a Storage-like object), `prefix`
 * ("state-recovery:"), `maxEntries` (256), `maxBytes` (512 KiB of tokens), `maxTokenBytes` (64 KiB).
 */
export class Stash {
  constructor(o = {}) {
    this.s = pickStorage(o.storage);
    this.p = o.prefix || "state-recovery:";
    this.maxEntries = o.maxEntries || 256;
    this.maxBytes = o.maxBytes || 524288;
    this.maxToken = o.maxTokenBytes || 65536;
  }

  get salt() {
    const v = this.s.getItem(this.p + "salt");
    return v && SALT.test(v) ? v : null;
  }

  /** Entries as [key, rev, token], least recently updated first. */
  entries() {
    try {
      const a = JSON.parse(this.s.getItem(this.p + "entries") || "[]");
      return Array.isArray(a)
        ? a.filter((e) => Array.isArray(e) && valid(e[0], e[1], e[2]))
        : [];
    } catch {
      return [];
    }
  }

  write(list) {
    // Cap the count and total size, dropping the least recently updated first.
    let bytes = 0;
    const keep = [];
    for (let i = list.length - 1; i >= 0 && keep.length < this.maxEntries; i--) {
      bytes += list[i][2].length;
      if (bytes > this.maxBytes) break;
      keep.unshift(list[i]);
    }
    try {
      this.s.setItem(this.p + "entries", JSON.stringify(keep));
    } catch (e) {
      console.warn("state-recovery: stash not saved", e);
    }
  }

  /**
   * Takes in a server message. Returns true if it was a `salt` or `state` message (valid or
   * not: protocol messages never reach the application), false for anything else.
   */
  absorb(m) {
    if (!m || typeof m != "object") return false;
    if (m.type == "salt") {
      if (typeof m.salt == "string" && SALT.test(m.salt) && m.salt != this.salt) {
        this.clear();
        this.s.setItem(this.p + "salt", m.salt);
      }
      return true;
    }
    if (m.type != "state") return false;
    const { key, rev, token } = m;
    if (valid(key, rev, token) && token.length <= this.maxToken) {
      const list = this.entries();
      const i = list.findIndex((e) => e[0] == key);
      // Highest revision wins; an equal one replaces (a re-seal under a newer key or step).
      if (i < 0 || list[i][1] <= rev) {
        if (i >= 0) list.splice(i, 1);
        list.push([key, rev, token]);
        this.write(list);
      }
    }
    return true;
  }

  /** The recover message: `{type, salt, entries, input}`. */
  bundle(input) {
    return {
      type: "recover",
      salt: this.salt,
      entries: this.entries().map((e) => e[2]),
      input: input === undefined ? formInput() : input,
    };
  }

  /** The recover message as base64url (no padding), for the `State-Recovery` HTTP header. */
  headerValue(input) {
    const b = new TextEncoder().encode(JSON.stringify(this.bundle(input)));
    let s = "";
    for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  clear() {
    this.s.removeItem(this.p + "salt");
    this.s.removeItem(this.p + "entries");
  }
}

/**
 * The values of every `<form data-recover>` under `root`, by form id (or name): untrusted
 * client input the server may re-validate. Password and file fields are never sent.
 */
export function formInput(root = globalThis.document, maxBytes = 65536) {
  const out = {};
  let bytes = 0;
  if (!root || !root.querySelectorAll) return out;
  for (const form of root.querySelectorAll("form[data-recover]")) {
    const id = form.id || form.getAttribute("name");
    if (!id) continue;
    const skip = new Set();
    for (const el of form.elements) if (el.type == "password") skip.add(el.name);
    const fields = {};
    for (const [name, v] of new FormData(form)) {
      if (typeof v != "string" || skip.has(name)) continue;
      bytes += name.length + v.length;
      if (bytes > maxBytes) return out;
      const old = fields[name];
      fields[name] = old === undefined ? v : [].concat(old, v);
    }
    out[id] = fields;
  }
  return out;
}

/** The recover message from the stash described by `options` (see {@link Stash}). */
export const bundle = (options, input) => new Stash(options).bundle(input);

/** {@link bundle} as a `State-Recovery` header value. */
export const headerValue = (options, input) => new Stash(options).headerValue(input);

/**
 * Opens a WebSocket that recovers its state on every (re)connect.
 * Options: those of {@link Stash}, plus `url` ("/ws", relative to the page), `baseDelay` (250 ms),
 * `maxDelay` (15 s), `input` (a function returning the input object; default {@link formInput}),
 * and hooks `onOpen()`, `onReconnecting(attempt, delay)`, `onRecovered({restored, rejected})`,
 * `onMessage(msg)` for application messages, `onClose(event)`.
 * Reconnects with exponential backoff and full jitter: delay = random(0, min(max, base * 2^(n-1))).
 */
export function connect(o = {}) {
  const stash = new Stash(o);
  const base = o.baseDelay || 250;
  const max = o.maxDelay || 15000;
  let ws = null;
  let attempt = 0;
  let timer = null;
  let closed = false;

  const url = () => {
    const u = new URL(o.url || "/ws", globalThis.location?.href);
    u.protocol = u.protocol == "https:" ? "wss:" : u.protocol == "http:" ? "ws:" : u.protocol;
    return u.href;
  };

  const schedule = () => {
    if (closed || timer) return;
    attempt++;
    const delay = Math.round(Math.random() * Math.min(max, base * 2 ** Math.min(attempt - 1, 30)));
    call(o.onReconnecting, attempt, delay);
    timer = setTimeout(open, delay);
  };

  const onmessage = (ev) => {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!m || typeof m != "object" || typeof m.type != "string") return;
    try {
      if (stash.absorb(m)) return;
    } catch (e) {
      console.warn("state-recovery: bad message", e);
      return;
    }
    if (m.type == "recovered") {
      attempt = 0;
      const n = (x) => (Number.isSafeInteger(x) && x >= 0 ? x : 0);
      call(o.onRecovered, { restored: n(m.restored), rejected: n(m.rejected) });
    } else call(o.onMessage, m);
  };

  function open() {
    timer = null;
    if (closed) return;
    let s;
    try {
      s = ws = new WebSocket(url());
    } catch (e) {
      console.error("state-recovery: cannot connect", e);
      return schedule();
    }
    s.onopen = () => {
      try {
        const input = o.input ? call(o.input) : formInput();
        s.send(JSON.stringify(stash.bundle(input || {})));
      } catch (e) {
        console.error("state-recovery: recover message not sent", e);
      }
      call(o.onOpen);
    };
    s.onmessage = (ev) => ws == s && onmessage(ev);
    s.onclose = (ev) => {
      if (ws != s) return;
      ws = null;
      call(o.onClose, ev);
      schedule();
    };
  }

  // Back online: skip the rest of the backoff.
  const online = () => {
    if (timer) {
      clearTimeout(timer);
      timer = null;
      open();
    }
  };
  globalThis.addEventListener?.("online", online);

  open();
  return {
    stash,
    /** Sends an application message; false (and dropped) while disconnected. */
    send(obj) {
      if (!ws || ws.readyState != 1) return false;
      try {
        ws.send(JSON.stringify(obj));
        return true;
      } catch {
        return false;
      }
    },
    get connected() {
      return !!ws && ws.readyState == 1;
    },
    /** Drops the current socket and reconnects now (as after a network change). */
    reconnect() {
      if (closed) return;
      clearTimeout(timer);
      timer = null;
      const s = ws;
      ws = null;
      if (s) s.close();
      open();
    },
    close() {
      closed = true;
      clearTimeout(timer);
      globalThis.removeEventListener?.("online", online);
      if (ws) ws.close();
      ws = null;
    },
  };
}
