import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/**
 * Replaces (or creates) `real` with `content` atomically: a temp file in the
 * same directory, then a rename. Keeps the mode of the file it replaces.
 *
 * @param real - Absolute real path, already confined by the sandbox.
 * @param content - UTF-8 text.
 * @param mode - Permission bits to keep (from the replaced file), if any.
 * @param signal - Aborts the write; the temp file is removed.
 */
export async function atomicWrite(
  real: string,
  content: string,
  mode: number | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const dir = path.dirname(real);
  // Same directory so that the rename is atomic; `wx` never follows a link planted at that name.
  const temp = path.join(
    dir,
    `.${path.basename(real)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`,
  );
  try {
    await fs.writeFile(temp, content, {
      encoding: "utf8",
      flag: "wx",
      ...(signal ? { signal } : {}),
    });
    // Keep the permissions of the file being replaced (chmod, unlike `mode`, ignores the umask).
    if (mode !== undefined) await fs.chmod(temp, mode);
    await fs.rename(temp, real);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}
