// The server's announced limits, onDropped and the `drop` message, on the Stash alone.
// Run: node --test client/test/
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { MemoryStorage, decodeHeader, key, SALT_A, SALT_B, loadClient } from "./fakes.mjs";

const { Stash, DEFAULT_LIMITS } = await loadClient();

const P = "state-recovery:";
const state = (k, rev, token) => ({ type: "state", key: key(k), rev, token });
const recovered = (limits) => ({ type: "recovered", restored: 0, rejected: 0, limits });
const limits = (o = {}) => ({ ...DEFAULT_LIMITS, ...o });
const bytes = (m) => Buffer.byteLength(typeof m == "string" ? m : JSON.stringify(m), "utf8");

/** A stash over a fresh storage, recording every onDropped call in `drops`. */
const fresh = (o = {}) => {
  const storage = o.storage || new MemoryStorage();
  const drops = [];
  const stash = new Stash({ storage, onDropped: (k, reason) => drops.push([k, reason]), ...o });
  return { storage, stash, drops };
};

/** `n` entries under SALT_A, keys 1..n, tokens of `len` characters ("t1xxxx…"). */
const filled = (n, len = 10, o = {}) => {
  const f = fresh(o);
  f.stash.absorb({ type: "salt", salt: SALT_A });
  for (let i = 1; i <= n; i++) f.stash.absorb(state(i, 1, ("t" + i).padEnd(len, "x")));
  return f;
};
const tokens = (stash) => stash.entries().map((e) => e[2]);
const keys = (stash) => stash.entries().map((e) => e[0]);

describe("limits: defaults", () => {
  it("DEFAULT_LIMITS is frozen: 64 KiB tokens, 1 MiB bundles, 1024 entries", () => {
    assert.deepEqual(DEFAULT_LIMITS, { maxTokenBytes: 65536, maxBundleBytes: 1048576, maxEntries: 1024 });
    assert.ok(Object.isFrozen(DEFAULT_LIMITS));
    assert.throws(() => {
      "use strict";
      DEFAULT_LIMITS.maxEntries = 1;
    }, TypeError);
  });

  it("DEFAULT_LIMITS matches the server's Limits defaults (src/recovery.rs)", async (t) => {
    let src;
    try {
      src = await readFile(new URL("../../src/recovery.rs", import.meta.url), "utf8");
    } catch {
      return t.skip("src/recovery.rs not found");
    }
    const value = (name) => {
      const m = src.match(new RegExp(`const ${name}: usize = ([0-9 *_]+);`));
      assert.ok(m, `${name} not found in src/recovery.rs`);
      return m[1].split("*").reduce((n, f) => n * Number(f.trim().replace(/_/g, "")), 1);
    };
    assert.deepEqual(DEFAULT_LIMITS, {
      maxTokenBytes: value("DEFAULT_MAX_TOKEN_BYTES"),
      maxBundleBytes: value("DEFAULT_MAX_BUNDLE_BYTES"),
      maxEntries: value("DEFAULT_MAX_ENTRIES"),
    });
  });

  it("uses the defaults until told, the local caps being the smaller ones", () => {
    const { stash } = fresh();
    assert.equal(stash.limits, DEFAULT_LIMITS);
    assert.deepEqual(stash.caps, { maxTokenBytes: 65536, maxEntries: 256, maxBundleBytes: 1048576 });
    const big = fresh({ maxEntries: 5000, maxTokenBytes: 1e6 }).stash;
    assert.deepEqual(big.caps, { maxTokenBytes: 65536, maxEntries: 1024, maxBundleBytes: 1048576 });
  });

  it("the server's default entry limit applies to a larger local maxEntries", () => {
    const { stash, drops } = fresh({ maxEntries: 5000 });
    for (let i = 1; i <= 1030; i++) stash.absorb(state(i, 1, "t" + i));
    const e = stash.entries();
    assert.equal(e.length, 1024);
    assert.equal(e[0][2], "t7");
    assert.deepEqual(drops, [1, 2, 3, 4, 5, 6].map((i) => [key(i), "over-entry-limit"]));
  });

  it("the server's default token limit applies to a larger local maxTokenBytes", () => {
    const { stash, drops } = fresh({ maxTokenBytes: 1e6, maxBytes: 1e6 });
    stash.absorb(state(1, 1, "x".repeat(65536)));
    stash.absorb(state(2, 1, "x".repeat(65537)));
    assert.deepEqual(keys(stash), [key(1)]);
    assert.deepEqual(drops, [[key(2), "token-too-large"]]);
  });
});

