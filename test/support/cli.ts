/**
 * Runs the built CLI (`dist/cli.js`) as a child process, the way users do.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Path of the built CLI. `npm test` builds it first. */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/cli.js");

/** Result of a finished CLI run. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running CLI process. */
export interface CliProcess {
  child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the process exits. */
  exited: Promise<CliResult>;
  /** Resolves once stderr or stdout contains `text`. */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
}

/** Environment for a CLI run: no inherited OpenAI or ravenclaws variables, a private user config dir. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("OPENAI_") || key.startsWith("RAVENCLAWS_")) continue;
    env[key] = value;
  }
  env.RAVENCLAWS_CONFIG_DIR = path.join(os.tmpdir(), `ravenclaws-test-config-${process.pid}`);
  env.NO_COLOR = "1";
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/** Starts the CLI. */
export function startCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: options.env ?? cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: Array<() => void> = [];
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiters) w();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters) w();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForOutput(text, timeoutMs = 15_000) {
      const seen = () =>
        typeof text === "string" ? (stdout + stderr).includes(text) : text.test(stdout + stderr);
      return new Promise((resolve, reject) => {
        if (seen()) return resolve();
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `timed out waiting for ${String(text)}; output so far:\n${stdout}\n${stderr}`,
              ),
            ),
          timeoutMs,
        );
        const check = () => {
          if (seen()) {
            clearTimeout(timer);
            resolve();
          }
        };
        waiters.push(check);
        exited.then(() => {
          if (!seen()) {
            clearTimeout(timer);
            reject(
              new Error(`the CLI exited before printing ${String(text)}:\n${stdout}\n${stderr}`),
            );
          }
        });
      });
    },
  };
}

/** Runs the CLI to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return startCli(args, options).exited;
}

/** A fresh temporary directory. */
export function tempDir(prefix = "ravenclaws-test-"): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Every file under `dir`, recursively, with its text. */
export async function readTree(dir: string): Promise<Array<{ file: string; text: string }>> {
  const out: Array<{ file: string; text: string }> = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out.push({ file, text: await fs.readFile(file, "utf8") });
  }
  return out;
}
