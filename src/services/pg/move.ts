/**
 * `ravenclaws migrate`: moves heartbeats between a state dir and a database,
 * each one whole (snapshot, journal, stop on purpose, workdir, stored
 * decisions) or not at all.
 *
 * Files → database: the heartbeat's lock is taken (a running one is refused),
 * everything is read, then written in ONE transaction; only after the commit
 * are its files moved aside into `<state dir>/moved-to-database/<id>/` (with a
 * `moved.json` saying where to), so no file-mode run finds it again. The lock
 * is held until then.
 *
 * Database → files: a running one (a live lease) is refused; otherwise the
 * heartbeat is claimed in one transaction (a lease that never expires, owner
 * `ravenclaws migrate`, and its queued tick job removed, so no worker takes
 * it), the files are written (state file last, each atomically) under the
 * target's lock, and only then are its rows deleted in one transaction.
 *
 * A re-run is idempotent: a heartbeat found on both sides with the same goal
 * and creation time, the target at least as far as the source, was moved by a
 * run that ended before it cleared the source; the source is then cleared.
 * Anything else found on both sides is a conflict: refused, nothing changed.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { LockedError, StateFileError } from "../../errors.js";
import { readHostRecord, writeHostRecord } from "../../host/files.js";
import type { StateFile } from "../../schemas/stateFile.js";
import { fileDecisions, type StoredDecision } from "../approvals.js";
import { listHeartbeatIds } from "../heartbeats.js";
import {
  acquireLock,
  checkStateFile,
  type HeartbeatLock,
  heartbeatPaths,
  type JournalEntry,
  loadStateFile,
  parseJournal,
  parseStateFile,
  readRegularFile,
  writeFileAtomic,
} from "../store/index.js";
import { pgHeartbeatPaths } from "../store/pgStore.js";
import type { Database, Executor } from "./db.js";
import { pgDecisions } from "./decisions.js";
import { BOSS_SCHEMA, scheduleTick, TICK_QUEUE } from "./queue.js";

/** What happened to one heartbeat. */
export interface MoveOutcome {
  id: string;
  /** `moved`; `finished` (an earlier run had moved it, the source is now cleared); `refused` (nothing changed). */
  result: "moved" | "finished" | "refused";
  /** One line for people. */
  message: string;
  /** The tick it is at (moved or finished). */
  tick?: number;
}

/** Where the files of heartbeats moved to a database go. */
export const MOVED_DIR = "moved-to-database";

/** The owner a claimed heartbeat's lease names while it is moved out of the database. */
interface MigrateOwner {
  pid: number;
  host: string;
  since: string;
  migrate: true;
}

const refused = (id: string, message: string): MoveOutcome => ({ id, result: "refused", message });

/** The same heartbeat on both sides: same goal and creation time. */
const sameHeartbeat = (a: StateFile, b: StateFile) =>
  a.goal === b.goal && a.createdAt === b.createdAt && a.id === b.id;

/** The journal's dedupe mark as the file store computes it (a `recover` record restarts the count). */
function journalSeqOf(entries: JournalEntry[]): number {
  let last = 0;
  for (const entry of entries) {
    if (typeof entry.seq !== "number") continue;
    last = entry.type === "recover" ? entry.seq : Math.max(last, entry.seq);
  }
  return last;
}

/** The time a journal record says it happened (ISO), or null. */
function timeOf(entry: JournalEntry): string | null {
  for (const key of ["at", "finishedAt", "startedAt"]) {
    const value = entry[key];
    if (typeof value === "string" && !Number.isNaN(Date.parse(value)))
      return new Date(value).toISOString();
  }
  return null;
}

function stateOfRow(db: Database, id: string, state: unknown): StateFile {
  const label = pgHeartbeatPaths(db.url, id).stateFile;
  const file = parseStateFile(JSON.stringify(state), label);
  checkStateFile(file, label);
  return file;
}

/** The files of heartbeat `id` beside its lock, as moved aside (lock excluded). */
function movableNames(id: string): string[] {
  const base = `heartbeat-${id}`;
  return [
    `${base}.json`,
    `${base}.json.prev`,
    `${base}.jsonl`,
    `${base}.host`,
    `${base}.decisions`,
  ];
}

async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  );
}

/**
 * Moves the files of heartbeat `id` aside into a new directory under
 * `<stateDir>/moved-to-database/`, with `moved.json` first.
 */
