/**
 * Durability of the store: the previous version (`.prev`), `--recover`,
 * write fencing, and disk faults injected through the store's `fs` option.
 */
import { readFileSync } from "node:fs";
import * as realFs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  LockCompromisedError,
  PersistError,
  StateFileError,
  UsageError,
} from "../../src/errors.js";
import type { StateFile } from "../../src/schemas/stateFile.js";
import {
  FileHeartbeatStore,
  type HeartbeatStoreOptions,
  heartbeatPaths,
  loadStateFile,
  type StoreFs,
} from "../../src/services/store/index.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/state-v1.json", import.meta.url));
const fixtureText = readFileSync(FIXTURE, "utf8");
const ID = "fixture-v1";

/** The fixture at a given seq and tick. */
function stateAt(seq: number, tick = seq): StateFile {
  const state = JSON.parse(fixtureText) as StateFile;
  state.seq = seq;
  state.tick = tick;
  state.snapshot.context.tick = tick;
  state.snapshot.context.seq = seq;
  return state;
}
const textOf = (state: StateFile) => `${JSON.stringify(state, null, 2)}\n`;

let base: string;
let dir: string;
beforeEach(async () => {
  base = await realFs.realpath(await realFs.mkdtemp(path.join(os.tmpdir(), "rc-durable-")));
  dir = path.join(base, "state");
});
afterEach(async () => {
  await realFs.rm(base, { recursive: true, force: true });
});

function newStore(options: HeartbeatStoreOptions = {}): FileHeartbeatStore {
  return new FileHeartbeatStore(heartbeatPaths(dir, ID), options);
}
const listDir = async () => (await realFs.readdir(dir)).sort();
const read = (file: string) => realFs.readFile(file, "utf8");

type Op = "open" | "write" | "fsync" | "rename" | "link" | "append";
interface Fault {
  op: Op;
  code: string;
  /** How many calls fail (default: all). */
  times?: number;
  /** Only calls on paths this matches. */
  match?: (file: string) => boolean;
}

