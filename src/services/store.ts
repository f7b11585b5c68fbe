/**
 * The state dir: state file, its previous version, journal and lock.
 *
 * The state file is written atomically (temp file in the same directory,
 * fsync, rename, fsync the directory), and before each rename the current
 * file is hard-linked to `heartbeat-<id>.json.prev`: at every instant there is
 * a valid state file, and after the first rewrite a valid previous version
 * beside it. A file that cannot be read or validated is never overwritten.
 * Writes are fenced: a store whose lock was lost, or that finds a state file
 * another process advanced, refuses to write ({@link LockCompromisedError}).
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants, writeSync } from "node:fs";
import * as nodeFs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import {
  errnoCode,
  LockCompromisedError,
  LockedError,
  type LockHolder,
  PersistError,
  StateFileError,
  UsageError,
} from "../errors.js";
// The state names only, to refuse a snapshot in a state the machine does not have.
import { HEARTBEAT_STATES } from "../machines/shared.js";
import {
  STATE_SCHEMA_VERSION,
  type StateFile,
  StateFileSchema,
  stateFileSchemaFor,
} from "../schemas/stateFile.js";

export { NotRegularFileError, openRegularFile, readRegularFile } from "./regularFile.js";

import { crashPoint } from "./crashPoints.js";
import type {
  AcquireLockOptions,
  HeartbeatLock,
  HeartbeatPaths,
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
  RecoverResult,
} from "./store/types.js";

export type {
  AcquireLockOptions,
  HeartbeatLock,
  HeartbeatPaths,
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
  RecoverResult,
} from "./store/types.js";

import { noRedaction, type Redactor } from "./redact.js";
import { kindOf, NotRegularFileError, openRegularFile, readRegularFile } from "./regularFile.js";

/**
 * The file system calls the store makes, shaped like `node:fs/promises`.
 * Tests pass a wrapper that injects faults (ENOSPC, EROFS, EIO, …).
 */
export type StoreFs = Pick<
  typeof nodeFs,
  | "access"
  | "copyFile"
  | "link"
  | "mkdir"
  | "open"
  | "readFile"
  | "readdir"
  | "rename"
  | "rm"
  | "stat"
  | "unlink"
  | "utimes"
>;

/** Paths of heartbeat `id` under `stateDir`. */
export function heartbeatPaths(stateDir: string, id: string): HeartbeatPaths {
  return {
    stateDir,
    stateFile: path.join(stateDir, `heartbeat-${id}.json`),
    journal: path.join(stateDir, `heartbeat-${id}.jsonl`),
    lock: path.join(stateDir, `heartbeat-${id}.lock`),
  };
}

/** The previous good version of a state file. */
export function prevPathOf(stateFile: string): string {
  return `${stateFile}.prev`;
}

/**
 * Reads and validates a state file. Returns `null` when there is none; throws
 * {@link StateFileError} when there is one that cannot be used.
 */
export async function loadStateFile(
  file: string,
  fs: Pick<StoreFs, "open"> = nodeFs,
): Promise<StateFile | null> {
  const text = await readStateText(file, fs);
  if (text === null) return null;
  const state = parseStateFile(text, file);
  checkStateFile(state, file);
  return state;
}

async function readStateText(file: string, fs: Pick<StoreFs, "open">): Promise<string | null> {
  try {
    return await readRegularFile(file, fs);
  } catch (error) {
    if (error instanceof NotRegularFileError) {
      throw new StateFileError(
        `The state file ${file} is ${error.kind}, not a regular file; it was not read.`,
        file,
        "unreadable",
        {
          cause: error,
          hint: "Something else took the state file's place: move it away, then restore the state file (or run with --recover to resume from the previous version).",
        },
      );
    }
    throw new StateFileError(
      `Cannot read the state file ${file}: ${(error as Error).message}`,
      file,
      "unreadable",
      { cause: error, hint: "Check the file's permissions; it was not modified." },
    );
  }
}

/** The id a state file's name says it holds (`heartbeat-<id>.json`, or its `.prev`); null for other names. */
function idOfFileName(file: string): string | null {
  return /^heartbeat-(.+)\.json(?:\.prev)?$/.exec(path.basename(file))?.[1] ?? null;
}

/**
 * Refuses a state file that passes the schema but contradicts itself: an `id`
 * other than its file name's, or than its snapshot's; a goal or `tick` other
 * than its snapshot's; a snapshot in a state the heartbeat machine does not
 * have, or in XState's `error` status. Resuming such a file would rewrite it
 * from a state nobody wrote. Throws {@link StateFileError} (`invalid`, exit 3).
 */
