// The stash, the recover message and formInput. Run: node --test client/test/
import { describe, it, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStorage, FakeFile, FakeFormData, fakeForm, fakeDocument, decodeHeader, key,
  SALT_A, SALT_B, loadClient,
} from "./fakes.mjs";

const { Stash, bundle, headerValue, formInput } = await loadClient();

const P = "state-recovery:";
const state = (k, rev, token) => ({ type: "state", key: key(k), rev, token });
const fresh = (o = {}) => {
  const storage = o.storage || new MemoryStorage();
  return { storage, stash: new Stash({ storage, ...o }) };
};

describe("Stash: salt", () => {
  it("starts empty", () => {
    const { stash, storage } = fresh();
    assert.equal(stash.salt, null);
    assert.deepEqual(stash.entries(), []);
    assert.equal(storage.length, 0, "the storage probe leaves nothing behind");
  });

  it("keeps a valid salt under the prefix", () => {
    const { stash, storage } = fresh();
    assert.equal(stash.absorb({ type: "salt", salt: SALT_A }), true);
    assert.equal(stash.salt, SALT_A);
    assert.equal(storage.getItem(P + "salt"), SALT_A);
  });

  it("a new salt replaces the old one and drops the old entries", () => {
    const { stash } = fresh();
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 1, "tok1"));
    stash.absorb(state(2, 5, "tok2"));
    assert.equal(stash.entries().length, 2);
    stash.absorb({ type: "salt", salt: SALT_B });
    assert.equal(stash.salt, SALT_B);
    assert.deepEqual(stash.entries(), []);
    // and the stash keeps working under the new salt
    stash.absorb(state(1, 0, "tok3"));
    assert.deepEqual(stash.entries(), [[key(1), 0, "tok3"]]);
  });

  it("the same salt again keeps the entries", () => {
    const { stash } = fresh();
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 1, "tok1"));
    stash.absorb({ type: "salt", salt: SALT_A });
    assert.equal(stash.salt, SALT_A);
    assert.deepEqual(stash.entries(), [[key(1), 1, "tok1"]]);
  });

  it("ignores invalid salts (still claimed as protocol messages)", () => {
    const { stash, storage } = fresh();
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 1, "tok1"));
    const before = storage.snapshot();
    for (const salt of [
      undefined, null, 42, "", SALT_A.slice(1), SALT_A + "A", "AAAAAAAAAAAAAAAAAAAAA=",
      "AAAAAAAAAAAAAAAAAAAA+/", "AAAAAAAAAAAAAAAAAAAAA\n", ["AAAAAAAAAAAAAAAAAAAAAA"],
      { toString: () => SALT_B },
    ]) {
      assert.equal(stash.absorb({ type: "salt", salt }), true, String(salt));
    }
    assert.equal(stash.absorb({ type: "salt" }), true);
    assert.deepEqual(storage.snapshot(), before);
  });
});

