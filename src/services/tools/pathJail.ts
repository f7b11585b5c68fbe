/**
 * Confinement of tool paths to the workspace: every path a tool touches goes
 * through {@link resolveInWorkspace}, which resolves symbolic links itself and
 * refuses anything that ends up outside the workdir or inside the state dir.
 */

import fs from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../../errors.js";
import type { ToolContext } from "./types.js";

/** Why a path was refused. */
export type PathRefusalCode =
  | "outside-workdir"
  | "state-dir"
  | "nul-byte"
  | "empty-path"
  | "not-found"
  | "symlink-loop"
  | "protected"
  | "changed";

/**
 * A tool path was refused by the sandbox. The message is written for the
 * model: it says what was refused, why, and what to do instead.
 */
export class PathRefusal extends Error {
  /** Stable machine-readable reason. */
  readonly code: PathRefusalCode;
  /** The path as the model sent it. */
  readonly path: string;

  constructor(code: PathRefusalCode, userPath: string, message: string) {
    super(message);
    this.name = "PathRefusal";
    this.code = code;
    this.path = userPath;
  }
}

/** Symbolic links followed while resolving one path before giving up (Linux uses 40 too). */
const MAX_SYMLINKS = 40;

/** Longest path quoted back in a message; longer ones are shortened. */
const MAX_QUOTED = 200;

/** Quotes a user path for a message, escaping control characters and shortening long paths. */
function quote(userPath: string): string {
  const shown = userPath.length > MAX_QUOTED ? `${userPath.slice(0, MAX_QUOTED)}…` : userPath;
  return JSON.stringify(shown);
}

/**
 * Whether `child` is `parent` or lies inside it. Uses `path.relative` rather
 * than a string prefix so that `/w/ab` is not taken to be inside `/w/a`.
 */
export function isWithin(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  if (rel === "") return true;
  return rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * The workspace-relative form of an absolute path, with `/` separators, for
 * messages to the model and for policy rules (`.` for the workdir itself).
 * A path outside the workdir (tool mode `full`) stays absolute.
 */
export function toWorkspacePath(ctx: Pick<ToolContext, "workdir">, absolutePath: string): string {
  if (!isWithin(ctx.workdir, absolutePath)) return absolutePath.split(path.sep).join("/");
  const rel = path.relative(ctx.workdir, absolutePath);
  return rel === "" ? "." : rel.split(path.sep).join("/");
}

function splitComponents(p: string): string[] {
  return p.split(path.sep).filter((part) => part !== "" && part !== ".");
}

/**
 * Resolves every symbolic link in `parts`, appended one by one to the real
 * directory `start`, like `realpath` but without requiring the path to exist:
 * missing components are kept as they are, and a dangling link is replaced by
 * its target. Every component of the result that exists is therefore a real,
 * non-link entry.
 */
async function resolveLinks(start: string, parts: string[], userPath: string): Promise<string> {
  let resolved = start;
  const pending = [...parts];
  let links = 0;
  for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
    if (part === "..") {
      resolved = path.dirname(resolved);
      continue;
    }
    const next = path.join(resolved, part);
    let isLink: boolean;
    try {
      isLink = (await fs.lstat(next)).isSymbolicLink();
    } catch (error) {
      const code = errnoCode(error);
      // Missing (or under a file): nothing more to resolve at this level.
      if (code === "ENOENT" || code === "ENOTDIR") {
        resolved = next;
        continue;
      }
      throw error;
    }
    if (!isLink) {
      resolved = next;
      continue;
    }
    links += 1;
    if (links > MAX_SYMLINKS) {
      throw new PathRefusal(
        "symlink-loop",
        userPath,
        `Refused: ${quote(userPath)} goes through too many symbolic links (probably a loop). Use a different path.`,
      );
    }
    const target = await fs.readlink(next);
    // A relative target is relative to the directory holding the link, which is `resolved`.
    if (path.isAbsolute(target)) resolved = path.parse(target).root;
    pending.unshift(...splitComponents(target));
  }
  return resolved;
}

/**
 * Resolves a path sent by the model to the absolute real path a tool may use.
 *
 * Relative paths are taken from `ctx.workdir`; absolute paths are accepted
 * only if they resolve inside it. Symbolic links are resolved, including a
 * dangling link as the last component, so a link inside the workspace that
 * points outside is caught. The result is `ctx.workdir` or inside it (unless
 * `ctx.allowOutsideWorkdir`), and is never `ctx.stateDir` or inside it.
 *
 * @param ctx - The tool context; `workdir` and `stateDir` are real absolute paths.
 * @param userPath - The path as the model sent it.
 * @param opts - `mustExist`: also refuse (code `not-found`) if nothing exists there;
 *   `write`: the tool will write there, so `ctx.protectedPaths` are refused too.
 * @returns The absolute real path.
 * @throws {@link PathRefusal} when the path is refused.
 */
export async function resolveInWorkspace(
  ctx: ToolContext,
  userPath: string,
  opts: { mustExist?: boolean; write?: boolean } = {},
): Promise<string> {
  if (userPath.includes("\0")) {
    throw new PathRefusal(
      "nul-byte",
      userPath,
      `Refused: the path ${quote(userPath)} contains a NUL byte, which is never valid in a file path. Send the path without it.`,
    );
  }
  if (userPath.trim() === "") {
    throw new PathRefusal(
      "empty-path",
      userPath,
      'Refused: the path is empty. Use "." for the workspace root or a path relative to it.',
    );
  }

  // `..` is applied to the text before links are resolved, so `link/..` is the
  // directory holding `link`: stricter than the OS, never looser.
  const lexical = path.resolve(ctx.workdir, userPath);
  const lexicallyInside = isWithin(ctx.workdir, lexical);
  let real: string;
  if (lexicallyInside) {
    real = await resolveLinks(
      ctx.workdir,
      splitComponents(path.relative(ctx.workdir, lexical)),
      userPath,
    );
  } else {
    // Still resolved: the absolute path may reach the workdir through a link (`/tmp` on macOS).
    const root = path.parse(lexical).root;
    real = await resolveLinks(root, splitComponents(lexical.slice(root.length)), userPath);
  }

  if (isWithin(ctx.stateDir, real)) {
    throw new PathRefusal(
      "state-dir",
      userPath,
      `Refused: ${quote(userPath)} is inside the agent's private state directory, which tools may not read, list or write. Use another path in the workspace.`,
    );
  }
  if (opts.write && ctx.protectedPaths?.some((p) => p === real)) {
    throw new PathRefusal(
      "protected",
      userPath,
      `Refused: ${quote(userPath)} is a configuration file that sets the agent's own tool policy; tools may read it but not change it.`,
    );
  }
  if (!ctx.allowOutsideWorkdir && !isWithin(ctx.workdir, real)) {
    const why = lexicallyInside
      ? "leads outside the workspace through a symbolic link"
      : "resolves outside the workspace";
    throw new PathRefusal(
      "outside-workdir",
      userPath,
      `Refused: ${quote(userPath)} ${why}. Use a path relative to the workspace root that stays inside it.`,
    );
  }

  if (opts.mustExist) {
    try {
      await fs.stat(real);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new PathRefusal(
          "not-found",
          userPath,
          `${quote(userPath)} does not exist in the workspace. Use list_dir to see what is there.`,
        );
      }
      throw error;
    }
  }
  return real;
}