export function checkStateFile(state: StateFile, file: string): void {
  const snapshot = state.snapshot;
  const ctx = snapshot.context;
  const problems: string[] = [];
  const named = idOfFileName(file);
  if (named !== null && named !== state.id)
    problems.push(`its id is "${state.id}" but its file name says "${named}"`);
  if (ctx.id !== state.id)
    problems.push(`its id is "${state.id}" but its snapshot's is "${ctx.id}"`);
  if (ctx.goal !== state.goal) problems.push("its goal differs from its snapshot's");
  if (ctx.tick !== state.tick)
    problems.push(`its tick is ${state.tick} but its snapshot's is ${ctx.tick}`);
  if (snapshot.status === "error") problems.push(`its snapshot's status is "error"`);
  const value =
    typeof snapshot.value === "string" ? snapshot.value : Object.keys(snapshot.value)[0];
  if (value === undefined || !(HEARTBEAT_STATES as readonly string[]).includes(value))
    problems.push(
      `its snapshot is in state ${JSON.stringify(snapshot.value)}, which does not exist`,
    );
  if (problems.length === 0) return;
  throw new StateFileError(
    `The state file ${file} contradicts itself: ${problems.join("; ")}.`,
    file,
    "invalid",
    {
      hint: `${untouched} It was not written by ravenclaws as it is: restore it from a backup, or run again with --recover to resume from the previous version (${path.basename(prevPathOf(file))}).`,
    },
  );
}

const untouched = "The file was left as it is.";

/** Parses and validates state file text; `file` is used in messages. */
export function parseStateFile(text: string, file: string): StateFile {
  const recover = `${untouched} Run again with --recover to move it aside and resume from the previous version (${path.basename(prevPathOf(file))}), or restore it from a backup.`;
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
  // Known versions are read with their own schema and migrated to the current
  // one; anything else (no version, 0, a string) fails the current schema.
  const parsed = (stateFileSchemaFor(version) ?? StateFileSchema).safeParse(data);
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

/** What identifies one version of a file without reading it: inode, size and modification time. */
export interface FileIdentity {
  ino: number;
  size: number;
  mtimeMs: number;
}

const sameFile = (a: FileIdentity | undefined, b: FileIdentity) =>
  a !== undefined && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  mode?: number;
  fs?: StoreFs;
  /** Runs after the temp file is durable, just before the rename (fencing, `.prev`). */
  beforeRename?: () => Promise<void>;
  /** Runs right after the rename, with the identity of the file now in place. */
  afterRename?: (written: FileIdentity) => void;
  /** Honour the `state:*` crash points (the state file's writes only). */
  crashPoints?: boolean;
}

