/**
 * The file tools against a racing shell: a background loop swaps a directory
 * of the workspace for a symbolic link to the state dir (and to a directory
 * outside) while many write_file, edit_file and read_file calls run through
 * it. No write may land in the state dir or outside, no read may return
 * them; a call either works inside the workspace or is refused.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { createToolbox } from "../../../src/services/tools/index.js";
import type { ToolContext, ToolOutcome } from "../../../src/services/tools/types.js";

const STATE = '{"state":"the real one"}';
const OUTSIDE_SECRET = "outside secret";
let base: string;
let workdir: string;
let stateDir: string;
let outside: string;
let ctx: ToolContext;
let swapper: ChildProcess | undefined;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-race-")));
  workdir = path.join(base, "work");
  stateDir = path.join(workdir, ".ravenclaws");
  outside = path.join(base, "outside");
  await fs.mkdir(stateDir, { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(stateDir, "heartbeat-x.json"), STATE);
  await fs.writeFile(path.join(outside, "x.txt"), OUTSIDE_SECRET);
  await fs.mkdir(path.join(workdir, "real"));
  await fs.writeFile(path.join(workdir, "real", "x.txt"), "inside");
  await fs.writeFile(path.join(workdir, "real", "heartbeat-x.json"), "inside");
  await fs.symlink(".ravenclaws", path.join(workdir, "to-state"));
  await fs.symlink(outside, path.join(workdir, "to-outside"));
  ctx = { workdir, stateDir };
});

afterEach(async () => {
  if (swapper?.pid !== undefined && swapper.exitCode === null) {
    const exited = new Promise((resolve) => swapper?.once("exit", resolve));
    process.kill(-swapper.pid, "SIGKILL");
    await exited;
  }
  swapper = undefined;
  await fs.rm(base, { recursive: true, force: true });
});

/** `d` is, in turn, the real directory, a link to the state dir and a link outside (each swap one rename). */
function startSwapping(): void {
  // A tight loop of renames (node, for speed: a shell `mv` per swap rarely hits the window).
  const loop = `const fs = require("node:fs");
    // A "d" left by write_file's mkdir is removed, or no rename would get in any more.
    const swap = (a) => {
      try { fs.rmSync("d", { recursive: true, force: true }); } catch {}
      try { fs.renameSync(a, "d"); fs.renameSync("d", a); } catch {}
    };
    for (;;) { swap("real"); swap("to-state"); swap("to-outside"); }`;
  swapper = spawn(process.execPath, ["-e", loop], {
    cwd: workdir,
    detached: true,
    stdio: "ignore",
  });
}

it("150 rounds of write_file, edit_file and read_file through a swapped directory never leave the workspace", async () => {
  startSwapping();
  const toolbox = createToolbox(ctx, {});
  const outcomes: { name: string; outcome: ToolOutcome }[] = [];
  const call = async (name: string, args: Record<string, unknown>, id: string) => {
    outcomes.push({
      name,
      outcome: await toolbox.call({ id, name, arguments: JSON.stringify(args) }),
    });
  };
  for (let i = 0; i < 150; i += 1) {
    await Promise.all([
      call("write_file", { path: "d/heartbeat-x.json", content: `pwned ${i}` }, `w${i}`),
      call("write_file", { path: "d/x.txt", content: `pwned ${i}` }, `o${i}`),
      call("write_file", { path: "d/new/deeper.txt", content: `pwned ${i}` }, `n${i}`),
      call("edit_file", { path: "d/x.txt", oldText: "e", newText: "E" }, `e${i}`),
      call("read_file", { path: "d/heartbeat-x.json" }, `r${i}`),
      call("read_file", { path: "d/x.txt" }, `q${i}`),
      call("list_dir", { path: "d" }, `l${i}`),
    ]);
  }

  // Nothing in the state dir or outside changed or appeared.
  expect(await fs.readdir(stateDir)).toEqual(["heartbeat-x.json"]);
  expect(await fs.readFile(path.join(stateDir, "heartbeat-x.json"), "utf8")).toBe(STATE);
  expect(await fs.readdir(outside)).toEqual(["x.txt"]);
  expect(await fs.readFile(path.join(outside, "x.txt"), "utf8")).toBe(OUTSIDE_SECRET);
  // Nothing read or listed came from there.
  for (const { outcome } of outcomes) {
    expect(outcome.content).not.toContain("the real one");
    expect(outcome.content).not.toContain(OUTSIDE_SECRET);
  }
  // The race was real: some calls went through, others were refused on the spot.
  const writes = outcomes.filter((o) => o.name === "write_file");
  expect(writes.some((o) => o.outcome.status === "ok")).toBe(true);
  expect(outcomes.some((o) => o.outcome.status !== "ok")).toBe(true);
}, 120_000);
