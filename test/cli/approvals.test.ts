/**
 * Durable approvals end to end (issue 13): a write matched by an `ask` rule
 * waits without a terminal, is listed by `approvals`, survives a SIGKILL, and
 * is decided by `approve` / `deny` from another process.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { classify, message, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness({ flags: ["--failure-backoff", "0", "--max-ticks", "1"] });
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-approvals-test-key" });

/** Polls `probe` until it returns a value (observable conditions, no fixed sleeps). */
async function until<T>(probe: () => Promise<T | undefined>, what: string, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Listed {
  id: string;
  callId: string;
  tool: string;
  arguments: string;
  rule: string;
  since: string;
}

async function listed(): Promise<Listed[]> {
  const result = await runCli(["approvals", "--json", "--workdir", h.workdir], { env: env() });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Listed[];
}

const pendingFor = async (id: string) => {
  const all = await listed();
  const mine = all.filter((p) => p.id === id);
  return mine.length > 0 ? mine : undefined;
};

async function setUp() {
  await fs.writeFile(path.join(h.workdir, "ravenclaws.toml"), '[tools]\nask = ["write(**)"]\n');
  h.server.setHandler(
    scripted({
      execute: (n) =>
        n === 1
          ? toolCalls([
              { id: "w1", name: "write_file", arguments: { path: "out.md", content: "hello" } },
            ])
          : message("Done."),
    }),
  );
}

describe("approvals", () => {
  it("a write an ask rule matches waits, survives a SIGKILL, and runs once approved from another process", async () => {
    await setUp();
    const run = startCli(h.runArgs("--id", "ap", "--goal", "Write out.md"), {
      cwd: h.workdir,
      env: env(),
    });
    await run.waitForOutput("awaiting approval", 30_000);
    const first = await until(() => pendingFor("ap"), "the pending call");
    expect(first).toEqual([
      expect.objectContaining({
        id: "ap",
        callId: "w1",
        tool: "write_file",
        arguments: JSON.stringify({ path: "out.md", content: "hello" }),
        rule: "write(**)",
      }),
    ]);
    const status = await runCli(["status", "--workdir", h.workdir], { env: env() });
    expect(status.stdout).toMatch(/awaiting approval/);

    run.child.kill("SIGKILL");
    await run.exited;
    await expect(fs.stat(path.join(h.workdir, "out.md"))).rejects.toThrow();
    expect(await pendingFor("ap"), "still listed after the SIGKILL").toEqual(first);

    const resumed = startCli(h.runArgs("--id", "ap"), { cwd: h.workdir, env: env() });
    await resumed.waitForOutput("awaiting approval", 30_000);
    const approve = await runCli(["approve", "ap", "--workdir", h.workdir], { env: env() });
    expect(approve.code, approve.stderr).toBe(0);
    const done = await resumed.exited;
    expect(done.code, done.stderr).toBe(0);
    expect(await fs.readFile(path.join(h.workdir, "out.md"), "utf8")).toBe("hello");
    expect(await h.stateOf("ap")).toMatchObject({ status: "completed", tick: 1 });
    const decision = (await h.journalOf("ap")).find((e) => e.type === "approval");
    expect(decision).toMatchObject({
      callId: "w1",
      decision: "approve",
      rule: "write(**)",
      via: "command",
      by: { user: expect.any(String), pid: expect.any(Number) },
    });
    expect(decision.by.pid).not.toBe(resumed.child.pid);
    expect(await listed()).toEqual([]);
  }, 120_000);

  it("SIGTERM while a write awaits approval ends shutdown keeping the call: approvals lists it, run --id waits again and approve completes it", async () => {
    await setUp();
    const run = startCli(h.runArgs("--id", "st", "--goal", "Write out.md"), {
      cwd: h.workdir,
      env: env(),
    });
    await run.waitForOutput("awaiting approval", 30_000);
    const waiting = await until(() => pendingFor("st"), "the pending call");
    run.child.kill("SIGTERM");
    const stopped = await run.exited;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/while tool calls await approval/);
    // Saved as a stop anywhere else is, with the tick and its waiting call kept.
    const file = await h.stateOf("st");
    expect(file).toMatchObject({
      status: "shutdown",
      reason: "awaiting-approval",
      tick: 0,
      snapshot: { value: "persisting" },
    });
    expect(file.snapshot.context.parked.pending).toMatchObject([{ callId: "w1" }]);
    expect(await listed(), "still listed while stopped").toEqual(waiting);
    const journal = await h.journalOf("st");
    expect(journal.filter((e) => e.type === "suspend")).toMatchObject([{ pending: ["w1"] }]);
    expect(
      journal.filter((e) => e.type === "tick"),
      "the tick is not over",
    ).toEqual([]);
    expect(journal.at(-1)).toMatchObject({ type: "end", status: "shutdown" });
    await expect(fs.stat(path.join(h.workdir, "out.md"))).rejects.toThrow();

    const resumed = startCli(h.runArgs("--id", "st"), { cwd: h.workdir, env: env() });
    await resumed.waitForOutput("awaiting approval", 30_000);
    expect(await h.stateOf("st")).toMatchObject({ status: "executing" });
    const approve = await runCli(["approve", "st", "--workdir", h.workdir], { env: env() });
    expect(approve.code, approve.stderr).toBe(0);
    const done = await resumed.exited;
    expect(done.code, done.stderr).toBe(0);
    expect(await fs.readFile(path.join(h.workdir, "out.md"), "utf8")).toBe("hello");
    expect(await h.stateOf("st")).toMatchObject({ status: "completed", tick: 1 });
    // The same tick went on: the model was not asked for the write again.
    const executes = h.server.chatRequests().filter((r) => classify(r) === "execute");
    expect(executes).toHaveLength(2);
    expect((await h.journalOf("st")).filter((e) => e.type === "tick")).toMatchObject([
      { tick: 1, status: "ok" },
    ]);
    expect(await listed()).toEqual([]);
  }, 120_000);

  it('stop keeps the wait; deny --reason "not now" given while stopped applies on resume: no file, the model reads the reason', async () => {
    await setUp();
    const run = startCli(h.runArgs("--id", "dn", "--goal", "Write out.md"), {
      cwd: h.workdir,
      env: env(),
    });
    await run.waitForOutput("awaiting approval", 30_000);
    const wake = await runCli(["wake", "dn", "--workdir", h.workdir], { env: env() });
    expect(wake.stdout).toMatch(/waiting for approval of 1 tool call/);
    const stop = await runCli(["stop", "dn", "--workdir", h.workdir], { env: env() });
    expect(stop.code, stop.stderr).toBe(0);
    const stopped = await run.exited;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/while tool calls await approval/);
    expect((await h.journalOf("dn")).filter((e) => e.type === "suspend")).toMatchObject([
      { pending: ["w1"] },
    ]);
    expect(await h.stateOf("dn")).toMatchObject({
      status: "shutdown",
      reason: "awaiting-approval",
    });

    const deny = await runCli(["deny", "dn", "--reason", "not now", "--workdir", h.workdir], {
      env: env(),
    });
    expect(deny.code, deny.stderr).toBe(0);
    expect(deny.stdout).toMatch(/not running: the decision applies when it resumes/);
    const resumed = await runCli(h.runArgs("--id", "dn"), { cwd: h.workdir, env: env() });
    expect(resumed.code, resumed.stderr).toBe(0);
    await expect(fs.stat(path.join(h.workdir, "out.md"))).rejects.toThrow();
    const executes = h.server.chatRequests().filter((r) => classify(r) === "execute");
    expect(executes).toHaveLength(2);
    expect(JSON.stringify(executes[1]?.body)).toContain("not now");
    expect(await h.stateOf("dn")).toMatchObject({ status: "completed", tick: 1 });
    const again = await runCli(["deny", "dn", "--workdir", h.workdir], { env: env() });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no tool call waiting/);
  }, 120_000);
});