describe("Stash: state entries", () => {
  it("a higher revision replaces, a lower one is ignored, an equal one replaces", () => {
    const { stash } = fresh();
    stash.absorb(state(1, 5, "five"));
    stash.absorb(state(1, 4, "four"));
    assert.deepEqual(stash.entries(), [[key(1), 5, "five"]], "lower rev ignored");
    stash.absorb(state(1, 6, "six"));
    assert.deepEqual(stash.entries(), [[key(1), 6, "six"]], "higher rev replaces");
    stash.absorb(state(1, 6, "six-resealed"));
    assert.deepEqual(stash.entries(), [[key(1), 6, "six-resealed"]], "equal rev replaces");
    stash.absorb(state(1, 0, "zero"));
    assert.deepEqual(stash.entries(), [[key(1), 6, "six-resealed"]]);
  });

  it("a dead entry at rev 4 takes the server's next update at rev 5", () => {
    // The server rejected the rev-4 token (expired) and continues the revisions after it.
    const dropped = [];
    const { stash } = fresh({ onDropped: (...a) => dropped.push(a) });
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 4, "dead4"));
    stash.absorb(state(2, 1, "other"));
    stash.absorb(state(1, 5, "live5"));
    assert.deepEqual(stash.entries(), [[key(2), 1, "other"], [key(1), 5, "live5"]]);
    assert.deepEqual(stash.bundle({}).entries, ["other", "live5"], "the dead token is not resent");
    assert.deepEqual(dropped, [], "a replaced entry is not a dropped one");
  });

  it("an equal revision replaces the token (a re-seal) and counts as the newest update", () => {
    const { stash } = fresh();
    stash.absorb(state(1, 3, "sealed-monday"));
    stash.absorb(state(2, 3, "b"));
    stash.absorb(state(1, 3, "resealed-tuesday"));
    assert.deepEqual(stash.entries(), [[key(2), 3, "b"], [key(1), 3, "resealed-tuesday"]]);
    stash.absorb(state(1, 2, "older"));
    assert.deepEqual(stash.entries().at(-1), [key(1), 3, "resealed-tuesday"], "a lower one is ignored");
  });

  it("keeps one entry per key, least recently updated first", () => {
    const { stash } = fresh();
    stash.absorb(state(1, 1, "a"));
    stash.absorb(state(2, 1, "b"));
    stash.absorb(state(3, 1, "c"));
    stash.absorb(state(1, 2, "a2")); // moves to the end
    stash.absorb(state(2, 0, "stale")); // ignored: does not move
    assert.deepEqual(stash.entries().map((e) => e[2]), ["b", "c", "a2"]);
  });

  it("accepts rev 0 and the largest safe integer", () => {
    const { stash } = fresh();
    stash.absorb(state(1, 0, "z"));
    stash.absorb(state(2, Number.MAX_SAFE_INTEGER, "m"));
    assert.deepEqual(stash.entries().map((e) => e[1]), [0, Number.MAX_SAFE_INTEGER]);
  });

  it("ignores malformed state messages without touching the stash", () => {
    const { stash, storage } = fresh({ maxTokenBytes: 100 });
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 3, "good"));
    const before = storage.snapshot();
    const k = key(1);
    const bad = [
      { key: "g".repeat(32), rev: 9, token: "t" }, // not hex
      { key: k.toUpperCase().replace(/0/g, "A"), rev: 9, token: "t" }, // upper case
      { key: k.slice(1), rev: 9, token: "t" }, // 31 chars
      { key: k + "0", rev: 9, token: "t" }, // 33 chars
      { key: [k], rev: 9, token: "t" }, // coerces to the key: still refused
      { key: 1, rev: 9, token: "t" },
      { rev: 9, token: "t" },
      { key: k, rev: -1, token: "t" },
      { key: k, rev: 1.5, token: "t" },
      { key: k, rev: "9", token: "t" },
      { key: k, rev: 2 ** 53, token: "t" },
      { key: k, rev: 1e300, token: "t" },
      { key: k, rev: Infinity, token: "t" },
      { key: k, rev: NaN, token: "t" },
      { key: k, rev: null, token: "t" },
      { key: k, token: "t" },
      { key: k, rev: 9, token: "" },
      { key: k, rev: 9, token: "a+b" },
      { key: k, rev: 9, token: "a/b" },
      { key: k, rev: 9, token: "ab==" },
      { key: k, rev: 9, token: "a b" },
      { key: k, rev: 9, token: "x".repeat(101) }, // over maxTokenBytes
      { key: k, rev: 9, token: 12345 },
      { key: k, rev: 9, token: ["tok"] },
      { key: k, rev: 9 },
    ];
    for (const m of bad) {
      assert.equal(stash.absorb({ type: "state", ...m }), true, JSON.stringify(m));
    }
    assert.deepEqual(storage.snapshot(), before);
    assert.equal(stash.absorb(state(1, 9, "x".repeat(100))), true);
    assert.equal(stash.entries()[0][2].length, 100, "a token at the cap is kept");
  });

  it("leaves non-protocol messages to the application", () => {
    const { stash, storage } = fresh();
    for (const m of [
      null, undefined, 0, "salt", true, [], ["state"], {}, { type: "recovered" },
      { type: "chat", salt: SALT_A }, { type: "STATE", key: key(1), rev: 1, token: "t" },
    ]) {
      assert.equal(stash.absorb(m), false, JSON.stringify(m));
    }
    assert.equal(storage.length, 0);
  });
});

