/**
 * `--sandbox auto|bwrap|off` and `--shell-network` through the built CLI: the
 * start-up probe, what the model is offered, the notice or warning, the exit
 * code when bubblewrap is required and missing, and the journal's run record
 * as `show` and `logs` print it.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { describeWithBwrap } from "../support/bwrap.js";
import { cleanEnv, runCli } from "../support/cli.js";
import { message, type RecordedRequest, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-test-MODES-0123456789abcdef";
const h = useCliHarness({
  prefix: "ravenclaws-modes-",
  realpath: true,
  subdir: "work",
  model: "test-model",
  flags: ["--goal", "Check the sandbox"],
});
/** A bwrap that does not exist: "bubblewrap unavailable" (see README, Confinement). */
const NO_BWRAP = "/nonexistent/bwrap";
const env = (extra: Record<string, string> = {}) => cleanEnv({ OPENAI_API_KEY: API_KEY, ...extra });

const offered = (req: RecordedRequest | undefined): string[] =>
  (req?.body?.tools ?? []).map((t: { function: { name: string } }) => t.function.name);
const executeRequests = () => h.server.chatRequests().filter((r) => Array.isArray(r.body?.tools));
function toolReply(id: string): string | undefined {
  for (const req of h.server.chatRequests()) {
    for (const m of req.body?.messages ?? []) {
      if (m.role === "tool" && m.tool_call_id === id) return String(m.content);
    }
  }
  return undefined;
}
const shellOnce = (command: string) =>
  scripted({
    execute: (n) =>
      n === 1
        ? toolCalls([{ id: "sh", name: "shell_exec", arguments: { command } }])
        : message("Done for this tick."),
  });
async function runRecords(id: string) {
  return (await h.journalOf(id)).filter((e) => e.type === "run");
}

