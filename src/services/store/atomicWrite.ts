/**
 * Durable file writes: atomic replacement (temp file in the same directory,
 * fsync, rename, fsync the directory), hard links with a copy where links are
 * unsupported, and the file system calls the store makes (injectable, so
 * tests can inject faults).
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as nodeFs from "node:fs/promises";
import * as path from "node:path";
import { errnoCode } from "../../errors.js";
import { crashPoint } from "../crashPoints.js";

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

/** What identifies one version of a file without reading it: inode, size and modification time. */
export interface FileIdentity {
  ino: number;
  size: number;
  mtimeMs: number;
}

export const sameFile = (a: FileIdentity | undefined, b: FileIdentity) =>
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

export const tempName = (file: string, tag = "") =>
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

export async function fsyncDir(dir: string, fs: Pick<StoreFs, "open">): Promise<void> {
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
export async function linkOrCopy(
  fs: StoreFs,
  from: string,
  to: string,
  text?: string,
): Promise<void> {
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