describe("limits: announced by the server", () => {
  it("keeps valid limits under prefix + \"limits\" and obeys them after a reload", () => {
    const { stash, storage } = fresh();
    const l = { maxTokenBytes: 100, maxBundleBytes: 5000, maxEntries: 7 };
    assert.equal(stash.absorb(recovered(l)), false, "recovered still goes to the application");
    assert.deepEqual(JSON.parse(storage.getItem(P + "limits")), l);
    assert.deepEqual(stash.limits, l);
    assert.ok(Object.isFrozen(stash.limits));
    const reloaded = new Stash({ storage });
    assert.deepEqual(reloaded.limits, l);
    assert.deepEqual(reloaded.caps, { maxTokenBytes: 100, maxEntries: 7, maxBundleBytes: 5000 });
    assert.equal(new Stash({ storage, prefix: "other:" }).limits, DEFAULT_LIMITS, "per prefix");
  });

  it("the latest limits win; extra fields are not kept", () => {
    const { stash, storage } = fresh();
    stash.absorb(recovered(limits({ maxEntries: 5 })));
    stash.absorb(recovered({ ...limits({ maxEntries: 9 }), extra: "x", maxDepth: 64 }));
    assert.deepEqual(stash.limits, limits({ maxEntries: 9 }));
    assert.deepEqual(JSON.parse(storage.getItem(P + "limits")), limits({ maxEntries: 9 }));
  });

  it("ignores garbage limits (negative, zero, strings, fractions, huge, missing)", () => {
    const bad = [
      undefined, null, 0, 5, "limits", true, [], [1, 2, 3], {},
      { maxTokenBytes: 100 }, // missing fields
      { maxTokenBytes: 100, maxBundleBytes: 5000 },
      limits({ maxEntries: -1 }),
      limits({ maxEntries: 0 }),
      limits({ maxTokenBytes: "100" }),
      limits({ maxBundleBytes: "1048576" }),
      limits({ maxEntries: 1.5 }),
      limits({ maxBundleBytes: 1e300 }),
      limits({ maxBundleBytes: 2 ** 53 }),
      limits({ maxTokenBytes: Infinity }),
      limits({ maxTokenBytes: NaN }),
      limits({ maxEntries: null }),
      limits({ maxEntries: [4] }),
      limits({ maxEntries: { valueOf: () => 4 } }),
      limits({ maxEntries: undefined }),
    ];
    for (const start of [null, { maxTokenBytes: 100, maxBundleBytes: 5000, maxEntries: 7 }]) {
      const { stash, storage, drops } = filled(3);
      if (start) stash.absorb(recovered(start));
      const before = storage.snapshot();
      for (const l of bad) {
        assert.equal(stash.absorb(recovered(l)), false, JSON.stringify(l));
        assert.deepEqual(stash.limits, start || DEFAULT_LIMITS, JSON.stringify(l));
      }
      assert.equal(stash.absorb({ type: "recovered" }), false);
      assert.deepEqual(storage.snapshot(), before, "nothing written");
      assert.deepEqual(drops, []);
    }
    // The same values over the wire as JSON text (what the socket would deliver).
    const { stash } = fresh();
    stash.absorb(JSON.parse('{"type":"recovered","limits":{"maxTokenBytes":1e400,"maxBundleBytes":1,"maxEntries":1}}'));
    stash.absorb(JSON.parse('{"type":"recovered","limits":{"maxTokenBytes":18446744073709551615,"maxBundleBytes":1,"maxEntries":1}}'));
    assert.equal(stash.limits, DEFAULT_LIMITS);
  });

  it("ignores garbage limits in storage", () => {
    for (const junk of [
      "{not json", "", "null", "42", '"x"', "[]", "{}", '{"maxTokenBytes":-1,"maxBundleBytes":1,"maxEntries":1}',
      '{"maxTokenBytes":"9","maxBundleBytes":9,"maxEntries":9}', '{"maxTokenBytes":9,"maxBundleBytes":9}',
    ]) {
      const stash = new Stash({ storage: new MemoryStorage({ [P + "limits"]: junk }) });
      assert.equal(stash.limits, DEFAULT_LIMITS, junk);
    }
  });

  it("a token over the announced maxTokenBytes is reported and not stored", () => {
    const { stash, drops, storage } = fresh();
    stash.absorb(recovered(limits({ maxTokenBytes: 10 })));
    stash.absorb(state(1, 1, "x".repeat(10)));
    const before = storage.snapshot();
    assert.equal(stash.absorb(state(2, 1, "x".repeat(11))), true);
    assert.deepEqual(storage.snapshot(), before, "not stored");
    assert.deepEqual(drops, [[key(2), "token-too-large"]]);
    // A newer revision too large for the key already stored: refused, the stored one stays.
    stash.absorb(state(1, 2, "y".repeat(11)));
    assert.deepEqual(stash.entries(), [[key(1), 1, "x".repeat(10)]]);
    assert.deepEqual(drops.at(-1), [key(1), "token-too-large"]);
    // An older revision is ignored before its size matters: no report.
    stash.absorb(state(1, 0, "z".repeat(11)));
    assert.equal(drops.length, 2);
  });

  it("the smaller of the local and announced maxTokenBytes applies", () => {
    const { stash, drops } = fresh({ maxTokenBytes: 5 });
    stash.absorb(recovered(limits({ maxTokenBytes: 10 })));
    stash.absorb(state(1, 1, "x".repeat(5)));
    stash.absorb(state(2, 1, "x".repeat(6)));
    assert.deepEqual(keys(stash), [key(1)]);
    assert.deepEqual(drops, [[key(2), "token-too-large"]]);
  });

  it("stored tokens over a smaller announced maxTokenBytes are dropped at once", () => {
    const { stash, drops } = fresh();
    stash.absorb(state(1, 1, "a".repeat(20)));
    stash.absorb(state(2, 1, "b".repeat(5)));
    stash.absorb(state(3, 1, "c".repeat(30)));
    stash.absorb(recovered(limits({ maxTokenBytes: 20 })));
    assert.deepEqual(keys(stash), [key(1), key(2)]);
    assert.deepEqual(drops, [[key(3), "token-too-large"]]);
  });

  it("the stash never exceeds the effective entry cap (smaller of local and announced)", () => {
    const { stash, drops } = fresh({ maxEntries: 5 });
    stash.absorb(recovered(limits({ maxEntries: 3 })));
    for (let i = 1; i <= 6; i++) {
      stash.absorb(state(i, 1, "t" + i));
      assert.ok(stash.entries().length <= 3);
    }
    assert.deepEqual(tokens(stash), ["t4", "t5", "t6"]);
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "over-entry-limit"]));
    // The server raises its limit: the local cap (5) now applies.
    stash.absorb(recovered(limits({ maxEntries: 50 })));
    for (let i = 7; i <= 9; i++) stash.absorb(state(i, 1, "t" + i));
    assert.deepEqual(tokens(stash), ["t5", "t6", "t7", "t8", "t9"]);
    assert.deepEqual(drops.slice(3), [[key(4), "over-entry-limit"]]);
  });

  it("a smaller announced maxEntries trims the stash at once, least recently updated first", () => {
    const { stash, drops } = filled(5);
    stash.absorb(state(1, 2, "t1-refreshed")); // now the newest
    stash.absorb(recovered(limits({ maxEntries: 2 })));
    assert.deepEqual(tokens(stash), ["t5xxxxxxxx", "t1-refreshed"]);
    assert.deepEqual(drops, [2, 3, 4].map((i) => [key(i), "over-entry-limit"]));
    stash.absorb(recovered(limits({ maxEntries: 2 }))); // again: nothing more to drop
    assert.equal(drops.length, 3);
  });

  it("reports entries dropped for the local maxBytes, each once", () => {
    const { stash, drops } = fresh({ maxBytes: 25 });
    for (let i = 1; i <= 4; i++) stash.absorb(state(i, 1, String(i).repeat(10)));
    assert.deepEqual(keys(stash), [key(3), key(4)]);
    assert.deepEqual(drops, [[key(1), "over-byte-limit"], [key(2), "over-byte-limit"]]);
    stash.absorb(state(5, 1, "x".repeat(26))); // alone over maxBytes: refused by itself
    assert.deepEqual(keys(stash), [key(3), key(4)]);
    assert.deepEqual(drops.slice(2), [[key(5), "over-byte-limit"]]);
    stash.absorb(state(4, 2, "y".repeat(26))); // a newer revision as large: the stored one stays
    assert.deepEqual(stash.entries(), [[key(3), 1, "3".repeat(10)], [key(4), 1, "4".repeat(10)]]);
    assert.deepEqual(drops.slice(3), [[key(4), "over-byte-limit"]]);
  });
});

