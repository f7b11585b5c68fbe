import { spawn } from "node:child_process";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { PolicyRefusal } from "./policy.js";
import { watchProcessCount } from "./sandbox/processes.js";
import type { BwrapSandbox, SandboxedCommand } from "./sandbox/runner.js";
import { findDestructive, scrubEnv } from "./shellSafety.js";
import type { Tool, ToolContext } from "./types.js";

/** Default time a command may run, in seconds (`[tools] shell_timeout_secs`). */
export const SHELL_DEFAULT_TIMEOUT_SEC = 60;
/** Longest `timeoutSec` the model may ask for, unless the configured default is longer. */
export const SHELL_MAX_TIMEOUT_SEC = 600;
/** Captured output kept in full; beyond it the head and tail halves are kept. */
export const SHELL_MAX_OUTPUT_BYTES = 32 * 1024;
/** How long to wait for the output pipes to close once the command has exited. */
const DRAIN_MS = 1_000;

/** Settings of the `shell_exec` tool. */
export interface ShellOptions {
  /** Seconds a command may run when the model gives no `timeoutSec`. */
  timeoutSec?: number;
  /** Secret-looking variable names to keep (`*` wildcards allowed). */
  envAllow?: string[];
  /** The environment to scrub and pass on; `process.env` unless given. */
  env?: NodeJS.ProcessEnv;
  /** Output cap in bytes; {@link SHELL_MAX_OUTPUT_BYTES} unless given. */
  maxOutputBytes?: number;
  /** The shell; `/bin/sh`. */
  shell?: string;
  /**
   * The OS sandbox every command runs in. Without it the command runs
   * directly on the host (`--sandbox off`).
   */
  sandbox?: BwrapSandbox;
  /** Called with the process group id as soon as the command starts (tests). */
  onSpawn?(pgid: number): void;
}

/** Keeps the first and last `max / 2` bytes of a stream and counts what lies between. */
class HeadTail {
  private readonly half: number;
  private head: Buffer[] = [];
  private headSize = 0;
  private tail: Buffer[] = [];
  private tailSize = 0;
  total = 0;

  constructor(max: number) {
    this.half = Math.max(1, Math.floor(max / 2));
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let rest = chunk;
    if (this.headSize < this.half) {
      const take = rest.subarray(0, this.half - this.headSize);
      this.head.push(take);
      this.headSize += take.length;
      rest = rest.subarray(take.length);
    }
    if (rest.length === 0) return;
    this.tail.push(rest);
    this.tailSize += rest.length;
    while (this.tailSize - (this.tail[0]?.length ?? 0) >= this.half) {
      this.tailSize -= (this.tail.shift() as Buffer).length;
    }
  }

  /** The kept text, with a note of how many bytes were cut from the middle. */
  text(): string {
    const head = Buffer.concat(this.head);
    let tail = Buffer.concat(this.tail);
    if (tail.length > this.half) tail = tail.subarray(tail.length - this.half);
    const cut = this.total - head.length - tail.length;
    if (cut <= 0) return Buffer.concat([head, tail]).toString("utf8");
    // Cut at character boundaries: drop a partial UTF-8 sequence at either edge.
    let headEnd = head.length;
    for (let back = 1; back <= 3 && headEnd - back >= 0; back += 1) {
      const byte = head[headEnd - back] as number;
      if ((byte & 0xc0) === 0x80) continue;
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
      if (need > back) headEnd -= back;
      break;
    }
    let tailStart = 0;
    while (tailStart < tail.length && ((tail[tailStart] as number) & 0xc0) === 0x80) tailStart += 1;
    const dropped = cut + (head.length - headEnd) + tailStart;
    return `${head.subarray(0, headEnd).toString("utf8")}\n[… ${dropped.toLocaleString("en-US")} bytes of output cut from the middle …]\n${tail.subarray(tailStart).toString("utf8")}`;
  }
}

/** Kills a whole process group; quiet when it is already gone. */
function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // ESRCH: nothing left.
  }
}

/** Kills one process; quiet when it is already gone. */
function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // ESRCH: gone.
  }
}

/**
 * Reads bwrap's `--info-fd` report (JSON with `child-pid` and
 * `pid-namespace`) and hands it over once complete.
 */
function readSandboxInfo(
  stream: NodeJS.ReadableStream,
  onInfo: (info: { childPid: number; pidNamespace: number }) => void,
): void {
  let text = "";
  let done = false;
  stream.on("data", (chunk: Buffer) => {
    if (done) return;
    text += chunk.toString("utf8");
    try {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const childPid = parsed["child-pid"];
      const pidNamespace = parsed["pid-namespace"];
      if (typeof childPid === "number" && typeof pidNamespace === "number") {
        done = true;
        onInfo({ childPid, pidNamespace });
      }
    } catch {
      // Not complete yet.
    }
  });
  stream.on("error", () => {});
}

