/**
 * Bad input everywhere: every `run` option is validated before anything
 * starts; the CLI exits 2 with a message naming the option or path, without
 * a stack trace unless --debug.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fakeOpenAI.js";

// The cases run concurrently (each spawns a process): one server, a workdir per case.
let server: FakeOpenAI;
beforeAll(async () => {
  server = await startFakeOpenAI();
});
afterAll(async () => {
  // None of the bad runs may have reached the model.
  expect(server.chatRequests()).toHaveLength(0);
  await server.close();
});

const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789" });
/** A valid run in `workdir`, with `extra` appended (a later flag wins). */
const args = (workdir: string, ...extra: string[]) => [
  "run",
  "--base-url",
  server.baseURL,
  "--workdir",
  workdir,
  "--goal",
  "Keep notes",
  "--max-ticks",
  "1",
  "--tick-interval",
  "0",
  ...extra,
];

/**
 * A directory nobody may write in: a read-only tmpfs as root (root ignores
 * modes), a chmod 0555 directory otherwise.
 */
async function readOnlyPlace(): Promise<{ dir: string; cleanup: () => Promise<void> } | string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "rc-ro-"));
  if (process.getuid?.() === 0) {
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", dir], { stdio: "pipe" });
    } catch (error) {
      await fs.rmdir(dir);
      return `running as root, and mount -t tmpfs -o ro failed: ${String(error).split("\n")[0]}`;
    }
    return {
      dir,
      cleanup: async () => {
        execFileSync("umount", ["-l", dir]);
        await fs.rmdir(dir);
      },
    };
  }
  await fs.chmod(dir, 0o555);
  return {
    dir,
    cleanup: async () => {
      await fs.chmod(dir, 0o700);
      await fs.rmdir(dir);
    },
  };
}

const readOnly = await readOnlyPlace();
if (typeof readOnly === "string") console.log(`Skipping the read-only cases: ${readOnly}`);
afterAll(async () => {
  if (typeof readOnly !== "string") await readOnly.cleanup();
});
const roDir = typeof readOnly === "string" ? null : readOnly.dir;

interface Case {
  name: string;
  /** Arguments after the valid ones; `workdir` is the test's workdir. */
  extra: (workdir: string) => string[];
  /** Every one of these must be in stderr. */
  says: (workdir: string) => string[];
  skip?: string | null;
}

