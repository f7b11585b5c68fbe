import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, StateFileError, type StateFileProblem } from "../../src/errors.js";
import { heartbeatMachine } from "../../src/machines/heartbeat.machine.js";
import { HEARTBEAT_STATES } from "../../src/machines/shared.js";
import {
  migrateV1,
  migrateV2,
  STATE_SCHEMA_VERSION,
  type StateFile,
  StateFileSchemaV1,
  StateFileSchemaV2,
  StateFileSchemaV3,
} from "../../src/schemas/stateFile.js";
import {
  checkStateFile,
  FileHeartbeatStore,
  heartbeatPaths,
  type JournalEntry,
  loadStateFile,
  writeFileAtomic,
} from "../../src/services/store/index.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/state-v1.json", import.meta.url));
const fixtureText = readFileSync(FIXTURE, "utf8");
const FIXTURE_V2 = fileURLToPath(new URL("../fixtures/state-v2.json", import.meta.url));
const fixtureV2Text = readFileSync(FIXTURE_V2, "utf8");
const FIXTURE_V3 = fileURLToPath(new URL("../fixtures/state-v3.json", import.meta.url));
const fixtureV3Text = readFileSync(FIXTURE_V3, "utf8");

/** A fresh copy of the schemaVersion 1 fixture, migrated to the current version. */
function fixtureState(): StateFile {
  return migrateV2(migrateV1(StateFileSchemaV1.parse(JSON.parse(fixtureText))));
}

let base: string;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-store-")));
});

afterEach(async () => {
  await fs.chmod(base, 0o700).catch(() => {});
  await fs.rm(base, { recursive: true, force: true });
});

async function modeOf(file: string): Promise<number> {
  return (await fs.stat(file)).mode & 0o777;
}

async function listDir(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

function newStore(id = "hb1"): FileHeartbeatStore {
  return new FileHeartbeatStore(heartbeatPaths(path.join(base, "state"), id));
}

describe("heartbeatPaths", () => {
  it("names the state file, journal and lock after the id", () => {
    expect(heartbeatPaths("/s", "abc")).toEqual({
      stateDir: "/s",
      stateFile: path.join("/s", "heartbeat-abc.json"),
      journal: path.join("/s", "heartbeat-abc.jsonl"),
      lock: path.join("/s", "heartbeat-abc.lock"),
    });
  });
});

describe("writeFileAtomic", () => {
  it("creates the file with mode 0600 and leaves no temp files", async () => {
    const file = path.join(base, "out.json");
    await writeFileAtomic(file, "first\n");
    expect(await fs.readFile(file, "utf8")).toBe("first\n");
    expect(await modeOf(file)).toBe(0o600);
    expect(await listDir(base)).toEqual(["out.json"]);
  });

  it("replaces existing content completely and leaves no temp files", async () => {
    const file = path.join(base, "out.json");
    await fs.writeFile(file, "a much longer original content that must disappear entirely\n", {
      mode: 0o644,
    });
    await writeFileAtomic(file, "short");
    expect(await fs.readFile(file, "utf8")).toBe("short");
    expect(await modeOf(file)).toBe(0o600);
    await writeFileAtomic(file, "third");
    expect(await fs.readFile(file, "utf8")).toBe("third");
    expect(await listDir(base)).toEqual(["out.json"]);
  });

  it("honours an explicit mode", async () => {
    const file = path.join(base, "out.txt");
    await writeFileAtomic(file, "x", { mode: 0o640 });
    expect(await modeOf(file)).toBe(0o640 & ~process.umask());
  });

  it("removes its temp file when the rename fails", async () => {
    const target = path.join(base, "target");
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, "inside"), "keep");
    await expect(writeFileAtomic(target, "data")).rejects.toThrow();
    expect(await listDir(base)).toEqual(["target"]);
    expect(await fs.readFile(path.join(target, "inside"), "utf8")).toBe("keep");
  });

  it("many writes in a row leave only the last content and no temp files", async () => {
    const file = path.join(base, "out.json");
    for (let i = 0; i < 20; i++) await writeFileAtomic(file, `v${i}`);
    expect(await fs.readFile(file, "utf8")).toBe("v19");
    expect(await listDir(base)).toEqual(["out.json"]);
  });
});