const tempName = (file: string, tag = "") =>
  path.join(
    path.dirname(file),
    `.${path.basename(file)}.${tag}${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );

/** Writes `data` to `file` atomically and durably: temp file, fsync, rename, fsync the directory. */
export async function writeFileAtomic(
  file: string,
  data: string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const fs = options.fs ?? nodeFs;
  const dir = path.dirname(file);
  const tmp = tempName(file);
  let handle: nodeFs.FileHandle | undefined;
  let written: FileIdentity | undefined;
  try {
    handle = await fs.open(
      tmp,
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
      options.mode ?? 0o600,
    );
    await handle.writeFile(data, "utf8");
    if (options.crashPoints) crashPoint("state:after-temp-write");
    await handle.sync();
    const { ino, size, mtimeMs } = await handle.stat();
    written = { ino, size, mtimeMs };
    await handle.close();
    handle = undefined;
    if (options.crashPoints) crashPoint("state:after-fsync");
    await options.beforeRename?.();
    await fs.rename(tmp, file);
  } catch (error) {
    await handle?.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw error;
  }
  // biome-ignore lint/style/noNonNullAssertion: set before the rename, which succeeded
  options.afterRename?.(written!);
  if (options.crashPoints) crashPoint("state:after-rename");
  await fsyncDir(dir, fs);
}

async function fsyncDir(dir: string, fs: Pick<StoreFs, "open">): Promise<void> {
  let handle: nodeFs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
    const code = errnoCode(error);
    if (code !== "EINVAL" && code !== "EISDIR" && code !== "EPERM") throw error;
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** Hard links `from` to `to` (which must not exist); where links are unsupported, copies `text` durably. */
async function linkOrCopy(fs: StoreFs, from: string, to: string, text?: string): Promise<void> {
  try {
    await fs.link(from, to);
    return;
  } catch (error) {
    const code = errnoCode(error);
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EMLINK")
      throw error;
  }
  if (text === undefined) {
    await fs.copyFile(from, to, fsConstants.COPYFILE_EXCL);
    return;
  }
  const handle = await fs.open(to, "wx", 0o600);
  try {
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Options of {@link FileHeartbeatStore}. */
export interface HeartbeatStoreOptions {
  /** Applied to everything written, so a secret can never reach the state dir. */
  redact?: Redactor;
  /** The file system (tests inject faults). */
  fs?: StoreFs;
  /** Retries of a failed state write or journal append before giving up (default 3). */
  retries?: number;
  /** Delay before the first retry, doubled for each next one (default 100 ms). */
  retryDelayMs?: number;
  /** Sleeps `ms`; injectable for tests. */
  delay?: (ms: number) => Promise<void>;
  /** Current time, for `.corrupt-<timestamp>` names and lock times. */
  now?: () => number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the user can do about an OS error while writing. */
function hintFor(code: string | undefined, target: string): string {
  const dir = path.dirname(target);
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return `The disk holding ${dir} is full: free some space (the last good state was kept).`;
    case "EROFS":
      return `${dir} is on a read-only file system: remount it read-write or choose another --state-dir (the last good state was kept).`;
    case "EIO":
      return `The disk reported an I/O error: check it (dmesg, SMART) before resuming (the last good state was kept).`;
    case "EACCES":
    case "EPERM":
      return `No permission to write in ${dir}: fix its permissions or choose another --state-dir.`;
    default:
      return `Check ${dir} (the last good state was kept).`;
  }
}

/**
 * The file store of one heartbeat: its state file (with `.prev`), journal and
 * lock in the state dir. Writes are serialised, so a shutdown write can never
 * be overtaken by an earlier one; a failed write is retried a few times, then
 * reported as a {@link PersistError} naming the path and the OS error.
 */
export class FileHeartbeatStore implements HeartbeatStore {
  private queue: Promise<unknown> = Promise.resolve();
  private journalSeq = -1;
  private tornTail = false;
  /** The `seq` of the state file on disk as this store last loaded or wrote it; -1: none; undefined: never looked. */
  private knownSeq: number | undefined;
  /** The state file this process wrote last, to skip re-reading it when it is still in place. */
  private lastWritten: FileIdentity | undefined;
  private lock: HeartbeatLock | null = null;
  private compromised: LockCompromisedError | null = null;

  private readonly redact: Redactor;
  private readonly fs: StoreFs;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly delay: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(
    readonly paths: HeartbeatPaths,
    options: HeartbeatStoreOptions = {},
  ) {
    this.redact = options.redact ?? noRedaction;
    this.fs = options.fs ?? nodeFs;
    this.retries = options.retries ?? 3;
    this.retryDelayMs = options.retryDelayMs ?? 100;
    this.delay = options.delay ?? sleep;
    this.now = options.now ?? Date.now;
  }

  /** The previous good version of the state file. */
  get prevFile(): string {
    return prevPathOf(this.paths.stateFile);
  }

  /**
   * Creates the state dir (mode 0700) if it does not exist and checks that it
   * is writable; a usage error (exit 2) naming it otherwise.
   */
  async ensureDir(): Promise<void> {
    const dir = this.paths.stateDir;
    try {
      await this.fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await this.fs.access(dir, fsConstants.W_OK | fsConstants.X_OK);
    } catch (error) {
      const code = errnoCode(error);
      throw new UsageError(
        code === "EEXIST" || code === "ENOTDIR"
          ? `--state-dir ${dir} is not a directory (${code}).`
          : `Cannot use the state dir ${dir}: ${(error as Error).message}`,
        {
          option: "--state-dir",
          code: "state-dir-unusable",
          hint: "Choose a writable directory with --state-dir (or a writable --workdir).",
        },
      );
    }
  }

  /**
   * Loads this heartbeat's state file (see {@link loadStateFile}). A missing
   * state file whose previous version exists is refused too (exit 3): starting
   * afresh would bury that history.
   */
  async load(): Promise<StateFile | null> {
    const state = await loadStateFile(this.paths.stateFile, this.fs);
    await this.checkJournal();
    if (state === null) {
      if (await this.exists(this.prevFile)) {
        throw new StateFileError(
          `The state file ${this.paths.stateFile} is missing, but its previous version ${this.prevFile} is there.`,
          this.paths.stateFile,
          "missing",
          { hint: "Run again with --recover to resume from the previous version." },
        );
      }
      this.knownSeq = -1;
      return null;
    }
    this.knownSeq = state.seq;
    return state;
  }

  /**
   * Takes this heartbeat's lock (see {@link acquireLock}) and fences every
   * later write with it; also removes temp files that crashed processes left.
   */
  async acquireLock(options: LockOptions = {}): Promise<HeartbeatLock> {
    let lock: HeartbeatLock;
    try {
      lock = await acquireLock(this.paths.lock, { fs: this.fs, now: this.now, ...options });
    } catch (error) {
      if (
        error instanceof PersistError &&
        ["EACCES", "EPERM", "EROFS"].includes(error.osCode ?? "")
      )
        throw new UsageError(`Cannot create the lock in the state dir: ${error.message}`, {
          option: "--state-dir",
          code: "state-dir-unusable",
          hint: "Choose a writable directory with --state-dir (or a writable --workdir).",
        });
      throw error;
    }
    this.lock = lock;
    lock.onCompromised((error) => {
      this.compromised ??= error;
    });
    await this.removeStaleTemps().catch(() => {});
    return lock;
  }

  /** Reads the state file (see {@link loadStateFile}) without changing what writes are fenced against. */
  peek(): Promise<StateFile | null> {
    return loadStateFile(this.paths.stateFile, this.fs);
  }

  /** Writes the state file, then appends the entries (see {@link HeartbeatStore.commit}). */
  async commit(state: StateFile, entries: JournalEntry[]): Promise<void> {
    await this.save(state);
    await this.append(entries);
  }

  /** Writes the state file atomically, keeping the current one as `.prev`; fenced and retried. */
  save(state: StateFile): Promise<void> {
    return this.serialised(async () => {
      const text = this.redact(`${JSON.stringify(state, null, 2)}\n`);
      await this.retrying("write the state file", this.paths.stateFile, () =>
        writeFileAtomic(this.paths.stateFile, text, {
          fs: this.fs,
          crashPoints: true,
          beforeRename: () => this.fenceAndKeepPrev(state),
          afterRename: (written) => {
            this.knownSeq = state.seq;
            this.lastWritten = written;
          },
        }),
      );
    });
  }

  /**
   * Appends journal entries as whole lines. Entries with a `seq` at or below
   * one already journaled are skipped, so a persist that runs again after a
   * restore does not journal a tick twice.
   */
  append(entries: JournalEntry[]): Promise<void> {
    return this.serialised(() =>
      this.retrying("append to the journal", this.paths.journal, () => this.appendNow(entries)),
    );
  }

  /**
   * `run --recover`: when the state file is unusable (or missing), moves it to
   * `heartbeat-<id>.json.corrupt-<timestamp>` and puts the previous version in
   * its place (atomically; the bad file keeps its bytes under the new name).
   * When the previous version is missing or unusable too, throws
   * {@link StateFileError} and leaves both files as they were. On a healthy
   * state file it does nothing.
   */
  recover(): Promise<RecoverResult> {
    return this.serialised(async () => {
      const file = this.paths.stateFile;
      let problem: StateFileError | null = null;
      try {
        const current = await loadStateFile(file, this.fs);
        if (current) {
          this.knownSeq = current.seq;
          return {
            action: "none",
            reason: "healthy",
            tick: current.tick,
            message: `--recover: the state file ${file} is fine (tick ${current.tick}); nothing to recover, resuming normally.`,
          };
        }
      } catch (error) {
        if (!(error instanceof StateFileError)) throw error;
        problem = error;
      }
      const prevText = await readStateText(this.prevFile, this.fs).catch(() => null);
      const what = problem ? `${file} cannot be used (${problem.message})` : `${file} is missing`;
      if (prevText === null) {
        if (!problem) {
          this.knownSeq = -1;
          return {
            action: "none",
            reason: "no-state",
            message: `--recover: there is no state file ${file} and no previous version; nothing to recover.`,
          };
        }
        throw new StateFileError(
          `Cannot recover: ${what}, and there is no previous version ${this.prevFile}.`,
          file,
          "unrecoverable",
          {
            hint: "Both were left as they are. Restore the state file from a backup, or start a new heartbeat with another --id.",
          },
        );
      }
      let prev: StateFile;
      try {
        prev = parseStateFile(prevText, this.prevFile);
        checkStateFile(prev, this.prevFile);
      } catch (error) {
        throw new StateFileError(
          `Cannot recover: ${what}, and its previous version cannot be used either (${(error as Error).message}).`,
          file,
          "unrecoverable",
          {
            hint: "Both files were left as they are. Restore the state file from a backup, or start a new heartbeat with another --id.",
          },
        );
      }
      let movedTo: string | null = null;
      if (problem) {
        movedTo = `${file}.corrupt-${new Date(this.now()).toISOString().replace(/[:.]/g, "-")}`;
        try {
          // A link, not a move: until the good copy lands, the bad file stays where it was.
          await linkOrCopy(this.fs, file, movedTo);
        } catch (error) {
          throw new StateFileError(
            `Cannot recover: ${what}, and it cannot be moved aside to ${movedTo}: ${(error as Error).message}`,
            file,
            "unrecoverable",
            { cause: error, hint: "Move it away yourself, then run again with --recover." },
          );
        }
      }
      await writeFileAtomic(file, prevText, { fs: this.fs });
      this.knownSeq = prev.seq;
      // The journal may hold entries of the lost version: a marker restarts its seq count here.
      await this.appendNow([
        {
          type: "recover",
          seq: prev.seq,
          at: new Date(this.now()).toISOString(),
          tick: prev.tick,
          movedTo,
          problem: problem?.problem ?? "missing",
        },
      ]);
      return {
        action: "restored",
        tick: prev.tick,
        movedTo,
        problem: problem?.problem ?? "missing",
        message: movedTo
          ? `--recover: moved the unusable state file to ${movedTo}; went back to the previous version (${path.basename(this.prevFile)}) at tick ${prev.tick}.`
          : `--recover: the state file was missing; went back to the previous version (${path.basename(this.prevFile)}) at tick ${prev.tick}.`,
      };
    });
  }

  /** Reads the journal; a torn last line (from a crash) is skipped. */
  async readJournal(): Promise<JournalEntry[]> {
    let text: string | null;
    try {
      text = await readRegularFile(this.paths.journal, this.fs);
    } catch (error) {
      throw this.journalError(error);
    }
    return text === null ? [] : parseJournal(text);
  }

  /** A journal that is not a regular file (a FIFO, a device) is refused like a bad state file (exit 3). */
  private journalError(error: unknown): unknown {
    if (!(error instanceof NotRegularFileError)) return error;
    return new StateFileError(
      `The journal ${this.paths.journal} is ${error.kind}, not a regular file; it was not read.`,
      this.paths.journal,
      "unreadable",
      {
        cause: error,
        hint: "Something else took the journal's place: move it away and run again.",
      },
    );
  }

  /** Refuses a journal that exists but is not a regular file, without opening it. */
  private async checkJournal(): Promise<void> {
    const stat = await this.fs.stat(this.paths.journal).catch(() => null);
    if (stat && !stat.isFile())
      throw this.journalError(new NotRegularFileError(this.paths.journal, kindOf(stat)));
  }

  private assertNotCompromised(): void {
    if (this.compromised) throw this.compromised;
  }

  /**
   * Just before the rename: refuses to write when the lock is no longer ours
   * or the file on disk was advanced by someone else; else links the current
   * (valid) file to `.prev`.
   */
  private async fenceAndKeepPrev(state: StateFile): Promise<void> {
    this.assertNotCompromised();
    const file = this.paths.stateFile;
    const fast = this.knownSeq !== undefined && this.knownSeq <= state.seq;
    const [, onDisk] = await Promise.all([
      this.lock?.verify(),
      fast ? this.fs.stat(file).catch(() => null) : null,
    ]);
    // Fast path: the file in place is the one this process wrote last (same
    // inode, size and mtime), so nobody else advanced it: keep it as `.prev`.
    if (fast && this.knownSeq !== undefined) {
      if (onDisk && sameFile(this.lastWritten, onDisk)) {
        // The same seq again (a checkpoint, a retry): `.prev` keeps the one before it.
        if (this.knownSeq < state.seq) await this.keepPrev(file);
        return;
      }
    }
    const text = await readStateText(file, this.fs);
    if (text === null) return;
    let disk: StateFile;
    try {
      disk = parseStateFile(text, file);
    } catch (error) {
      throw this.markCompromised(
        `The state file ${file} was replaced by one this process cannot use (${(error as Error).message}); another process may be running this heartbeat, so this one stopped writing.`,
      );
    }
    const expected = this.knownSeq === undefined ? state.seq : Math.min(this.knownSeq, state.seq);
    if (disk.id !== state.id || disk.seq > expected) {
      throw this.markCompromised(
        `The state file ${file} was advanced by another process (seq ${disk.seq}, tick ${disk.tick}; this process is at seq ${state.seq}); this one stopped writing.`,
      );
    }
    // Writing the same seq again (a restored persist, a retry): the file on disk
    // is that version already, and `.prev` keeps the one before it.
    if (disk.seq === state.seq) return;
    await this.keepPrev(file, text);
  }

  /**
   * Makes the current state file (`text`, when already read) the `.prev`
   * version. `.prev` is briefly absent while it is replaced; the state file
   * itself stays whole and valid throughout.
   */
  private async keepPrev(file: string, text?: string): Promise<void> {
    await this.fs.unlink(this.prevFile).catch((error: unknown) => {
      if (errnoCode(error) !== "ENOENT") throw error;
    });
    await linkOrCopy(this.fs, file, this.prevFile, text);
  }

  private markCompromised(message: string): LockCompromisedError {
    this.compromised ??= new LockCompromisedError(message, this.paths.lock, {
      hint: "Another process now runs this heartbeat (see its lock file); nothing more was written by this one.",
    });
    return this.compromised;
  }

  private async appendNow(entries: JournalEntry[]): Promise<void> {
    if (this.journalSeq < 0) {
      const tail = await this.readTail();
      this.journalSeq = tail.lastSeq;
      this.tornTail = tail.torn;
    }
    const recovery = entries.find((e) => e.type === "recover");
    const floor = recovery?.seq ?? this.journalSeq;
    const fresh = entries.filter(
      (e) => e.type === "recover" || e.seq === undefined || e.seq > floor,
    );
    if (fresh.length === 0) return;
    // After a crash mid-append the file ends in a torn line: start on a fresh line.
    const text =
      (this.tornTail ? "\n" : "") +
      this.redact(fresh.map((e) => `${JSON.stringify(e)}\n`).join(""));
    let handle: nodeFs.FileHandle | undefined;
    try {
      // O_NONBLOCK: a FIFO in the journal's place fails at once (ENXIO) instead of blocking.
      handle = await this.fs.open(
        this.paths.journal,
        fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NONBLOCK,
        0o600,
      );
      const stat = await handle.stat();
      if (!stat.isFile())
        throw this.journalError(new NotRegularFileError(this.paths.journal, kindOf(stat)));
      const fd = handle.fd;
      crashPoint("journal:mid-line", () => {
        writeSync(fd, text.slice(0, Math.max(1, Math.floor(text.length / 2))));
      });
      await handle.appendFile(text, "utf8");
      await handle.sync();
    } catch (error) {
      // Part of the text may have landed: look at the file again before the next attempt.
      this.journalSeq = -1;
      throw error;
    } finally {
      await handle?.close().catch(() => {});
    }
    this.tornTail = false;
    if (recovery?.seq !== undefined) this.journalSeq = recovery.seq;
    for (const e of fresh)
      if (e.seq !== undefined) this.journalSeq = Math.max(this.journalSeq, e.seq);
  }

  /** Runs a write, retrying OS errors with backoff; gives up with a {@link PersistError}. */
  private async retrying(what: string, target: string, work: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.assertNotCompromised();
      try {
        await work();
        return;
      } catch (error) {
        if (error instanceof LockCompromisedError) {
          this.compromised ??= error;
          throw error;
        }
        if (error instanceof StateFileError) throw error;
        const code = errnoCode(error);
        // A missing or misshapen directory does not heal by waiting.
        const lasting = code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR";
        if (code !== undefined && !lasting && attempt < this.retries) {
          await this.delay(this.retryDelayMs * 2 ** attempt);
          continue;
        }
        const detail = (error as Error).message;
        const shown = code && !detail.startsWith(code) ? `${code}: ${detail}` : detail;
        const attempts = attempt + 1;
        throw new PersistError(
          `Cannot ${what} ${target}${attempts > 1 ? ` (${attempts} attempts)` : ""}: ${shown}`,
          target,
          { cause: error, hint: hintFor(code, target) },
        );
      }
    }
  }

  /** The highest journaled `seq` (a `recover` marker restarts the count), and whether the file ends in a torn line. */
  private async readTail(): Promise<{ lastSeq: number; torn: boolean }> {
    let handle: nodeFs.FileHandle | undefined;
    try {
      handle = (await openRegularFile(this.paths.journal, this.fs)) ?? undefined;
      if (!handle) return { lastSeq: 0, torn: false };
      const { size } = await handle.stat();
      const length = Math.min(size, 256 * 1024);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      let lastSeq = 0;
      for (const entry of parseJournal(buffer.toString("utf8"))) {
        if (typeof entry.seq !== "number") continue;
        lastSeq = entry.type === "recover" ? entry.seq : Math.max(lastSeq, entry.seq);
      }
      return { lastSeq, torn: length > 0 && buffer[length - 1] !== 0x0a };
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return { lastSeq: 0, torn: false };
      throw this.journalError(error);
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  private async exists(file: string): Promise<boolean> {
    try {
      await this.fs.stat(file);
      return true;
    } catch {
      return false;
    }
  }

  /** Temp files of crashed writers of this heartbeat (their pid is gone). */
  private async removeStaleTemps(): Promise<void> {
    const names = await this.fs.readdir(this.paths.stateDir);
    const prefixes = [this.paths.stateFile, this.paths.lock].map((f) => `.${path.basename(f)}.`);
    for (const name of names) {
      const prefix = prefixes.find((p) => name.startsWith(p));
      if (!prefix || !name.endsWith(".tmp")) continue;
      const pid = Number(/^(?:prev\.)?(\d+)\./.exec(name.slice(prefix.length))?.[1]);
      if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
      await this.fs.rm(path.join(this.paths.stateDir, name), { force: true });
    }
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }
}

/** The heartbeats of the state dir `stateDir`, each a {@link FileHeartbeatStore}. */
export function fileStoreBackend(
  stateDir: string,
  options: HeartbeatStoreOptions = {},
): HeartbeatStoreBackend {
  return {
    heartbeat: (id) => new FileHeartbeatStore(heartbeatPaths(stateDir, id), options),
    async list() {
      // heartbeats.ts reads the store's files: loaded when needed, not at startup.
      const { listHeartbeatIds } = await import("./heartbeats.js");
      return listHeartbeatIds(stateDir);
    },
  };
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

/**
 * Options of {@link acquireLock}: those of the interface (`lease` is the path
 * of the host's lease file, which the lock file names; see
 * {@link leaseMtimeOf}; `refreshMs` defaults to {@link LOCK_REFRESH_MS}), and
 * the file system.
 */
export interface LockOptions extends AcquireLockOptions {
  fs?: StoreFs;
}

/** The name of a host's lease file in its state dir (`serve`): one refresh for every hosted heartbeat. */
export const HOST_LEASE_FILE = "host.lease";

/**
 * When a lock was last refreshed: its own mtime, or for a hosted heartbeat's
 * lock (one naming a `lease`) the lease file's (0 when the lease is gone, so
 * the lock counts as abandoned).
 */
export async function leaseMtimeOf(
  lockFile: string,
  text: string,
  ownMtimeMs: number,
  fs: Pick<StoreFs, "stat"> = nodeFs,
): Promise<number> {
  let lease: unknown;
  try {
    lease = (JSON.parse(text) as { lease?: unknown }).lease;
  } catch {
    return ownMtimeMs;
  }
  if (typeof lease !== "string") return ownMtimeMs;
  const stat = await fs.stat(path.resolve(path.dirname(lockFile), lease)).catch(() => null);
  return stat ? stat.mtimeMs : 0;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return errnoCode(error) === "EPERM";
  }
}

interface LockFileContent {
  holder: LockHolder | null;
  token: string | null;
  text: string;
  mtimeMs: number;
}

/** A lock file that is not a regular file (a FIFO, never read with a blocking open): exit 3. */
export function lockNotAFile(error: NotRegularFileError): StateFileError {
  return new StateFileError(
    `The lock ${error.file} is ${error.kind}, not a regular file; it was not read.`,
    error.file,
    "unreadable",
    { cause: error, hint: "Something else took the lock's place: move it away and run again." },
  );
}

async function readLockFile(file: string, fs: StoreFs): Promise<LockFileContent | null> {
  let handle: nodeFs.FileHandle | null;
  try {
    handle = await openRegularFile(file, fs);
  } catch (error) {
    if (error instanceof NotRegularFileError) throw lockNotAFile(error);
    throw error;
  }
  if (!handle) return null;
  try {
    const [text, stat] = await Promise.all([handle.readFile("utf8"), handle.stat()]);
    let holder: LockHolder | null = null;
    let token: string | null = null;
    try {
      const data = JSON.parse(text) as Partial<LockHolder> & { token?: unknown };
      if (
        typeof data.pid === "number" &&
        typeof data.host === "string" &&
        typeof data.since === "string"
      ) {
        holder = { pid: data.pid, host: data.host, since: data.since };
      }
      if (typeof data.token === "string") token = data.token;
    } catch {
      // A lock file torn by a crash while it was being written: judged by its age alone.
    }
    return { holder, token, text, mtimeMs: await leaseMtimeOf(file, text, stat.mtimeMs, fs) };
  } finally {
    await handle.close().catch(() => {});
  }
}

const describeHolder = (other: LockHolder | null) =>
  other ? `pid ${other.pid} on ${other.host}, since ${other.since}` : "an unknown process";

/**
 * Creates `file` with `text` only if it does not exist, so that it never
 * exists half-written: the content goes to a temp file first, which is then
 * hard-linked into place (link fails if the target exists).
 */
async function createExclusive(
  fs: StoreFs,
  file: string,
  text: string,
  sync = true,
): Promise<boolean> {
  const tmp = tempName(file);
  const handle = await fs.open(tmp, "wx", 0o600);
  try {
    try {
      await handle.writeFile(text, "utf8");
      // A hosted lock (thousands at a host's start) is not synced: torn by a crash, it is judged by its lease.
      if (sync) await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.link(tmp, file);
      return true;
    } catch (error) {
      const code = errnoCode(error);
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw error;
    }
    // No hard links here: exclusive create, then write (a crash between leaves a torn lock, judged by age).
    try {
      const direct = await fs.open(file, "wx", 0o600);
      try {
        await direct.writeFile(text, "utf8");
        await direct.sync();
      } finally {
        await direct.close();
      }
      return true;
    } catch (error) {
      if (errnoCode(error) === "EEXIST") return false;
      throw error;
    }
  } finally {
    await fs.rm(tmp, { force: true }).catch(() => {});
  }
}

/**
 * Takes the lock `heartbeat-<id>.lock`, which records the holder's pid, host,
 * start time and a random token. A lock whose holder is gone is taken over: on
 * this host as soon as its pid no longer runs, anywhere once it has not been
 * refreshed for {@link LOCK_STALE_MS}. Otherwise throws {@link LockedError}
 * naming the holder. While held, the lock file is checked and its time
 * refreshed every {@link LOCK_REFRESH_MS}; a lock file found gone or holding
 * another token marks the lock compromised.
 */
export async function acquireLock(file: string, options: LockOptions = {}): Promise<HeartbeatLock> {
  const now = options.now ?? Date.now;
  const fs = options.fs ?? nodeFs;
  const holder: LockHolder = {
    pid: process.pid,
    host: options.host ?? os.hostname(),
    since: new Date(now()).toISOString(),
  };
  const token = randomBytes(12).toString("hex");
  const lease = options.lease ? path.relative(path.dirname(file), options.lease) : undefined;
  const text = `${JSON.stringify({ ...holder, token, ...(lease ? { lease } : {}) })}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      if (await createExclusive(fs, file, text, !lease))
        return startRefreshing(
          file,
          holder,
          token,
          text,
          fs,
          // A hosted lock lives on its host's lease: no timer of its own.
          lease ? 0 : (options.refreshMs ?? LOCK_REFRESH_MS),
        );
    } catch (error) {
      throw new PersistError(`Cannot create the lock ${file}: ${(error as Error).message}`, file, {
        cause: error,
      });
    }
    const existing = await readLockFile(file, fs);
    if (!existing) continue; // released meanwhile: try again
    const { holder: other, mtimeMs } = existing;
    const abandoned =
      now() - mtimeMs > LOCK_STALE_MS ||
      (other !== null && other.host === holder.host && !isAlive(other.pid));
    if (!abandoned) {
      throw new LockedError(
        `Heartbeat is already running: ${file} is held by ${describeHolder(other)}.`,
        file,
        other,
        {
          hint: "Stop that process first, or use another --id. A lock whose process is gone is taken over automatically.",
        },
      );
    }
    // Take over only the lock we judged: if it changed meanwhile, look again.
    const again = await readLockFile(file, fs);
    if (again && again.mtimeMs === mtimeMs && again.text === existing.text)
      await fs.rm(file, { force: true });
  }
  throw new LockedError(
    `Could not take the lock ${file}: other processes keep taking it.`,
    file,
    null,
  );
}

