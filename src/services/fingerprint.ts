/**
 * The workspace fingerprint behind quiet ticks: a hash that changes when the
 * workspace changes, cheap and bounded. In a git work tree: HEAD, the index's
 * stat, `git status --porcelain` and the size and mtime of each path it lists
 * (a file modified twice keeps its status line); git runs read-only
 * (`GIT_OPTIONAL_LOCKS=0`, no index refresh written), with a timeout, outside
 * the tool sandbox. Elsewhere: sizes and mtimes of a bounded walk that skips
 * `.git`, `node_modules` and the state dir. Runtime only: the machine gets the
 * hash as data from the `observe` actor.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync } from "node:fs";
import * as path from "node:path";

/** Entries a walk visits at most; past it the fingerprint covers what it saw (and says how many). */
export const WALK_LIMIT = 50_000;
/** Paths listed by `git status` whose size and mtime are hashed at most. */
export const STATUS_STAT_LIMIT = 2_000;
/** Time each git command may take. */
export const GIT_TIMEOUT_MS = 5_000;
/** Directories the walk never enters. */
export const SKIPPED_DIRS = new Set([".git", "node_modules"]);

/** Options of {@link workspaceFingerprint}. */
export interface FingerprintOptions {
  /** The state dir: never part of the fingerprint (it changes every tick). */
  stateDir: string;
  /** Files left out (the checklist is hashed on its own). */
  signal?: AbortSignal;
  /** `git` executable; null skips git (the walk only). */
  git?: string | null;
}

function run(cwd: string, args: string[], signal: AbortSignal | undefined): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      "git",
      args,
      {
        cwd,
        timeout: GIT_TIMEOUT_MS,
        maxBuffer: 32 * 1024 * 1024,
        encoding: "utf8",
        ...(signal ? { signal } : {}),
        env: { ...process.env, GIT_OPTIONAL_LOCKS: "0", GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" },
        windowsHide: true,
      },
      (error, stdout) => resolve(error ? null : stdout),
    );
  });
}

const statLine = (file: string): string => {
  try {
    const s = lstatSync(file);
    return `${s.size}:${s.mtimeMs}:${s.ino}`;
  } catch {
    return "-";
  }
};

/**
 * The git fingerprint of `workdir`, or null when it is not in a work tree
 * (or git is missing, too slow, or fails).
 */
export async function gitFingerprint(
  workdir: string,
  stateDir: string,
  signal?: AbortSignal,
): Promise<string | null> {
  const top = await run(workdir, ["rev-parse", "--show-toplevel", "--git-path", "index"], signal);
  if (top === null) return null;
  const [root, indexPath] = top.split("\n");
  if (!root || !indexPath) return null;
  const relState = path.relative(workdir, stateDir);
  const exclude =
    relState && !relState.startsWith("..") && !path.isAbsolute(relState)
      ? [`:(exclude)${relState}`]
      : [];
  const [head, status] = await Promise.all([
    run(workdir, ["rev-parse", "--verify", "-q", "HEAD"], signal),
    run(
      workdir,
      [
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=no",
        "--",
        ".",
        ...exclude,
      ],
      signal,
    ),
  ]);
  if (status === null) return null;
  const hash = createHash("sha256");
  hash.update(`git\0${head ?? "no-head"}\0`);
  hash.update(statLine(path.resolve(workdir, indexPath)));
  hash.update("\0");
  hash.update(status);
  // The same status line for a file changed again: its size and mtime tell.
  const entries = status.split("\0").filter(Boolean);
  for (const entry of entries.slice(0, STATUS_STAT_LIMIT)) {
    const file = entry.slice(3);
    if (!file) continue;
    hash.update(`\0${statLine(path.resolve(root, file))}`);
  }
  return `git:${hash.digest("hex").slice(0, 32)}`;
}

/**
 * Sizes and mtimes of the files under `workdir` (a bounded walk, sorted for
 * a stable order), skipping `.git`, `node_modules` and the state dir.
 */
export function walkFingerprint(workdir: string, stateDir: string, limit = WALK_LIMIT): string {
  const hash = createHash("sha256");
  const skip = path.resolve(stateDir);
  let seen = 0;
  const stack = [path.resolve(workdir)];
  while (stack.length > 0 && seen < limit) {
    const dir = stack.pop() as string;
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      hash.update(`${dir}\0unreadable\0`);
      continue;
    }
    hash.update(`${dir}\0${names.length}\0`);
    const subdirs: string[] = [];
    for (const name of names) {
      if (seen >= limit) break;
      seen++;
      const full = path.join(dir, name);
      let s: ReturnType<typeof lstatSync>;
      try {
        s = lstatSync(full);
      } catch {
        continue;
      }
      if (s.isDirectory()) {
        if (SKIPPED_DIRS.has(name) || full === skip) continue;
        subdirs.push(full);
        hash.update(`${name}/\0`);
      } else {
        hash.update(`${name}\0${s.size}\0${s.mtimeMs}\0`);
      }
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i] as string);
  }
  return `walk:${seen}:${hash.digest("hex").slice(0, 32)}`;
}

/**
 * True when `workdir` or a directory above it has a `.git` entry, or git is
 * pointed elsewhere by `GIT_DIR`: only then is git asked (a process per tick
 * costs more than the whole walk of a small workspace).
 */
export function mayBeInWorkTree(workdir: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.GIT_DIR) return true;
  for (let dir = path.resolve(workdir); ; ) {
    try {
      lstatSync(path.join(dir, ".git"));
      return true;
    } catch {
      // none here: look above
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

/** The workspace fingerprint: git's when `workdir` is in a work tree, else the walk's. */
export async function workspaceFingerprint(
  workdir: string,
  options: FingerprintOptions,
): Promise<string> {
  if (options.git !== null && mayBeInWorkTree(workdir)) {
    const git = await gitFingerprint(workdir, options.stateDir, options.signal);
    if (git !== null) return git;
  }
  return walkFingerprint(workdir, options.stateDir);
}