describe("the schemaVersion 1 fixture", () => {
  it("satisfies StateFileSchemaV1", () => {
    const result = StateFileSchemaV1.safeParse(JSON.parse(fixtureText));
    expect(result.success).toBe(true);
  });

  it("loads with loadStateFile, migrated to version 3, keeping the snapshot as written", async () => {
    const loaded = await loadStateFile(FIXTURE);
    const { schemaVersion: _v, ...asWritten } = JSON.parse(fixtureText);
    expect(loaded).toMatchObject(asWritten);
    expect(loaded?.schemaVersion).toBe(3);
    // Version 1 kept its settings only in the snapshot's context: the migration derives the saved ones from it.
    expect(loaded?.settings).toEqual({
      maxTicks: 0,
      tickInterval: 300,
      maxIterationsPerTick: 5,
      tools: true,
      maxConsecutiveFailures: 5,
    });
    expect(loaded?.id).toBe("fixture-v1");
    expect(loaded?.status).toBe("sleeping");
    expect(loaded?.snapshot.value).toBe("sleeping");
    expect(loaded?.snapshot.context.tick).toBe(2);
    expect(loaded?.snapshot.context.digests).toHaveLength(2);
    // looseObject: XState's own snapshot fields survive validation.
    expect(loaded?.snapshot).toHaveProperty("historyValue", {});
    expect(readFileSync(FIXTURE, "utf8")).toBe(fixtureText);
  });

  it("loads through a FileHeartbeatStore whose paths point at a copy", async () => {
    const store = newStore("fixture-v1");
    await store.ensureDir();
    await fs.copyFile(FIXTURE, store.paths.stateFile);
    expect(await store.load()).toEqual(fixtureState());
  });

  it("is written back as version 3 by the next save, and reads the same", async () => {
    const store = newStore("fixture-v1");
    await store.ensureDir();
    await fs.copyFile(FIXTURE, store.paths.stateFile);
    const loaded = await store.load();
    if (!loaded) throw new Error("the fixture did not load");
    await store.save({ ...loaded, seq: loaded.seq + 1 });
    const written = JSON.parse(await fs.readFile(store.paths.stateFile, "utf8"));
    expect(written.schemaVersion).toBe(STATE_SCHEMA_VERSION);
    expect(StateFileSchemaV3.safeParse(written).success).toBe(true);
    expect(written.settings).toEqual(loaded.settings);
  });
});

describe("the schemaVersion 2 fixture", () => {
  it("satisfies StateFileSchemaV2 and loads as written (as version 3), settings included", async () => {
    expect(StateFileSchemaV2.safeParse(JSON.parse(fixtureV2Text)).success).toBe(true);
    const loaded = await loadStateFile(FIXTURE_V2);
    expect(loaded).toEqual({ ...JSON.parse(fixtureV2Text), schemaVersion: 3 });
    expect(loaded?.settings).toMatchObject({
      maxTicks: 10,
      cron: null,
      toolDeny: ["shell(git push*)"],
    });
    expect(readFileSync(FIXTURE_V2, "utf8")).toBe(fixtureV2Text);
  });

  it("is refused (invalid, untouched) when its settings hold an API key", async () => {
    const store = newStore("fixture-v2");
    await store.ensureDir();
    const withKey = JSON.parse(fixtureV2Text);
    withKey.settings.apiKey = "sk-should-never-be-here";
    const text = JSON.stringify(withKey);
    await fs.writeFile(store.paths.stateFile, text);
    await expect(store.load()).rejects.toMatchObject({ problem: "invalid" });
    expect(await fs.readFile(store.paths.stateFile, "utf8")).toBe(text);
  });

  it("is refused when the saved settings are missing", async () => {
    const { settings: _s, ...without } = JSON.parse(fixtureV2Text);
    const file = path.join(base, "no-settings.json");
    await fs.writeFile(file, JSON.stringify(without));
    await expect(loadStateFile(file)).rejects.toMatchObject({ problem: "invalid" });
  });
});