describe("limits: the recover message", () => {
  const input = { f: { note: "é".repeat(10) } }; // 20 bytes of UTF-8, 10 characters
  const sizeWith = (stash, entries, inp) =>
    bytes({ type: "recover", salt: stash.salt, entries, input: inp });

  it("fits exactly at the cap; one byte less drops the input first (UTF-8 bytes, not characters)", () => {
    const { stash, storage, drops } = filled(5);
    const all = tokens(stash);
    const full = sizeWith(stash, all, input);
    storage.setItem(P + "limits", JSON.stringify(limits({ maxBundleBytes: full })));
    let b = stash.bundle(input);
    assert.deepEqual(b, { type: "recover", salt: SALT_A, entries: all, input });
    assert.equal(bytes(b), full);

    // One byte less: the characters would still fit (10 fewer than the bytes), the bytes do not.
    assert.equal(JSON.stringify(b).length, full - 10);
    stash.absorb(recovered(limits({ maxBundleBytes: full - 1 })));
    b = stash.bundle(input);
    assert.deepEqual(b, { type: "recover", salt: SALT_A, entries: all, input: {} }, "input dropped, entries kept");
    assert.ok(bytes(b) <= full - 1);
    assert.deepEqual(drops, []);
  });

  it("then drops the least recently updated entries until it fits, each reported once", () => {
    const { stash, drops } = filled(5); // five 10-character tokens: 12 bytes each, plus commas
    const empty = sizeWith(stash, [], {});
    const cap = empty + 3 * 12 + 2; // room for exactly three tokens
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    assert.deepEqual(drops, [[key(1), "over-byte-limit"], [key(2), "over-byte-limit"]]);
    for (const inp of [input, {}, input]) {
      const b = stash.bundle(inp);
      assert.deepEqual(b.entries, ["t3xxxxxxxx", "t4xxxxxxxx", "t5xxxxxxxx"]);
      assert.deepEqual(b.input, {});
      assert.equal(bytes(b), cap, "exactly at the cap");
    }
    assert.equal(drops.length, 2, "reported once, not on every bundle");
    assert.deepEqual(keys(stash), [key(3), key(4), key(5)], "gone from the stash too");
  });

  it("counts every byte: one short of three tokens (with their commas) keeps two", () => {
    const { stash, drops } = filled(5);
    const cap = sizeWith(stash, [], {}) + 3 * 12 + 2 - 1;
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    const b = stash.bundle({});
    assert.deepEqual(b.entries, ["t4xxxxxxxx", "t5xxxxxxxx"]);
    assert.equal(bytes(b), cap - 12);
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "over-byte-limit"]));
  });

  it("trims what an earlier page stored past the limits when it builds the bundle", () => {
    const { stash, storage, drops } = filled(5);
    const cap = sizeWith(stash, [], {}) + 2 * 12 + 1; // two tokens
    storage.setItem(P + "limits", JSON.stringify(limits({ maxBundleBytes: cap })));
    const b = stash.bundle(input);
    assert.deepEqual(b, { type: "recover", salt: SALT_A, entries: ["t4xxxxxxxx", "t5xxxxxxxx"], input: {} });
    assert.equal(bytes(b), cap);
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "over-byte-limit"]));
    assert.deepEqual(keys(stash), [key(4), key(5)]);
    stash.bundle(input);
    assert.equal(drops.length, 3, "once");
  });

  it("the first cap reached gives the reason for every older entry", () => {
    const { stash, storage, drops } = filled(5);
    const cap = sizeWith(stash, [], {}) + 3 * 12 + 2; // three tokens, but only two entries
    storage.setItem(P + "limits", JSON.stringify(limits({ maxBundleBytes: cap, maxEntries: 2 })));
    assert.deepEqual(stash.bundle({}).entries, ["t4xxxxxxxx", "t5xxxxxxxx"]);
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "over-entry-limit"]));
  });

  it("obeys the announced maxEntries in the bundle, newest kept", () => {
    const { stash, storage, drops } = filled(5);
    storage.setItem(P + "limits", JSON.stringify(limits({ maxEntries: 2 })));
    const b = stash.bundle(input);
    assert.deepEqual(b.entries, ["t4xxxxxxxx", "t5xxxxxxxx"]);
    assert.deepEqual(b.input, input, "the input is not dropped for the entry count");
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "over-entry-limit"]));
  });

  it("the header form obeys the same cap on the JSON before base64", () => {
    const { stash, drops } = filled(5);
    const cap = sizeWith(stash, [], {}) + 3 * 12 + 2;
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    const v = stash.headerValue(input);
    const json = Buffer.from(v, "base64url").toString("utf8");
    assert.ok(bytes(json) <= cap);
    assert.deepEqual(decodeHeader(v), {
      type: "recover", salt: SALT_A, entries: ["t3xxxxxxxx", "t4xxxxxxxx", "t5xxxxxxxx"], input: {},
    });
    assert.equal(drops.length, 2);
  });

  it("a new client (null salt) is measured with its null salt", () => {
    const { stash } = fresh();
    stash.absorb(state(1, 1, "abcdefghij"));
    const cap = sizeWith(stash, ["abcdefghij"], {});
    assert.equal(stash.salt, null);
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    assert.equal(bytes(stash.bundle(input)), cap);
    assert.deepEqual(stash.bundle(input).entries, ["abcdefghij"]);
  });

  it("a token that cannot fit the bundle even alone is refused by itself", () => {
    const { stash, drops } = filled(2);
    const cap = sizeWith(stash, [], {}) + 30;
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    stash.absorb(state(3, 1, "z".repeat(29))); // 31 bytes with its quotes
    assert.deepEqual(keys(stash), [key(1), key(2)]);
    assert.deepEqual(drops, [[key(3), "over-byte-limit"]]);
    stash.absorb(state(3, 1, "z".repeat(28))); // exactly the space left alone: pushes out both
    assert.deepEqual(keys(stash), [key(3)]);
    assert.deepEqual(drops.slice(1), [[key(1), "over-byte-limit"], [key(2), "over-byte-limit"]]);
    assert.equal(bytes(stash.bundle({})), cap);
  });

  it("a stored token too large for a smaller announced bundle goes alone, not the older ones", () => {
    const { stash, drops } = filled(2);
    stash.absorb(state(3, 1, "z".repeat(40)));
    stash.absorb(recovered(limits({ maxBundleBytes: sizeWith(stash, [], {}) + 30 })));
    assert.deepEqual(keys(stash), [key(1), key(2)]);
    assert.deepEqual(drops, [[key(3), "over-byte-limit"]]);
  });

  it("new entries past the announced maxBundleBytes push out the oldest", () => {
    const { stash, drops } = filled(0);
    const cap = sizeWith(stash, [], {}) + 2 * 12 + 1;
    stash.absorb(recovered(limits({ maxBundleBytes: cap })));
    for (let i = 1; i <= 4; i++) stash.absorb(state(i, 1, ("t" + i).padEnd(10, "x")));
    assert.deepEqual(keys(stash), [key(3), key(4)]);
    assert.deepEqual(drops, [[key(1), "over-byte-limit"], [key(2), "over-byte-limit"]]);
    assert.ok(bytes(stash.bundle({})) <= cap);
  });
});