async function moveFilesAside(
  stateDir: string,
  id: string,
  note: Record<string, unknown>,
): Promise<string> {
  const root = path.join(stateDir, MOVED_DIR);
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  let dir = path.join(root, id);
  for (let n = 2; await exists(dir); n++) dir = path.join(root, `${id}.${n}`);
  await fs.mkdir(dir, { mode: 0o700 });
  await writeFileAtomic(path.join(dir, "moved.json"), `${JSON.stringify(note, null, 2)}\n`);
  for (const name of movableNames(id)) {
    await fs.rename(path.join(stateDir, name), path.join(dir, name)).catch((error) => {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    });
  }
  // Control requests for a host of this state dir are moot now.
  for (const action of ["stop", "wake", "start"]) {
    await fs.rm(path.join(stateDir, "requests", `${action}.${id}`), { force: true });
  }
  return dir;
}

function lockedMessage(id: string, error: LockedError, how: string): string {
  const h = error.holder;
  return `Heartbeat ${id} is running (${h ? `pid ${h.pid} on ${h.host}, since ${h.since}` : "its lock is held"}); it was not moved. Stop it first (${how}), then migrate again.`;
}

/** Options of {@link moveToDatabase}. */
export interface ToDatabaseOptions {
  /** Only these ids (default: every heartbeat of the state dir). */
  ids?: string[];
  /** The workdir of heartbeats whose state dir does not say it (no hosting record, not `<workdir>/.ravenclaws`). */
  workdir?: string;
  /** Called after each heartbeat. */
  onOutcome?: (outcome: MoveOutcome) => void;
}

/** Moves the heartbeats of `stateDir` into the database (see the module's description). */
export async function moveToDatabase(
  db: Database,
  stateDir: string,
  options: ToDatabaseOptions = {},
): Promise<MoveOutcome[]> {
  const ids = options.ids ?? (await listHeartbeatIds(stateDir));
  const outcomes: MoveOutcome[] = [];
  for (const id of ids) {
    const outcome = await moveOneToDatabase(db, stateDir, id, options);
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  }
  return outcomes;
}

async function moveOneToDatabase(
  db: Database,
  stateDir: string,
  id: string,
  options: ToDatabaseOptions,
): Promise<MoveOutcome> {
  const paths = heartbeatPaths(stateDir, id);
  let lock: HeartbeatLock;
  try {
    lock = await acquireLock(paths.lock, { refreshMs: 5_000 });
  } catch (error) {
    if (error instanceof LockedError)
      return refused(id, lockedMessage(id, error, `\`ravenclaws stop ${id}\``));
    throw error;
  }
  try {
    let state: StateFile | null;
    try {
      state = await loadStateFile(paths.stateFile);
    } catch (error) {
      if (error instanceof StateFileError)
        return refused(
          id,
          `${error.message} It was not moved; ${error.hint ?? "repair it first."}`,
        );
      throw error;
    }
    if (!state)
      return refused(
        id,
        `Heartbeat ${id} has no state file in ${stateDir} (it never finished its first write); nothing to move.`,
      );
    const journal = parseJournal((await readRegularFile(paths.journal)) ?? "");
    const record = await readHostRecord(stateDir, id);
    const decisions = await fileDecisions(stateDir).read(id);
    const workdir =
      record?.workdir ??
      options.workdir ??
      (path.basename(stateDir) === ".ravenclaws" ? path.dirname(stateDir) : null);
    if (!workdir)
      return refused(
        id,
        `The workdir of heartbeat ${id} is not known (no hosting record, and ${stateDir} is not <workdir>/.ravenclaws); it was not moved. Give it with --workdir.`,
      );
    const file = state;
    const done = await db.transaction(async (tx) => {
      const { rows } = await tx.query<{ state: unknown; seq: number }>(
        "SELECT state, seq FROM ravenclaws.heartbeats WHERE id = $1 FOR UPDATE",
        [id],
      );
      const existing = rows[0];
      if (existing) {
        const there = existing.state === null ? null : stateOfRow(db, id, existing.state);
        if (there && sameHeartbeat(there, file) && there.seq >= file.seq) return "finished";
        return `Heartbeat ${id} is already in the database ${db.url}${there ? ` (tick ${there.tick}, created ${there.createdAt})` : ""} and is not this one (tick ${file.tick}, created ${file.createdAt}); neither was changed. Move one of them under another id first.`;
      }
      await insertHeartbeat(tx, file, {
        workdir,
        stoppedAt: record?.stopped?.at ?? null,
        journal,
        decisions,
      });
      return "moved";
    });
    if (done !== "moved" && done !== "finished") return refused(id, done);
    const dir = await moveFilesAside(stateDir, id, {
      schemaVersion: 1,
      id,
      movedTo: db.url,
      at: new Date().toISOString(),
      tick: file.tick,
      seq: file.seq,
    });
    return {
      id,
      result: done,
      tick: file.tick,
      message: `${done === "moved" ? "Moved" : "Finished moving"} heartbeat ${id} (tick ${file.tick}, ${file.status}, ${journal.length} journal records) into ${db.url}; its files are kept in ${dir}.`,
    };
  } finally {
    await lock.release().catch(() => {});
  }
}

