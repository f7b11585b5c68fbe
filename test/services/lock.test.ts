/**
 * The heartbeat lock (`acquireLock` in src/services/store/lock.ts), on the real
 * file system.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LockCompromisedError, LockedError } from "../../src/errors.js";
import {
  acquireLock,
  FileHeartbeatStore,
  heartbeatPaths,
  LOCK_STALE_MS,
} from "../../src/services/store/index.js";
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
    expect(recorded).toEqual({
      pid: process.pid,
      host: os.hostname(),
      since: lock.holder.since,
      token: lock.token,
    });
    expect(lock.token).toMatch(/^[0-9a-f]{24}$/);
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

describe("lock compromise", () => {
  const until = async (check: () => boolean, ms = 2_000) => {
    const end = Date.now() + ms;
    while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  };

  it("a refresh that finds another holder's lock marks it compromised, naming the new holder", async () => {
    const lock = await acquireLock(file, { refreshMs: 20 });
    const seen: LockCompromisedError[] = [];
    lock.onCompromised((e) => seen.push(e));
    const thief = { pid: 4242, host: "elsewhere.example", since: "2026-01-01T00:00:00.000Z" };
    await fs.writeFile(file, JSON.stringify({ ...thief, token: "someone-else" }));
    await until(() => seen.length > 0);
    expect(seen).toHaveLength(1);
    expect(lock.compromised).toBe(seen[0]);
    expect(seen[0]).toBeInstanceOf(LockCompromisedError);
    expect(seen[0]?.code).toBe("lock-compromised");
    expect(seen[0]?.message).toContain(file);
    expect(seen[0]?.message).toContain("pid 4242 on elsewhere.example");
    await expect(lock.verify()).rejects.toBe(seen[0]);
    // Its release leaves the new holder's file alone.
    await lock.release();
    expect(JSON.parse(await fs.readFile(file, "utf8")).token).toBe("someone-else");
  });

  it("a refresh that finds the lock file gone marks it compromised", async () => {
    const lock = await acquireLock(file, { refreshMs: 20 });
    await fs.rm(file);
    await until(() => lock.compromised !== null);
    expect(lock.compromised?.message).toContain("was removed");
    // A listener added afterwards hears it at once.
    const late: unknown[] = [];
    lock.onCompromised((e) => late.push(e));
    expect(late).toEqual([lock.compromised]);
    await lock.release();
  });

  it("verify passes while the lock is ours, and the refresh keeps its mtime fresh", async () => {
    const lock = await acquireLock(file, { refreshMs: 20 });
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(file, old, old);
    await lock.verify();
    await until(() => false, 100);
    expect(Date.now() - (await fs.stat(file)).mtimeMs).toBeLessThan(5_000);
    expect(lock.compromised).toBeNull();
    await lock.release();
  });

  it("a store holding the lock refuses every write once the lock is compromised", async () => {
    const store = new FileHeartbeatStore(heartbeatPaths(dir, "x"));
    await store.ensureDir();
    const lock = await store.acquireLock({ refreshMs: 20 });
    await fs.writeFile(file, JSON.stringify({ pid: 1, host: "h", since: "s", token: "t" }));
    // Checked before every state write too, without waiting for the refresh.
    const fixture = JSON.parse(
      await fs.readFile(new URL("../fixtures/state-v1.json", import.meta.url), "utf8"),
    );
    await expect(store.save({ ...fixture, id: "x" })).rejects.toBeInstanceOf(LockCompromisedError);
    await expect(store.append([{ type: "tick", seq: 1 }])).rejects.toBeInstanceOf(
      LockCompromisedError,
    );
    expect(await fs.readdir(dir)).toEqual(["heartbeat-x.lock"]);
    await lock.release();
  });

  it("never leaves a half-written lock file: the content is linked into place whole", async () => {
    const lock = await acquireLock(file);
    // No temp files remain beside it.
    expect(await fs.readdir(dir)).toEqual(["heartbeat-x.lock"]);
    await lock.release();
  });

  it("the store removes temp files that dead writers left behind, and keeps live ones", async () => {
    const dead = await deadPid();
    const stale = [
      `.heartbeat-x.json.${dead}.0badc0de.tmp`,
      `.heartbeat-x.json.prev.${dead}.0badc0de.tmp`,
      `.heartbeat-x.lock.${dead}.0badc0de.tmp`,
    ];
    const live = `.heartbeat-x.json.${process.ppid}.0badc0de.tmp`;
    const other = `.heartbeat-y.json.${dead}.0badc0de.tmp`;
    for (const name of [...stale, live, other]) await fs.writeFile(path.join(dir, name), "x");
    const store = new FileHeartbeatStore(heartbeatPaths(dir, "x"));
    const lock = await store.acquireLock();
    expect((await fs.readdir(dir)).sort()).toEqual([live, other, "heartbeat-x.lock"].sort());
    await lock.release();
  });
});