/** Whether any process of the group still exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/**
 * The way `command` names the state dir (its absolute path, or its path
 * relative to the workdir), if it does. A plain text check, a second layer
 * behind the OS sandbox (which hides the state dir): it stops the obvious
 * `cat .ravenclaws/…`, not a command that builds the name at run time.
 */
export function mentionsStateDir(
  command: string,
  ctx: Pick<ToolContext, "workdir" | "stateDir">,
): string | undefined {
  const relative = path.relative(ctx.workdir, ctx.stateDir);
  const names = [ctx.stateDir];
  if (relative && !relative.startsWith("..") && !path.isAbsolute(relative)) names.push(relative);
  return names.find((name) => command.includes(name));
}

/**
 * Builds the `shell_exec` tool.
 *
 * The command runs in `/bin/sh -c` with the workdir as cwd, with a scrubbed
 * environment, inside the bubblewrap sandbox when one is given (see
 * `sandbox/runner.ts`), in its own process group (`detached`). On timeout or
 * abort the whole group (and the sandbox's PID namespace) gets SIGKILL; when
 * the command exits, anything it left running is killed too, so no process
 * outlives the call.
 */
export function createShellExecTool(options: ShellOptions = {}): Tool<ShellExecArgs> {
  const defaultTimeout = options.timeoutSec ?? SHELL_DEFAULT_TIMEOUT_SEC;
  const maxTimeout = Math.max(defaultTimeout, SHELL_MAX_TIMEOUT_SEC);
  const maxOutput = options.maxOutputBytes ?? SHELL_MAX_OUTPUT_BYTES;
  const schema = z.object({
    command: z
      .string()
      .min(1, "must not be empty")
      .describe("Shell command line, run with /bin/sh -c in the workspace root."),
    timeoutSec: z
      .number()
      .positive()
      .max(maxTimeout)
      .optional()
      .describe(
        `Seconds before the command and everything it started are killed. Defaults to ${defaultTimeout}; at most ${maxTimeout}.`,
      ),
  });

  return {
    name: "shell_exec",
    description: `Run a shell command in the workspace root and get its exit code and combined stdout/stderr (at most ${Math.round(maxOutput / 1024)} KB: head and tail are kept). No input is given; secret-looking environment variables are removed; background processes are killed when the command ends.${options.sandbox ? ` It runs in a sandbox: only the workspace is writable, /tmp is private and emptied afterwards, ${options.sandbox.place.network ? "the network is reachable" : "there is no network"}, at most ${options.sandbox.maxProcesses} processes.` : ""}`,
    schema,
    kind: "shell",
    access: (args) => ({ kind: "shell", target: args.command }),
    async run(args, ctx) {
      const destructive = findDestructive(args.command);
      if (destructive) {
        throw new PolicyRefusal(
          `Refused: the command matches the built-in deny pattern "${destructive}", which no mode or rule allows. Do not try to work around it.`,
          `deny-list: ${destructive}`,
        );
      }
      const stateDirRef = mentionsStateDir(args.command, ctx);
      if (stateDirRef) {
        throw new PolicyRefusal(
          `Refused: the command names the agent's private state directory (${stateDirRef}); no tool may read or change it.`,
          "state-dir",
        );
      }
      ctx.signal?.throwIfAborted();
      const timeoutSec = args.timeoutSec ?? defaultTimeout;
      const { env } = scrubEnv(options.env ?? process.env, {
        secrets: ctx.secrets ?? [],
        allow: options.envAllow ?? [],
      });
      const output = new HeadTail(maxOutput);
      const started = performance.now();

      let sandboxed: SandboxedCommand | undefined;
      if (options.sandbox) {
        sandboxed = await options.sandbox.prepare(args.command, {
          cpuSec: timeoutSec + 1,
          fileBytes: Number.POSITIVE_INFINITY,
        });
      }
      const child = sandboxed
        ? spawn(sandboxed.file, sandboxed.args, {
            cwd: ctx.workdir,
            env,
            detached: true,
            stdio: ["ignore", "pipe", "pipe", "pipe"],
          })
        : spawn(options.shell ?? "/bin/sh", ["-c", args.command], {
            cwd: ctx.workdir,
            env,
            detached: true,
            stdio: ["ignore", "pipe", "pipe"],
          });
      const pgid = child.pid;
      const stdout = child.stdout as NodeJS.ReadableStream & { destroy(): void };
      const stderr = child.stderr as NodeJS.ReadableStream & { destroy(): void };
      /** The sandbox's init (pid 1 in its PID namespace): killing it ends every process inside. */
      let sandboxInit: number | undefined;
      let stopWatching = () => {};
      let why: "timeout" | "aborted" | "processes" | undefined;
      let processCount = 0;
      /** Set once the call is over: a late bwrap report must not start a watcher or a kill. */
      let finished = false;
      const stop = (reason: "timeout" | "aborted" | "processes") => {
        why ??= reason;
        if (sandboxInit !== undefined) killPid(sandboxInit);
        if (pgid !== undefined) killGroup(pgid);
      };
      if (sandboxed && options.sandbox) {
        const max = options.sandbox.maxProcesses;
        readSandboxInfo(child.stdio[sandboxed.infoFd] as NodeJS.ReadableStream, (info) => {
          if (finished) return;
          sandboxInit = info.childPid;
          if (why !== undefined) killPid(info.childPid);
          stopWatching = watchProcessCount(info.pidNamespace, max, (count) => {
            processCount = count;
            stop("processes");
          });
        });
      }
      const timer = setTimeout(() => stop("timeout"), timeoutSec * 1000);
      const onAbort = () => stop("aborted");
      ctx.signal?.addEventListener("abort", onAbort, { once: true });
      if (pgid !== undefined) options.onSpawn?.(pgid);

      let stdoutOpen = true;
      let stderrOpen = true;
      let drained: () => void = () => {};
      const allDrained = new Promise<void>((resolve) => {
        drained = resolve;
      });
      const closed = () => {
        if (!stdoutOpen && !stderrOpen) drained();
      };
      stdout.on("data", (chunk: Buffer) => output.push(chunk));
      stderr.on("data", (chunk: Buffer) => output.push(chunk));
      stdout.on("close", () => {
        stdoutOpen = false;
        closed();
      });
      stderr.on("close", () => {
        stderrOpen = false;
        closed();
      });

      let exit: { code: number | null; signal: NodeJS.Signals | null };
      let leftovers = false;
      try {
        exit = await new Promise((resolve, reject) => {
          child.once("error", reject);
          child.once("exit", (code, signal) => resolve({ code, signal }));
        });
        // bwrap exits after its init: that pid is free for reuse now.
        sandboxInit = undefined;
        if (pgid !== undefined && why === undefined && groupAlive(pgid)) {
          leftovers = true;
          killGroup(pgid);
        }
        // A process that left the group (setsid) may still hold the pipes: do not wait for it.
        let drainTimer: NodeJS.Timeout | undefined;
        await Promise.race([
          allDrained,
          new Promise<void>((resolve) => {
            drainTimer = setTimeout(resolve, DRAIN_MS);
          }),
        ]);
        clearTimeout(drainTimer);
        stdout.destroy();
        stderr.destroy();
        child.stdio[3]?.destroy();
      } catch (error) {
        if (pgid !== undefined) killGroup(pgid);
        throw new Error(`the command could not be started: ${(error as Error).message}`);
      } finally {
        finished = true;
        clearTimeout(timer);
        stopWatching();
        ctx.signal?.removeEventListener("abort", onAbort);
        await sandboxed?.release();
      }

      const elapsed = seconds(performance.now() - started);
      const text = output.total === 0 ? "(no output)" : output.text();
      const body = `Output (stdout and stderr, ${output.total.toLocaleString("en-US")} bytes):\n${text}`;
      if (why === "timeout") {
        throw new Error(
          `Timed out after ${timeoutSec} s: the command and every process it started were killed (SIGKILL to its process group) after ${elapsed}. Use a longer timeoutSec or a quicker command.\n${body}`,
        );
      }
      if (why === "processes") {
        throw new Error(
          `Stopped after ${elapsed}: the command had ${processCount} processes running at once, more than the sandbox allows (${options.sandbox?.maxProcesses}); all of them were killed. Run fewer processes at a time.\n${body}`,
        );
      }
      if (why === "aborted") {
        throw new Error(
          `Aborted after ${elapsed}: the tick was stopped and the command's process group was killed.\n${body}`,
        );
      }
      const status =
        exit.signal !== null
          ? `Killed by signal ${exit.signal} after ${elapsed}.`
          : `Exit code ${exit.code} after ${elapsed}.`;
      const note = leftovers
        ? "\n[Processes it left running in the background were killed when it exited.]"
        : "";
      return `${status}${note}\n${body}`;
    },
  };
}

/** Arguments of the `shell_exec` tool. */
export interface ShellExecArgs {
  command: string;
  timeoutSec?: number | undefined;
}
