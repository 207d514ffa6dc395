// state-recovery client: keeps the signed state entries a server hands out and hands them
// back when the connection comes back (to any worker sharing the key ring).
// ES module, no build step, no dependencies. Wire protocol: see the crate's README.
//
//   import { connect } from "/state-recovery.js";
//   const live = connect({ url: "/ws", onMessage: (m) => render(m) });
//   live.send({ type: "event", name: "inc" });
//
// The stash (salt + newest token per state key, and the server's limits) lives in
// sessionStorage: one tab, one stash. Tokens are opaque here (signed, or encrypted when the
// server chooses to); the client never reads them. The server's `recovered` message announces its limits; the client keeps
// within them (and within its own, smaller local caps): it never sends a recover message the
// server would refuse whole. Every entry it drops or refuses is reported to `onDropped`.
// A close with code 1012 (the worker drains) reconnects at once, without backoff.
// Events exactly once: when `recovered` announces `applied`, every object sent is numbered
// (`"$seq"`) and kept (in storage, with the stash) until a `batch` acknowledges it; after a
// reconnect the ones not acknowledged are resent, in order, before anything new, and the
// server applies each once. A `batch` (everything one event caused) is stored all or nothing.

const KEY = /^[0-9a-f]{32}$/;
const SALT = /^[A-Za-z0-9_-]{22}$/;
const TOKEN = /^[A-Za-z0-9_-]+$/;
// A well-formed [key, rev, token] (also applied to what comes back out of storage).
const valid = (key, rev, token) =>
  typeof key == "string" && KEY.test(key) && Number.isSafeInteger(rev) && rev >= 0 &&
  typeof token == "string" && TOKEN.test(token);

/**
 * The reconnect schedule's defaults, in one table (the Rust storm tool, tools/storm, mirrors it
 * and a test there compares the two): after a close, the first attempt waits
 * random(0, firstJitter) ms (a lost worker is usually back elsewhere at once), attempt n ≥ 2
 * random(0, min(maxDelay, baseDelay * 2^min(n-2, maxDoublings))) ms (full jitter); after a
 * close with `drainCloseCode` (the worker drains), random(0, drainJitter) ms. All in ms but the
 * last two. `connect()`'s `firstJitter`, `baseDelay`, `maxDelay` and `drainJitter` options
 * override them.
 */
export const RECONNECT = Object.freeze({
  firstJitter: 25,
  baseDelay: 250,
  maxDelay: 15000,
  drainJitter: 50,
  maxDoublings: 30,
  drainCloseCode: 1012,
});

// A well-formed queued event [seq, text].
const queued = (e) =>
  Array.isArray(e) && Number.isSafeInteger(e[0]) && e[0] >= 1 && typeof e[1] == "string";
// An object the application built (only those are numbered: `$seq` is a field of it).
const plain = (o) =>
  !!o && typeof o == "object" && !Array.isArray(o) &&
  [Object.prototype, null].includes(Object.getPrototypeOf(o));

/**
 * What a drain close (1012) asks for: its reason `drain <ms>` is the window over which the
 * server wants its clients' reconnects spread (the fewer of them, the shorter); any other
 * reason (an older server's `drain`) means the client's own drain jitter (true). Never longer
 * than the client's own.
 */
export const drainSpread = (reason) => {
  const m = /^drain (\d{1,5})$/.exec(typeof reason == "string" ? reason : "");
  return m ? Number(m[1]) : true;
};

/** The server's limits until it announces its own (the crate's `Limits` defaults). */
export const DEFAULT_LIMITS = Object.freeze({
  maxTokenBytes: 65536,
  maxBundleBytes: 1048576,
  maxEntries: 1024,
});

// Announced limits: all three positive safe integers, or null (ignored).
const checkLimits = (l) => {
  if (!l || typeof l != "object") return null;
  const out = {};
  for (const k in DEFAULT_LIMITS) {
    if (!Number.isSafeInteger(l[k]) || l[k] < 1) return null;
    out[k] = l[k];
  }
  return Object.freeze(out);
};

