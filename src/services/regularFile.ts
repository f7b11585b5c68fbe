/**
 * Reading files that must be regular files without ever blocking: a FIFO,
 * socket or device in their place is refused at once (state files, the
 * journal, the lock, `ravenclaws.toml`).
 */
import { constants as fsConstants } from "node:fs";
import * as nodeFs from "node:fs/promises";
import { errnoCode } from "../errors.js";

/** What kind of file system object a stat describes, for messages. */
export function kindOf(stat: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
}): string {
  if (stat.isDirectory()) return "a directory";
  if (stat.isFIFO()) return "a FIFO (named pipe)";
  if (stat.isSocket()) return "a socket";
  return "a device or other special file";
}

/** A file that must be a regular file is something else (a FIFO, a device, a directory). */
export class NotRegularFileError extends Error {
  readonly code = "ENOTREG";
  constructor(
    readonly file: string,
    readonly kind: string,
  ) {
    super(`${file} is ${kind}, not a regular file`);
    this.name = "NotRegularFileError";
  }
}

/**
 * Opens `file` for reading without ever blocking: `O_NONBLOCK`, so a FIFO in
 * its place opens at once, then `fstat` on the open handle (no race with a
 * swap) refuses anything but a regular file with {@link NotRegularFileError}.
 * Null when the file does not exist.
 */
export async function openRegularFile(
  file: string,
  fs: Pick<typeof nodeFs, "open"> = nodeFs,
): Promise<nodeFs.FileHandle | null> {
  let handle: nodeFs.FileHandle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null;
    throw error;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new NotRegularFileError(file, kindOf(stat));
    return handle;
  } catch (error) {
    await handle.close().catch(() => {});
    throw error;
  }
}

/** Reads a regular file's text (see {@link openRegularFile}); null when it does not exist. */
export async function readRegularFile(
  file: string,
  fs: Pick<typeof nodeFs, "open"> = nodeFs,
): Promise<string | null> {
  const handle = await openRegularFile(file, fs);
  if (!handle) return null;
  try {
    return await handle.readFile("utf8");
  } finally {
    await handle.close().catch(() => {});
  }
}
