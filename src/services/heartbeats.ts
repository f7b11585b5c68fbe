/**
 * The heartbeats in a state dir, as the read and control commands (`status`,
 * `show`, `logs`, `stop`, `wake`) see them: which ids exist, their state
 * files, and whether a live process holds their lock.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { CommandFailedError, type LockHolder, StateFileError, UsageError } from "../errors.js";
import { ID_PATTERN } from "../schemas/config.js";
import type { StateFile } from "../schemas/stateFile.js";
import { waitingRoundOf } from "./awaiting.js";
import {
  type HeartbeatPaths,
  heartbeatPaths,
  LOCK_STALE_MS,
  leaseMtimeOf,
  loadStateFile,
  lockNotAFile,
  NotRegularFileError,
  openRegularFile,
  parseJournal,
  readRegularFile,
} from "./store/index.js";

export { CommandFailedError, type CommandProblem } from "../errors.js";
export { waitingRoundOf } from "./awaiting.js";
/** Who runs a heartbeat right now, judged from its lock the way `run` judges it. */
export type ProcessInfo =
  | { running: false }
  | {
      running: true;
      pid: number;
      host: string;
      /** When the holder took the lock (ISO time). */
      since: string;
      /** True when the holder runs on this host (so it can be signalled). */
      local: boolean;
      /**
       * True when the holder is a host (`serve`) running many heartbeats: it
       * is reached through a request file, never a signal (which would stop them all).
       */
      hosted: boolean;
    };

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Reads `heartbeat-<id>.lock`: the holder (null when the file is torn) and the
 * time it was last refreshed. Null when there is no lock.
 */
export async function readLock(
  file: string,
): Promise<{ holder: LockHolder | null; mtimeMs: number; hosted: boolean } | null> {
  let text: string;
  let mtimeMs: number;
  let handle: fs.FileHandle | null;
  try {
    // Never a blocking open: a FIFO in the lock's place is refused (exit 3).
    handle = await openRegularFile(file);
  } catch (error) {
    if (error instanceof NotRegularFileError) throw lockNotAFile(error);
    throw error;
  }
  if (!handle) return null;
  try {
    [text, { mtimeMs }] = await Promise.all([handle.readFile("utf8"), handle.stat()]);
  } finally {
    await handle.close().catch(() => {});
  }
  // A hosted heartbeat's lock lives as long as its host's lease is refreshed.
  mtimeMs = await leaseMtimeOf(file, text, mtimeMs);
  try {
    const data = JSON.parse(text) as Partial<LockHolder> & { lease?: unknown };
    if (
      typeof data.pid === "number" &&
      typeof data.host === "string" &&
      typeof data.since === "string"
    ) {
      return {
        holder: { pid: data.pid, host: data.host, since: data.since },
        mtimeMs,
        hosted: typeof data.lease === "string",
      };
    }
  } catch {
    // Torn by a crash while it was written.
  }
  return { holder: null, mtimeMs, hosted: false };
}

/**
 * Whether a live process holds the lock: not stale (refreshed within
 * {@link LOCK_STALE_MS}) and, on this host, its pid still runs. This is the
 * same judgement `run` makes before it takes a lock over.
 */
export async function processOf(
  lockFile: string,
  options: { now?: number; host?: string } = {},
): Promise<ProcessInfo> {
  const lock = await readLock(lockFile);
  if (!lock?.holder) return { running: false };
  const now = options.now ?? Date.now();
  const host = options.host ?? os.hostname();
  if (now - lock.mtimeMs > LOCK_STALE_MS) return { running: false };
  const local = lock.holder.host === host;
  if (local && !isAlive(lock.holder.pid)) return { running: false };
  return { running: true, ...lock.holder, local, hosted: lock.hosted };
}

const FILE_PATTERN = /^heartbeat-(.+)\.(json|jsonl|lock)$/;

/**
 * The ids that have a state file, a journal or a lock in `stateDir` (sorted);
 * none when it does not exist. A lock with no state file behind it whose
 * holder is gone (a run killed before its first write) is a ghost: the lock is
 * removed and the id is not listed, unless its journal holds more than run
 * records.
 */