describe("the schemaVersion 3 fixture", () => {
  it("satisfies StateFileSchemaV3 and loads as written: quiet state, checklist, day usage, cached tokens", async () => {
    expect(StateFileSchemaV3.safeParse(JSON.parse(fixtureV3Text)).success).toBe(true);
    // An older build (the version 2 schema) refuses it rather than drop what version 3 adds.
    expect(StateFileSchemaV2.safeParse(JSON.parse(fixtureV3Text)).success).toBe(false);
    const loaded = await loadStateFile(FIXTURE_V3);
    expect(loaded).toEqual(JSON.parse(fixtureV3Text));
    const ctx = loaded?.snapshot.context;
    expect(ctx?.quiet?.fingerprint).toMatch(/^git:/);
    expect(ctx?.checklist?.tasks.map((t) => t.task)).toEqual([
      "Check the plants",
      "Rotate the logs",
    ]);
    expect(ctx?.day?.usage.cachedTokens).toBeGreaterThan(0);
    expect(loaded?.usage.cachedTokens).toBeGreaterThan(0);
    expect(readFileSync(FIXTURE_V3, "utf8")).toBe(fixtureV3Text);
  });

  it("is refused when a checklist task has no period", async () => {
    const bad = JSON.parse(fixtureV3Text);
    delete bad.snapshot.context.checklist.tasks[0].everySec;
    const file = path.join(base, "bad-v3.json");
    await fs.writeFile(file, JSON.stringify(bad));
    await expect(loadStateFile(file)).rejects.toMatchObject({ problem: "invalid" });
  });
});

describe("FileHeartbeatStore.save and load", () => {
  it("round-trips a valid state file", async () => {
    const store = newStore("fixture-v1");
    await store.ensureDir();
    const state = fixtureState();
    await store.save(state);
    expect(await store.load()).toEqual(state);
    expect(await fs.readFile(store.paths.stateFile, "utf8")).toBe(
      `${JSON.stringify(state, null, 2)}\n`,
    );
    expect(await listDir(store.paths.stateDir)).toEqual(["heartbeat-fixture-v1.json"]);
  });

  it("creates the state file with mode 0600 and the state dir with mode 0700", async () => {
    const store = newStore();
    await store.ensureDir();
    expect(await modeOf(store.paths.stateDir)).toBe(0o700 & ~process.umask());
    await store.save(fixtureState());
    expect(await modeOf(store.paths.stateFile)).toBe(0o600);
  });

  it("serialises saves: the last one issued wins", async () => {
    const store = newStore("fixture-v1");
    await store.ensureDir();
    const writes: Promise<void>[] = [];
    for (let seq = 1; seq <= 10; seq++) writes.push(store.save({ ...fixtureState(), seq }));
    await Promise.all(writes);
    expect((await store.load())?.seq).toBe(10);
    expect((await loadStateFile(`${store.paths.stateFile}.prev`))?.seq).toBe(9);
    expect(await listDir(store.paths.stateDir)).toEqual([
      "heartbeat-fixture-v1.json",
      "heartbeat-fixture-v1.json.prev",
    ]);
  });

  it("loads null when there is no state file (even without a state dir)", async () => {
    expect(await newStore().load()).toBeNull();
    expect(await loadStateFile(path.join(base, "missing.json"))).toBeNull();
  });

  it("throws PersistError when the state dir does not exist on save", async () => {
    const store = newStore();
    await expect(store.save(fixtureState())).rejects.toMatchObject({
      name: "PersistError",
      code: "persist-failed",
      path: store.paths.stateFile,
    });
  });
});

