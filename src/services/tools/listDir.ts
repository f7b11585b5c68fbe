import type { Dirent } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { isWithin, resolveInWorkspace, toWorkspacePath } from "./pathJail.js";
import { openDirectory } from "./safeOpen.js";
import type { Tool, ToolContext } from "./types.js";

/** Most entries a recursive listing shows; the rest are only counted. */
export const LIST_DIR_MAX_ENTRIES = 500;

/** Entries counted past {@link LIST_DIR_MAX_ENTRIES} before the walk gives up counting. */
const MAX_COUNTED = 100_000;

const listDirSchema = z.object({
  path: z
    .string()
    .default(".")
    .describe('Directory to list, relative to the workspace root. Defaults to "." (the root).'),
  recursive: z
    .boolean()
    .default(false)
    .describe(
      `List subdirectories too (up to ${LIST_DIR_MAX_ENTRIES} entries; .git contents are skipped).`,
    ),
});

/** Arguments of {@link listDirTool}, after defaults. */
export type ListDirArgs = z.output<typeof listDirSchema>;

async function formatEntry(entry: Dirent, full: string, shownPath: string): Promise<string> {
  if (entry.isSymbolicLink()) {
    const target = await fs.readlink(full).catch(() => "?");
    return `${shownPath} -> ${target}`;
  }
  return entry.isDirectory() ? `${shownPath}/` : shownPath;
}

/**
 * Reads a directory's entries, sorted by name, without the state dir. The
 * directory is opened again component by component (a link swapped in since
 * the check is refused) and read through that descriptor.
 */
async function readEntries(ctx: ToolContext, dir: string): Promise<Dirent[]> {
  const opened = await openDirectory(ctx, dir);
  let entries: Dirent[];
  try {
    entries = await fs.readdir(opened.handle ? `/proc/self/fd/${opened.handle.fd}` : dir, {
      withFileTypes: true,
    });
  } finally {
    await opened.close();
  }
  return entries
    .filter((entry) => !isWithin(ctx.stateDir, path.join(dir, entry.name)))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** `list_dir`: lists a directory of the workspace, optionally recursively. */
export const listDirTool: Tool<ListDirArgs> = {
  name: "list_dir",
  description:
    "List the entries of a workspace directory, sorted by name. Directories end with '/', symbolic links are shown as 'name -> target'.",
  schema: listDirSchema,
  // Listing a directory is reading it, for the rules: `read(secrets/**)` covers both.
  kind: "read",
  access: (args) => ({ kind: "read", target: args.path }),
  async run(args, ctx) {
    const real = await resolveInWorkspace(ctx, args.path, { mustExist: true });
    const shown = toWorkspacePath(ctx, real);
    if (!(await fs.stat(real)).isDirectory()) {
      throw new Error(`"${shown}" is a file, not a directory. Use read_file to read it.`);
    }

    const lines: string[] = [];
    let omitted = 0;
    let countingStopped = false;

    // Pre-order walk; symbolic links are listed but never followed.
    const walk = async (dir: string, prefix: string, top: boolean): Promise<void> => {
      ctx.signal?.throwIfAborted();
      let entries: Dirent[];
      try {
        entries = await readEntries(ctx, dir);
      } catch (error) {
        // An unreadable subdirectory is still listed itself; only its contents are missing.
        if (top) throw error;
        return;
      }
      for (const entry of entries) {
        if (countingStopped) return;
        const full = path.join(dir, entry.name);
        const shownPath = `${prefix}${entry.name}`;
        if (lines.length < LIST_DIR_MAX_ENTRIES) {
          lines.push(await formatEntry(entry, full, shownPath));
        } else if (omitted < MAX_COUNTED) {
          omitted += 1;
        } else {
          countingStopped = true;
          return;
        }
        if (args.recursive && entry.isDirectory() && entry.name !== ".git") {
          await walk(full, `${shownPath}/`, false);
        }
      }
    };
    await walk(real, "", true);

    if (lines.length === 0) return `[The directory "${shown}" is empty.]`;
    if (omitted > 0) {
      const count = countingStopped ? `more than ${omitted}` : `${omitted}`;
      lines.push(
        `[Listing stopped at ${LIST_DIR_MAX_ENTRIES} entries; ${count} more were left out. List a subdirectory to see them.]`,
      );
    }
    return lines.join("\n");
  },
};
