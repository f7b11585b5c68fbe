/**
 * The state dir: state file, journal (and, later, the lock). The state file is
 * written atomically (temp file in the same directory, fsync, rename, fsync the
 * directory); a file that cannot be read or validated is never overwritten.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { LockedError, type LockHolder, PersistError, StateFileError } from "../errors.js";
import { STATE_SCHEMA_VERSION, type StateFile, StateFileSchema } from "../schemas/stateFile.js";
import { noRedaction, type Redactor } from "./redact.js";

/** Where one heartbeat's files live. */
export interface HeartbeatPaths {
  stateDir: string;
  stateFile: string;
  journal: string;
  lock: string;
}

/** Paths of heartbeat `id` under `stateDir`. */
export function heartbeatPaths(stateDir: string, id: string): HeartbeatPaths {
  return {
    stateDir,
    stateFile: path.join(stateDir, `heartbeat-${id}.json`),
    journal: path.join(stateDir, `heartbeat-${id}.jsonl`),
    lock: path.join(stateDir, `heartbeat-${id}.lock`),
  };
}

/**
 * Reads and validates a state file. Returns `null` when there is none; throws
 * {@link StateFileError} when there is one that cannot be used.
 */
export async function loadStateFile(file: string): Promise<StateFile | null> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new StateFileError(
      `Cannot read the state file ${file}: ${(error as Error).message}`,
      file,
      "unreadable",
      { cause: error, hint: "Check the file's permissions; it was not modified." },
    );
  }
  return parseStateFile(text, file);
}

const untouched = "The file was left as it is.";

/** Parses and validates state file text; `file` is used in messages. */
export function parseStateFile(text: string, file: string): StateFile {
  const recover = `${untouched} Restore it from a backup or move it away to start over with a new heartbeat id.`;
  if (text.trim() === "") {
    throw new StateFileError(`The state file ${file} is empty.`, file, "empty", { hint: recover });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(
      `The state file ${file} is not valid JSON (${(error as Error).message}).`,
      file,
      "not-json",
      { hint: recover },
    );
  }
  const version = (data as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === "number" && Number.isInteger(version) && version > STATE_SCHEMA_VERSION) {
    throw new StateFileError(
      `The state file ${file} has schemaVersion ${version}, written by a newer ravenclaws; this one reads version ${STATE_SCHEMA_VERSION}.`,
      file,
      "future-version",
      { hint: `${untouched} Upgrade ravenclaws to resume this heartbeat.` },
    );
  }
  const parsed = StateFileSchema.safeParse(data);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new StateFileError(
      `The state file ${file} does not validate: ${issues}.`,
      file,
      "invalid",
      { hint: recover },
    );
  }
  return parsed.data;
}

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  mode?: number;
}

/** Writes `data` to `file` atomically and durably: temp file, fsync, rename, fsync the directory. */
export async function writeFileAtomic(
  file: string,
  data: string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(
    dir,
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(
      tmp,
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
      options.mode ?? 0o600,
    );
    await handle.writeFile(data, "utf8");
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.rename(tmp, file);
  } catch (error) {
    await handle?.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw error;
  }
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "EISDIR" && code !== "EPERM") throw error;
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** One JSON object per line in `heartbeat-<id>.jsonl`. */
export type JournalEntry = { type: string; seq?: number; [key: string]: unknown };

/**
 * The state file and journal of one heartbeat. Writes are serialised, so a
 * shutdown write can never be overtaken by an earlier one.
 */
export class HeartbeatStore {
  private queue: Promise<unknown> = Promise.resolve();
  private journalSeq = -1;
  private tornTail = false;

  private readonly redact: Redactor;

  /** `redact` is applied to everything written, so a secret can never reach the state dir. */
  constructor(
    readonly paths: HeartbeatPaths,
    options: { redact?: Redactor } = {},
  ) {
    this.redact = options.redact ?? noRedaction;
  }