const cases: Case[] = [
  {
    name: "negative interval",
    extra: () => ["--tick-interval", "-5"],
    says: () => ["--tick-interval", "0 or more"],
  },
  {
    name: "non-numeric interval",
    extra: () => ["--tick-interval", "soon"],
    says: () => ["--tick-interval", "must be a number", '"soon"'],
  },
  { name: "empty interval", extra: () => ["--tick-interval", ""], says: () => ["--tick-interval"] },
  {
    name: "interval without a value",
    extra: () => ["--tick-interval"],
    says: () => ["tick-interval"],
  },
  {
    name: "--max-ticks -1",
    extra: () => ["--max-ticks", "-1"],
    says: () => ["--max-ticks", "0 or more"],
  },
  {
    name: "fractional --max-ticks",
    extra: () => ["--max-ticks", "2.5"],
    says: () => ["--max-ticks", "whole number"],
  },
  {
    name: "--max-iterations-per-tick 0",
    extra: () => ["--max-iterations-per-tick", "0"],
    says: () => ["--max-iterations-per-tick", "1 or more"],
  },
  {
    name: "--max-consecutive-failures x",
    extra: () => ["--max-consecutive-failures", "x"],
    says: () => ["--max-consecutive-failures"],
  },
  {
    name: "--request-timeout 0",
    extra: () => ["--request-timeout", "0"],
    says: () => ["--request-timeout", "more than 0"],
  },
  {
    name: "--request-timeout -3",
    extra: () => ["--request-timeout", "-3"],
    says: () => ["--request-timeout"],
  },
  { name: "--max-retries -1", extra: () => ["--max-retries", "-1"], says: () => ["--max-retries"] },
  {
    name: "--failure-backoff -1",
    extra: () => ["--failure-backoff", "-1"],
    says: () => ["--failure-backoff"],
  },
  {
    name: "an unknown flag",
    extra: () => ["--frobnicate", "3"],
    says: () => ["Unknown argument", "frobnicate"],
  },
  {
    name: "a misspelt flag",
    extra: () => ["--tick-intervall", "3"],
    says: () => ["tick-intervall"],
  },
  {
    name: "an empty goal",
    extra: () => ["--goal", ""],
    says: () => ["--goal", "must not be empty"],
  },
  {
    name: "a blank goal",
    extra: () => ["--goal", "   "],
    says: () => ["--goal", "must not be empty"],
  },
  {
    name: "a malformed URL",
    extra: () => ["--base-url", "not a url"],
    says: () => ["--base-url", "http://"],
  },
  {
    name: "a non-http URL",
    extra: () => ["--base-url", "ftp://example.com/v1"],
    says: () => ["--base-url"],
  },
  { name: "an empty model", extra: () => ["--model", ""], says: () => ["--model"] },
  { name: "--id with a slash", extra: () => ["--id", "a/b"], says: () => ["--id", '"a/b"'] },
  { name: "--id with ..", extra: () => ["--id", "../x"], says: () => ["--id"] },
  { name: "an empty --id", extra: () => ["--id", ""], says: () => ["--id"] },
  { name: "--recover without --id", extra: () => ["--recover"], says: () => ["--recover", "--id"] },
  {
    name: "a workdir that does not exist",
    extra: (w) => ["--workdir", path.join(w, "missing")],
    says: (w) => ["--workdir", path.join(w, "missing"), "does not exist"],
  },
  {
    name: "a workdir that is a file",
    extra: (w) => ["--workdir", path.join(w, "file.txt")],
    says: (w) => ["--workdir", path.join(w, "file.txt"), "not a directory"],
  },
  {
    name: "a state dir that is a file",
    extra: (w) => ["--state-dir", path.join(w, "file.txt")],
    says: (w) => ["--state-dir", path.join(w, "file.txt")],
  },
  {
    name: "a config file that does not exist",
    extra: (w) => ["--config", path.join(w, "nope.toml")],
    says: (w) => [path.join(w, "nope.toml")],
  },
  {
    name: "a workdir that is not writable",
    extra: () => ["--workdir", roDir ?? ""],
    says: () => ["--workdir", roDir ?? "", "not writable"],
    skip: roDir === null ? "no read-only place" : null,
  },
  {
    name: "a state dir inside a read-only place",
    extra: () => ["--state-dir", path.join(roDir ?? "", "state")],
    says: () => ["--state-dir", path.join(roDir ?? "", "state")],
    skip: roDir === null ? "no read-only place" : null,
  },
  {
    name: "a state dir that is read-only",
    extra: () => ["--state-dir", roDir ?? ""],
    says: () => ["--state-dir", roDir ?? ""],
    skip: roDir === null ? "no read-only place" : null,
  },
];

describe.concurrent("bad input to run: exit 2, naming the option or path, no stack trace", () => {
  for (const c of cases) {
    it.skipIf(Boolean(c.skip))(c.name, async () => {
      const workdir = await tempDir();
      try {
        await fs.writeFile(path.join(workdir, "file.txt"), "not a directory");
        const result = await runCli(args(workdir, ...c.extra(workdir)), { env: env() });
        expect(result.code, result.stderr).toBe(2);
        for (const text of c.says(workdir)) expect(result.stderr).toContain(text);
        expect(result.stderr).toMatch(/^ravenclaws: error: /);
        expect(result.stderr).not.toContain("    at ");
        expect(result.stderr).not.toContain("internal error");
        // Nothing started: no state dir, no state file.
        expect(await fs.readdir(workdir)).toEqual(["file.txt"]);
      } finally {
        await fs.rm(workdir, { recursive: true, force: true });
      }
    });
  }

  it("--debug adds the stack trace to a usage error", async () => {
    const workdir = await tempDir();
    const result = await runCli(args(workdir, "--tick-interval", "-5", "--debug"), { env: env() });
    await fs.rm(workdir, { recursive: true, force: true });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--tick-interval");
    expect(result.stderr).toContain("    at ");
  });

  it("an unknown command exits 2", async () => {
    const result = await runCli(["frobnicate"], { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("frobnicate");
  });
});
