/**
 * Making a heartbeat without running it (`ravenclaws create`, and the API of
 * `serve --database-url`): its first snapshot is the one `run` writes first
 * (status `sleeping`, due now), produced by the real machine up to its first
 * persist, then stored in a state dir (a `serve` of that dir hosts it) or in
 * the database (row, snapshot and first tick job together). See
 * docs/architecture.md, "Workers".
 */
import * as fs from "node:fs/promises";
import { LockedError, UsageError } from "../errors.js";
import { heartbeatSettingsOf, pricesOf } from "../host/wiring.js";
import { prepareHeartbeat, startHeartbeat } from "../runtime.js";
import type { StateFile } from "../schemas/stateFile.js";
import type { Database, Executor } from "../services/pg/db.js";
import type { HeartbeatStore, JournalEntry } from "../services/store/index.js";
import type { RunSettings } from "../settings.js";

/** The first persist of a new heartbeat: its snapshot and journal lines. */
export interface FirstPersist {
  file: StateFile;
  entries: JournalEntry[];
}

/** What a new heartbeat is made of. */
export interface NewHeartbeat {
  id: string;
  goal: string;
  /** Its workdir (real path, an existing directory). */
  workdir: string;
  /** Its resolved settings (the heartbeat-scoped ones are saved; never the API key). */
  settings: RunSettings;
}

/** Where a heartbeat was made. */
export interface Created {
  id: string;
  /** `sleeping` with its first tick due now. */
  file: StateFile;
  workdir: string;
  /** The state dir, or the database URL (password redacted). */
  where: string;
}

/**
 * Runs the real heartbeat machine of a new heartbeat up to its first persist
 * (nothing else: no model call, no tool) and returns what it would write.
 */
export async function firstPersistOf(
  heartbeat: NewHeartbeat,
  now: () => number = Date.now,
): Promise<FirstPersist> {
  const { savedSettingsOf } = await import("../services/config.js");
  let captured: FirstPersist | null = null;
  let persisted: () => void = () => {};
  const written = new Promise<void>((resolve) => {
    persisted = resolve;
  });
  const capture: HeartbeatStore = {
    paths: {
      stateDir: "(new)",
      stateFile: `(new heartbeat ${heartbeat.id})`,
      journal: "(new)",
      lock: "(new)",
    },
    ensureDir: async () => {},
    load: async () => null,
    peek: async () => null,
    save: async () => {},
    append: async () => {},
    commit: async (file, entries) => {
      captured ??= { file, entries };
      persisted();
    },
    readJournal: async () => [],
    recover: async () => ({ action: "none", reason: "no-state", message: "new" }),
    acquireLock: () => Promise.reject(new Error("not used")),
  };
  const refuse = () => Promise.reject(new Error("a heartbeat being created calls no model"));
  const running = await prepareHeartbeat(
    { id: heartbeat.id, goal: heartbeat.goal, settings: heartbeatSettingsOf(heartbeat.settings) },
    {
      llm: { assess: refuse, plan: refuse, callWithTools: refuse },
      store: capture,
      toolbox: null,
      now,
      prices: pricesOf(heartbeat.settings),
      savedSettings: savedSettingsOf(heartbeat.settings),
      events: {
        // Stopped inside the first persist: the machine goes no further.
        persisted: () => running.actor.stop(),
      },
    },
  );
  startHeartbeat(running);
  await Promise.race([written, running.done]);
  running.actor.stop();
  if (!captured) throw new Error(`The first persist of ${heartbeat.id} did not happen.`);
  return captured;
}

/** A workdir a heartbeat can use: an existing directory, as its real path; else a UsageError. */
export async function checkWorkdir(workdir: string, tools: boolean): Promise<string> {
  const stat = await fs.stat(workdir).catch(() => null);
  if (!stat?.isDirectory()) {
    throw new UsageError(`workdir ${workdir} is not an existing directory.`, {
      option: "--workdir",
      code: "bad-workdir",
      hint: "Create it first, or pass the --workdir of an existing directory.",
    });
  }
  if (tools) {
    await fs.access(workdir, fs.constants.W_OK).catch(() => {
      throw new UsageError(`workdir ${workdir} is not writable, and the tools write into it.`, {
        option: "--workdir",
        code: "bad-workdir",
        hint: "Fix its permissions, or create the heartbeat with --no-tools.",
      });
    });
  }
  return fs.realpath(workdir);
}