/** Inserts a heartbeat with its journal and decisions, and queues its tick when workers should run it. */
async function insertHeartbeat(
  tx: Executor,
  state: StateFile,
  extra: {
    workdir: string;
    stoppedAt: string | null;
    journal: JournalEntry[];
    decisions: StoredDecision[];
  },
): Promise<void> {
  await tx.query(
    `INSERT INTO ravenclaws.heartbeats
       (id, goal, workdir, settings, status, tick, seq, state, next_tick_at, stopped_at,
        journal_seq, created_at, updated_at)
     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13)`,
    [
      state.id,
      state.goal,
      extra.workdir,
      JSON.stringify(state.settings ?? {}),
      state.status,
      state.tick,
      state.seq,
      JSON.stringify(state),
      state.nextTickAt,
      extra.stoppedAt,
      journalSeqOf(extra.journal),
      state.createdAt,
      state.updatedAt,
    ],
  );
  if (extra.journal.length > 0) {
    // One statement, in the journal's order (ids follow WITH ORDINALITY).
    await tx.query(
      `INSERT INTO ravenclaws.journal (heartbeat_id, seq, type, entry, at)
       SELECT $1, (x->>'seq')::int, x->'entry'->>'type', x->'entry', COALESCE((x->>'at')::timestamptz, now())
         FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(x, n)
        ORDER BY n`,
      [
        state.id,
        JSON.stringify(
          extra.journal.map((entry) => ({
            entry,
            seq: typeof entry.seq === "number" && Number.isInteger(entry.seq) ? entry.seq : null,
            at: timeOf(entry),
          })),
        ),
      ],
    );
  }
  await pgDecisions(tx).write(extra.decisions);
  const runnable =
    extra.stoppedAt === null &&
    (state.status === "sleeping" || state.status === "shutdown" || state.status === "executing");
  if (runnable) {
    const due =
      state.status === "sleeping" && state.nextTickAt ? new Date(state.nextTickAt) : new Date();
    await scheduleTick(tx, state.id, due);
  }
}

/** Options of {@link moveToFiles}. */
export interface ToFilesOptions {
  /** Only these ids (default: every heartbeat of the database). */
  ids?: string[];
  /** Called after each heartbeat. */
  onOutcome?: (outcome: MoveOutcome) => void;
}

/** Moves the heartbeats of the database into `stateDir` (see the module's description). */
export async function moveToFiles(
  db: Database,
  stateDir: string,
  options: ToFilesOptions = {},
): Promise<MoveOutcome[]> {
  const ids =
    options.ids ??
    (await db.query<{ id: string }>("SELECT id FROM ravenclaws.heartbeats ORDER BY id")).rows.map(
      (r) => r.id,
    );
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const outcomes: MoveOutcome[] = [];
  for (const id of ids) {
    const outcome = await moveOneToFiles(db, stateDir, id);
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  }
  return outcomes;
}

interface ClaimedRow {
  state: StateFile;
  workdir: string;
  stoppedAt: string | null;
  journal: JournalEntry[];
  decisions: StoredDecision[];
}

const isMigrateOwner = (owner: unknown): owner is MigrateOwner =>
  !!owner && typeof owner === "object" && (owner as { migrate?: unknown }).migrate === true;

