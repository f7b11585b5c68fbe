import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import { inDir, type OpenDir } from "./safeOpen.js";

/**
 * Replaces (or creates) `name` in the open directory `dir` with `content`
 * atomically: a temp file in the same directory, then a rename. Keeps the
 * mode of the file it replaces. Both go through the open directory, so a
 * directory swapped for a link meanwhile cannot redirect them.
 *
 * @param dir - The directory, opened by `openDirectory` (already confined).
 * @param name - The file name in it.
 * @param content - UTF-8 text, or bytes (a screenshot).
 * @param mode - Permission bits to keep (from the replaced file), if any.
 * @param signal - Aborts the write; the temp file is removed.
 */
export async function atomicWrite(
  dir: OpenDir,
  name: string,
  content: string | Uint8Array,
  mode: number | undefined,
  signal?: AbortSignal,
): Promise<void> {
  // `wx` (O_EXCL) never follows a link planted at the temp name.
  const temp = inDir(dir, `.${name}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await fs.writeFile(temp, content, {
      encoding: "utf8",
      flag: "wx",
      ...(signal ? { signal } : {}),
    });
    // Keep the permissions of the file being replaced (chmod, unlike `mode`, ignores the umask).
    if (mode !== undefined) await fs.chmod(temp, mode);
    await fs.rename(temp, inDir(dir, name));
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}