// UTF-8 byte length of a text, and of a message's JSON text, as sent.
const utf8 = (t) => new TextEncoder().encode(t).length;
const size = (m) => utf8(JSON.stringify(m));

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
 * The salt, the newest token per state key and the server's limits, in Web Storage under
 * `prefix` (keys `salt`, `entries`, `limits`).
 *
 * Options: `storage` ("session" (default), "local" or a Storage-like object), `prefix`
 * ("state-recovery:"), local caps `maxEntries` (256), `maxBytes` (512 KiB of tokens) and
 * `maxTokenBytes` (64 KiB), and the hook `onDropped(key, reason)`.
 *
 * Caps in force: the smaller of each local cap and the server's limit (`maxEntries`,
 * `maxTokenBytes`), `maxBytes`, and the server's `maxBundleBytes` for the recover message
 * (UTF-8 bytes of its JSON text). The server's limits are the latest valid `limits` of a
 * `recovered` message, else {@link DEFAULT_LIMITS}. When the entries do not fit, the least
 * recently updated go first.
 *
 * `onDropped(key, reason)` is called once for every entry dropped or refused, with reason:
 * - "token-too-large": a token over `maxTokenBytes`;
 * - "over-entry-limit": past the entry cap;
 * - "over-byte-limit": past `maxBytes`, or the recover message would pass `maxBundleBytes`;
 * - "storage-failed": storage refused the write (the stash stays as it was): every entry not saved;
 * - "server-drop": the server's `{"type":"drop","key":…}` (it rejected that entry, e.g. expired);
 * - "salt-changed": a new salt wiped the stash.
 * A state update that cannot be kept even alone is refused; the stored entry for its key stays.
 *
 * Events (key `events`: the last sequence number given and the unacknowledged events, each as
 * the exact text sent; written once per turn of the event loop, however many change it):
 * caps `maxEvents` (1024) and `maxEventBytes` (1 MiB of text); an event past either is
 * refused, not sent (`send` returns false), and reported with
 * `onEventDropped(message, reason)`, reasons:
 * - "over-event-limit": the queue is full (the server has not acknowledged for a while);
 * - "salt-changed": a new salt wiped the stash: the state the events applied to is gone, so
 *   they are dropped, not resent.
 */
export class Stash {
  constructor(o = {}) {
    this.s = pickStorage(o.storage);
    this.p = o.prefix || "state-recovery:";
    this.maxEntries = o.maxEntries || 256;
    this.maxBytes = o.maxBytes || 524288;
    this.maxToken = o.maxTokenBytes || 65536;
    this.onDropped = o.onDropped;
    this.l = null; // the limits last announced to this instance (if storage refused them)
    this.maxEvents = o.maxEvents || 1024;
    this.maxEventBytes = o.maxEventBytes || 1048576;
    this.onEventDropped = o.onEventDropped;
    this.ev = null; // the events, read from storage once, then kept here (and written through)
  }

  get salt() {
    const v = this.s.getItem(this.p + "salt");
    return v && SALT.test(v) ? v : null;
  }

  /** The server's limits: the latest announced, else {@link DEFAULT_LIMITS}. */
  get limits() {
    try {
      return this.l || checkLimits(JSON.parse(this.s.getItem(this.p + "limits"))) || DEFAULT_LIMITS;
    } catch {
      return DEFAULT_LIMITS;
    }
  }

