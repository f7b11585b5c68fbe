/**
 * Race-proof opening for the file tools. {@link resolveInWorkspace} checks a
 * path; a command running at the same time could then swap a directory on
 * that path for a symbolic link (to the state dir, or outside) before the
 * tool opens it. So the tools never open a checked path by name: they walk
 * it again one component at a time with `O_NOFOLLOW`, each step relative to
 * the directory opened before (through `/proc/self/fd/N/name`, Node's
 * equivalent of `openat`), refusing any link and the state dir itself. What
 * they then read, create or rename goes through the directory they hold
 * open, wherever its name has moved since.
 *
 * Without `/proc/self/fd` (not Linux) they fall back to opening by name with
 * `O_NOFOLLOW` on the last component only.
 */
import { constants, existsSync } from "node:fs";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../../errors.js";
import { isWithin, PathRefusal, toWorkspacePath } from "./pathJail.js";
import type { ToolContext } from "./types.js";

const HAS_PROC_FD = process.platform === "linux" && existsSync("/proc/self/fd");
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;

/** A path that reaches `name` inside the open directory `dir`, whatever the directory is called now. */
export function inDir(dir: OpenDir, name: string): string {
  return dir.handle ? `/proc/self/fd/${dir.handle.fd}/${name}` : path.join(dir.path, name);
}

/** A directory opened by {@link openDirectory}; close it when done. */
export interface OpenDir {
  /** The open directory (undefined on systems without `/proc/self/fd`). */
  handle: FileHandle | undefined;
  /** Its real path when it was checked. */
  path: string;
  close(): Promise<void>;
}

function changed(ctx: ToolContext, real: string, why: string): PathRefusal {
  const shown = toWorkspacePath(ctx, real);
  return new PathRefusal(
    "changed",
    shown,
    `Refused: "${shown}" changed while it was being opened (${why}). Something else is changing this path; try again once it is settled.`,
  );
}

function inStateDir(ctx: ToolContext, real: string): PathRefusal {
  const shown = toWorkspacePath(ctx, real);
  return new PathRefusal(
    "state-dir",
    shown,
    `Refused: "${shown}" is inside the agent's private state directory, which tools may not read, list or write. Use another path in the workspace.`,
  );
}

async function stateDirId(ctx: ToolContext): Promise<{ dev: number; ino: number } | undefined> {
  const stat = await fs.stat(ctx.stateDir).catch(() => undefined);
  return stat ? { dev: stat.dev, ino: stat.ino } : undefined;
}

/**
 * Opens the directory `realDir` (a path {@link resolveInWorkspace} returned)
 * component by component with `O_NOFOLLOW`, from the workdir (or `/` for a
 * path outside it, tool mode `full`).
 *
 * @param opts - `create`: make missing components (like `mkdir -p`, each inside the one before).
 * @throws {@link PathRefusal} `changed` when a component is now a link or not a directory,
 *   `state-dir` when a component is the state dir.
 */
export async function openDirectory(
  ctx: ToolContext,
  realDir: string,
  opts: { create?: boolean } = {},
): Promise<OpenDir> {
  if (!HAS_PROC_FD) {
    if (opts.create) await fs.mkdir(realDir, { recursive: true });
    return { handle: undefined, path: realDir, close: async () => {} };
  }
  const inside = isWithin(ctx.workdir, realDir);
  const start = inside ? ctx.workdir : path.parse(realDir).root;
  const parts = path
    .relative(start, realDir)
    .split(path.sep)
    .filter((p) => p !== "");
  const state = await stateDirId(ctx);
  let current = await fs.open(start, constants.O_RDONLY | O_DIRECTORY);
  let currentPath = start;
  try {
    for (const part of parts) {
      const next = `/proc/self/fd/${current.fd}/${part}`;
      const nextPath = path.join(currentPath, part);
      let opened: FileHandle;
      try {
        opened = await fs.open(next, constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      } catch (error) {
        const code = errnoCode(error);
        if (code === "ENOENT" && opts.create) {
          await fs.mkdir(next).catch((e: unknown) => {
            if (errnoCode(e) !== "EEXIST") throw e;
          });
          opened = await fs
            .open(next, constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            .catch((e: unknown) => {
              throw errnoCode(e) === "ELOOP" || errnoCode(e) === "ENOTDIR"
                ? changed(ctx, nextPath, "a part of it became a symbolic link or a file")
                : e;
            });
        } else if (code === "ELOOP" || code === "ENOTDIR") {
          throw changed(ctx, nextPath, "a part of it is now a symbolic link or a file");
        } else {
          throw error;
        }
      }
      await current.close();
      current = opened;
      currentPath = nextPath;
      const stat = await current.stat();
      if (state && stat.dev === state.dev && stat.ino === state.ino) {
        throw inStateDir(ctx, currentPath);
      }
    }
  } catch (error) {
    await current.close().catch(() => {});
    throw error;
  }
  const handle = current;
  return { handle, path: currentPath, close: () => handle.close() };
}

/**
 * Opens the file `real` (a path {@link resolveInWorkspace} returned) for
 * reading: its directory through {@link openDirectory}, then the file itself
 * with `O_NOFOLLOW`. The caller checks it is a regular file (`handle.stat()`).
 *
 * @throws {@link PathRefusal} as {@link openDirectory}, and `changed` when the file is now a link.
 */
export async function openFileForReading(ctx: ToolContext, real: string): Promise<FileHandle> {
  const dir = await openDirectory(ctx, path.dirname(real));
  try {
    // O_NONBLOCK: a FIFO opens at once (and is then refused as not a regular file) instead of blocking.
    return await fs.open(
      inDir(dir, path.basename(real)),
      constants.O_RDONLY | O_NOFOLLOW | (constants.O_NONBLOCK ?? 0),
    );
  } catch (error) {
    if (errnoCode(error) === "ELOOP") {
      throw changed(ctx, real, "it is now a symbolic link");
    }
    throw error;
  } finally {
    await dir.close();
  }
}
