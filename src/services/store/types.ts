/**
 * The store of heartbeats, as the runtime, the host and the commands use it:
 * one interface that every backend implements (the files of a state dir
 * today, PostgreSQL next). A backend passes the conformance suite in
 * test/services/store/conformance.ts.
 *
 * The model: a heartbeat is one snapshot (the state file's content, with a
 * `seq` that grows with every persisted tick) and an append-only journal.
 * Writes are fenced by `seq` (compare-and-set): a store that finds a
 * snapshot newer than the last one it loaded or wrote refuses to write, for
 * good, with a {@link LockCompromisedError}; so a stale writer never
 * overwrites a newer tick. Journal entries carry the `seq` of the persist that
 * wrote them, and an entry with a `seq` at or below one already journaled is
 * skipped, so a persist that runs again after a crash journals a tick at most
 * once. One process at a time runs a heartbeat: it holds the heartbeat's lock
 * (a lease), which fences its writes too.
 */
import type { LockCompromisedError, LockHolder, StateFileProblem } from "../../errors.js";
import type { StateFile } from "../../schemas/stateFile.js";

/** One journal record (one JSON object per line in the file store). */
export type JournalEntry = { type: string; seq?: number; [key: string]: unknown };

/** Where one heartbeat is kept, as shown in messages (file paths for the file store). */
export interface HeartbeatPaths {
  /** The container of all heartbeats (the state dir). */
  stateDir: string;
  /** The snapshot. */
  stateFile: string;
  /** The journal. */
  journal: string;
  /** The lock. */
  lock: string;
}

/** What {@link HeartbeatStore.recover} did. */
export type RecoverResult =
  | { action: "none"; reason: "healthy"; tick: number; message: string }
  | { action: "none"; reason: "no-state"; message: string }
  | {
      action: "restored";
      /** The tick of the previous version now in place. */
      tick: number;
      /** Where the unusable snapshot went (null when it was missing). */
      movedTo: string | null;
      problem: StateFileProblem;
      message: string;
    };

/** Options of {@link HeartbeatStore.acquireLock}. */
export interface AcquireLockOptions {
  /** Current time (the holder's `since`, staleness); injectable for tests. */
  now?: () => number;
  /** The host name recorded as the holder's. */
  host?: string;
  /** Refresh (and compromise check) interval of the lock. */
  refreshMs?: number;
  /**
   * A hosted heartbeat's lock: the host's lease, which the host refreshes for
   * all its heartbeats (the file store: the lease file's path). The lock is
   * not refreshed itself; its liveness is the lease's.
   */
  lease?: string;
}

/** A held heartbeat lock. */
export interface HeartbeatLock {
  holder: LockHolder;
  /** Random token that tells this holder's lock from any other. */
  token: string;
  /** Set once the lock was found gone or taken over. */
  readonly compromised: LockCompromisedError | null;
  /** Calls `listener` once when the lock is found compromised; returns an unsubscribe function. */
  onCompromised(listener: (error: LockCompromisedError) => void): () => void;
  /** Checks the lock is still this holder's; throws {@link LockCompromisedError} if not. */
  verify(): Promise<void>;
  /** Releases the lock (only if it is still this holder's). */
  release(): Promise<void>;
}

/**
 * The store of one heartbeat. Writes (`save`, `append`, `commit`, `recover`)
 * are serialised in the order they are called, so a shutdown write is never
 * overtaken by an earlier one; a failed write is retried where retrying can
 * help, then reported as a {@link PersistError}. Everything written passes the
 * store's redactor, so a secret never reaches it.
 */
export interface HeartbeatStore {
  /** Where this heartbeat is kept, for messages. */
  readonly paths: HeartbeatPaths;
  /** Makes the store usable (the file store: creates the state dir); a {@link UsageError} when it cannot be. */
  ensureDir(): Promise<void>;
  /**
   * Loads the snapshot; null when there is none. A snapshot that cannot be
   * used is refused with a {@link StateFileError} and left as it is. The
   * `seq` loaded is the one later writes are fenced against.
   */
  load(): Promise<StateFile | null>;
  /**
   * Reads the snapshot as it is now, for observers (status, the host's
   * summaries): like {@link load} but without changing what writes are
   * fenced against.
   */
  peek(): Promise<StateFile | null>;
  /**
   * Writes the snapshot, compare-and-set on `seq`: refused for good with a
   * {@link LockCompromisedError} when the stored snapshot's `seq` is above the
   * one this store last loaded or wrote (another writer advanced it), or when
   * the lock was lost. Writing the same `seq` again is allowed (a checkpoint,
   * a persist repeated after a restore).
   */
  save(state: StateFile): Promise<void>;
  /**
   * Appends journal entries, in order. An entry whose `seq` is at or below
   * one already journaled is skipped (a `recover` entry restarts the count at
   * its `seq`); entries without `seq` are always appended.
   */
  append(entries: JournalEntry[]): Promise<void>;
  /**
   * Ends a persist: {@link save} then {@link append}. A backend with
   * transactions does both in one; the file store writes the state file
   * first (a crash between the two is healed by the persist running again,
   * whose entries the journal then takes once).
   */
  commit(state: StateFile, entries: JournalEntry[]): Promise<void>;
  /** The journal, oldest first; a torn last record (from a crash) is skipped. */
  readJournal(): Promise<JournalEntry[]>;
  /**
   * `run --recover`: when the snapshot is unusable (or missing), moves it
   * aside and puts the previous version in its place; throws
   * {@link StateFileError} (leaving everything as it was) when there is no
   * usable previous version. Does nothing to a healthy snapshot. A backend
   * whose writes cannot tear answers `healthy` or `no-state`.
   */
  recover(): Promise<RecoverResult>;
  /**
   * Takes this heartbeat's lock and fences every later write of this store
   * with it. Throws {@link LockedError} naming the holder when another live
   * process holds it.
   */
  acquireLock(options?: AcquireLockOptions): Promise<HeartbeatLock>;
}

/** All the heartbeats of one place (a state dir, a database). */
export interface HeartbeatStoreBackend {
  /** The store of heartbeat `id` (nothing is read or created until it is used). */
  heartbeat(id: string): HeartbeatStore;
  /** The ids of the heartbeats it holds, sorted. */
  list(): Promise<string[]>;
}