function startRefreshing(
  file: string,
  holder: LockHolder,
  token: string,
  text: string,
  fs: StoreFs,
  refreshMs: number,
): HeartbeatLock {
  let compromised: LockCompromisedError | null = null;
  const listeners = new Set<(error: LockCompromisedError) => void>();
  let released = false;

  const compromise = (found: LockFileContent | null): LockCompromisedError => {
    if (!compromised) {
      compromised = new LockCompromisedError(
        found
          ? `The lock ${file} was taken over by ${describeHolder(found.holder)}; this process stopped writing.`
          : `The lock ${file} was removed while this process held it; this process stopped writing.`,
        file,
        {
          hint: "Another process may be running this heartbeat: check it before resuming. Nothing more was written by this one.",
        },
      );
      clearInterval(timer);
      for (const listener of listeners) listener(compromised);
      listeners.clear();
    }
    return compromised;
  };

  /** Throws when the file is no longer ours; other read errors are left for the next check. */
  const check = async (): Promise<void> => {
    if (compromised) throw compromised;
    let found: LockFileContent | null;
    try {
      found = await readLockFile(file, fs);
    } catch {
      return;
    }
    if (released) return;
    if (!found || (found.text !== text && found.token !== token)) throw compromise(found);
  };

  // Unchanged inode, size and mtime since the last full check: still ours,
  // without reading it. The refresh (utimes) forgets it, so the next verify
  // reads the file again.
  let checked: FileIdentity | undefined;
  const verify = async (): Promise<void> => {
    if (compromised) throw compromised;
    if (checked !== undefined) {
      const stat = await fs.stat(file).catch(() => null);
      if (stat && sameFile(checked, stat)) return;
    }
    await check();
    const stat = await fs.stat(file).catch(() => null);
    checked = stat ? { ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs } : undefined;
  };

  const refresh = () => {
    check()
      .then(() => {
        if (compromised || released) return;
        const at = new Date();
        checked = undefined;
        return fs.utimes(file, at, at);
      })
      .catch(() => {});
  };
  // A hosted lock (refreshMs 0) has no timer: its host's lease is refreshed instead.
  const timer = refreshMs > 0 ? setInterval(refresh, refreshMs) : undefined;
  timer?.unref();

  return {
    holder,
    token,
    get compromised() {
      return compromised;
    },
    onCompromised(listener) {
      if (compromised) {
        listener(compromised);
        return () => {};
      }
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    verify,
    async release() {
      released = true;
      clearInterval(timer);
      listeners.clear();
      try {
        if ((await fs.readFile(file, "utf8")) === text) await fs.rm(file, { force: true });
      } catch {
        // Already gone.
      }
    },
  };
}