  /** Creates the state dir (mode 0700) if it does not exist. */
  async ensureDir(): Promise<void> {
    try {
      await fs.mkdir(this.paths.stateDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new PersistError(
        `Cannot create the state dir ${this.paths.stateDir}: ${(error as Error).message}`,
        this.paths.stateDir,
        { cause: error, hint: "Choose a writable place with --state-dir." },
      );
    }
  }

  /** Loads this heartbeat's state file (see {@link loadStateFile}). */
  load(): Promise<StateFile | null> {
    return loadStateFile(this.paths.stateFile);
  }

  /** Writes the state file atomically. */
  save(state: StateFile): Promise<void> {
    return this.serialised(async () => {
      try {
        await writeFileAtomic(
          this.paths.stateFile,
          this.redact(`${JSON.stringify(state, null, 2)}\n`),
        );
      } catch (error) {
        throw new PersistError(
          `Cannot write the state file ${this.paths.stateFile}: ${(error as Error).message}`,
          this.paths.stateFile,
          { cause: error },
        );
      }
    });
  }

  /**
   * Appends journal entries as whole lines. Entries with a `seq` at or below
   * one already journaled are skipped, so a persist that runs again after a
   * restore does not journal a tick twice.
   */
  append(entries: JournalEntry[]): Promise<void> {
    return this.serialised(async () => {
      if (this.journalSeq < 0) {
        const tail = await this.readTail();
        this.journalSeq = tail.lastSeq;
        this.tornTail = tail.torn;
      }
      const fresh = entries.filter((e) => e.seq === undefined || e.seq > this.journalSeq);
      if (fresh.length === 0) return;
      // After a crash mid-append the file ends in a torn line: start on a fresh line.
      const text =
        (this.tornTail ? "\n" : "") +
        this.redact(fresh.map((e) => `${JSON.stringify(e)}\n`).join(""));
      let handle: fs.FileHandle | undefined;
      try {
        handle = await fs.open(this.paths.journal, "a", 0o600);
        await handle.appendFile(text, "utf8");
        await handle.sync();
      } catch (error) {
        throw new PersistError(
          `Cannot append to the journal ${this.paths.journal}: ${(error as Error).message}`,
          this.paths.journal,
          { cause: error },
        );
      } finally {
        await handle?.close().catch(() => {});
      }
      for (const e of fresh)
        if (e.seq !== undefined) this.journalSeq = Math.max(this.journalSeq, e.seq);
    });
  }

  /** Reads the journal; a torn last line (from a crash) is skipped. */
  async readJournal(): Promise<JournalEntry[]> {
    let text: string;
    try {
      text = await fs.readFile(this.paths.journal, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    return parseJournal(text);
  }

  /** The highest journaled `seq`, and whether the file ends in a torn (unterminated) line. */
  private async readTail(): Promise<{ lastSeq: number; torn: boolean }> {
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(this.paths.journal, "r");
      const { size } = await handle.stat();
      const length = Math.min(size, 256 * 1024);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      let lastSeq = 0;
      for (const entry of parseJournal(buffer.toString("utf8"))) {
        if (typeof entry.seq === "number") lastSeq = Math.max(lastSeq, entry.seq);
      }
      return { lastSeq, torn: length > 0 && buffer[length - 1] !== 0x0a };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { lastSeq: 0, torn: false };
      throw error;
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }
}

/** Parses journal text, skipping lines that are not whole JSON objects. */
export function parseJournal(text: string): JournalEntry[] {
  const entries: JournalEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line) as unknown;
      if (value && typeof value === "object" && !Array.isArray(value))
        entries.push(value as JournalEntry);
    } catch {
      // A torn line from a crash mid-append.
    }
  }
  return entries;
}

/** How often a held lock is refreshed, and after how long without a refresh it counts as abandoned. */
export const LOCK_REFRESH_MS = 5_000;
export const LOCK_STALE_MS = 30_000;

/** A held heartbeat lock. */
export interface HeartbeatLock {
  holder: LockHolder;
  /** Releases the lock (removes the file if it is still ours). */
  release(): Promise<void>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readHolder(
  file: string,
): Promise<{ holder: LockHolder | null; mtimeMs: number } | null> {
  try {
    const [text, stat] = await Promise.all([fs.readFile(file, "utf8"), fs.stat(file)]);
    let holder: LockHolder | null = null;
    try {
      const data = JSON.parse(text) as Partial<LockHolder>;
      if (
        typeof data.pid === "number" &&
        typeof data.host === "string" &&
        typeof data.since === "string"
      ) {
        holder = { pid: data.pid, host: data.host, since: data.since };
      }
    } catch {
      // A lock file torn by a crash while it was being written: judged by its age alone.
    }
    return { holder, mtimeMs: stat.mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * Takes the lock `heartbeat-<id>.lock`, which records the holder's pid, host
 * and start time. A lock whose holder is gone is taken over: on this host as
 * soon as its pid no longer runs, anywhere once it has not been refreshed for
 * {@link LOCK_STALE_MS}. Otherwise throws {@link LockedError} naming the holder.
 * While held, the lock file's time is refreshed every {@link LOCK_REFRESH_MS}.
 */
export async function acquireLock(
  file: string,
  options: { now?: () => number; host?: string } = {},
): Promise<HeartbeatLock> {
  const now = options.now ?? Date.now;
  const holder: LockHolder = {
    pid: process.pid,
    host: options.host ?? os.hostname(),
    since: new Date(now()).toISOString(),
  };
  const text = `${JSON.stringify(holder)}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await fs.open(file, "wx", 0o600);
      try {
        await handle.writeFile(text, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      return startRefreshing(file, holder, text);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PersistError(
          `Cannot create the lock ${file}: ${(error as Error).message}`,
          file,
          {
            cause: error,
          },
        );
      }
    }
    const existing = await readHolder(file);
    if (!existing) continue; // released meanwhile: try again
    const { holder: other, mtimeMs } = existing;
    const abandoned =
      now() - mtimeMs > LOCK_STALE_MS ||
      (other !== null && other.host === holder.host && !isAlive(other.pid));
    if (!abandoned) {
      const who = other
        ? `pid ${other.pid} on ${other.host}, since ${other.since}`
        : "an unknown process";
      throw new LockedError(
        `Heartbeat is already running: ${file} is held by ${who}.`,
        file,
        other,
        {
          hint: "Stop that process first, or use another --id. A lock whose process is gone is taken over automatically.",
        },
      );
    }
    // Take over only the lock we judged: if it changed meanwhile, look again.
    const again = await readHolder(file);
    if (again && again.mtimeMs === mtimeMs) await fs.rm(file, { force: true });
  }
  throw new LockedError(
    `Could not take the lock ${file}: other processes keep taking it.`,
    file,
    null,
  );
}

function startRefreshing(file: string, holder: LockHolder, text: string): HeartbeatLock {
  const timer = setInterval(() => {
    const at = new Date();
    fs.utimes(file, at, at).catch(() => {});
  }, LOCK_REFRESH_MS);
  timer.unref();
  return {
    holder,
    async release() {
      clearInterval(timer);
      try {
        if ((await fs.readFile(file, "utf8")) === text) await fs.rm(file, { force: true });
      } catch {
        // Already gone.
      }
    },
  };
}
