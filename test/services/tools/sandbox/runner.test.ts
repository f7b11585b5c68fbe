/**
 * The bubblewrap runner with real bwrap: what a sandboxed shell_exec command
 * can see, write and leave behind.
 */
import { readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { createToolbox } from "../../../../src/services/tools/index.js";
import {
  BwrapSandbox,
  type SandboxPlace,
  SandboxUnavailable,
} from "../../../../src/services/tools/sandbox/runner.js";
import type { ToolContext, ToolOutcome } from "../../../../src/services/tools/types.js";
import { describeWithBwrap } from "../../../support/bwrap.js";

const API_KEY = "sk-test-SANDBOX-0123456789abcdef";

let base: string;
let workdir: string;
let stateDir: string;
let userDir: string;
let ctx: ToolContext;
let n = 0;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-bwrap-")));
  workdir = path.join(base, "work");
  stateDir = path.join(workdir, ".ravenclaws");
  userDir = path.join(workdir, "user-config");
  await fs.mkdir(stateDir, { recursive: true });
  await fs.mkdir(userDir);
  await fs.writeFile(path.join(stateDir, "heartbeat-x.json"), '{"state":"secret"}');
  await fs.writeFile(path.join(userDir, "config.json"), JSON.stringify({ apiKey: API_KEY }));
  ctx = { workdir, stateDir, secrets: [API_KEY] };
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

function place(overrides: Partial<SandboxPlace> = {}): SandboxPlace {
  return {
    workdir,
    stateDir,
    hiddenDirs: [userDir],
    hiddenFiles: [],
    protectedFiles: [path.join(workdir, "ravenclaws.toml")],
    network: false,
    ...overrides,
  };
}

function shell(
  command: string,
  sandbox = new BwrapSandbox(place()),
  timeoutSec?: number,
): Promise<ToolOutcome> {
  n += 1;
  return createToolbox(ctx, { shell: { sandbox } }).call({
    id: `c${n}`,
    name: "shell_exec",
    arguments: JSON.stringify({ command, ...(timeoutSec ? { timeoutSec } : {}) }),
  });
}

/** Host processes whose command line contains `marker`. */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(marker)) {
        found.push(Number(entry));
      }
    } catch {
      // gone
    }
  }
  return found;
}

/** Polls until no process has `marker` in its command line; bounded. */
async function gone(marker: string, withinMs = 5_000): Promise<number[]> {
  const until = Date.now() + withinMs;
  let left = processesWith(marker);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    left = processesWith(marker);
  }
  return left;
}

