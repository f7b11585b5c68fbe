import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { readHostRecord, setStopped } from "../../src/host/files.js";
import { cleanEnv, runCli, tempDir } from "../support/cli.js";
import { type FakeOpenAI, scripted, startFakeOpenAI } from "../support/fakeOpenAI.js";

const HOST_SCRIPT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../support/hostProcess.mjs",
);

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Starts a host process on `workdir`; resolves once it printed "ready". */
async function startHost(fake: FakeOpenAI, workdir: string, create: string[]) {
  const child = spawn(process.execPath, [HOST_SCRIPT, workdir], {
    env: cleanEnv({
      HOST_BASE_URL: fake.baseURL,
      HOST_CREATE: create.join(","),
      OPENAI_API_KEY: "sk-x",
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(code)),
  );
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill("SIGKILL");
    await exited;
  });
  await waitFor(
    () => out.includes("ready\n"),
    () => out,
  );
  return { child, exited, output: () => out };
}

async function waitFor(check: () => boolean | Promise<boolean>, what: () => string, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

describe("heartbeats hosted by another process", () => {
  it("stop, wake, start, status, show and logs reach one hosted heartbeat without stopping the host", async () => {
    const fake = await startFakeOpenAI(scripted({}));
    cleanups.push(() => fake.close());
    const workdir = await tempDir();
    cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
    const stateDir = path.join(workdir, ".ravenclaws");
    const env = cleanEnv();
    const host = await startHost(fake, workdir, ["a", "b"]);

    const status = await runCli(["status", "--json", "--workdir", workdir], { env });
    expect(status.code).toBe(0);
    const rows = JSON.parse(status.stdout) as {
      id: string;
      running: boolean;
      pid: number | null;
    }[];
    expect(rows.map((r) => r.id).sort()).toEqual(["a", "b"]);
    expect(rows.every((r) => r.running && r.pid === host.child.pid)).toBe(true);

    const woke = await runCli(["wake", "a", "--workdir", workdir], { env });
    expect(woke.code).toBe(0);
    expect(woke.stdout).toContain("Woke heartbeat a");
    await waitFor(() => /^tick a \w+ 2$/m.test(host.output()), host.output);

    const stopped = await runCli(["stop", "a", "--workdir", workdir, "--timeout", "10"], { env });
    expect(stopped.stderr + stopped.stdout).toContain("stays stopped");
    expect(stopped.code).toBe(0);
    expect(host.child.exitCode).toBeNull();
    expect(await exists(path.join(stateDir, "heartbeat-a.lock"))).toBe(false);
    expect(await exists(path.join(stateDir, "heartbeat-b.lock"))).toBe(true);
    const saved = JSON.parse(await fs.readFile(path.join(stateDir, "heartbeat-a.json"), "utf8"));
    expect(saved.status).toBe("shutdown");

    // `run` and the host exclude each other through the lock.
    const run = await runCli(
      ["run", "--id", "b", "--workdir", workdir, "--base-url", fake.baseURL],
      {
        env,
      },
    );
    expect(run.code).toBe(3);
    expect(run.stderr).toContain("already running");

    const show = await runCli(["show", "b", "--workdir", workdir], { env });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain("goal of b");
    const logs = await runCli(["logs", "b", "--workdir", workdir], { env });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/#1 .* ok /);

    // SIGTERM: the host ends with 0; after a restart b runs again, a stays stopped.
    host.child.kill("SIGTERM");
    expect(await host.exited).toBe(0);
    const again = await startHost(fake, workdir, []);
    await waitFor(() => exists(path.join(stateDir, "heartbeat-b.lock")), again.output);
    expect(await exists(path.join(stateDir, "heartbeat-a.lock"))).toBe(false);

    const started = await runCli(["start", "a", "--workdir", workdir], { env });
    expect(started.stdout).toContain("hosted by serve");
    expect(started.code).toBe(0);
    expect(await exists(path.join(stateDir, "heartbeat-a.lock"))).toBe(true);
  }, 120_000);
});

describe("a stop on purpose and run", () => {
  it("run --id clears the stop on purpose, so serve hosts the heartbeat again", async () => {
    const fake = await startFakeOpenAI(scripted({}));
    cleanups.push(() => fake.close());
    const workdir = await tempDir();
    cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
    const stateDir = path.join(workdir, ".ravenclaws");
    const env = cleanEnv({ OPENAI_API_KEY: "sk-x" });
    const common = ["--workdir", workdir, "--base-url", fake.baseURL, "--tick-interval", "0"];
    const first = await runCli(["run", "--id", "p", "--goal", "g", "--max-ticks", "1", ...common], {
      env,
    });
    expect(first.code).toBe(0);
    await setStopped(stateDir, "p", { at: new Date().toISOString(), by: "test" });
    expect((await readHostRecord(stateDir, "p"))?.stopped).not.toBeNull();

    const again = await runCli(["run", "--id", "p", "--continue", "--max-ticks", "2", ...common], {
      env,
    });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("was stopped on purpose");
    expect((await readHostRecord(stateDir, "p"))?.stopped).toBeNull();
  }, 60_000);
});
