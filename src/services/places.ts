/**
 * Where the read and control commands find heartbeats: the files of a state
 * dir ({@link filePlace}) or a database (`databasePlace` in
 * `services/pg/place.ts`). The commands format what a place gives them the
 * same way whichever it is, so `status`, `show`, `logs` and `approvals` print
 * the same text and JSON for both.
 */
import type * as fs from "node:fs/promises";
import { StateFileError, type UsageError } from "../errors.js";
import { type ApprovalsPlace, fileApprovalsPlace } from "./approvals.js";
import { type HeartbeatView, loadAllHeartbeats, requireHeartbeat } from "./heartbeats.js";
import {
  type HeartbeatPaths,
  heartbeatPaths,
  NotRegularFileError,
  openRegularFile,
  parseJournal,
  readRegularFile,
} from "./store/index.js";

/** A position in a heartbeat's journal (a byte offset in a file, a row id in a table); 0 is the start. */
export type JournalCursor = number;

/** The heartbeats of one place, as the commands see them. */
export interface HeartbeatPlace extends ApprovalsPlace {
  /** `files` (a state dir) or `database`. */
  readonly kind: "files" | "database";
  /** The state dir, or the database's URL without its password: for messages. */
  readonly where: string;
  /**
   * Every heartbeat, for the overview (`status`); those whose state cannot be
   * used come back as `problems`. A database gives each snapshot's top-level
   * fields whole but of the XState snapshot only what `status` shows (state,
   * max ticks, the calls that wait): use {@link view} for all of it.
   */
  loadAll(): Promise<{
    views: HeartbeatView[];
    problems: Array<{ id: string; error: StateFileError }>;
  }>;
  /** Where heartbeat `id` is kept; a {@link UsageError} naming the id when there is no such heartbeat. Reads no snapshot. */
  require(id: string): Promise<HeartbeatPaths>;
  /**
   * The journal's records after `cursor` as their JSON text, each whole, oldest
   * first, and the cursor after the last one (give it back to read on).
   */
  journalLines(
    id: string,
    cursor: JournalCursor,
  ): Promise<{ lines: string[]; cursor: JournalCursor }>;
  /** The journal's latest `run` record (how shell_exec was confined), if any. */
  lastRunRecord(id: string): Promise<Record<string, unknown> | undefined>;
  /**
   * Control of a database's heartbeats, which no process of their own runs
   * (workers take their ticks): wake (tick now), stop on purpose, start again.
   * Absent for a state dir, whose heartbeats are reached through their process.
   */
  readonly control?: PlaceControl;
  /** Lets go of what the place holds open (the database's connections). */
  close(): Promise<void>;
}

/** What `wake`, `stop` and `start` do to a heartbeat in a database. */
export interface PlaceControl {
  /** Its next tick now: a worker takes it at once. */
  wake(id: string): Promise<void>;
  /** Stopped on purpose: no worker runs it until {@link start}. */
  stop(id: string): Promise<void>;
  /** Clears a stop on purpose and schedules a tick now. */
  start(id: string): Promise<void>;
}

/** The heartbeats of a state dir. */
export function filePlace(stateDir: string): HeartbeatPlace {
  return {
    ...fileApprovalsPlace(stateDir),
    kind: "files",
    where: stateDir,
    loadAll: () => loadAllHeartbeats(stateDir),
    require: (id) => requireHeartbeat(stateDir, id),
    async journalLines(id, cursor) {
      const lines: string[] = [];
      const next = await readLines(heartbeatPaths(stateDir, id).journal, cursor, (line) =>
        lines.push(line),
      );
      return { lines, cursor: next };
    },
    async lastRunRecord(id) {
      const text = await readRegularFile(heartbeatPaths(stateDir, id).journal).catch(() => null);
      return parseJournal(text ?? "")
        .reverse()
        .find((entry) => entry.type === "run");
    },
    close: async () => {},
  };
}

/**
 * Reads whole lines from `file`, starting at byte `offset`, calling `onLine`
 * for each; returns the offset after the last whole line. An unterminated
 * last line (torn, or still being written) is left for the next read; a file
 * shorter than `offset` (replaced or truncated) is read from the start.
 */
export async function readLines(
  file: string,
  offset: number,
  onLine: (line: string) => void,
): Promise<number> {
  let handle: fs.FileHandle;
  try {
    // Never blocks on a FIFO in the journal's place: refused as unusable (exit 3).
    const opened = await openRegularFile(file);
    if (!opened) return 0;
    handle = opened;
  } catch (error) {
    if (error instanceof NotRegularFileError) {
      throw new StateFileError(
        `The journal ${file} is ${error.kind}, not a regular file; it was not read.`,
        file,
        "unreadable",
        { cause: error, hint: "Something else took the journal's place: move it away." },
      );
    }
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const from = size < offset ? 0 : offset;
    if (size === from) return from;
    const buffer = Buffer.alloc(size - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    const end = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (end < 0) return from;
    for (const line of buffer.subarray(0, end).toString("utf8").split("\n")) {
      if (line.trim()) onLine(line);
    }
    return from + end + 1;
  } finally {
    await handle.close();
  }
}