describe("loading a state file that cannot be used", () => {
  const valid = JSON.parse(fixtureText) as Record<string, unknown>;
  const cases: { name: string; content: string; problem: StateFileProblem; detail?: RegExp }[] = [
    { name: "empty", content: "", problem: "empty" },
    { name: "whitespace only", content: "  \n\t\n", problem: "empty" },
    {
      name: "truncated JSON",
      content: fixtureText.slice(0, Math.floor(fixtureText.length / 2)),
      problem: "not-json",
      detail: /not valid JSON/,
    },
    { name: "garbage", content: "\u0000\u0001garbage\uFFFD not json", problem: "not-json" },
    {
      name: "schemaVersion 4 (a future version)",
      content: JSON.stringify({ ...valid, schemaVersion: 4 }),
      problem: "future-version",
      detail: /schemaVersion 4/,
    },
    {
      name: "valid JSON failing validation",
      content: JSON.stringify({ ...valid, tick: -1 }),
      problem: "invalid",
      detail: /does not validate: tick/,
    },
    {
      name: "a snapshot context failing validation",
      content: JSON.stringify({
        ...valid,
        snapshot: { ...(valid.snapshot as object), context: { id: "x" } },
      }),
      problem: "invalid",
      detail: /snapshot\.context/,
    },
    { name: "a JSON array", content: "[1,2,3]", problem: "invalid" },
    { name: "JSON null", content: "null", problem: "invalid" },
    {
      name: "schemaVersion 0",
      content: JSON.stringify({ ...valid, schemaVersion: 0 }),
      problem: "invalid",
      detail: /schemaVersion/,
    },
  ];

  for (const c of cases) {
    it(`${c.name} → StateFileError ${c.problem}, exit 3, file untouched`, async () => {
      const store = newStore();
      await store.ensureDir();
      const file = store.paths.stateFile;
      await fs.writeFile(file, c.content, { mode: 0o600 });
      const before = await fs.readFile(file);
      const statBefore = await fs.stat(file);

      let caught: unknown;
      try {
        await store.load();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(StateFileError);
      const error = caught as StateFileError;
      expect(error.problem).toBe(c.problem);
      expect(error.code).toBe(`state-${c.problem}`);
      expect(error.exitCode).toBe(3);
      expect(error.exitCode).toBe(ExitCode.stateFile);
      expect(error.path).toBe(file);
      expect(error.message).toContain(file);
      if (c.detail) expect(error.message).toMatch(c.detail);
      expect(error.hint).toContain("left as it is");

      // A save-free load never touches the file.
      expect(Buffer.compare(await fs.readFile(file), before)).toBe(0);
      const statAfter = await fs.stat(file);
      expect(statAfter.mtimeMs).toBe(statBefore.mtimeMs);
      expect(statAfter.ino).toBe(statBefore.ino);
      expect(await listDir(store.paths.stateDir)).toEqual(["heartbeat-hb1.json"]);
    });
  }

  it("an unreadable state file (a directory in its place, unreadable even as root) → StateFileError unreadable", async () => {
    const file = path.join(base, "heartbeat-dir.json");
    await fs.mkdir(file);
    await fs.writeFile(path.join(file, "inside"), "keep");
    await expect(loadStateFile(file)).rejects.toMatchObject({
      problem: "unreadable",
      exitCode: 3,
      path: file,
    });
    expect(await fs.readFile(path.join(file, "inside"), "utf8")).toBe("keep");
  });

  it("a FIFO in place of the state file → StateFileError unreadable, without blocking on it", async () => {
    const file = path.join(base, "heartbeat-fifo.json");
    execFileSync("mkfifo", [file]);
    // A blocking read would never settle (no writer): the test would time out.
    await expect(loadStateFile(file)).rejects.toMatchObject({
      problem: "unreadable",
      exitCode: 3,
      message: expect.stringContaining("FIFO"),
    });
    expect((await fs.lstat(file)).isFIFO()).toBe(true);
  });

  it("a FIFO in place of the journal is refused by load, readJournal and append, without blocking", async () => {
    const store = newStore("fixture-v1");
    await store.ensureDir();
    await fs.copyFile(FIXTURE, store.paths.stateFile);
    execFileSync("mkfifo", [store.paths.journal]);
    const refused = {
      exitCode: 3,
      path: store.paths.journal,
      message: expect.stringContaining("FIFO"),
    };
    await expect(store.load()).rejects.toMatchObject(refused);
    await expect(store.readJournal()).rejects.toMatchObject(refused);
    await expect(store.append([{ type: "tick", seq: 99 }])).rejects.toMatchObject(refused);
  });
});

describe("state files that contradict themselves", () => {
  const cases: Array<[string, (state: StateFile) => void, RegExp]> = [
    [
      "an id other than its file name's",
      (s) => {
        s.id = "other";
        s.snapshot.context.id = "other";
      },
      /file name says "fixture-v1"/,
    ],
    [
      "an id other than its snapshot's",
      (s) => {
        s.snapshot.context.id = "other";
      },
      /snapshot's is "other"/,
    ],
    [
      "a snapshot state the machine does not have",
      (s) => {
        s.snapshot.value = "dreaming";
      },
      /state "dreaming", which does not exist/,
    ],
    [
      "a snapshot whose status is error",
      (s) => {
        s.snapshot.status = "error";
      },
      /status is "error"/,
    ],
    [
      "a top-level tick other than the snapshot's",
      (s) => {
        s.tick = s.snapshot.context.tick + 5;
      },
      /its tick is \d+ but its snapshot's is \d+/,
    ],
  ];
  for (const [what, corrupt, message] of cases) {
    it(`${what} → StateFileError invalid, exit 3, file untouched`, async () => {
      const store = newStore("fixture-v1");
      await store.ensureDir();
      const state = fixtureState();
      corrupt(state);
      const text = `${JSON.stringify(state, null, 2)}\n`;
      await fs.writeFile(store.paths.stateFile, text);
      const error = await store.load().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StateFileError);
      expect(error).toMatchObject({ problem: "invalid", exitCode: 3 });
      expect((error as Error).message).toMatch(/contradicts itself/);
      expect((error as Error).message).toMatch(message);
      expect(await fs.readFile(store.paths.stateFile, "utf8")).toBe(text);
    });
  }

  it("the fixture itself is consistent", () => {
    expect(() => checkStateFile(fixtureState(), "heartbeat-fixture-v1.json")).not.toThrow();
  });

  it("knows every state of the machine", () => {
    expect([...HEARTBEAT_STATES].sort()).toEqual(
      Object.keys(heartbeatMachine.config.states ?? {}).sort(),
    );
  });
});