describeWithBwrap("the bubblewrap sandbox", () => {
  it("probes fine here, and names the program when it is missing", async () => {
    await new BwrapSandbox(place()).probe();
    const missing = new BwrapSandbox(place(), { bwrapPath: path.join(base, "no-bwrap") });
    await expect(missing.probe()).rejects.toThrow(SandboxUnavailable);
    await expect(missing.probe()).rejects.toThrow(/no-bwrap was not found/);
  });

  it("writes only in the workdir: outside, .. and / are untouched", async () => {
    const outside = path.join(base, "outside");
    await fs.mkdir(outside);
    const out = await shell(
      `echo in > inside.txt; echo x > ${outside}/abs.txt; echo x > ../outside/up.txt; echo x > /etc/rc-sandbox-test; echo done`,
    );
    expect(out.status).toBe("ok");
    expect(out.content).toContain("done");
    expect(await fs.readFile(path.join(workdir, "inside.txt"), "utf8")).toBe("in\n");
    expect(await fs.readdir(outside)).toEqual([]);
    await expect(fs.stat("/etc/rc-sandbox-test")).rejects.toThrow();
  });

  it("hides the state dir (found by globbing) and the user config dir, read-only", async () => {
    const out = await shell(
      "cat .rav*/heartbeat-*.json; ls -A .rav* | wc -l; d=$(echo .rav*); echo gone > $d/heartbeat-x.json; cat */config.json; echo listed",
    );
    expect(out.content).toContain("listed");
    expect(out.content).not.toContain("secret");
    expect(out.content).not.toContain("sk-test");
    expect(out.content).toMatch(/Read-only file system/);
    expect(await fs.readFile(path.join(stateDir, "heartbeat-x.json"), "utf8")).toBe(
      '{"state":"secret"}',
    );
  });

  it("a missing ravenclaws.toml cannot be created, and no placeholder is left", async () => {
    const toml = path.join(workdir, "ravenclaws.toml");
    const out = await shell(
      `printf '[tools]\\nmode = "full"\\n' > ravenclaws.toml; rm -f ravenclaws.toml; mv /dev/null ravenclaws.toml; echo tried`,
    );
    expect(out.content).toContain("tried");
    await expect(fs.stat(toml)).rejects.toThrow(/ENOENT/);
  });

  it("an existing ravenclaws.toml is readable but cannot be changed or replaced", async () => {
    const toml = path.join(workdir, "ravenclaws.toml");
    await fs.writeFile(toml, '[tools]\nmode = "read-only"\n');
    const out = await shell(
      `cat ravenclaws.toml; echo 'mode = "full"' >> ravenclaws.toml; echo x > t && mv t ravenclaws.toml; rm ravenclaws.toml`,
    );
    expect(out.content).toContain('mode = "read-only"');
    expect(await fs.readFile(toml, "utf8")).toBe('[tools]\nmode = "read-only"\n');
  });

  it("hides a secret-holding config file behind /dev/null", async () => {
    const secretToml = path.join(workdir, "secret.toml");
    await fs.writeFile(secretToml, `[llm]\napi_key = "${API_KEY}"\n`);
    const sandbox = new BwrapSandbox(place({ hiddenFiles: [secretToml] }));
    const out = await shell("base64 -w0 secret.toml; echo > secret.toml; echo tried", sandbox);
    expect(out.content).toContain("tried");
    expect(out.content).not.toContain(Buffer.from("[llm]").toString("base64").slice(0, 6));
    expect(await fs.readFile(secretToml, "utf8")).toContain(API_KEY);
  });

  it("sees only its own processes and an environment without the key", async () => {
    const out = await shell(
      "for p in $PPID 1; do cat /proc/$p/environ; done | base64 -w0; echo; ls /proc | grep -c '^[0-9]'",
    );
    const [encoded = "", count = ""] = out.content.split("\n").slice(-2);
    expect(Buffer.from(encoded, "base64").toString("utf8")).not.toContain(API_KEY);
    expect(Number(count)).toBeLessThan(10);
  });

  it("leaves no nohup or setsid survivor when the command ends", async () => {
    const out = await shell(
      "nohup sleep 300.1001 >/dev/null 2>&1 & setsid -f sleep 1003.1001 >/dev/null 2>&1; echo started",
    );
    expect(out.content).toContain("started");
    expect(await gone("300.1001")).toEqual([]);
    expect(await gone("1003.1001")).toEqual([]);
  });

  it("leaves no survivor after a timeout either", async () => {
    const out = await shell(
      "setsid -f sleep 1004.1001 >/dev/null 2>&1; sleep 1005.1001",
      undefined,
      1,
    );
    expect(out.status).toBe("error");
    expect(out.content).toMatch(/Timed out after 1 s/);
    expect(await gone("1004.1001")).toEqual([]);
    expect(await gone("1005.1001")).toEqual([]);
  });

  it("stops a process flood at the process limit, as a tool error", async () => {
    const sandbox = new BwrapSandbox(place(), { maxProcesses: 40 });
    const out = await shell("while :; do sleep 1006.1001 & done", sandbox, 30);
    expect(out.status).toBe("error");
    expect(out.content).toMatch(/more than the sandbox allows \(40\)/);
    expect(await gone("1006.1001")).toEqual([]);
  });

  it("stops a runaway write at the file size limit", async () => {
    const sandbox = new BwrapSandbox(place(), { maxFileBytes: 1024 * 1024 });
    const out = await shell("head -c 5000000 /dev/zero > big; echo status=$?", sandbox);
    expect(out.content).toMatch(/File size limit exceeded/);
    expect((await fs.stat(path.join(workdir, "big"))).size).toBe(1024 * 1024);
  });
});
