/**
 * The file store: each heartbeat is files in the state dir.
 *
 * The state file is written atomically (temp file in the same directory,
 * fsync, rename, fsync the directory), and before each rename the current
 * file is hard-linked to `heartbeat-<id>.json.prev`: at every instant there is
 * a valid state file, and after the first rewrite a valid previous version
 * beside it. A file that cannot be read or validated is never overwritten.
 * Writes are fenced: a store whose lock was lost, or that finds a state file
 * another process advanced, refuses to write ({@link LockCompromisedError}).
 */
import { constants as fsConstants } from "node:fs";
import * as nodeFs from "node:fs/promises";
import * as path from "node:path";
import {
  errnoCode,
  LockCompromisedError,
  PersistError,
  StateFileError,
  UsageError,
} from "../../errors.js";
import type { StateFile } from "../../schemas/stateFile.js";
import { noRedaction, type Redactor } from "../redact.js";
import {
  type FileIdentity,
  linkOrCopy,
  type StoreFs,
  sameFile,
  writeFileAtomic,
} from "./atomicWrite.js";
import {
  appendJournalText,
  checkJournalFile,
  readJournalFile,
  readJournalTail,
} from "./journal.js";
import { acquireLock, isAlive, type LockOptions } from "./lock.js";
import { retrying } from "./retry.js";
import {
  checkStateFile,
  heartbeatPaths,
  loadStateFile,
  parseStateFile,
  prevPathOf,
  readStateText,
} from "./stateFile.js";
import type {
  HeartbeatLock,
  HeartbeatPaths,
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
  RecoverResult,
} from "./types.js";

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
    await checkJournalFile(this.paths.journal, this.fs);
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
    // A host takes thousands of locks at once: it cleans the whole dir once instead (removeStaleTempFiles).
    if (!options.lease) await this.removeStaleTemps().catch(() => {});
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
  readJournal(): Promise<JournalEntry[]> {
    return readJournalFile(this.paths.journal, this.fs);
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
      const tail = await readJournalTail(this.paths.journal, this.fs);
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
    try {
      await appendJournalText(this.paths.journal, text, this.fs);
    } catch (error) {
      // Part of the text may have landed: look at the file again before the next attempt.
      this.journalSeq = -1;
      throw error;
    }
    this.tornTail = false;
    if (recovery?.seq !== undefined) this.journalSeq = recovery.seq;
    for (const e of fresh)
      if (e.seq !== undefined) this.journalSeq = Math.max(this.journalSeq, e.seq);
  }

  /** Runs a write, retrying OS errors with backoff (see {@link retrying}); never once the lock is lost. */
  private retrying(what: string, target: string, work: () => Promise<void>): Promise<void> {
    const policy = { retries: this.retries, retryDelayMs: this.retryDelayMs, delay: this.delay };
    return retrying(what, target, policy, work, {
      check: () => this.assertNotCompromised(),
      compromised: (error) => {
        this.compromised ??= error;
      },
    });
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
/**
 * Removes the temp files that crashed writers (their pid is gone) left in a
 * state dir, for every heartbeat at once: what a host does once at start in
 * place of each store's own clean-up.
 */
export async function removeStaleTempFiles(stateDir: string, names: string[]): Promise<void> {
  for (const name of names) {
    const match = /^\.heartbeat-.+\.(?:json|lock)\.(?:prev\.)?(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
    const pid = Number(match?.[1]);
    if (!match || !Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    await nodeFs.rm(path.join(stateDir, name), { force: true }).catch(() => {});
  }
}

export function fileStoreBackend(
  stateDir: string,
  options: HeartbeatStoreOptions = {},
): HeartbeatStoreBackend {
  return {
    heartbeat: (id) => new FileHeartbeatStore(heartbeatPaths(stateDir, id), options),
    async list() {
      // heartbeats.ts reads the store's files: loaded when needed, not at startup.
      const { listHeartbeatIds } = await import("../heartbeats.js");
      return listHeartbeatIds(stateDir);
    },
  };
}