export async function listHeartbeatIds(stateDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(stateDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
  const present = new Set(names);
  const ids = new Set<string>();
  for (const name of names) {
    const id = FILE_PATTERN.exec(name)?.[1];
    if (id && ID_PATTERN.test(id)) ids.add(id);
  }
  const kept: string[] = [];
  for (const id of ids) {
    const paths = heartbeatPaths(stateDir, id);
    const hasState =
      present.has(path.basename(paths.stateFile)) ||
      present.has(`${path.basename(paths.stateFile)}.prev`);
    if (hasState || !(await isGhost(paths, present))) kept.push(id);
  }
  return kept.sort();
}

/** No state file (checked by the caller), a lock whose holder is gone (removed here), and no ticks journaled. */
async function isGhost(paths: HeartbeatPaths, present: Set<string>): Promise<boolean> {
  try {
    if (present.has(path.basename(paths.lock))) {
      const before = await readLock(paths.lock);
      if ((await processOf(paths.lock)).running) return false;
      // Remove only the lock judged: a run that took it meanwhile keeps its own.
      const now = await readLock(paths.lock);
      if (before && now && now.mtimeMs === before.mtimeMs && sameHolder(now.holder, before.holder))
        await fs.rm(paths.lock, { force: true });
    }
    // Never a blocking open (a FIFO in the journal's place is not a ghost: it is reported).
    const journal = await readRegularFile(paths.journal);
    return journal === null || parseJournal(journal).every((e) => e.type === "run");
  } catch {
    return false;
  }
}

const sameHolder = (a: LockHolder | null, b: LockHolder | null) =>
  JSON.stringify(a) === JSON.stringify(b);

/** Checks an id given on the command line against {@link ID_PATTERN}. */
export function checkId(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new UsageError(
      `"${id}" is not a heartbeat id: letters, digits, '.', '_' and '-' only (at most 128), starting with a letter or digit.`,
      { option: "<id>", code: "invalid-id", hint: "`ravenclaws status` lists the ids." },
    );
  }
  return id;
}

/**
 * The files of heartbeat `id` in `stateDir`, which must exist (a state file,
 * journal or lock). Otherwise a usage error (exit 2) naming the id and the
 * state dir and listing the ids there.
 */
export async function requireHeartbeat(stateDir: string, id: string): Promise<HeartbeatPaths> {
  checkId(id);
  const known = await listHeartbeatIds(stateDir);
  if (known.includes(id)) return heartbeatPaths(stateDir, id);
  const shown = known.slice(0, 20).join(", ") + (known.length > 20 ? ", …" : "");
  throw new UsageError(`There is no heartbeat "${id}" in ${stateDir}.`, {
    option: "<id>",
    code: "unknown-id",
    hint:
      known.length > 0
        ? `Known ids there: ${shown}.`
        : "There are no heartbeats there at all; pass --workdir or --state-dir to look elsewhere.",
  });
}

/** One heartbeat: its files, its state file (null before the first write) and its process. */
export interface HeartbeatView {
  id: string;
  paths: HeartbeatPaths;
  file: StateFile | null;
  process: ProcessInfo;
  /**
   * Set for a heartbeat kept in a database, where workers run its ticks when
   * they are due (no process of its own): when it was stopped on purpose
   * (null when not), its goal and creation time (known before its first tick).
   */
  database?: { stoppedAt: string | null; goal: string; createdAt: string };
}

/** Loads one heartbeat; a state file that cannot be used throws {@link StateFileError} (exit 3). */
export async function loadHeartbeat(paths: HeartbeatPaths, id: string): Promise<HeartbeatView> {
  const [file, proc] = await Promise.all([loadStateFile(paths.stateFile), processOf(paths.lock)]);
  return { id, paths, file, process: proc };
}

/** Every heartbeat in `stateDir`; those whose state file cannot be used come back as `problem`s. */
export async function loadAllHeartbeats(
  stateDir: string,
): Promise<{ views: HeartbeatView[]; problems: Array<{ id: string; error: StateFileError }> }> {
  const ids = await listHeartbeatIds(stateDir);
  const views: HeartbeatView[] = [];
  const problems: Array<{ id: string; error: StateFileError }> = [];
  await Promise.all(
    ids.map(async (id) => {
      try {
        views.push(await loadHeartbeat(heartbeatPaths(stateDir, id), id));
      } catch (error) {
        if (error instanceof StateFileError) problems.push({ id, error });
        else throw error;
      }
    }),
  );
  const updated = (v: HeartbeatView) => v.file?.updatedAt ?? "\uffff";
  views.sort((a, b) => updated(b).localeCompare(updated(a)) || a.id.localeCompare(b.id));
  problems.sort((a, b) => a.id.localeCompare(b.id));
  return { views, problems };
}

const PAST_REASON: Record<string, string> = {
  "goal-met": "goal met",
  "max-ticks": "max ticks",
  signal: "stopped",
};

/**
 * A heartbeat's state in a few words: `running (pid N)` while a live process
 * holds its lock, else the state file's status (with the reason it ended), or
 * `not running` for a file that says sleeping but has no process (killed);
 * `awaiting approval (N calls)` is added while tool calls wait for the operator.
 */