  /** The caps in force: `{maxTokenBytes, maxEntries, maxBundleBytes}`. */
  get caps() {
    const l = this.limits;
    return {
      maxTokenBytes: Math.min(this.maxToken, l.maxTokenBytes),
      maxEntries: Math.min(this.maxEntries, l.maxEntries),
      maxBundleBytes: l.maxBundleBytes,
    };
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

  drop(key, reason) {
    call(this.onDropped, key, reason);
  }

  /**
   * `{next, queue}`: the last sequence number given (0: none) and the unacknowledged events
   * as [seq, text], oldest first. What storage holds is checked: an unreadable record gives
   * an empty queue, and `next` is never below a kept event.
   */
  get events() {
    if (!this.ev) {
      let next = 0;
      let queue = [];
      try {
        const v = JSON.parse(this.s.getItem(this.p + "events") || "null");
        if (v && typeof v == "object") {
          if (Number.isSafeInteger(v.next) && v.next >= 0) next = v.next;
          if (Array.isArray(v.queue)) {
            for (const e of v.queue) {
              if (queued(e) && (!queue.length || e[0] > queue[queue.length - 1][0])) queue.push(e);
            }
          }
        }
      } catch {}
      if (queue.length) next = Math.max(next, queue[queue.length - 1][0]);
      this.ev = { next, queue };
      this.evBytes = queue.reduce((n, e) => n + utf8(e[1]), 0);
    }
    return this.ev;
  }

  // Writes the events at the end of this turn (once for a burst of sends or acknowledgements;
  // always after the entries a batch wrote in the same turn).
  saveEvents() {
    if (this.saving) return;
    this.saving = true;
    queueMicrotask(() => {
      this.saving = false;
      try {
        this.s.setItem(this.p + "events", JSON.stringify(this.events));
      } catch (e) {
        console.warn("state-recovery: events not saved", e);
      }
    });
  }

  /**
   * Numbers `message` (a plain object) with the next sequence, keeps it, and returns the text
   * to send (`{...message, "$seq": n}`); or null when it does not fit the caps (reported).
   */
  enqueue(message) {
    const ev = this.events;
    const text = JSON.stringify({ ...message, $seq: ev.next + 1 });
    const n = utf8(text);
    if (ev.queue.length >= this.maxEvents || this.evBytes + n > this.maxEventBytes ||
        ev.next >= Number.MAX_SAFE_INTEGER) {
      call(this.onEventDropped, message, "over-event-limit");
      return null;
    }
    ev.next += 1;
    ev.queue.push([ev.next, text]);
    this.evBytes += n;
    this.saveEvents();
    return text;
  }

  /** Forgets the events up to `seq` (acknowledged, or already in the restored state). */
  ack(seq) {
    if (!Number.isSafeInteger(seq) || seq < 0) return;
    const ev = this.events;
    let i = 0;
    while (i < ev.queue.length && ev.queue[i][0] <= seq) this.evBytes -= utf8(ev.queue[i++][1]);
    if (!i && ev.next >= seq) return;
    ev.queue = ev.queue.slice(i);
    ev.next = Math.max(ev.next, seq);
    this.saveEvents();
  }

  /** Drops every unacknowledged event, reporting each (the sequence counter stays). */
  dropEvents(reason) {
    const ev = this.events;
    if (!ev.queue.length) return;
    const gone = ev.queue;
    ev.queue = [];
    this.evBytes = 0;
    this.saveEvents();
    for (const [, text] of gone) {
      let m = text;
      try {
        m = JSON.parse(text);
      } catch {}
      call(this.onEventDropped, m, reason);
    }
  }

  // Splits `list` into the newest entries within the caps and, for each other key, why it goes.
  // A token that cannot fit even alone goes by itself; past that, once a cap is reached, every
  // older entry goes too (least recently updated first).
  fit(list) {
    const c = this.caps;
    const keep = [];
    const why = new Map();
    const space = c.maxBundleBytes - size(this.message([], {})); // bytes for the entries' tokens
    let room = space;
    let bytes = 0;
    let full = null; // the cap reached
    for (let i = list.length - 1; i >= 0; i--) {
      const [key, , token] = list[i];
      const n = token.length; // base64url: one byte per character, in JSON too
      if (n > c.maxTokenBytes) why.set(key, "token-too-large");
      else if (n > this.maxBytes || n + 2 > space) why.set(key, "over-byte-limit");
      else {
        if (!full && keep.length >= c.maxEntries) full = "over-entry-limit";
        // each token costs its quotes, and a comma after the first
        if (!full && ((bytes += n) > this.maxBytes || (room -= n + 2 + !!keep.length) < 0)) {
          full = "over-byte-limit";
        }
        if (full) why.set(key, full);
        else keep.push(list[i]);
      }
    }
    return [keep.reverse(), why];
  }

  // Saves what fits of `list`; reports every entry of `list` not stored after. Returns the stored.
  write(list) {
    const [keep, why] = this.fit(list);
    let saved = keep;
    this.failed = false;
    try {
      this.s.setItem(this.p + "entries", JSON.stringify(keep));
    } catch (e) {
      console.warn("state-recovery: stash not saved", e);
      saved = this.entries(); // as it was
      this.failed = true;
    }
    const stored = new Set(saved.map((e) => e[2]));
    for (const [key, , token] of list) {
      if (!stored.has(token)) this.drop(key, why.get(key) || "storage-failed");
    }
    return saved;
  }

  // Drops what no longer fits (the limits shrank); returns the entries that do.
  trim() {
    const list = this.entries();
    const [keep, why] = this.fit(list);
    if (keep.length < list.length) {
      // Entries storage refused to remove are still reported: they are not sent.
      for (const [key] of this.write(list)) if (why.has(key)) this.drop(key, why.get(key));
    }
    return keep;
  }

  /**
   * Takes in a server message. Returns true if it was a `salt`, `state` or `drop` message
   * (valid or not: protocol messages never reach the application), false for anything else.
   * The `limits` of a `recovered` message are kept (it still returns false).
   */
  absorb(m) {
    if (!m || typeof m != "object") return false;
    if (m.type == "salt") {
      if (typeof m.salt == "string" && SALT.test(m.salt) && m.salt != this.salt) {
        const wiped = this.entries();
        this.dropEvents("salt-changed");
        this.clear();
        for (const [key] of wiped) this.drop(key, "salt-changed");
        this.s.setItem(this.p + "salt", m.salt);
      }
      return true;
    }
    if (m.type == "recovered") {
      const l = checkLimits(m.limits);
      if (l) {
        this.l = l;
        try {
          this.s.setItem(this.p + "limits", JSON.stringify(l));
        } catch (e) {
          console.warn("state-recovery: limits not saved", e);
        }
        this.trim();
      }
      return false;
    }
    if (m.type == "drop") {
      const list = this.entries();
      const rest = list.filter((e) => e[0] !== m.key);
      if (rest.length < list.length && !this.write(rest).some((e) => e[0] === m.key)) {
        this.drop(m.key, "server-drop");
      }
      return true;
    }
    if (m.type != "state") return false;
    if (valid(m.key, m.rev, m.token)) {
      const list = this.entries();
      if (this.merge(list, m)) this.write(list);
    }
    return true;
  }

  // Puts a valid state update into `list`; false if it changes nothing (an older revision)
  // or is refused (too large even alone: reported, and the stored entry for its key stays).
  merge(list, { key, rev, token }) {
    const i = list.findIndex((e) => e[0] == key);
    // Highest revision wins; an equal one replaces (the server re-seals to refresh a token).
    if (i >= 0 && list[i][1] > rev) return false;
    const refused = this.fit([[key, rev, token]])[1].get(key);
    if (refused) {
      this.drop(key, refused);
      return false;
    }
    if (i >= 0) list.splice(i, 1);
    list.push([key, rev, token]);
    return true;
  }

  /**
   * Takes in a `{"type":"batch","seq":n,"messages":[...]}`: everything one event caused, all
   * or nothing. It is checked whole first (a bad `seq`, `messages` that is not an array, a
   * malformed state or drop message: nothing of it is taken, nothing acknowledged); then its
   * state and drop messages go to storage in **one** write, and only then are the events up
   * to `seq` acknowledged (a crash between the two resends an event the server then drops as
   * a duplicate; never the reverse). If storage refuses the write nothing is acknowledged
   * (the events are resent after a reconnect and applied to the state as stored). Returns
   * the application's messages of the batch, in order (to hand to `onMessage`), or null for
   * a batch refused whole.
   */
  absorbBatch(m) {
    const items = m && m.messages;
    if (!Number.isSafeInteger(m?.seq) || m.seq < 1 || !Array.isArray(items)) return null;
    for (const x of items) {
      if (x && x.type == "state" && !valid(x.key, x.rev, x.token)) return null;
      if (x && x.type == "drop" && !(typeof x.key == "string" && KEY.test(x.key))) return null;
    }
    const app = [];
    const list = this.entries();
    const dropped = new Set();
    let changed = false;
    for (const x of items) {
      if (!x || typeof x != "object" || typeof x.type != "string") continue;
      if (x.type == "state") changed = this.merge(list, x) || changed;
      else if (x.type == "drop") {
        const i = list.findIndex((e) => e[0] === x.key);
        if (i >= 0) {
          list.splice(i, 1);
          dropped.add(x.key);
          changed = true;
        }
      } else if (!["salt", "recovered", "batch"].includes(x.type)) app.push(x);
    }
    let stored = true;
    if (changed) {
      const saved = this.write(list);
      stored = !this.failed;
      for (const key of dropped) if (!saved.some((e) => e[0] === key)) this.drop(key, "server-drop");
    }
    if (stored) this.ack(m.seq);
    return app;
  }

  message(entries, input) {
    return { type: "recover", salt: this.salt, entries, input };
  }

  /**
   * The recover message: `{type, salt, entries, input}`, its JSON within `maxBundleBytes` and
   * `maxEntries`. If it would not fit, the input goes first (sent as `{}`), then the least
   * recently updated entries, dropped from the stash (and reported, once).
   */
  bundle(input) {
    const m = this.message(this.trim().map((e) => e[2]), input === undefined ? formInput() : input);
    if (size(m) > this.caps.maxBundleBytes) m.input = {};
    return m;
  }

  /** The recover message as base64url (no padding), for the `State-Recovery` HTTP header. */
  headerValue(input) {
    const b = new TextEncoder().encode(JSON.stringify(this.bundle(input)));
    let s = "";
    for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /**
   * Forgets the salt, the entries and the unacknowledged events (not the server's limits, nor
   * the sequence counter, which only goes up).
   */
  clear() {
    this.s.removeItem(this.p + "salt");
    this.s.removeItem(this.p + "entries");
    if (this.events.queue.length) {
      this.events.queue = [];
      this.evBytes = 0;
      this.saveEvents();
    }
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
 * Opens a WebSocket that recovers its state on every (re)connect: the first message on each
 * socket is the recover message ({@link Stash#bundle}); `salt`, `state` and `drop` messages go
 * to the stash, `recovered` to `onRecovered` (its `limits` to the stash), a `batch` to the
 * stash whole and its application messages to `onMessage`, the rest to `onMessage`.
 *
 * Events exactly once: when `recovered` carries `applied` (a server that drops events it
 * already applied), every plain object `send` sends is numbered (`"$seq"`) and kept until a
 * `batch` acknowledges it ({@link Stash#enqueue}); on the next socket, after `recovered`, the
 * ones above its `applied` are resent in order, before anything new, and the others
 * forgotten. Messages sent between the socket's opening and `recovered` are held and sent
 * right after it (while events are on or any are kept), so nothing overtakes a resend.
 * Without `applied` messages go unnumbered, as before, and kept events wait for a server that
 * announces it. `send(obj, {resend: false})` sends one unnumbered (for a message whose effect
 * must not happen twice even across a worker's death, such as "kill this worker").
 *
 * Options: those of {@link Stash} (including `onDropped` and `onEventDropped`), plus `url`
 * ("/ws", relative to the page), `binaryType` (set on every socket) and `onBinary(data)`
 * (binary frames, which the protocol never uses: another protocol's on the same socket, see
 * `sendText`), `firstJitter` (25 ms), `baseDelay` (250 ms), `maxDelay`
 * (15 s), `drainJitter` (50 ms) (defaults from {@link RECONNECT}), `input` (a function returning the input object;
 * default {@link formInput}), and hooks `onOpen()`,
 * `onReconnecting(attempt, delay)`, `onRecovered({restored, rejected})`, `onMessage(msg)` for
 * application messages, `onClose(event)`.
 *
 * Reconnects at once after a close (attempt 1: random(0, firstJitter)), then with exponential
 * backoff and full jitter: delay = random(0, min(max, base * 2^(n-2))) for attempt n ≥ 2; a
 * `recovered` message resets n. A close with code 1012 (Service Restart: the
 * worker drains) reconnects after random(0, drainJitter) instead, reported as attempt 1, and
 * resets n: a failure right after is attempt 1 again, within firstJitter. The drain's close
 * reason may shorten that jitter: `drain <ms>` ({@link drainSpread}; a worker with few
 * sessions asks for 1 ms).
 */
export function connect(o = {}) {
  const stash = new Stash(o);
  const base = o.baseDelay || RECONNECT.baseDelay;
  const max = o.maxDelay || RECONNECT.maxDelay;
  const ms = (v, d) => (Number.isFinite(v) && v >= 0 ? v : d);
  const jitter = ms(o.drainJitter, RECONNECT.drainJitter);
  const first = ms(o.firstJitter, RECONNECT.firstJitter);
  let ws = null;
  let attempt = 0;
  let timer = null;
  let closed = false;
  let recovered = false; // `recovered` arrived on the current socket
  let numbered = false; // ... and announced `applied`: messages are numbered and kept
  let announced = false; // some socket announced `applied` (so hold before `recovered`)
  const held = []; // [message, options] sent before `recovered`

  const raw = (text) => {
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  };
  // Sends now; a numbered message is kept first, so it goes out again if this send is lost.
  const sendNow = (obj, opts) => {
    if (numbered && opts?.resend !== false && plain(obj)) {
      const text = stash.enqueue(obj);
      if (text == null) return false;
      raw(text);
      return true;
    }
    return raw(JSON.stringify(obj));
  };

  const url = () => {
    const u = new URL(o.url || "/ws", globalThis.location?.href);
    u.protocol = u.protocol == "https:" ? "wss:" : u.protocol == "http:" ? "ws:" : u.protocol;
    return u.href;
  };

  // `spread`: after a drain, the window its worker asked for (ms; true: the client's own).
  const schedule = (spread) => {
    if (closed || timer) return;
    const drain = spread === true || Number.isFinite(spread);
    if (drain) attempt = 0; // not counted: the next failure starts from the base delay
    const cap = drain
      ? Math.min(jitter, spread === true ? jitter : spread)
      : attempt++ == 0
        ? first
        : Math.min(max, base * 2 ** Math.min(attempt - 2, RECONNECT.maxDoublings));
    const delay = Math.round(Math.random() * cap);
    call(o.onReconnecting, attempt || 1, delay);
    timer = setTimeout(open, delay);
  };

  const onmessage = (ev) => {
    // Binary frames are another protocol's on the same socket (a framework's own rendering):
    // handed over untouched, never parsed.
    if (typeof ev.data != "string") return call(o.onBinary, ev.data);
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!m || typeof m != "object" || typeof m.type != "string") return;
    if (m.type == "batch") {
      let app;
      try {
        app = stash.absorbBatch(m);
      } catch (e) {
        console.warn("state-recovery: bad message", e);
        return;
      }
      if (!app) console.warn("state-recovery: malformed batch ignored");
      for (const x of app || []) call(o.onMessage, x);
      return;
    }
    try {
      if (stash.absorb(m)) return;
    } catch (e) {
      console.warn("state-recovery: bad message", e);
      return;
    }
    if (m.type == "recovered") {
      attempt = 0;
      recovered = true;
      numbered = Number.isSafeInteger(m.applied) && m.applied >= 0;
      if (numbered) {
        announced = true;
        // Forget what the restored state already has; resend the rest, in order.
        stash.ack(m.applied);
        for (const [, text] of stash.events.queue) if (!raw(text)) break;
      }
      for (const [obj, opts] of held.splice(0)) sendNow(obj, opts);
      const n = (x) => (Number.isSafeInteger(x) && x >= 0 ? x : 0);
      call(o.onRecovered, { restored: n(m.restored), rejected: n(m.rejected) });
    } else call(o.onMessage, m);
  };

  function open() {
    timer = null;
    if (closed) return;
    let s;
    recovered = numbered = false;
    try {
      s = ws = new WebSocket(url());
      if (o.binaryType) s.binaryType = o.binaryType;
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
      schedule(ev?.code == RECONNECT.drainCloseCode ? drainSpread(ev.reason) : false);
    };
    // A handshake that fails (refused, a proxy's 502) fires `error`; browsers then fire
    // `close`, but Node's WebSocket (undici) does not: treat an error before the socket
    // opened as its close, once.
    s.onerror = () => {
      if (ws == s && s.readyState != 1) s.onclose({ code: 1006 });
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
    /**
     * Sends an application message; false (and dropped) while disconnected, or when the
     * events queue is full (`onEventDropped`, "over-event-limit"). Numbered and kept until
     * acknowledged when the server announced `applied`, unless `opts.resend === false`.
     */
    send(obj, opts) {
      if (!ws || ws.readyState != 1) return false;
      if (!recovered && (announced || stash.events.queue.length)) {
        if (held.length + stash.events.queue.length >= stash.maxEvents) {
          call(stash.onEventDropped, obj, "over-event-limit");
          return false;
        }
        held.push([obj, opts]);
        return true;
      }
      return sendNow(obj, opts);
    },
    /**
     * Sends `text` as it is, in one text frame: not numbered, not kept, not held before
     * `recovered` (for another protocol sharing the socket, such as a framework's own events);
     * false while disconnected.
     */
    sendText(text) {
      return !!ws && ws.readyState == 1 && raw(String(text));
    },
    /** Messages sent and not yet acknowledged (kept for resending), plus those held. */
    get pending() {
      return stash.events.queue.length + held.length;
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
