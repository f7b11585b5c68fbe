/**
 * The OS sandbox of `shell_exec`: bubblewrap (`bwrap`) with its own user,
 * PID, IPC, UTS, cgroup and (unless `--shell-network`) network namespaces,
 * the host root read-only, the workdir the only writable bind, the state dir,
 * the user config dir and secret-holding config files hidden, every config
 * file a later run reads read-only, a private `/tmp`, resource limits, and no
 * process left behind.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../../../errors.js";
import { isWithin } from "../pathJail.js";
import { bwrapArgs, type MountPlan, type SandboxLimits } from "./bwrapArgs.js";

/** Largest file a sandboxed command may write (RLIMIT_FSIZE), in bytes. */
export const SANDBOX_MAX_FILE_BYTES = 512 * 1024 * 1024;
/** Most processes a sandboxed command may have at once before it is killed. */
export const SANDBOX_MAX_PROCESSES = 512;
/** Debian/Ubuntu (and most distributions') package that provides `bwrap`. */
export const BWRAP_PACKAGE = "bubblewrap";
/** How long the start-up probe may take. */
const PROBE_TIMEOUT_MS = 10_000;

/** Where the sandbox is and what it must protect. Paths are absolute; real where they exist. */
export interface SandboxPlace {
  workdir: string;
  stateDir: string;
  /** Directories to hide entirely (the user config dir, where `config set apiKey` keeps the key). */
  hiddenDirs: string[];
  /** Files to hide (a `--config` file, a toml that holds the API key). */
  hiddenFiles: string[];
  /** Files a later run reads as its config, existing or not: read-only, and never created. */
  protectedFiles: string[];
  /** Let commands reach the network. */
  network: boolean;
}

/** Options of {@link BwrapSandbox}. */
export interface SandboxOptions {
  /** The bwrap program: a path, or a name looked up in PATH. Default `bwrap`. */
  bwrapPath?: string;
  /** Default {@link SANDBOX_MAX_FILE_BYTES}. */
  maxFileBytes?: number;
  /** Default {@link SANDBOX_MAX_PROCESSES}. */
  maxProcesses?: number;
}

/** One command ready to spawn. */
export interface SandboxedCommand {
  file: string;
  args: string[];
  /** The child's fd on which bwrap reports `{"child-pid", "pid-namespace", …}`. */
  infoFd: number;
  /** Undoes what {@link BwrapSandbox.prepare} did on the host (placeholders). Call once the command is over. */
  release(): Promise<void>;
}

/** Why the sandbox cannot run here. */
export class SandboxUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SandboxUnavailable";
  }
}

/** The bwrap sandbox for one workspace. */
export class BwrapSandbox {
  readonly bwrapPath: string;
  readonly maxProcesses: number;
  private readonly maxFileBytes: number;
  /** Placeholders created for missing protected files (and the dirs made for them), while commands run. */
  private placeholders: { files: string[]; dirs: string[] } | undefined;
  private running = 0;
  private settled: Promise<void> = Promise.resolve();

  constructor(
    readonly place: SandboxPlace,
    options: SandboxOptions = {},
  ) {
    this.bwrapPath = options.bwrapPath ?? "bwrap";
    this.maxFileBytes = options.maxFileBytes ?? SANDBOX_MAX_FILE_BYTES;
    this.maxProcesses = options.maxProcesses ?? SANDBOX_MAX_PROCESSES;
  }

  /**
   * The mount plan. Hidden paths that do not exist are left out (outside the
   * workdir the read-only root keeps them from being created; inside it the
   * config files among them are protected files); protected files inside the
   * workdir must exist (see {@link prepare}).
   */
  async plan(): Promise<MountPlan> {
    const { place } = this;
    const exists = async (p: string) => (await fs.lstat(p).catch(() => undefined)) !== undefined;
    const existing = async (paths: string[]) => {
      const present = await Promise.all(paths.map(exists));
      return paths.filter((_, i) => present[i]);
    };
    const hiddenDirs = await existing(place.hiddenDirs);
    const userDirs = hiddenDirs.filter((dir) => !isWithin(dir, place.workdir));
    return {
      workdir: place.workdir,
      maskedDirs: [place.stateDir, ...userDirs],
      // A hidden dir that holds the workdir cannot be covered: hide the files it holds.
      maskedFiles: await existing([
        ...place.hiddenFiles,
        ...hiddenDirs
          .filter((dir) => isWithin(dir, place.workdir))
          .map((dir) => path.join(dir, "config.json")),
      ]),
      readOnlyFiles: place.protectedFiles.filter(
        (file) => isWithin(place.workdir, file) && !place.hiddenFiles.includes(file),
      ),
      network: place.network,
    };
  }

