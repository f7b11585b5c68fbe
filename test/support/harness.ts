/**
 * Shared setup for CLI tests that run a heartbeat against the fake OpenAI
 * server in a fresh temporary working directory.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach } from "vitest";
import { tempDir } from "./cli.js";
import { type FakeOpenAI, type Handler, startFakeOpenAI } from "./fakeOpenAI.js";

/** What {@link useCliHarness} sets up, and the defaults of {@link CliHarness.runArgs}. */
export interface CliHarnessOptions {
  /** Makes the fake server's handler for each test (a fresh one: scripted handlers count calls). */
  handler?: () => Handler;
  /** Prefix of the temporary directory. Default: {@link tempDir}'s. */
  prefix?: string;
  /** Resolve the temporary directory's real path (e.g. macOS /var → /private/var). Default: false. */
  realpath?: boolean;
  /** A subdirectory of the temporary directory to use as the workdir, created empty. */
  subdir?: string;
  /** `--model` for `runArgs`; omitted when unset. */
  model?: string;
  /** `--tick-interval` for `runArgs`, or `null` to omit it. Default: "0". */
  tickInterval?: string | null;
  /** `--max-retries` for `runArgs`, or `null` to omit it. Default: "0". */
  maxRetries?: string | null;
  /** Further arguments `runArgs` puts after the defaults and before its own, e.g. `["--failure-backoff", "0"]`. */
  flags?: readonly string[];
}

/** The per-test fixture returned by {@link useCliHarness}; read its getters inside tests and hooks. */
export interface CliHarness {
  /** The fake OpenAI server of the current test. */
  readonly server: FakeOpenAI;
  /** The temporary directory of the current test (removed after it). */
  readonly root: string;
  /** The heartbeat's working directory: `root`, or `root/<subdir>`. */
  readonly workdir: string;
  /** `<workdir>/.ravenclaws`, where state files and journals live. */
  readonly stateDir: string;
  /**
   * `run` arguments: `run --base-url <server> [--model M] --workdir <workdir>
   * [--tick-interval 0] [--max-retries 0] ...flags ...extra`.
   */
  runArgs(...extra: string[]): string[];
  /** Path of heartbeat `id`'s state file. */
  stateFile(id: string): string;
  /** Path of heartbeat `id`'s journal. */
  journalFile(id: string): string;
  /** Heartbeat `id`'s state file, parsed as JSON (not validated). */
  // biome-ignore lint/suspicious/noExplicitAny: tests dig into arbitrary state files, as with JSON.parse.
  stateOf(id: string): Promise<any>;
  /** Heartbeat `id`'s journal, one parsed JSON value per line (not validated). */
  // biome-ignore lint/suspicious/noExplicitAny: tests dig into arbitrary journal entries, as with JSON.parse.
  journalOf(id: string): Promise<any[]>;
}

/**
 * Registers `beforeEach`/`afterEach` hooks that start a fake OpenAI server and
 * make a temporary workdir for each test, then close and remove them.
 */
export function useCliHarness(options: CliHarnessOptions = {}): CliHarness {
  let server: FakeOpenAI | undefined;
  let root: string | undefined;
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`the CLI harness ${what} is only set inside a test`);
    return value;
  };

  beforeEach(async () => {
    server = await startFakeOpenAI(options.handler?.());
    const made = await tempDir(options.prefix);
    root = options.realpath ? await fs.realpath(made) : made;
    if (options.subdir !== undefined) await fs.mkdir(path.join(root, options.subdir));
  });
  afterEach(async () => {
    await server?.close();
    if (root !== undefined) await fs.rm(root, { recursive: true, force: true });
    server = undefined;
    root = undefined;
  });

  const harness: CliHarness = {
    get server() {
      return need(server, "server");
    },
    get root() {
      return need(root, "directory");
    },
    get workdir() {
      const dir = need(root, "directory");
      return options.subdir === undefined ? dir : path.join(dir, options.subdir);
    },
    get stateDir() {
      return path.join(harness.workdir, ".ravenclaws");
    },
    runArgs: (...extra) => [
      "run",
      "--base-url",
      harness.server.baseURL,
      ...(options.model === undefined ? [] : ["--model", options.model]),
      "--workdir",
      harness.workdir,
      ...(options.tickInterval === null ? [] : ["--tick-interval", options.tickInterval ?? "0"]),
      ...(options.maxRetries === null ? [] : ["--max-retries", options.maxRetries ?? "0"]),
      ...(options.flags ?? []),
      ...extra,
    ],
    stateFile: (id) => path.join(harness.stateDir, `heartbeat-${id}.json`),
    journalFile: (id) => path.join(harness.stateDir, `heartbeat-${id}.jsonl`),
    stateOf: async (id) => JSON.parse(await fs.readFile(harness.stateFile(id), "utf8")),
    journalOf: async (id) =>
      (await fs.readFile(harness.journalFile(id), "utf8"))
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line)),
  };
  return harness;
}
