/**
 * `ravenclaws config get|set|unset|list|path` as child processes, with the
 * user store in a private RAVENCLAWS_CONFIG_DIR; and `run` picking it up.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI, type CliResult, cleanEnv, runCli, tempDir } from "../support/cli.js";
import { startFakeOpenAI } from "../support/fakeOpenAI.js";

const KEY = "sk-test-SECRET-0123456789abcdef";

let dir: string;
let configDir: string;
beforeEach(async () => {
  dir = await tempDir();
  configDir = path.join(dir, "config");
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}) =>
  cleanEnv({ RAVENCLAWS_CONFIG_DIR: configDir, ...extra });
const config = (...args: string[]) => runCli(["config", ...args], { cwd: dir, env: env() });
const configFile = () => path.join(configDir, "config.json");

/** Runs the CLI with `input` on stdin. */
function withStdin(args: string[], input: string): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: env() });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(input);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe("ravenclaws config", () => {
  it("set, get, list and path work on the user store", async () => {
    const where = await config("path");
    expect(where.code).toBe(0);
    expect(where.stdout).toBe(`${configFile()}\n`);

    const empty = await config("list");
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain(`No user settings in ${configFile()}.`);

    expect((await config("set", "model", "llama3.2")).code).toBe(0);
    const set = await config("set", "tick-interval", "60");
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe(`Set tickInterval = 60 in ${configFile()}.\n`);
    expect((await config("set", "tools", "off")).code).toBe(0);

    expect(JSON.parse(await fs.readFile(configFile(), "utf8"))).toEqual({
      model: "llama3.2",
      tickInterval: 60,
      tools: false,
    });
    const [interval, model, list, json] = await Promise.all([
      config("get", "tickInterval"),
      config("get", "model"),
      config("list"),
      config("list", "--json"),
    ]);
    expect(interval.stdout).toBe("60\n");
    expect(model.stdout).toBe("llama3.2\n");
    expect(list.stdout).toBe("tickInterval = 60\ntools = false\nmodel = llama3.2\n");
    expect(JSON.parse(json.stdout)).toEqual({ tickInterval: 60, tools: false, model: "llama3.2" });
  });

  it("unset removes a setting; get of one that is not set exits 1 and names the default", async () => {
    expect((await config("set", "tools", "off")).code).toBe(0);
    const unset = await config("unset", "tools");
    expect(unset.stdout).toBe(`Unset tools in ${configFile()}.\n`);
    expect((await config("unset", "tools")).stdout).toBe(`tools was not set in ${configFile()}.\n`);

    const missing = await config("get", "tools");
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain(`tools is not set in ${configFile()}.`);
    expect(missing.stderr).toContain("Its default is true");
  });

  it("stores the API key with file mode 0600 and shows it masked unless --show-secret", async () => {
    const set = await config("set", "apiKey", KEY);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).not.toContain(KEY);
    expect(set.stdout).toContain("sk-…cdef");
    expect(set.stderr).toContain("--stdin");
    expect((await fs.stat(configFile())).mode & 0o777).toBe(0o600);

    const [get, shown, list, json] = await Promise.all([
      config("get", "apiKey"),
      config("get", "apiKey", "--show-secret"),
      config("list"),
      config("list", "--json"),
    ]);
    expect(get.stdout).toBe("sk-…cdef\n");
    expect(shown.stdout).toBe(`${KEY}\n`);
    expect(list.stdout).toBe("apiKey = sk-…cdef\n");
    expect(json.stdout).not.toContain(KEY);

    const piped = await withStdin(["config", "set", "apiKey", "--stdin"], "sk-from-stdin-4242\n");
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toBe("");
    expect(JSON.parse(await fs.readFile(configFile(), "utf8")).apiKey).toBe("sk-from-stdin-4242");
    expect((await fs.stat(configFile())).mode & 0o777).toBe(0o600);
  });

  it("exits 2 for an unknown key (listing the valid ones) and for a value the schema rejects", async () => {
    const unknown = await config("set", "colour", "blue");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('"colour" is not a user setting.');
    expect(unknown.stderr).toMatch(/Valid keys: tickInterval, maxTicks, .*model, baseUrl, apiKey/);
    // Not a user setting: the goal belongs to a heartbeat.
    expect((await config("get", "goal")).code).toBe(2);

    const cases = [
      ["tickInterval", "-5", "config set tickInterval: must be 0 or more seconds"],
      ["tickInterval", "soon", "config set tickInterval: must be a number"],
      ["maxTicks", "2.5", "config set maxTicks: must be a whole number"],
      ["tools", "maybe", "config set tools: must be true or false"],
      ["baseUrl", "ftp://x", "config set baseUrl: must be an http:// or https:// URL"],
    ] as const;
    const results = await Promise.all(cases.map(([key, value]) => config("set", key, value)));
    cases.forEach(([key, value, message], i) => {
      expect(results[i]?.code, `${key}=${value}`).toBe(2);
      expect(results[i]?.stderr).toContain(message);
    });
    await expect(fs.access(configFile())).rejects.toThrow();
  });

  it("run uses the stored settings below flags and environment", async () => {
    const server = await startFakeOpenAI();
    try {
      expect((await config("set", "model", "model-from-user-config")).code).toBe(0);
      expect((await config("set", "baseUrl", server.baseURL)).code).toBe(0);
      const run = await runCli(
        [
          "run",
          "--goal",
          "Check the settings",
          "--id",
          "c1",
          "--tick-interval",
          "0",
          "--max-ticks",
          "1",
        ],
        { cwd: dir, env: env() },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(server.chatRequests()[0]?.body.model).toBe("model-from-user-config");

      const flagged = await runCli(
        [
          "run",
          "--id",
          "c1",
          "--continue",
          "--max-ticks",
          "2",
          "--tick-interval",
          "0",
          "--model",
          "from-flag",
        ],
        { cwd: dir, env: env() },
      );
      expect(flagged.code, flagged.stderr).toBe(0);
      expect(server.chatRequests().at(-1)?.body.model).toBe("from-flag");
    } finally {
      await server.close();
    }
  });
});
