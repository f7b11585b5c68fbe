/**
 * The lock of one heartbeat (`heartbeat-<id>.lock`): one process at a time
 * runs a heartbeat. The lock file records the holder (pid, host, since) and a
 * random token; it is refreshed while held (or, for a heartbeat hosted by
 * `serve`, lives on the host's lease file), taken over once its holder is
 * gone, and checked before every write (fencing).
 */
import { randomBytes } from "node:crypto";
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
} from "../../errors.js";
import { NotRegularFileError, openRegularFile } from "../regularFile.js";
import { type FileIdentity, type StoreFs, sameFile, tempName } from "./atomicWrite.js";
import type { AcquireLockOptions, HeartbeatLock } from "./types.js";

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

export function isAlive(pid: number): boolean {
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