describe("Stash: storage", () => {
  it("namespaces by prefix", () => {
    const storage = new MemoryStorage({ unrelated: "keep me" });
    const a = new Stash({ storage, prefix: "app-a:" });
    const b = new Stash({ storage, prefix: "app-b:" });
    a.absorb({ type: "salt", salt: SALT_A });
    a.absorb(state(1, 1, "ta"));
    b.absorb({ type: "salt", salt: SALT_B });
    b.absorb(state(1, 7, "tb"));
    assert.equal(a.salt, SALT_A);
    assert.equal(b.salt, SALT_B);
    assert.deepEqual(a.entries(), [[key(1), 1, "ta"]]);
    assert.deepEqual(b.entries(), [[key(1), 7, "tb"]]);
    assert.deepEqual(
      Object.keys(storage.snapshot()).sort(),
      ["app-a:entries", "app-a:salt", "app-b:entries", "app-b:salt", "unrelated"],
    );
    a.clear();
    assert.equal(a.salt, null);
    assert.deepEqual(a.entries(), []);
    assert.equal(b.salt, SALT_B, "clear() touches only its own prefix");
    assert.equal(storage.getItem("unrelated"), "keep me");
  });

  it("survives a reload (a new instance over the same storage)", () => {
    const storage = new MemoryStorage();
    const first = new Stash({ storage });
    first.absorb({ type: "salt", salt: SALT_A });
    first.absorb(state(1, 4, "t1"));
    first.absorb(state(2, 2, "t2"));
    const reloaded = new Stash({ storage });
    assert.equal(reloaded.salt, SALT_A);
    assert.deepEqual(reloaded.entries(), [[key(1), 4, "t1"], [key(2), 2, "t2"]]);
    reloaded.absorb(state(1, 3, "older")); // the rule holds across the reload
    reloaded.absorb(state(2, 3, "newer"));
    assert.deepEqual(new Stash({ storage }).bundle({}).entries, ["t1", "newer"]);
  });

  it("caps the number of entries, dropping the least recently updated", () => {
    const { stash } = fresh({ maxEntries: 3 });
    for (let i = 1; i <= 5; i++) stash.absorb(state(i, 1, "t" + i));
    assert.deepEqual(stash.entries().map((e) => e[2]), ["t3", "t4", "t5"]);
    stash.absorb(state(3, 2, "t3b")); // refreshed: now the newest
    stash.absorb(state(6, 1, "t6"));
    assert.deepEqual(stash.entries().map((e) => e[2]), ["t5", "t3b", "t6"]);
  });

  it("defaults to 256 entries", () => {
    const { stash } = fresh();
    for (let i = 1; i <= 300; i++) stash.absorb(state(i, 1, "t" + i));
    const e = stash.entries();
    assert.equal(e.length, 256);
    assert.equal(e[0][2], "t45");
    assert.equal(e[255][2], "t300");
  });

  it("caps the total token bytes, dropping the least recently updated", () => {
    const { stash } = fresh({ maxBytes: 25 });
    for (let i = 1; i <= 4; i++) stash.absorb(state(i, 1, String(i).repeat(10)));
    assert.deepEqual(stash.entries().map((e) => e[0]), [key(3), key(4)]);
    stash.absorb(state(5, 1, "x".repeat(25)));
    assert.deepEqual(stash.entries().map((e) => e[0]), [key(5)]);
    const total = stash.entries().reduce((n, e) => n + e[2].length, 0);
    assert.ok(total <= 25);
  });

  it("starts fresh from garbage in storage, without throwing", () => {
    for (const junk of [
      "{not json", "", "null", "42", '"str"', '{"a":1}', "[1,2,3]", "[null]", "[[]]", "\u0000",
    ]) {
      const storage = new MemoryStorage({ [P + "entries"]: junk, [P + "salt"]: "not a salt" });
      const stash = new Stash({ storage });
      assert.equal(stash.salt, null, junk);
      assert.deepEqual(stash.entries(), [], junk);
      assert.deepEqual(stash.bundle({}), { type: "recover", salt: null, entries: [], input: {} });
      stash.absorb(state(1, 1, "t")); // overwrites the garbage
      assert.deepEqual(stash.entries(), [[key(1), 1, "t"]], junk);
    }
  });

  it("keeps only well-formed stored entries, all with string tokens", () => {
    const k = key(1);
    const stored = [
      [k, 1, "ok1"],
      ["nothex", 1, "t"],
      [k.slice(2), 1, "t"],
      [key(2), -1, "t"],
      [key(2), "3", "t"], // string rev
      [key(2), 1.5, "t"],
      [key(2), null, "t"],
      [key(3), 1, 12345], // a number token would be sent as a number
      [key(3), 1, ["tok"]],
      [key(3), 1, "a+b"],
      [[key(4)], 1, "t"], // an array key
      { 0: key(5), 1: 1, 2: "t" },
      [key(6), 2, "ok6"],
    ];
    const storage = new MemoryStorage({ [P + "entries"]: JSON.stringify(stored) });
    const stash = new Stash({ storage });
    assert.deepEqual(stash.entries(), [[k, 1, "ok1"], [key(6), 2, "ok6"]]);
    const b = stash.bundle({});
    assert.deepEqual(b.entries, ["ok1", "ok6"]);
    assert.ok(b.entries.every((t) => typeof t == "string"));
  });

  it("does not throw when storage refuses writes (quota)", (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const storage = new MemoryStorage();
    const stash = new Stash({ storage });
    stash.absorb(state(1, 1, "small"));
    storage.failWrites((k, v) => k.endsWith("entries") && v.length > 60);
    assert.doesNotThrow(() => stash.absorb(state(2, 1, "x".repeat(100))));
    assert.equal(warn.mock.callCount(), 1);
    assert.deepEqual(stash.entries(), [[key(1), 1, "small"]], "the old stash is intact");
  });

  it("falls back to memory when storage is unusable", () => {
    const broken = {
      getItem() { throw new Error("SecurityError"); },
      setItem() { throw new Error("SecurityError"); },
      removeItem() { throw new Error("SecurityError"); },
    };
    const stash = new Stash({ storage: broken });
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(1, 1, "t"));
    assert.equal(stash.salt, SALT_A);
    assert.deepEqual(stash.entries(), [[key(1), 1, "t"]]);
  });

  it("uses sessionStorage by default and localStorage for \"local\"", (t) => {
    const session = new MemoryStorage();
    const local = new MemoryStorage();
    globalThis.sessionStorage = session;
    globalThis.localStorage = local;
    t.after(() => {
      delete globalThis.sessionStorage;
      delete globalThis.localStorage;
    });
    new Stash().absorb({ type: "salt", salt: SALT_A });
    new Stash({ storage: "local" }).absorb({ type: "salt", salt: SALT_B });
    assert.equal(session.getItem(P + "salt"), SALT_A);
    assert.equal(local.getItem(P + "salt"), SALT_B);
  });

  it("works without any Web Storage (memory only, e.g. Node)", () => {
    assert.equal(typeof globalThis.sessionStorage, "undefined");
    const stash = new Stash();
    stash.absorb(state(1, 1, "t"));
    assert.deepEqual(stash.entries(), [[key(1), 1, "t"]]);
    assert.deepEqual(new Stash().entries(), [], "each fallback is its own memory");
  });
});

