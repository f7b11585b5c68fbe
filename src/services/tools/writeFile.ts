import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { errnoCode } from "../../errors.js";
import { atomicWrite } from "./atomicWrite.js";
import { resolveInWorkspace, toWorkspacePath } from "./pathJail.js";
import { inDir, openDirectory } from "./safeOpen.js";
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

/** `write_file`: creates or replaces a file in the workspace, atomically. */
export const writeFileTool: Tool<WriteFileArgs> = {
  name: "write_file",
  description:
    "Create or overwrite a text file in the workspace with the given content. Parent directories are created as needed.",
  schema: writeFileSchema,
  kind: "write",
  access: (args) => ({ kind: "write", target: args.path }),
  async run(args, ctx) {
    const real = await resolveInWorkspace(ctx, args.path, { write: true });
    const shown = toWorkspacePath(ctx, real);

    // The parent is confined (`real` is, and is not the workdir itself, which
    // is a directory); it is opened again component by component, so a swap
    // since the check cannot redirect the write.
    const dir = await openDirectory(ctx, path.dirname(real), { create: true });
    try {
      const name = path.basename(real);
      let mode: number | undefined;
      try {
        const existing = await fs.lstat(inDir(dir, name));
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
      await atomicWrite(dir, name, args.content, mode, ctx.signal);
    } finally {
      await dir.close();
    }
    return `Wrote ${Buffer.byteLength(args.content, "utf8")} bytes to ${shown}`;
  },
};
