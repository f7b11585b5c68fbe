/**
 * Durability end to end, with the built CLI: unusable state files, `--recover`
 * from `.prev`, one runner per heartbeat (lock takeover after SIGKILL, a lost
 * lock fencing the loser's writes), and real disk faults on a tiny tmpfs.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseStateFile } from "../../src/services/store/index.js";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md summarising the TODOs in this repo";

const h = useCliHarness();
const { runArgs: args, stateFile } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789" });
const readState = async (id: string) =>
  parseStateFile(await fs.readFile(stateFile(id), "utf8"), stateFile(id));

const fixture = JSON.parse(
  await fs.readFile(new URL("../fixtures/state-v1.json", import.meta.url), "utf8"),
);

describe("an unusable state file", () => {
  const kinds: Array<[string, string]> = [
    ["truncated JSON", JSON.stringify({ ...fixture, id: "bad" }, null, 2).slice(0, 400)],
    ["garbage", "\u0000\u0001\u0002 not a state file \uFFFD\n"],
    ["a future schemaVersion", JSON.stringify({ ...fixture, id: "bad", schemaVersion: 99 })],
    ["empty", ""],
  ];

  for (const [name, content] of kinds) {
    it(`${name}: exit 3 naming the file and --recover; the file stays byte for byte`, async () => {
      await fs.mkdir(h.stateDir);
      const file = stateFile("bad");
      await fs.writeFile(file, content, { mode: 0o600 });
      const before = await fs.stat(file);
      const result = await runCli(args("--id", "bad", "--goal", GOAL), { env: env() });
      expect(result.code).toBe(3);
      expect(result.stderr).toContain(file);
      expect(result.stderr).not.toContain("    at ");
      if (name === "a future schemaVersion") expect(result.stderr).toContain("Upgrade ravenclaws");
      else expect(result.stderr).toContain("--recover");
      expect(await fs.readFile(file, "utf8")).toBe(content);
      const after = await fs.stat(file);
      expect([after.ino, after.mtimeMs, after.size]).toEqual([
        before.ino,
        before.mtimeMs,
        before.size,
      ]);
      expect(await fs.readdir(h.stateDir)).toEqual(["heartbeat-bad.json"]);
      expect(h.server.chatRequests()).toHaveLength(0);
    });
  }
});

describe("run --recover", () => {
  it("moves the bad file to .corrupt-<time>, resumes from .prev at its tick and completes", async () => {
    const first = await runCli(args("--id", "rec", "--goal", GOAL, "--max-ticks", "3"), {
      env: env(),
    });
    expect(first.code).toBe(0);
    const prev = parseStateFile(await fs.readFile(`${stateFile("rec")}.prev`, "utf8"), "prev");
    expect(prev.tick).toBe(2);
    await fs.writeFile(stateFile("rec"), '{"schemaVersion": 1, "id": "rec", "ti');

    const refused = await runCli(args("--id", "rec", "--max-ticks", "5"), { env: env() });
    expect(refused.code).toBe(3);

    const recovered = await runCli(args("--id", "rec", "--max-ticks", "5", "--recover"), {
      env: env(),
    });
    expect(recovered.stderr).toContain("went back to the previous version");
    expect(recovered.stderr).toContain("at tick 2");
    expect(recovered.code).toBe(0);
    const corrupt = (await fs.readdir(h.stateDir)).filter((n) => n.includes(".corrupt-"));
    expect(corrupt).toHaveLength(1);
    expect(corrupt[0]).toMatch(/^heartbeat-rec\.json\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    expect(await fs.readFile(path.join(h.stateDir, corrupt[0] ?? ""), "utf8")).toBe(
      '{"schemaVersion": 1, "id": "rec", "ti',
    );
    expect(await readState("rec")).toMatchObject({ tick: 5, status: "completed" });
    // The journal says what happened: the marker, then ticks 3 to 5 again.
    const journal = (await fs.readFile(path.join(h.stateDir, "heartbeat-rec.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const afterMarker = journal.slice(journal.findIndex((e) => e.type === "recover"));
    expect(afterMarker[0]).toMatchObject({ type: "recover", tick: 2 });
    expect(afterMarker.filter((e) => e.type === "tick").map((e) => e.tick)).toEqual([3, 4, 5]);
  });

  it("with .prev missing too: exit 3 saying so, and both files as they were", async () => {
    await fs.mkdir(h.stateDir);
    await fs.writeFile(stateFile("lost"), "garbage");
    const result = await runCli(args("--id", "lost", "--recover"), { env: env() });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("no previous version");
    expect(result.stderr).toContain(`${stateFile("lost")}.prev`);
    expect(await fs.readFile(stateFile("lost"), "utf8")).toBe("garbage");
    expect(await fs.readdir(h.stateDir)).toEqual(["heartbeat-lost.json"]);
  });

  it("with .prev invalid too: exit 3, both files byte for byte", async () => {
    await fs.mkdir(h.stateDir);
    await fs.writeFile(stateFile("both"), "");
    await fs.writeFile(`${stateFile("both")}.prev`, "{}");
    const result = await runCli(args("--id", "both", "--recover"), { env: env() });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("previous version cannot be used");
    expect(await fs.readFile(stateFile("both"), "utf8")).toBe("");
    expect(await fs.readFile(`${stateFile("both")}.prev`, "utf8")).toBe("{}");
    expect((await fs.readdir(h.stateDir)).sort()).toEqual([
      "heartbeat-both.json",
      "heartbeat-both.json.prev",
    ]);
  });

  it("on a healthy file: a clear note, then it resumes normally", async () => {
    expect(
      (await runCli(args("--id", "fine", "--goal", GOAL, "--max-ticks", "1"), { env: env() })).code,
    ).toBe(0);
    const result = await runCli(
      args("--id", "fine", "--continue", "--max-ticks", "2", "--recover"),
      {
        env: env(),
      },
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("is fine (tick 1); nothing to recover, resuming normally");
    expect(await readState("fine")).toMatchObject({ tick: 2 });
    expect((await fs.readdir(h.stateDir)).some((n) => n.includes("corrupt"))).toBe(false);
  });

  it("needs --id (exit 2)", async () => {
    const result = await runCli(args("--goal", GOAL, "--recover"), { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--recover needs the --id");
  });
});

describe("one runner per heartbeat", () => {
  it("a second run exits 3 naming pid, host and since; after SIGKILL a new run takes over at once and continues", async () => {
    const first = startCli(args("--goal", GOAL, "--id", "one", "--tick-interval", "60"), {
      env: env(),
    });
    await first.waitForOutput("next tick at");
    const holder = JSON.parse(
      await fs.readFile(path.join(h.stateDir, "heartbeat-one.lock"), "utf8"),
    );
    const second = await runCli(args("--id", "one"), { env: env() });
    expect(second.code).toBe(3);
    expect(second.stderr).toContain(
      `held by pid ${first.child.pid} on ${os.hostname()}, since ${holder.since}`,
    );
    first.child.kill("SIGKILL");
    await first.exited;
    const started = Date.now();
    const third = startCli(args("--id", "one", "--max-ticks", "2"), { env: env() });
    await third.waitForOutput("resumed at tick 1");
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await third.exited).code).toBe(0);
    expect(await readState("one")).toMatchObject({ tick: 2, status: "completed" });
  });

  it("a runner whose lock is taken over stops writing and ends failed (exit 1) naming the lock", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "stolen", "--tick-interval", "1"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    const lockFile = path.join(h.stateDir, "heartbeat-stolen.lock");
    const thief = JSON.stringify({
      pid: 999_999,
      host: "other-host.example",
      since: "2026-01-01T00:00:00.000Z",
      token: "not-yours",
    });
    await fs.writeFile(lockFile, thief);
    const before = await fs.readFile(stateFile("stolen"), "utf8");
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(lockFile);
    expect(result.stderr).toContain("taken over by pid 999999 on other-host.example");
    expect(result.stderr).not.toContain("    at ");
    // Nothing was written after the takeover, and the thief's lock is left alone.
    expect(await fs.readFile(stateFile("stolen"), "utf8")).toBe(before);
    expect(await fs.readFile(lockFile, "utf8")).toBe(thief);
  });

  it("a sleeping runner notices a lost lock at its next refresh (5 s) and ends failed without writing", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "asleep", "--tick-interval", "600"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    const before = await fs.readFile(stateFile("asleep"), "utf8");
    await fs.rm(path.join(h.stateDir, "heartbeat-asleep.lock"));
    const removedAt = Date.now();
    const result = await cli.exited;
    expect(Date.now() - removedAt).toBeLessThan(8_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("was removed while this process held it");
    expect(await fs.readFile(stateFile("asleep"), "utf8")).toBe(before);
  });

  it("a runner that finds its state file advanced by another process stops writing (exit 1)", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "ahead", "--tick-interval", "1"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    const state = await readState("ahead");
    const theirs = `${JSON.stringify({ ...state, seq: state.seq + 5, progress: "theirs" }, null, 2)}\n`;
    await fs.writeFile(stateFile("ahead"), theirs);
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("advanced by another process");
    expect(await fs.readFile(stateFile("ahead"), "utf8")).toBe(theirs);
  });
});

/** A tiny tmpfs for real disk faults; null (with the reason printed) where mounting is not allowed. */
async function mountTmpfs(): Promise<
  { dir: string; reason: null } | { dir: null; reason: string }