describe("--sandbox without bubblewrap", () => {
  it("bwrap: exits 2 naming bubblewrap, before any model call", async () => {
    const result = await runCli(h.runArgs("--id", "need", "--sandbox", "bwrap"), {
      cwd: h.workdir,
      env: env({ RAVENCLAWS_BWRAP_PATH: NO_BWRAP }),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--sandbox bwrap: bubblewrap is not usable here");
    expect(result.stderr).toContain(`${NO_BWRAP} was not found`);
    expect(result.stderr).toMatch(/apt-get install bubblewrap/);
    expect(h.server.chatRequests()).toHaveLength(0);
  });

  it("bwrap from [tools] sandbox in ravenclaws.toml and from RAVENCLAWS_SANDBOX too", async () => {
    await fs.writeFile(path.join(h.workdir, "ravenclaws.toml"), '[tools]\nsandbox = "bwrap"\n');
    const fromToml = await runCli(h.runArgs("--id", "t1"), {
      cwd: h.workdir,
      env: env({ RAVENCLAWS_BWRAP_PATH: NO_BWRAP }),
    });
    expect(fromToml.code).toBe(2);
    expect(fromToml.stderr).toContain("bubblewrap");
    await fs.rm(path.join(h.workdir, "ravenclaws.toml"));
    const fromEnv = await runCli(h.runArgs("--id", "t2"), {
      cwd: h.workdir,
      env: env({ RAVENCLAWS_BWRAP_PATH: NO_BWRAP, RAVENCLAWS_SANDBOX: "bwrap" }),
    });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain("bubblewrap");
  });

  it("refuses an unknown mode, naming the choices", async () => {
    const result = await runCli(h.runArgs("--id", "bad", "--sandbox", "docker"), {
      cwd: h.workdir,
      env: env(),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--sandbox/);
    expect(result.stderr).toMatch(/auto.*bwrap.*off/);
  });

  it("auto: does not offer shell_exec, says once how to enable it, and refuses a call anyway", async () => {
    h.server.setHandler(shellOnce("echo hi"));
    const result = await runCli(h.runArgs("--id", "auto", "--max-ticks", "1"), {
      cwd: h.workdir,
      env: env({ RAVENCLAWS_BWRAP_PATH: NO_BWRAP }),
    });
    expect(result.code, result.stderr).toBe(0);
    const notices = (result.stderr + result.stdout).match(/shell_exec is not offered/g) ?? [];
    expect(notices).toHaveLength(1);
    expect(result.stderr + result.stdout).toMatch(/Install the bubblewrap package/);
    expect(offered(executeRequests()[0])).not.toContain("shell_exec");
    expect(offered(executeRequests()[0])).toContain("read_file");
    expect(toolReply("sh")).toMatch(
      /Refused: shell_exec is not available: bubblewrap is not usable here/,
    );
    const [record] = await runRecords("auto");
    expect(record.shell).toMatchObject({ mode: "auto", sandbox: "none", offered: false });
    expect(record.shell.reason).toContain(`${NO_BWRAP} was not found`);
    const show = await runCli(["show", "auto", "--workdir", h.workdir], {
      cwd: h.workdir,
      env: env(),
    });
    expect(show.stdout).toMatch(
      /^shell:\s+not offered \(--sandbox auto: bubblewrap is not usable here/m,
    );
  });

  it("off: runs commands unconfined, with a warning at start and the choice journaled", async () => {
    h.server.setHandler(shellOnce("echo unconfined-$((6*7))"));
    const result = await runCli(h.runArgs("--id", "off", "--max-ticks", "1", "--sandbox", "off"), {
      cwd: h.workdir,
      env: env({ RAVENCLAWS_BWRAP_PATH: NO_BWRAP }),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr + result.stdout).toMatch(
      /warning: --sandbox off: shell_exec commands run unconfined/,
    );
    expect(toolReply("sh")).toContain("unconfined-42");
    const [record] = await runRecords("off");
    expect(record.shell).toMatchObject({ mode: "off", sandbox: "none", offered: true });
    const json = await runCli(["show", "off", "--json", "--workdir", h.workdir], {
      cwd: h.workdir,
      env: env(),
    });
    expect(JSON.parse(json.stdout).shell).toMatchObject({ mode: "off", sandbox: "none" });
  });
});

describeWithBwrap("--sandbox with bubblewrap", () => {
  it("auto (the default) sandboxes shell_exec and says so in the run record, show and logs", async () => {
    h.server.setHandler(shellOnce("ls /proc | grep -c '^[0-9]'"));
    const result = await runCli(h.runArgs("--id", "boxed", "--max-ticks", "1"), {
      cwd: h.workdir,
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr + result.stdout).not.toMatch(/not offered|warning/);
    expect(offered(executeRequests()[0])).toContain("shell_exec");
    // Its own PID namespace: a handful of processes, not the host's.
    const count = Number(/Output[^\n]*\n(\d+)/.exec(toolReply("sh") ?? "")?.[1]);
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThan(10);
    const [record] = await runRecords("boxed");
    expect(record.shell).toEqual({
      mode: "auto",
      sandbox: "bwrap",
      offered: true,
      network: false,
      reason: "--sandbox auto: bubblewrap works here",
    });
    const show = await runCli(["show", "boxed", "--workdir", h.workdir], {
      cwd: h.workdir,
      env: env(),
    });
    expect(show.stdout).toMatch(
      /^shell:\s+sandboxed \(bubblewrap\), network off \(--sandbox auto/m,
    );
    const logs = await runCli(["logs", "boxed", "--workdir", h.workdir], {
      cwd: h.workdir,
      env: env(),
    });
    expect(logs.stdout).toMatch(/^run\s.*shell_exec sandboxed \(bubblewrap\)/m);
  });

  it("bwrap with bubblewrap working runs, and --shell-network is recorded", async () => {
    h.server.setHandler(shellOnce("echo fine"));
    const result = await runCli(
      h.runArgs("--id", "req", "--max-ticks", "1", "--sandbox", "bwrap", "--shell-network"),
      { cwd: h.workdir, env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(toolReply("sh")).toContain("fine");
    const [record] = await runRecords("req");
    expect(record.shell).toMatchObject({ mode: "bwrap", sandbox: "bwrap", network: true });
  });
});