/** Whether a migrate lease's process is provably gone (on this host, its pid no longer runs). */
function migrateGone(owner: MigrateOwner): boolean {
  if (owner.host !== os.hostname()) return false;
  try {
    process.kill(owner.pid, 0);
    return owner.pid === process.pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "EPERM";
  }
}

async function moveOneToFiles(db: Database, stateDir: string, id: string): Promise<MoveOutcome> {
  const paths = heartbeatPaths(stateDir, id);
  const stopHow = `\`ravenclaws stop ${id} --database-url …\`, or wait for its tick to end`;
  // The target, read before anything is claimed: a conflict changes nothing.
  let target: StateFile | null;
  try {
    target = await loadStateFile(paths.stateFile);
  } catch (error) {
    if (error instanceof StateFileError)
      return refused(
        id,
        `${stateDir} holds an unusable state file for ${id} (${error.message}); nothing was moved.`,
      );
    throw error;
  }
  const { rows } = await db.query<{ state: unknown; owner: unknown; live: boolean | null }>(
    `SELECT h.state, l.owner, (l.expires_at > now()) AS live
       FROM ravenclaws.heartbeats h LEFT JOIN ravenclaws.leases l ON l.heartbeat_id = h.id
      WHERE h.id = $1`,
    [id],
  );
  const row = rows[0];
  if (!row) return refused(id, `There is no heartbeat "${id}" in the database ${db.url}.`);
  if (row.state === null)
    return refused(
      id,
      `Heartbeat ${id} has not finished its first tick in the database, so it has no state to write; it was not moved. Let a worker run it first.`,
    );
  let source: StateFile;
  try {
    source = stateOfRow(db, id, row.state);
  } catch (error) {
    if (error instanceof StateFileError) return refused(id, `${error.message} It was not moved.`);
    throw error;
  }
  if (row.live && !isMigrateOwner(row.owner)) {
    const o = row.owner as { pid?: number; host?: string } | null;
    return refused(
      id,
      `Heartbeat ${id} is running on a worker (pid ${o?.pid ?? "?"} on ${o?.host ?? "?"}); it was not moved. Stop it first (${stopHow}), then migrate again.`,
    );
  }
  if (row.live && isMigrateOwner(row.owner) && !migrateGone(row.owner)) {
    return refused(
      id,
      `Heartbeat ${id} is being moved by another \`ravenclaws migrate\` (pid ${row.owner.pid} on ${row.owner.host}); it was not moved. Run migrate again once that one has ended.`,
    );
  }
  let finished = false;
  if (target) {
    if (!sameHeartbeat(target, source) || target.seq < source.seq)
      return refused(
        id,
        `${stateDir} already holds a heartbeat ${id} (tick ${target.tick}, created ${target.createdAt}) that is not the database's (tick ${source.tick}, created ${source.createdAt}); neither was changed. Move one of them under another id first.`,
      );
    finished = true;
  } else if (await exists(paths.journal)) {
    // A journal without a state file: what an earlier move wrote before it stopped, or another's.
    const here = (await readRegularFile(paths.journal).catch(() => null)) ?? "";
    const { rows: theirs } = await db.query<{ entry: JournalEntry }>(
      "SELECT entry FROM ravenclaws.journal WHERE heartbeat_id = $1 ORDER BY id",
      [id],
    );
    if (here !== theirs.map((r) => `${JSON.stringify(r.entry)}\n`).join(""))
      return refused(
        id,
        `${stateDir} already holds a journal for ${id} (${paths.journal}) without a state file, and it is not the database's; nothing was moved. Move it away first.`,
      );
  }

  let lock: HeartbeatLock;
  try {
    lock = await acquireLock(paths.lock, { refreshMs: 5_000 });
  } catch (error) {
    if (error instanceof LockedError)
      return refused(
        id,
        lockedMessage(id, error, `\`ravenclaws stop ${id} --state-dir ${stateDir}\``),
      );
    throw error;
  }
  try {
    const token = `migrate-${process.pid}-${Date.now()}`;
    const claimed = await claim(db, id, token);
    if (typeof claimed === "string") return refused(id, claimed);
    if (!finished) await writeFiles(stateDir, claimed);
    await db.transaction(async (tx) => {
      const { rows: mine } = await tx.query(
        "SELECT 1 FROM ravenclaws.leases WHERE heartbeat_id = $1 AND token = $2 FOR UPDATE",
        [id, token],
      );
      if (mine.length === 0)
        throw new LockedError(
          `Heartbeat ${id}'s claim in the database was taken while it was moved; its rows were left.`,
          pgHeartbeatPaths(db.url, id).lock,
          null,
          { hint: "Check `ravenclaws status` on both sides, then migrate again." },
        );
      await tx.query(
        `DELETE FROM ${BOSS_SCHEMA}.job WHERE name = $1 AND singleton_key = $2 AND state = 'created'`,
        [TICK_QUEUE, id],
      );
      for (const table of ["journal", "decisions", "leases"]) {
        await tx.query(`DELETE FROM ravenclaws.${table} WHERE heartbeat_id = $1`, [id]);
      }
      await tx.query("DELETE FROM ravenclaws.heartbeats WHERE id = $1", [id]);
    });
    const tick = finished && target ? target.tick : claimed.state.tick;
    return {
      id,
      result: finished ? "finished" : "moved",
      tick,
      message: `${finished ? "Finished moving" : "Moved"} heartbeat ${id} (tick ${tick}, ${claimed.state.status}, ${claimed.journal.length} journal records) from ${db.url} into ${stateDir}; resume it with \`ravenclaws run --id ${id}\` there.`,
    };
  } finally {
    await lock.release().catch(() => {});
  }
}