describe("onDropped: storage failures", () => {
  it("reports every entry a refused write did not save; the stash stays as it was", (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const { stash, storage, drops } = filled(2);
    const before = stash.entries();
    storage.failWrites((k) => k.endsWith("entries"));
    stash.absorb(state(3, 1, "new"));
    stash.absorb(state(1, 2, "t1-rev2"));
    assert.deepEqual(stash.entries(), before);
    assert.deepEqual(drops, [[key(3), "storage-failed"], [key(1), "storage-failed"]]);
    assert.equal(warn.mock.callCount(), 2);
  });

  it("entries a refused write would have trimmed are reported only once really gone", (t) => {
    t.mock.method(console, "warn", () => {});
    const { stash, storage, drops } = filled(2, 10, { maxEntries: 2 });
    storage.failWrites((k) => k.endsWith("entries"));
    stash.absorb(state(3, 1, "t3"));
    assert.deepEqual(drops, [[key(3), "storage-failed"]], "key 1 is still stored: not reported");
    assert.deepEqual(keys(stash), [key(1), key(2)]);
    storage.failWrites(null);
    stash.absorb(state(4, 1, "t4"));
    assert.deepEqual(keys(stash), [key(2), key(4)]);
    assert.deepEqual(drops.slice(1), [[key(1), "over-entry-limit"]]);
  });

  it("a bundle trimmed under a refusing storage still reports what it leaves out", (t) => {
    t.mock.method(console, "warn", () => {});
    const { stash, storage, drops } = filled(3);
    storage.setItem(P + "limits", JSON.stringify(limits({ maxEntries: 2 })));
    storage.failWrites(() => true);
    const b = stash.bundle({});
    assert.deepEqual(b.entries, ["t2xxxxxxxx", "t3xxxxxxxx"]);
    assert.deepEqual(drops, [[key(1), "over-entry-limit"]]);
  });

  it("limits that cannot be stored are still obeyed by this stash", (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const { stash, storage, drops } = filled(3);
    storage.failWrites((k) => k.endsWith("limits"));
    stash.absorb(recovered(limits({ maxEntries: 1 })));
    assert.equal(storage.getItem(P + "limits"), null);
    assert.equal(warn.mock.callCount(), 1);
    assert.deepEqual(stash.limits, limits({ maxEntries: 1 }));
    assert.deepEqual(keys(stash), [key(3)]);
    assert.equal(drops.length, 2);
  });

  it("a throwing onDropped is logged and does not stop the stash", (t) => {
    const err = t.mock.method(console, "error", () => {});
    const seen = [];
    const { stash } = filled(3, 10, {
      maxEntries: 1,
      onDropped: (k) => {
        seen.push(k);
        throw new Error("app bug");
      },
    });
    assert.deepEqual(seen, [key(1), key(2)]);
    assert.equal(err.mock.callCount(), 2);
    assert.deepEqual(keys(stash), [key(3)]);
  });
});