> {
  if (process.platform !== "linux") return { dir: null, reason: "not Linux" };
  if (process.getuid?.() !== 0) return { dir: null, reason: "not running as root" };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "rc-tmpfs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir], {
      stdio: "pipe",
    });
    return { dir, reason: null };
  } catch (error) {
    await fs.rmdir(dir).catch(() => {});
    const detail = (error as { stderr?: Buffer }).stderr?.toString().trim() || String(error);
    return { dir: null, reason: `mount -t tmpfs failed (no CAP_SYS_ADMIN?): ${detail}` };
  }
}

const tmpfs = await mountTmpfs();
if (tmpfs.reason) console.log(`Skipping the real disk-fault tests: ${tmpfs.reason}`);
afterAll(() => {
  if (tmpfs.dir) {
    execFileSync("umount", ["-l", tmpfs.dir]);
    execFileSync("rmdir", [tmpfs.dir]);
  }
});

describe.skipIf(tmpfs.dir === null)("real disk faults (tmpfs, as root)", () => {
  const mountDir = tmpfs.dir ?? "";
  afterEach(async () => {
    execFileSync("mount", ["-o", "remount,rw", mountDir]);
    for (const name of await fs.readdir(mountDir))
      await fs.rm(path.join(mountDir, name), { recursive: true, force: true });
  });

  /** Starts a heartbeat whose state dir is on the tmpfs and waits for its first sleep. */
  async function sleepingOnTmpfs(id: string) {
    const dir = path.join(mountDir, "state");
    const cli = startCli(
      args("--goal", GOAL, "--id", id, "--tick-interval", "1", "--state-dir", dir),
      { env: env() },
    );
    await cli.waitForOutput("next tick at");
    const file = path.join(dir, `heartbeat-${id}.json`);
    return { cli, dir, file, good: await fs.readFile(file, "utf8") };
  }

  it("a full disk (ENOSPC) ends the heartbeat failed (exit 1) naming the path and the error; the last good state survives", async () => {
    const { cli, dir, file, good } = await sleepingOnTmpfs("full");
    // Fill the file system to the last byte.
    const filler = await fs.open(path.join(mountDir, "filler"), "w");
    const chunk = Buffer.alloc(4096, 1);
    try {
      for (;;) await filler.write(chunk);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe("ENOSPC");
    }
    try {
      for (;;) await filler.write(chunk, 0, 1);
    } catch {
      // full
    } finally {
      await filler.close();
    }
    const started = Date.now();
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.stderr).toContain("ENOSPC");
    expect(result.stderr).toContain(dir);
    expect(result.stderr).toMatch(/full/);
    expect(await fs.readFile(file, "utf8")).toBe(good);
    expect(parseStateFile(good, file).tick).toBe(1);
    // It did not loop: a single failure report.
    expect(result.stderr.match(/ravenclaws: error:/g)).toHaveLength(1);
  });

  it("a file system that turns read-only (EROFS) ends the heartbeat failed (exit 1); the last good state survives", async () => {
    const { cli, dir, file, good } = await sleepingOnTmpfs("ro");
    execFileSync("mount", ["-o", "remount,ro", mountDir]);
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("EROFS");
    expect(result.stderr).toContain(dir);
    expect(result.stderr).toContain("read-only");
    expect(await fs.readFile(file, "utf8")).toBe(good);
  });
});