describe("FileHeartbeatStore journal", () => {
  const tick = (seq: number, extra: Record<string, unknown> = {}): JournalEntry => ({
    type: "tick",
    seq,
    tick: seq,
    ...extra,
  });

  async function journalText(store: FileHeartbeatStore): Promise<string> {
    return fs.readFile(store.paths.journal, "utf8");
  }

  it("reads an absent journal as empty", async () => {
    expect(await newStore().readJournal()).toEqual([]);
  });

  it("appends whole lines, one JSON object per line, with mode 0600", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.append([tick(1), { type: "note", text: "multi\nline" }]);
    await store.append([tick(2)]);
    const text = await journalText(store);
    expect(text.endsWith("\n")).toBe(true);
    const lines = text.split("\n");
    expect(lines.at(-1)).toBe("");
    expect(lines.slice(0, -1).map((l) => JSON.parse(l))).toEqual([
      tick(1),
      { type: "note", text: "multi\nline" },
      tick(2),
    ]);
    expect(await store.readJournal()).toEqual([
      tick(1),
      { type: "note", text: "multi\nline" },
      tick(2),
    ]);
    expect(await modeOf(store.paths.journal)).toBe(0o600);
  });

  it("skips entries whose seq was already journaled; entries without seq always go in", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.append([tick(1), tick(2)]);
    await store.append([tick(2, { again: true }), { type: "end", reason: "signal" }, tick(3)]);
    await store.append([tick(1, { again: true })]);
    expect(await store.readJournal()).toEqual([
      tick(1),
      tick(2),
      { type: "end", reason: "signal" },
      tick(3),
    ]);
  });

  it("does not create the journal for an append with nothing new", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.append([]);
    await expect(fs.stat(store.paths.journal)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("remembers journaled seqs across a new store instance on the same paths", async () => {
    const first = newStore();
    await first.ensureDir();
    await first.append([tick(1), tick(2)]);

    const second = newStore();
    await second.append([tick(2, { again: true }), tick(3)]);
    expect(await second.readJournal()).toEqual([tick(1), tick(2), tick(3)]);
    expect((await journalText(second)).split("\n")).toHaveLength(4);
  });

  it("serialises concurrent appends without duplicates", async () => {
    const store = newStore();
    await store.ensureDir();
    await Promise.all([
      store.append([tick(1)]),
      store.append([tick(1), tick(2)]),
      store.append([tick(2), tick(3)]),
    ]);
    expect(await store.readJournal()).toEqual([tick(1), tick(2), tick(3)]);
  });

  it("readJournal ignores a torn last line", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.append([tick(1), tick(2)]);
    await fs.appendFile(store.paths.journal, '{"type":"tick","seq":3,"ti');
    expect(await store.readJournal()).toEqual([tick(1), tick(2)]);
    expect(await newStore().readJournal()).toEqual([tick(1), tick(2)]);
  });

  it("after a torn last line, a new store appends the next entry as a whole, readable line", async () => {
    const store = newStore();
    await store.ensureDir();
    await store.append([tick(1), tick(2)]);
    // A crash mid-append leaves a torn line without its newline.
    await fs.appendFile(store.paths.journal, '{"type":"tick","seq":3,"ti');

    const restarted = newStore();
    await restarted.append([tick(3)]);
    expect(await restarted.readJournal()).toEqual([tick(1), tick(2), tick(3)]);
  });
});