function osError(code: string, op: string, file: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: injected fault, ${op} '${file}'`) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

/** The real fs with faults injected at open, write, fsync, rename or link. */
function faultyFs(faults: Fault[]): StoreFs & { calls: Record<Op, number> } {
  const calls: Record<Op, number> = { open: 0, write: 0, fsync: 0, rename: 0, link: 0, append: 0 };
  const left = faults.map((f) => ({ ...f, left: f.times ?? Number.POSITIVE_INFINITY }));
  const trip = (op: Op, file: string) => {
    calls[op] += 1;
    const fault = left.find((f) => f.op === op && f.left > 0 && (f.match?.(file) ?? true));
    if (!fault) return;
    fault.left -= 1;
    throw osError(fault.code, op, file);
  };
  const wrapHandle = (handle: realFs.FileHandle, file: string): realFs.FileHandle =>
    new Proxy(handle, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function") return value;
        const op: Op | null =
          prop === "writeFile"
            ? "write"
            : prop === "appendFile"
              ? "append"
              : prop === "sync"
                ? "fsync"
                : null;
        return (...args: unknown[]) => {
          if (op) trip(op, file);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  return {
    ...realFs,
    calls,
    open: (async (file: string, flags?: string | number, mode?: number) => {
      trip("open", String(file));
      return wrapHandle(await realFs.open(file, flags, mode), String(file));
    }) as StoreFs["open"],
    rename: async (from, to) => {
      trip("rename", String(to));
      return realFs.rename(from, to);
    },
    link: async (from, to) => {
      trip("link", String(to));
      return realFs.link(from, to);
    },
  };
}

/** A store whose retry delays are recorded instead of slept. */
function storeWith(fs: StoreFs) {
  const delays: number[] = [];
  const store = newStore({
    fs,
    delay: async (ms) => {
      delays.push(ms);
    },
  });
  return { store, delays };
}

const isStateTemp = (file: string) =>
  /\.heartbeat-fixture-v1\.json\.\d+\.[0-9a-f]+\.tmp$/.test(file);

describe("the previous version (.prev)", () => {
  it("keeps the state file it replaces as .prev, byte for byte", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    expect(await listDir()).toEqual(["heartbeat-fixture-v1.json"]);
    await store.save(stateAt(2));
    expect(await read(store.prevFile)).toBe(textOf(stateAt(1)));
    await store.save(stateAt(3));
    expect(await read(store.paths.stateFile)).toBe(textOf(stateAt(3)));
    expect(await read(store.prevFile)).toBe(textOf(stateAt(2)));
    expect((await loadStateFile(store.prevFile))?.seq).toBe(2);
    expect(await listDir()).toEqual([
      "heartbeat-fixture-v1.json",
      "heartbeat-fixture-v1.json.prev",
    ]);
    expect((await realFs.stat(store.prevFile)).mode & 0o777).toBe(0o600);
  });

  it("writing the same seq again (a restored persist) keeps .prev at the version before", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    await store.save(stateAt(2));
    const again = newStore();
    await again.load();
    await again.save(stateAt(2));
    expect(await read(store.prevFile)).toBe(textOf(stateAt(1)));
  });

  it("a failure between keeping .prev and the rename leaves both valid (the old version)", async () => {
    const fs = faultyFs([{ op: "rename", code: "EIO", match: (f) => f.endsWith(".json") }]);
    const { store } = storeWith(fs);
    await store.ensureDir();
    await newStore().save(stateAt(1));
    await store.load();
    await expect(store.save(stateAt(2))).rejects.toBeInstanceOf(PersistError);
    expect(await read(store.paths.stateFile)).toBe(textOf(stateAt(1)));
    expect(await read(store.prevFile)).toBe(textOf(stateAt(1)));
    expect(await listDir()).toEqual([
      "heartbeat-fixture-v1.json",
      "heartbeat-fixture-v1.json.prev",
    ]);
  });

  it("falls back to a copy where hard links are not supported", async () => {
    const fs = faultyFs([{ op: "link", code: "EPERM" }]);
    const { store } = storeWith(fs);
    await store.ensureDir();
    await store.save(stateAt(1));
    await store.save(stateAt(2));
    expect(await read(store.prevFile)).toBe(textOf(stateAt(1)));
    expect((await realFs.stat(store.prevFile)).ino).not.toBe(
      (await realFs.stat(store.paths.stateFile)).ino,
    );
  });

  it("refuses to start afresh when the state file is gone but .prev is there (exit 3)", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    await store.save(stateAt(2));
    await realFs.rm(store.paths.stateFile);
    const error = await newStore()
      .load()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateFileError);
    expect(error).toMatchObject({ problem: "missing", exitCode: 3 });
    expect((error as StateFileError).hint).toContain("--recover");
  });
});

describe("recover (run --recover)", () => {
  const kinds: Array<[string, string]> = [
    ["truncated JSON", fixtureText.slice(0, 300)],
    ["garbage", "\u0000\u0001 garbage \uFFFD"],
    ["future schemaVersion", JSON.stringify({ ...JSON.parse(fixtureText), schemaVersion: 9 })],
    ["empty", ""],
  ];

  async function brokenWithPrev(content: string) {
    const store = newStore({ now: () => Date.parse("2026-05-01T12:34:56.789Z") });
    await store.ensureDir();
    await store.save(stateAt(4));
    await store.save(stateAt(5));
    await store.append([
      { type: "tick", seq: 4, tick: 4 },
      { type: "tick", seq: 5, tick: 5 },
    ]);
    await realFs.writeFile(store.paths.stateFile, content);
    return store;
  }

  for (const [name, content] of kinds) {
    it(`${name}: moves the file to .corrupt-<time> with its bytes and puts .prev in its place`, async () => {
      const store = await brokenWithPrev(content);
      await expect(store.load()).rejects.toBeInstanceOf(StateFileError);
      const result = await store.recover();
      const corrupt = `${store.paths.stateFile}.corrupt-2026-05-01T12-34-56-789Z`;
      expect(result).toMatchObject({ action: "restored", tick: 4, movedTo: corrupt });
      expect(result.message).toContain("tick 4");
      expect(await read(corrupt)).toBe(content);
      expect(await read(store.paths.stateFile)).toBe(textOf(stateAt(4)));
      expect((await store.load())?.tick).toBe(4);
      // The redone tick 5 is journaled again after the marker.
      await store.save(stateAt(5));
      await store.append([{ type: "tick", seq: 5, tick: 5, redone: true }]);
      const journal = await store.readJournal();
      expect(journal.map((e) => [e.type, e.seq])).toEqual([
        ["tick", 4],
        ["tick", 5],
        ["recover", 4],
        ["tick", 5],
      ]);
      // A later process on the same files reads the restarted count too.
      await newStore().append([
        { type: "tick", seq: 5, tick: 5 },
        { type: "tick", seq: 6 },
      ]);
      expect((await newStore().readJournal()).map((e) => e.seq)).toEqual([4, 5, 4, 5, 6]);
    });
  }

  it("on a healthy state file it changes nothing and says so", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    await store.save(stateAt(2));
    const before = await listDir();
    const result = await store.recover();
    expect(result).toMatchObject({ action: "none", reason: "healthy", tick: 2 });
    expect(result.message).toContain("nothing to recover");
    expect(await listDir()).toEqual(before);
    expect(await read(store.paths.stateFile)).toBe(textOf(stateAt(2)));
  });

  it("with .prev missing: exit 3 saying so, the bad file byte for byte where it was", async () => {
    const store = newStore();
    await store.ensureDir();
    await realFs.writeFile(store.paths.stateFile, "{ torn");
    const error = await store.recover().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateFileError);
    expect(error).toMatchObject({ problem: "unrecoverable", exitCode: 3 });
    expect((error as Error).message).toContain("no previous version");
    expect((error as Error).message).toContain(store.prevFile);
    expect(await read(store.paths.stateFile)).toBe("{ torn");
    expect(await listDir()).toEqual(["heartbeat-fixture-v1.json"]);
  });

  it("with .prev unusable too: exit 3 saying so, both files byte for byte", async () => {
    const store = newStore();
    await store.ensureDir();
    await realFs.writeFile(store.paths.stateFile, "{ torn");
    await realFs.writeFile(store.prevFile, "also broken");
    const error = await store.recover().catch((e: unknown) => e);
    expect(error).toMatchObject({ problem: "unrecoverable", exitCode: 3 });
    expect((error as Error).message).toContain("previous version cannot be used");
    expect(await read(store.paths.stateFile)).toBe("{ torn");
    expect(await read(store.prevFile)).toBe("also broken");
    expect(await listDir()).toEqual([
      "heartbeat-fixture-v1.json",
      "heartbeat-fixture-v1.json.prev",
    ]);
  });

  it("restores .prev when the state file is missing", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    await store.save(stateAt(2));
    await realFs.rm(store.paths.stateFile);
    const result = await newStore().recover();
    expect(result).toMatchObject({ action: "restored", tick: 1, movedTo: null });
    expect((await newStore().load())?.seq).toBe(1);
  });

  it("with no files at all there is nothing to recover", async () => {
    const store = newStore();
    await store.ensureDir();
    expect(await store.recover()).toMatchObject({ action: "none", reason: "no-state" });
    expect(await listDir()).toEqual([]);
  });
});

describe("write fencing", () => {
  it("refuses to rename over a state file another process advanced, and then refuses every write", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(3));
    // Another runner took over and wrote seq 4.
    const theirs = textOf({ ...stateAt(4), progress: "theirs" });
    await realFs.writeFile(store.paths.stateFile, theirs);
    const error = await store.save(stateAt(4)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockCompromisedError);
    expect(error).toMatchObject({ code: "lock-compromised", exitCode: 1, path: store.paths.lock });
    expect((error as Error).message).toContain("advanced by another process (seq 4");
    expect(await read(store.paths.stateFile)).toBe(theirs);
    await expect(store.save(stateAt(5))).rejects.toBeInstanceOf(LockCompromisedError);
    await expect(store.append([{ type: "tick", seq: 5 }])).rejects.toBeInstanceOf(
      LockCompromisedError,
    );
    expect(await read(store.paths.stateFile)).toBe(theirs);
    await expect(realFs.access(store.paths.journal)).rejects.toThrow();
  });

  it("refuses when a file of its own seq appears that it did not write (the other runner is one ahead)", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(3));
    await realFs.writeFile(store.paths.stateFile, textOf({ ...stateAt(4), progress: "theirs" }));
    await expect(store.save(stateAt(4))).rejects.toBeInstanceOf(LockCompromisedError);
  });

  it("refuses to overwrite a state file it cannot read, leaving it byte for byte", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.save(stateAt(1));
    await realFs.writeFile(store.paths.stateFile, '{"schemaVersion": 2}');
    await expect(store.save(stateAt(2))).rejects.toBeInstanceOf(LockCompromisedError);
    expect(await read(store.paths.stateFile)).toBe('{"schemaVersion": 2}');
  });

  it("a first save refuses a state file that appeared after load found none", async () => {
    const store = newStore();
    await store.ensureDir();
    expect(await store.load()).toBeNull();
    await realFs.writeFile(store.paths.stateFile, textOf(stateAt(1)));
    await expect(store.save(stateAt(1))).rejects.toBeInstanceOf(LockCompromisedError);
  });

  it("repeating the write of the seq it loaded (a restored persist) is allowed", async () => {
    await newStore().ensureDir();
    await newStore().save(stateAt(7));
    const store = newStore();
    await store.load();
    await store.save(stateAt(7));
    await store.save(stateAt(8));
    expect((await store.load())?.seq).toBe(8);
  });
});

describe("disk faults (injected)", () => {
  const codes = ["ENOSPC", "EROFS", "EIO"];
  const ops: Array<{ op: Op; match?: (f: string) => boolean }> = [
    { op: "open", match: isStateTemp },
    { op: "write" },
    { op: "fsync", match: isStateTemp },
    { op: "rename", match: (f) => f.endsWith(".json") },
  ];

  for (const code of codes) {
    for (const { op, match } of ops) {
      it(`${code} at ${op}: retries 3 times with backoff, then PersistError naming the path and ${code}; the last good state survives`, async () => {
        await newStore().ensureDir();
        await newStore().save(stateAt(1));
        await newStore().save(stateAt(2));
        const fs = faultyFs([{ op, code, ...(match ? { match } : {}) }]);
        const { store, delays } = storeWith(fs);
        await store.load();
        const error = await store.save(stateAt(3)).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(PersistError);
        const persist = error as PersistError;
        expect(persist.osCode).toBe(code);
        expect(persist.path).toBe(store.paths.stateFile);
        expect(persist.message).toContain(store.paths.stateFile);
        expect(persist.message).toContain(code);
        expect(persist.message).toContain("4 attempts");
        expect(persist.exitCode).toBe(1);
        expect(persist.hint).toContain("last good state was kept");
        expect(delays).toEqual([100, 200, 400]);
        expect(await read(store.paths.stateFile)).toBe(textOf(stateAt(2)));
        expect((await loadStateFile(store.prevFile))?.seq).toBeGreaterThanOrEqual(1);
        expect(await listDir()).toEqual([
          "heartbeat-fixture-v1.json",
          "heartbeat-fixture-v1.json.prev",
        ]);
      });
    }
  }

  it("a fault that clears is survived by a retry", async () => {
    const fs = faultyFs([{ op: "write", code: "ENOSPC", times: 2 }]);
    const { store, delays } = storeWith(fs);
    await store.ensureDir();
    await store.save(stateAt(1));
    expect(delays).toEqual([100, 200]);
    expect((await store.load())?.seq).toBe(1);
    expect(await listDir()).toEqual(["heartbeat-fixture-v1.json"]);
  });

  it("names the OS error in the hint", async () => {
    for (const [code, words] of [
      ["ENOSPC", "full"],
      ["EROFS", "read-only"],
      ["EIO", "I/O error"],
    ]) {
      const { store } = storeWith(faultyFs([{ op: "write", code: code as string }]));
      await store.ensureDir();
      const error = (await store.save(stateAt(1)).catch((e: unknown) => e)) as PersistError;
      expect(error.hint).toContain(words);
    }
  });

  it("journal appends are retried too, then fail with a PersistError naming the journal", async () => {
    const fs = faultyFs([{ op: "append", code: "ENOSPC" }]);
    const { store, delays } = storeWith(fs);
    await store.ensureDir();
    const error = (await store
      .append([{ type: "tick", seq: 1 }])
      .catch((e: unknown) => e)) as PersistError;
    expect(error).toBeInstanceOf(PersistError);
    expect(error.path).toBe(store.paths.journal);
    expect(error.message).toContain("ENOSPC");
    expect(delays).toHaveLength(3);
  });

  it("a journal append that clears after a fault writes each entry once", async () => {
    const fs = faultyFs([
      { op: "fsync", code: "EIO", times: 1, match: (f) => f.endsWith(".jsonl") },
    ]);
    const { store } = storeWith(fs);
    await store.ensureDir();
    await store.append([{ type: "tick", seq: 1 }]);
    await store.append([{ type: "tick", seq: 2 }]);
    // The first attempt's line landed before its fsync failed: the retry saw it and skipped it.
    expect((await store.readJournal()).map((e) => e.seq)).toEqual([1, 2]);
  });

  it("a state dir that cannot be created is a usage error naming it (exit 2)", async () => {
    await realFs.writeFile(path.join(base, "file"), "x");
    const store = new FileHeartbeatStore(heartbeatPaths(path.join(base, "file", "state"), ID));
    const error = await store.ensureDir().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect(error).toMatchObject({ option: "--state-dir", exitCode: 2 });
    expect((error as Error).message).toContain(path.join(base, "file", "state"));
  });
});