function exists(id: string, where: string): UsageError {
  return new UsageError(`A heartbeat "${id}" already exists in ${where}.`, {
    option: "--id",
    code: "heartbeat-exists",
    hint: "Pick another --id (or none: a new UUID is made), or see it with `ravenclaws show`.",
  });
}

/**
 * Makes a heartbeat in a state dir: its state file (as `run` writes first),
 * and its hosting record with the workdir. A `serve` running on that state
 * dir is asked to host it at once; otherwise the next `serve` adopts it.
 */
export async function createInStateDir(
  stateDir: string,
  heartbeat: NewHeartbeat,
): Promise<Created> {
  const [{ FileHeartbeatStore, heartbeatPaths }, files, { processOf }, { createRedactor }] =
    await Promise.all([
      import("../services/store/index.js"),
      import("../host/files.js"),
      import("../services/heartbeats.js"),
      import("../services/redact.js"),
    ]);
  const paths = heartbeatPaths(stateDir, heartbeat.id);
  const store = new FileHeartbeatStore(paths, {
    redact: createRedactor([heartbeat.settings.apiKey]),
  });
  await store.ensureDir();
  const taken = await Promise.all(
    [paths.stateFile, paths.journal, paths.lock].map((p) =>
      fs.lstat(p).then(
        () => true,
        () => false,
      ),
    ),
  );
  if (taken.some(Boolean)) throw exists(heartbeat.id, stateDir);
  const lock = await store.acquireLock().catch((error: unknown) => {
    if (error instanceof LockedError) throw exists(heartbeat.id, stateDir);
    throw error;
  });
  let first: FirstPersist;
  try {
    if (await store.load()) throw exists(heartbeat.id, stateDir);
    first = await firstPersistOf(heartbeat);
    await files.writeHostRecord(stateDir, heartbeat.id, {
      schemaVersion: 1,
      workdir: heartbeat.workdir,
      stopped: null,
    });
    await store.commit(first.file, first.entries);
  } finally {
    await lock.release();
  }
  const host = await processOf(files.leasePath(stateDir));
  if (host.running && host.local) {
    await files.writeRequest(
      stateDir,
      "start",
      heartbeat.id,
      `ravenclaws create (pid ${process.pid})`,
    );
  }
  return { id: heartbeat.id, file: first.file, workdir: heartbeat.workdir, where: stateDir };
}

/**
 * Makes a heartbeat in the database: its row, its first snapshot and journal
 * lines, and its first tick job (due now), in one transaction.
 */
export async function createInDatabase(db: Database, heartbeat: NewHeartbeat): Promise<Created> {
  const [{ pgStoreBackend }, { createRedactor }, { savedSettingsOf }] = await Promise.all([
    import("../services/store/pgStore.js"),
    import("../services/redact.js"),
    import("../services/config.js"),
  ]);
  const first = await firstPersistOf(heartbeat);
  await db.transaction(async (tx) => {
    // The store and the backend write through this one transaction.
    const inTx: Database = {
      ...db,
      query: tx.query,
      executeSql: tx.executeSql,
      transaction: <T>(fn: (t: Executor) => Promise<T>) => fn(tx),
    };
    const backend = pgStoreBackend(inTx, {
      redact: createRedactor([heartbeat.settings.apiKey]),
      schedule: true,
    });
    const made = await backend.create(heartbeat.id, {
      workdir: heartbeat.workdir,
      goal: heartbeat.goal,
      settings: savedSettingsOf(heartbeat.settings),
      ...(first.file.nextTickAt ? { firstTickAt: new Date(first.file.nextTickAt) } : {}),
    });
    if (!made) throw exists(heartbeat.id, db.url);
    await backend.heartbeat(heartbeat.id).commit(first.file, first.entries);
  });
  return { id: heartbeat.id, file: first.file, workdir: heartbeat.workdir, where: db.url };
}