export function describeState(view: Pick<HeartbeatView, "file" | "process" | "database">): string {
  const proc = view.process;
  const waiting = waitingRoundOf(view.file);
  const awaiting = waiting
    ? `awaiting approval (${waiting.pending.length} call${waiting.pending.length === 1 ? "" : "s"})`
    : null;
  // A daily cap reached: it sleeps until the next day starts, and says why.
  const capped =
    view.file?.status === "sleeping" && view.file.reason === "daily-budget"
      ? ", daily budget reached"
      : "";
  if (proc.running) {
    const running = proc.local
      ? `running (pid ${proc.pid}${capped})`
      : `running on ${proc.host} (pid ${proc.pid}${capped})`;
    return awaiting ? `${running}, ${awaiting}` : running;
  }
  const db = view.database;
  const stopped = db?.stoppedAt && !isFinal(view.file?.status) ? "stopped" : null;
  if (awaiting) return `${awaiting}, ${stopped ?? (db ? "no worker on it" : "not running")}`;
  const file = view.file;
  if (stopped)
    return file?.status === "sleeping" && capped ? "stopped (daily budget reached)" : "stopped";
  if (!file) return db ? "created (its first tick is due)" : "no state file";
  // In a database the workers take a sleeping heartbeat's next tick when it is due.
  if (db && file.status === "sleeping")
    return capped ? "sleeping (daily budget reached)" : "sleeping";
  if (file.status === "sleeping")
    return capped ? "not running (daily budget reached)" : "not running";
  if (file.status === "shutdown") return "shutdown";
  const reason = file.reason ? (PAST_REASON[file.reason] ?? file.reason) : null;
  return reason ? `${file.status} (${reason})` : file.status;
}

const isFinal = (status: string | undefined) => status === "completed" || status === "failed";

/** `4m 10s`, `2h 5m`, `3d 4h`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** Local time: `HH:MM:SS` when it is today, else `YYYY-MM-DD HH:MM`. */
export function formatTime(iso: string, now: number = Date.now()): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const today = new Date(now);
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (date.toDateString() === today.toDateString()) return `${time}:${pad(date.getSeconds())}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

/** Local date and time, `YYYY-MM-DD HH:MM:SS`. */
export function formatDateTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** `in 4m 10s (10:05:00)`, `due now (10:05:00)`, or `-` when there is none. */
export function formatNextTick(nextTickAt: string | null, now: number = Date.now()): string {
  if (!nextTickAt) return "-";
  const left = Date.parse(nextTickAt) - now;
  const when = formatTime(nextTickAt, now);
  if (Number.isNaN(left)) return nextTickAt;
  if (left < 1_000) return `due now (${when})`;
  return `in ${formatDuration(left)} (${when})`;
}

/** The next tick as a running heartbeat will take it; `-` when no process will. */
export function nextTickOf(
  view: Pick<HeartbeatView, "file" | "process" | "database">,
  now?: number,
): string {
  if (!view.file) return "-";
  if (view.database) {
    // A worker takes it when due, unless it was stopped on purpose.
    if (view.database.stoppedAt || view.file.status !== "sleeping") return "-";
    return formatNextTick(view.file.nextTickAt, now);
  }
  if (!view.process.running) return "-";
  return formatNextTick(view.file.nextTickAt, now);
}

/** Squeezes whitespace and clips to `max` characters with an ellipsis. */
export function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  if (max <= 1) return flat.slice(0, Math.max(0, max));
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

/** A number with thousands separators (`12,345`). */
export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * The pid of the process running `view` on this host, or a
 * {@link CommandFailedError} (exit 1) saying why there is none to reach:
 * not running (with its state and tick), or running on another host.
 */
export function localProcessOf(view: HeartbeatView): number {
  const proc = view.process;
  if (!proc.running) {
    const tick = view.file ? ` at tick ${view.file.tick}` : "";
    throw new CommandFailedError(
      "not-running",
      `Heartbeat ${view.id} is not running (state: ${describeState(view)}${tick}).`,
      {
        hint: view.file?.completed
          ? "It has met its goal: there is nothing left to run."
          : `Start it with \`ravenclaws run --id ${view.id}\`.`,
      },
    );
  }
  if (!proc.local) {
    throw new CommandFailedError(
      "remote-host",
      `Heartbeat ${view.id} runs on host ${proc.host} (pid ${proc.pid}); it cannot be reached from ${os.hostname()}.`,
      { hint: `Run the command on ${proc.host}.` },
    );
  }
  return proc.pid;
}

/** Sends `signal` to a heartbeat's process; a process that vanished meanwhile counts as not running. */
export function signalProcess(view: HeartbeatView, pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") {
      throw new CommandFailedError(
        "not-running",
        `Heartbeat ${view.id} is not running (its process ${pid} just ended).`,
      );
    }
    throw new CommandFailedError(
      "signal-failed",
      `Cannot send ${signal} to heartbeat ${view.id} (pid ${pid}): ${(error as Error).message}`,
      {
        cause: error,
        hint:
          code === "EPERM"
            ? "It belongs to another user: run the command as that user."
            : undefined,
      },
    );
  }
}