describe("recover message", () => {
  const filled = () => {
    const { stash, storage } = fresh();
    stash.absorb({ type: "salt", salt: SALT_A });
    stash.absorb(state(2, 1, "tokB"));
    stash.absorb(state(1, 3, "tokA"));
    return { stash, storage };
  };

  it("bundle() has the wire shape", () => {
    const { stash } = filled();
    const input = { signup: { email: "a@b.c", tags: ["x", "y"] } };
    const b = stash.bundle(input);
    assert.deepEqual(b, { type: "recover", salt: SALT_A, entries: ["tokB", "tokA"], input });
    assert.equal(
      JSON.stringify(b),
      `{"type":"recover","salt":"${SALT_A}","entries":["tokB","tokA"],` +
        `"input":{"signup":{"email":"a@b.c","tags":["x","y"]}}}`,
    );
  });

  it("a new client sends a null salt", () => {
    const { stash } = fresh();
    assert.equal(JSON.stringify(stash.bundle({})), '{"type":"recover","salt":null,"entries":[],"input":{}}');
  });

  it("input defaults to formInput() (empty without a document)", () => {
    const { stash } = filled();
    assert.deepEqual(stash.bundle().input, {});
    assert.deepEqual(decodeHeader(stash.headerValue()).input, {});
  });

  it("headerValue() is unpadded base64url of the JSON", () => {
    const { stash } = filled();
    // Vary the length so every padding case (len % 3 = 0, 1, 2) comes up.
    for (let n = 0; n < 6; n++) {
      const input = { f: { v: "?".repeat(n) + "\u00ff>>>" } }; // '?' and '>' give + and / in base64
      const v = stash.headerValue(input);
      assert.match(v, /^[A-Za-z0-9_-]+$/, v);
      assert.equal(v, Buffer.from(JSON.stringify(stash.bundle(input))).toString("base64url"));
      assert.deepEqual(decodeHeader(v), stash.bundle(input));
    }
  });

  it("unicode input survives the header round trip", () => {
    const { stash } = filled();
    const input = { "formulaire-é": { nom: "Zoë Ångström", note: "日本語 🚀 \u2028 \"q\" \\", e: "" } };
    assert.deepEqual(decodeHeader(stash.headerValue(input)), stash.bundle(input));
  });

  it("large bundles (past the 8 KiB encoding chunk) survive", () => {
    const { stash } = fresh();
    for (let i = 0; i < 50; i++) stash.absorb(state(i, 1, "T".repeat(500) + i));
    const input = { f: { big: "é".repeat(20000) } };
    const v = stash.headerValue(input);
    const back = decodeHeader(v);
    assert.equal(back.entries.length, 50);
    assert.deepEqual(back, stash.bundle(input));
  });

  it("the module-level bundle() and headerValue() read the stash from options", () => {
    const { storage } = filled();
    const b = bundle({ storage }, { f: {} });
    assert.deepEqual(b, { type: "recover", salt: SALT_A, entries: ["tokB", "tokA"], input: { f: {} } });
    assert.deepEqual(decodeHeader(headerValue({ storage }, { f: {} })), b);
    assert.deepEqual(bundle({ storage, prefix: "other:" }, {}).entries, []);
  });
});