describe("the drop message", () => {
  it("removes exactly that key and reports it", () => {
    const { stash, drops } = filled(3);
    assert.equal(stash.absorb({ type: "drop", key: key(2) }), true);
    assert.deepEqual(keys(stash), [key(1), key(3)]);
    assert.deepEqual(drops, [[key(2), "server-drop"]]);
    assert.equal(stash.salt, SALT_A, "the salt stays");
    assert.equal(stash.absorb({ type: "drop", key: key(2) }), true, "again: nothing left to drop");
    assert.equal(drops.length, 1);
  });

  it("ignores malformed or unknown keys (still claimed as protocol messages)", () => {
    const { stash, storage, drops } = filled(3);
    const before = storage.snapshot();
    const k = key(0xabc);
    stash.absorb(state(0xabc, 1, "abc"));
    const withAbc = storage.snapshot();
    assert.notDeepEqual(withAbc, before);
    for (const bad of [
      undefined, null, 1, 0xabc, "", key(1).slice(1), key(1) + "0", k.toUpperCase(), " " + k,
      [k], [key(1)], { toString: () => key(1) }, { key: key(1) }, true, key(9), // key(9): not stored
    ]) {
      assert.equal(stash.absorb({ type: "drop", key: bad }), true, String(bad));
    }
    assert.equal(stash.absorb({ type: "drop" }), true);
    assert.deepEqual(storage.snapshot(), withAbc);
    assert.deepEqual(drops, []);
  });

  it("a dropped key takes a fresh start at any revision", () => {
    const { stash } = filled(1);
    stash.absorb(state(1, 9, "t1-rev9"));
    stash.absorb({ type: "drop", key: key(1) });
    stash.absorb(state(1, 0, "fresh"));
    assert.deepEqual(stash.entries(), [[key(1), 0, "fresh"]]);
  });
});

describe("onDropped: salt changes", () => {
  it("a new salt reports each wiped entry; the limits stay", () => {
    const { stash, drops } = filled(3);
    stash.absorb(recovered(limits({ maxEntries: 50 })));
    stash.absorb({ type: "salt", salt: SALT_A }); // the same salt: nothing wiped
    assert.deepEqual(drops, []);
    stash.absorb({ type: "salt", salt: SALT_B });
    assert.deepEqual(drops, [1, 2, 3].map((i) => [key(i), "salt-changed"]));
    assert.deepEqual(stash.entries(), []);
    assert.deepEqual(stash.limits, limits({ maxEntries: 50 }));
    stash.absorb({ type: "salt", salt: SALT_A }); // back again: an empty stash, no report
    assert.equal(drops.length, 3);
  });

  it("a first salt over an empty stash reports nothing", () => {
    const { stash, drops } = fresh();
    stash.absorb({ type: "salt", salt: SALT_A });
    assert.deepEqual(drops, []);
  });
});
