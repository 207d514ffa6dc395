// state-recovery for Dioxus LiveView: the socket dioxus-liveview's own script (its glue,
// served beside this file with its one `new WebSocket(WS_ADDR)` replaced) talks through.
//
// dioxus-liveview 0.7 opens one WebSocket and never reopens it. Here that socket is a facade
// over state-recovery's `connect()` (./state-recovery.js, the crate's client, not a copy):
// the first message on every connection is the recover message with the stash; the server's
// text frames (salt, recovered, state, drop) go to the stash; its binary frames (Dioxus's
// edits) go to Dioxus's handler. When the connection drops, `connect()` reconnects with its
// backoff (at once after a worker's drain); the first frame of the new connection is a fresh
// render of the app, restored on the server, so the page's root is replaced by an empty
// one, a new Dioxus interpreter (a new `IPC`, which asks for a socket again and gets a new
// facade on the same connection) takes it, and the frame goes to it.
//
// The page's state is on <html>: data-state-recovery="connecting|live|reconnecting",
// data-renders (connections that rendered the page), data-recovered="restored/rejected" (the
// last `recovered` message's counts).
import { connect } from "./state-recovery.js";

const here = new URL(import.meta.url);
const base = here.pathname.slice(0, here.pathname.lastIndexOf("/"));
const html = document.documentElement;
const status = (s) => (html.dataset.stateRecovery = s);

let live = null; // the one connection; it reconnects itself
let current = null; // the facade the current Dioxus interpreter holds
let renders = 0; // connections whose first frame arrived
let fresh = false; // the current connection has not delivered a frame yet
let focus = null; // where the user was when the connection dropped

/** What dioxus-liveview's `IPC` takes for a WebSocket. */
class Facade {
  constructor() {
    this.binaryType = "arraybuffer";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this.dead = false;
  }
  get readyState() {
    return this.dead ? 3 : live?.connected ? 1 : 0;
  }
  // Dioxus's events and pings: as they are, on the current connection once it has rendered
  // (dropped before: an event on the old page's elements, which the new render may number
  // differently).
  send(text) {
    if (!this.dead && !fresh) live?.sendText(text);
  }
  close() {}
}

/** A new render on a new connection: an empty root and a new interpreter for it. */
function reset() {
  const old = document.getElementById("main");
  const root = old.cloneNode(false); // without the old interpreter's listeners
  root.inert = false;
  old.replaceWith(root);
  // `IPC` is main.js's class (a global of the glue script): it makes a new interpreter for
  // the root and asks for a socket, which makes the new facade current.
  window.ipc = new IPC(root); // eslint-disable-line no-undef
}

/** Where the user was: the focused element's id and its selection (in a text field). */
function focusOf() {
  const e = document.activeElement;
  if (!e?.id || e == document.body) return null;
  const sel = typeof e.selectionStart == "number" ? [e.selectionStart, e.selectionEnd] : null;
  return { id: e.id, sel };
}

/** Puts the focus back on the element of the new render with the same id. */
function refocus(f) {
  const e = f && document.getElementById(f.id);
  if (!e) return;
  e.focus();
  if (f.sel && typeof e.setSelectionRange == "function") {
    try {
      e.setSelectionRange(...f.sel);
    } catch {
      // not a text field any more
    }
  }
}

function socket(url) {
  if (current) current.dead = true;
  const f = (current = new Facade());
  if (!live) {
    status("connecting");
    live = connect({
      url,
      binaryType: "arraybuffer",
      onOpen: () => (fresh = true),
      onBinary: (data) => {
        if (!fresh) return current.onmessage?.({ data });
        fresh = false;
        if (renders++ > 0) reset();
        current.onmessage?.({ data }); // the whole first render, synchronously
        refocus(focus);
        focus = null;
        html.dataset.renders = String(renders);
        status("live");
      },
      onRecovered: ({ restored, rejected }) => (html.dataset.recovered = `${restored}/${rejected}`),
      onClose: () => {
        // The page is the old worker's until the new render: not editable meanwhile (what
        // was typed into it would be lost).
        focus ??= focusOf(); // before `inert` takes it away
        const root = document.getElementById("main");
        if (root) root.inert = true;
        status("reconnecting");
      },
    });
    window.stateRecovery = live; // for tests and debugging: `stash`, `connected`, ...
  }
  // main.js sets its handlers right after this returns; its `onopen` starts its pings.
  queueMicrotask(() => f.onopen?.({ type: "open" }));
  return f;
}

window.__stateRecoveryDioxus = { socket };

const glue = document.createElement("script");
glue.src = `${base}/glue.js`;
document.body.append(glue);