describe("formInput", () => {
  afterEach(() => {
    delete globalThis.FormData;
    delete globalThis.document;
  });

  it("is empty without a document", () => {
    assert.deepEqual(formInput(), {});
    assert.deepEqual(formInput(null), {});
    assert.deepEqual(formInput({}), {});
  });

  it("collects form[data-recover] fields by id or name, skipping passwords and files", () => {
    globalThis.FormData = FakeFormData;
    const doc = fakeDocument([
      fakeForm({
        id: "signup",
        fields: [
          { name: "email", value: "a@b.c" },
          { name: "pw", value: "hunter2", type: "password" },
          { name: "avatar", value: new FakeFile("me.png"), type: "file" },
          { name: "tag", value: "x" },
          { name: "tag", value: "y" },
          { name: "tag", value: "z" },
          { name: "note", value: "Zoë 🚀" },
        ],
      }),
      fakeForm({ name: "byname", fields: [{ name: "q", value: "" }] }),
      fakeForm({ fields: [{ name: "anon", value: "dropped" }] }), // no id or name
      fakeForm({ id: "plain", recover: false, fields: [{ name: "x", value: "1" }] }),
    ]);
    assert.deepEqual(formInput(doc), {
      signup: { email: "a@b.c", tag: ["x", "y", "z"], note: "Zoë 🚀" },
      byname: { q: "" },
    });
  });

  it("stops at maxBytes", () => {
    globalThis.FormData = FakeFormData;
    const doc = fakeDocument([
      fakeForm({ id: "a", fields: [{ name: "k", value: "1234" }] }), // 5 bytes
      fakeForm({ id: "b", fields: [{ name: "k", value: "12345678" }] }), // 9 more
    ]);
    assert.deepEqual(formInput(doc, 5), { a: { k: "1234" } });
    assert.deepEqual(formInput(doc, 14), { a: { k: "1234" }, b: { k: "12345678" } });
    assert.deepEqual(formInput(doc, 4), {});
  });

  it("feeds bundle() and headerValue() from globalThis.document", () => {
    globalThis.FormData = FakeFormData;
    globalThis.document = fakeDocument([
      fakeForm({ id: "f", fields: [{ name: "city", value: "Zürich" }] }),
    ]);
    const { stash } = fresh();
    assert.deepEqual(stash.bundle().input, { f: { city: "Zürich" } });
    assert.deepEqual(decodeHeader(stash.headerValue()).input, { f: { city: "Zürich" } });
  });
});
