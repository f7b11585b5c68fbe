/**
 * The bubblewrap command line for one `shell_exec` command: a pure function
 * of the mount plan, so what the sandbox does can be read (and tested) here.
 */
import path from "node:path";
import { isWithin } from "../pathJail.js";

/** What the sandbox shows, hides and protects. Every path is absolute and real. */
export interface MountPlan {
  /** The workspace: the only writable bind, and the command's working directory. */
  workdir: string;
  /** Directories hidden behind an empty read-only tmpfs (the state dir, the user config dir). */
  maskedDirs: string[];
  /** Files hidden behind `/dev/null` (a `--config` file, a toml holding the API key). */
  maskedFiles: string[];
  /** Files inside the workdir bound read-only (every `ravenclaws.toml` a later run reads). */
  readOnlyFiles: string[];
  /** Let the command reach the network (`--shell-network`). */
  network: boolean;
}

/** Resource limits applied inside the sandbox with the shell's `ulimit`. */
export interface SandboxLimits {
  /** Largest file the command may write, in bytes (RLIMIT_FSIZE). */
  fileBytes: number;
  /** CPU seconds each process may use (RLIMIT_CPU). */
  cpuSec: number;
}

/**
 * Whether `p` is visible inside the sandbox: the host root is bound read-only,
 * but `/tmp`, `/proc` and `/dev` are the sandbox's own, except for the workdir
 * bound back on top.
 */
export function visibleInSandbox(plan: Pick<MountPlan, "workdir">, p: string): boolean {
  if (isWithin(plan.workdir, p)) return true;
  return !["/tmp", "/proc", "/dev"].some((hidden) => isWithin(hidden, p));
}

/**
 * bwrap arguments (without the program) that run `command` with `/bin/sh -c`
 * inside the sandbox, under `limits`.
 *
 * Order matters: later mounts cover earlier ones, so the private `/tmp` comes
 * before the workdir (which may lie in `/tmp`), and the masks come last (the
 * state dir usually lies inside the workdir).
 */
export function bwrapArgs(
  plan: MountPlan,
  command: string,
  limits: SandboxLimits,
  infoFd?: number,
): string[] {
  const args = [
    "--unshare-all",
    ...(plan.network ? ["--share-net"] : []),
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    "--bind",
    plan.workdir,
    plan.workdir,
  ];
  for (const file of plan.readOnlyFiles) {
    if (isWithin(plan.workdir, file)) args.push("--ro-bind", file, file);
  }
  for (const dir of plan.maskedDirs) {
    // A dir holding the workdir cannot be hidden without hiding the workdir; its files are masked instead.
    if (!visibleInSandbox(plan, dir) || isWithin(dir, plan.workdir)) continue;
    args.push("--tmpfs", dir, "--remount-ro", dir);
  }
  for (const file of plan.maskedFiles) {
    if (visibleInSandbox(plan, file)) args.push("--ro-bind", "/dev/null", file);
  }
  if (infoFd !== undefined) args.push("--info-fd", String(infoFd));
  args.push("--chdir", plan.workdir, "--", ...limitedShell(command, limits));
  return args;
}

/**
 * `/bin/sh -c command` under the limits: a wrapper shell sets them with
 * `ulimit` (POSIX: file size in 512-byte blocks) and `exec`s the command's
 * shell, so the command's parent is the sandbox's init, not a wrapper.
 */
export function limitedShell(command: string, limits: SandboxLimits): string[] {
  const blocks = Math.max(1, Math.floor(limits.fileBytes / 512));
  const cpu = Math.max(1, Math.ceil(limits.cpuSec));
  return [
    "/bin/sh",
    "-c",
    `ulimit -f ${blocks} && ulimit -t ${cpu} && exec /bin/sh -c "$1"`,
    "sh",
    command,
  ];
}

/** The directories a masked file or dir needs to exist in, for messages. */
export function describePlan(plan: MountPlan): string {
  const masked = [...plan.maskedDirs, ...plan.maskedFiles].filter((p) => visibleInSandbox(plan, p));
  return `writable: ${plan.workdir}; hidden: ${masked.map((p) => path.normalize(p)).join(", ") || "none"}; network: ${plan.network ? "on" : "off"}`;
}
