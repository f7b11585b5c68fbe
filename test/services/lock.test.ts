/**
 * The heartbeat lock (`acquireLock` in src/services/store.ts), on the real
 * file system.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LockedError } from "../../src/errors.js";
import { acquireLock, LOCK_STALE_MS } from "../../src/services/store.js";
import { tempDir } from "../support/cli.js";

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await tempDir();
  file = path.join(dir, "heartbeat-x.lock");
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "0"]);
  const pid = child.pid ?? 0;
  await new Promise((resolve) => child.on("exit", resolve));
  return pid;
}

async function writeLock(holder: object | string, ageMs = 0) {
  await fs.writeFile(file, typeof holder === "string" ? holder : JSON.stringify(holder));
  const at = new Date(Date.now() - ageMs);
  await fs.utimes(file, at, at);
}

describe("acquireLock", () => {
  it("records pid, host and start time, and release removes it", async () => {
    const lock = await acquireLock(file);
    const recorded = JSON.parse(await fs.readFile(file, "utf8"));
    expect(recorded).toEqual({ pid: process.pid, host: os.hostname(), since: lock.holder.since });
    expect(Number.isNaN(Date.parse(recorded.since))).toBe(false);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    await lock.release();
    await expect(fs.access(file)).rejects.toThrow();
  });

  it("refuses a second holder and names the first (pid, host, since)", async () => {
    const first = await acquireLock(file);
    const error = await acquireLock(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockedError);
    const locked = error as LockedError;
    expect(locked.exitCode).toBe(3);
    expect(locked.holder).toEqual(first.holder);
    expect(locked.message).toContain(
      `pid ${process.pid} on ${os.hostname()}, since ${first.holder.since}`,
    );
    await first.release();
  });

  it("takes over at once a lock on this host whose process is gone", async () => {
    await writeLock({
      pid: await deadPid(),
      host: os.hostname(),
      since: "2026-01-01T00:00:00.000Z",
    });
    const lock = await acquireLock(file);
    expect(JSON.parse(await fs.readFile(file, "utf8")).pid).toBe(process.pid);
    await lock.release();
  });

  it("refuses a fresh lock from another host, and takes it over once it has gone stale", async () => {
    const other = { pid: 1, host: "elsewhere.example", since: "2026-01-01T00:00:00.000Z" };
    await writeLock(other);
    await expect(acquireLock(file)).rejects.toMatchObject({ code: "state-locked", holder: other });
    await writeLock(other, LOCK_STALE_MS + 1_000);
    const lock = await acquireLock(file);
    expect(JSON.parse(await fs.readFile(file, "utf8")).host).toBe(os.hostname());
    await lock.release();
  });

  it("judges a torn lock file by its age", async () => {
    await writeLock('{"pid": 12');
    await expect(acquireLock(file)).rejects.toMatchObject({ holder: null });
    await writeLock('{"pid": 12', LOCK_STALE_MS + 1_000);
    const lock = await acquireLock(file);
    await lock.release();
  });

  it("release leaves a lock that another process has taken over", async () => {
    const lock = await acquireLock(file);
    const thief = JSON.stringify({ pid: 1, host: "elsewhere.example", since: "x" });
    await fs.writeFile(file, thief);
    await lock.release();
    expect(await fs.readFile(file, "utf8")).toBe(thief);
  });
});
