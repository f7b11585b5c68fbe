import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { resolveInWorkspace, toWorkspacePath } from "./sandbox.js";
import type { Tool } from "./types.js";

const writeFileSchema = z.object({
  path: z
    .string()
    .describe(
      "File to write, relative to the workspace root. Missing parent directories are created.",
    ),
  content: z.string().describe("The complete new content of the file (UTF-8 text)."),
});

/** Arguments of {@link writeFileTool}. */
export type WriteFileArgs = z.infer<typeof writeFileSchema>;

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

/** `write_file`: creates or replaces a file in the workspace, atomically. */
export const writeFileTool: Tool<WriteFileArgs> = {
  name: "write_file",
  description:
    "Create or overwrite a text file in the workspace with the given content. Parent directories are created as needed.",
  schema: writeFileSchema,
  async run(args, ctx) {
    const real = await resolveInWorkspace(ctx, args.path);
    const shown = toWorkspacePath(ctx, real);

    let mode: number | undefined;
    try {
      const existing = await fs.stat(real);
      if (existing.isDirectory()) {
        throw new Error(
          `"${shown}" is a directory; write_file can only write files. Choose a file path.`,
        );
      }
      if (!existing.isFile()) {
        throw new Error(`"${shown}" is not a regular file; write_file cannot replace it.`);
      }
      mode = existing.mode & 0o7777;
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
    }

    // The parent is inside the workspace (`real` is, and is not the workdir
    // itself, which is a directory); its missing parts cannot be links.
    const dir = path.dirname(real);
    await fs.mkdir(dir, { recursive: true });

    // Same directory so that the rename is atomic; `wx` never follows a link planted at that name.
    const temp = path.join(
      dir,
      `.${path.basename(real)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`,
    );
    try {
      await fs.writeFile(temp, args.content, {
        encoding: "utf8",
        flag: "wx",
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
      // Keep the permissions of the file being replaced (chmod, unlike `mode`, ignores the umask).
      if (mode !== undefined) await fs.chmod(temp, mode);
      await fs.rename(temp, real);
    } catch (error) {
      await fs.rm(temp, { force: true });
      throw error;
    }
    return `Wrote ${Buffer.byteLength(args.content, "utf8")} bytes to ${shown}`;
  },
};