/**
 * Claims heartbeat `id` for the move in one transaction: a lease that never
 * expires, its queued tick job removed; reads it whole. A message when it
 * cannot be claimed (running, or claimed by a live migrate).
 */
async function claim(db: Database, id: string, token: string): Promise<ClaimedRow | string> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{
      state: unknown;
      workdir: string;
      stopped_at: Date | null;
    }>("SELECT state, workdir, stopped_at FROM ravenclaws.heartbeats WHERE id = $1 FOR UPDATE", [
      id,
    ]);
    const row = rows[0];
    if (!row) return `Heartbeat ${id} left the database ${db.url} meanwhile; nothing was moved.`;
    const owner: MigrateOwner = {
      pid: process.pid,
      host: os.hostname(),
      since: new Date().toISOString(),
      migrate: true,
    };
    const { rows: taken } = await tx.query<{ token: string }>(
      `INSERT INTO ravenclaws.leases (heartbeat_id, owner, token, job_id, expires_at)
       VALUES ($1, $2::jsonb, $3, NULL, 'infinity')
       ON CONFLICT (heartbeat_id) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token,
         job_id = NULL, expires_at = 'infinity'
       WHERE ravenclaws.leases.expires_at < now() OR (ravenclaws.leases.owner->>'migrate')::boolean
       RETURNING token`,
      [id, JSON.stringify(owner), token],
    );
    if (taken[0]?.token !== token)
      return `Heartbeat ${id} started a tick on a worker meanwhile; it was not moved. Migrate again once it sleeps.`;
    await tx.query(
      `DELETE FROM ${BOSS_SCHEMA}.job WHERE name = $1 AND singleton_key = $2 AND state = 'created'`,
      [TICK_QUEUE, id],
    );
    const journal = await tx.query<{ entry: JournalEntry }>(
      "SELECT entry FROM ravenclaws.journal WHERE heartbeat_id = $1 ORDER BY id",
      [id],
    );
    return {
      state: stateOfRow(db, id, row.state),
      workdir: row.workdir,
      stoppedAt: row.stopped_at ? row.stopped_at.toISOString() : null,
      journal: journal.rows.map((r) => r.entry),
      decisions: await pgDecisions(tx).read(id),
    };
  });
}

/** Writes a claimed heartbeat's files, each atomically, the state file last. */
async function writeFiles(stateDir: string, claimed: ClaimedRow): Promise<void> {
  const { state } = claimed;
  const paths = heartbeatPaths(stateDir, state.id);
  await writeFileAtomic(
    paths.journal,
    claimed.journal.map((e) => `${JSON.stringify(e)}\n`).join(""),
  );
  await fileDecisions(stateDir).write(claimed.decisions);
  await writeHostRecord(stateDir, state.id, {
    schemaVersion: 1,
    workdir: claimed.workdir,
    stopped: claimed.stoppedAt ? { at: claimed.stoppedAt, by: "ravenclaws migrate" } : null,
  });
  await writeFileAtomic(paths.stateFile, `${JSON.stringify(state, null, 2)}\n`);
}