  /**
   * Runs `true` in the sandbox once, with the real mounts: it works here or
   * the reason it does not (bwrap missing, user namespaces disabled, …).
   *
   * @throws {@link SandboxUnavailable} with bwrap's own words.
   */
  async probe(): Promise<void> {
    const command = await this.prepare("true", { cpuSec: 5, fileBytes: 1024 });
    try {
      const result = await new Promise<{ code: number | null; stderr: string }>(
        (resolve, reject) => {
          const child = spawn(command.file, command.args, {
            // fd 3 takes bwrap's --info-fd report.
            stdio: ["ignore", "ignore", "pipe", "pipe"],
            timeout: PROBE_TIMEOUT_MS,
            killSignal: "SIGKILL",
          });
          let stderr = "";
          child.stderr?.on("data", (chunk: Buffer) => {
            stderr += chunk.toString("utf8");
          });
          (child.stdio[3] as NodeJS.ReadableStream | null)?.resume();
          child.once("error", reject);
          child.once("close", (code) => resolve({ code, stderr }));
        },
      );
      if (result.code !== 0) {
        const said = result.stderr.trim().split("\n").slice(-3).join(" ");
        throw new SandboxUnavailable(
          `${this.bwrapPath} failed a test run (exit ${result.code ?? "killed"}${said ? `: ${said}` : ""})`,
        );
      }
    } catch (error) {
      if (error instanceof SandboxUnavailable) throw error;
      const code = errnoCode(error);
      throw new SandboxUnavailable(
        code === "ENOENT"
          ? `${this.bwrapPath} was not found`
          : `${this.bwrapPath} could not be started (${(error as Error).message})`,
      );
    } finally {
      await command.release();
    }
  }

  /**
   * The bwrap command line for `command`, after making sure every protected
   * file inside the workdir exists, so that it can be bound read-only: a
   * missing one gets an empty placeholder (a command cannot remove or
   * replace a mount point), removed again once no command runs.
   */
  async prepare(command: string, limits: SandboxLimits): Promise<SandboxedCommand> {
    this.running += 1;
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      this.running -= 1;
      if (this.running > 0 || !this.placeholders) return;
      const made = this.placeholders;
      this.placeholders = undefined;
      this.settled = removePlaceholders(made);
      await this.settled;
    };
    try {
      await this.settled;
      this.placeholders ??= await this.makePlaceholders();
      const infoFd = 3;
      const args = bwrapArgs(
        await this.plan(),
        command,
        { fileBytes: Math.min(limits.fileBytes, this.maxFileBytes), cpuSec: limits.cpuSec },
        infoFd,
      );
      return { file: this.bwrapPath, args, infoFd, release };
    } catch (error) {
      await release();
      throw error;
    }
  }

  private async makePlaceholders(): Promise<{ files: string[]; dirs: string[] }> {
    const made = { files: [] as string[], dirs: [] as string[] };
    for (const file of (await this.plan()).readOnlyFiles) {
      const first = await fs.mkdir(path.dirname(file), { recursive: true });
      if (first) {
        for (let dir = path.dirname(file); isWithin(first, dir); dir = path.dirname(dir)) {
          made.dirs.push(dir);
        }
      }
      try {
        await fs.writeFile(file, "", { flag: "wx", mode: 0o444 });
        made.files.push(file);
      } catch (error) {
        if (errnoCode(error) !== "EEXIST") throw error;
      }
    }
    return made;
  }
}

/** Removes the placeholders that are still empty files, then the dirs made for them if empty. */
async function removePlaceholders(made: { files: string[]; dirs: string[] }): Promise<void> {
  for (const file of made.files) {
    const stat = await fs.lstat(file).catch(() => undefined);
    if (stat?.isFile() && stat.size === 0) await fs.rm(file, { force: true });
  }
  for (const dir of made.dirs) await fs.rmdir(dir).catch(() => undefined);
}
