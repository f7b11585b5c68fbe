import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  isWithin,
  PathRefusal,
  resolveInWorkspace,
  toWorkspacePath,
} from "../../../src/services/tools/pathJail.js";
import type { ToolContext } from "../../../src/services/tools/types.js";

let base: string;
let workdir: string;
let outside: string;
let ctx: ToolContext;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-sandbox-")));
  workdir = path.join(base, "work");
  outside = path.join(base, "outside");
  await fs.mkdir(path.join(workdir, "src"), { recursive: true });
  await fs.mkdir(path.join(workdir, ".ravenclaws"));
  await fs.mkdir(outside);
  await fs.writeFile(path.join(workdir, "src", "a.ts"), "export {};\n");
  await fs.writeFile(path.join(outside, "secret.txt"), "secret\n");
  ctx = { workdir, stateDir: path.join(workdir, ".ravenclaws") };
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

/** Resolves and returns the PathRefusal it must throw. */
async function refusal(
  userPath: string,
  opts?: { mustExist?: boolean },
  context: ToolContext = ctx,
): Promise<PathRefusal> {
  const error = await resolveInWorkspace(context, userPath, opts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PathRefusal);
  return error as PathRefusal;
}

describe("resolveInWorkspace: ordinary paths", () => {
  it("resolves relative paths against the workdir", async () => {
    expect(await resolveInWorkspace(ctx, "src/a.ts")).toBe(path.join(workdir, "src", "a.ts"));
    expect(await resolveInWorkspace(ctx, "./src/../src/a.ts")).toBe(
      path.join(workdir, "src", "a.ts"),
    );
  });

  it("returns the workdir itself for '.' and accepts it when it must exist", async () => {
    expect(await resolveInWorkspace(ctx, ".", { mustExist: true })).toBe(workdir);
  });

  it("resolves paths that do not exist yet, below missing directories", async () => {
    expect(await resolveInWorkspace(ctx, "new/dir/file.md")).toBe(
      path.join(workdir, "new", "dir", "file.md"),
    );
  });

  it("accepts an absolute path inside the workdir", async () => {
    const target = path.join(workdir, "src", "a.ts");
    expect(await resolveInWorkspace(ctx, target, { mustExist: true })).toBe(target);
  });

  it("accepts an absolute path that reaches the workdir through a symlinked alias", async () => {
    await fs.symlink(workdir, path.join(base, "alias"));
    expect(await resolveInWorkspace(ctx, path.join(base, "alias", "src", "a.ts"))).toBe(
      path.join(workdir, "src", "a.ts"),
    );
  });

  it("follows a symlink whose target stays inside the workspace", async () => {
    await fs.symlink("src", path.join(workdir, "code"));
    await fs.symlink("a.ts", path.join(workdir, "src", "link.ts"));
    expect(await resolveInWorkspace(ctx, "code/link.ts", { mustExist: true })).toBe(
      path.join(workdir, "src", "a.ts"),
    );
  });

  it("resolves a dangling symlink whose target is inside to that target", async () => {
    await fs.symlink("src/future.ts", path.join(workdir, "soon"));
    expect(await resolveInWorkspace(ctx, "soon")).toBe(path.join(workdir, "src", "future.ts"));
  });
});

describe("resolveInWorkspace: refusals", () => {
  it("refuses '..' escapes with an explanation for the model", async () => {
    const error = await refusal("../outside/secret.txt");
    expect(error.code).toBe("outside-workdir");
    expect(error.path).toBe("../outside/secret.txt");
    expect(error.message).toBe(
      'Refused: "../outside/secret.txt" resolves outside the workspace. Use a path relative to the workspace root that stays inside it.',
    );
    expect((await refusal("src/../../outside")).code).toBe("outside-workdir");
    expect((await refusal("..")).code).toBe("outside-workdir");
  });

  it("refuses absolute paths outside the workdir", async () => {
    expect((await refusal(path.join(outside, "secret.txt"))).code).toBe("outside-workdir");
    expect((await refusal("/")).code).toBe("outside-workdir");
  });

  it("refuses a symlinked directory inside the workdir that points outside", async () => {
    await fs.symlink(outside, path.join(workdir, "escape"));
    for (const p of ["escape", "escape/secret.txt", "escape/new.txt", "escape/x/y/z.txt"]) {
      const error = await refusal(p);
      expect(error.code).toBe("outside-workdir");
      expect(error.message).toContain("through a symbolic link");
    }
  });

  it("refuses a relative symlink that climbs out of the workdir", async () => {
    await fs.symlink("../../outside", path.join(workdir, "src", "up"));
    expect((await refusal("src/up/secret.txt")).code).toBe("outside-workdir");
  });

  it("refuses a dangling symlink that points outside", async () => {
    await fs.symlink(path.join(outside, "planted.txt"), path.join(workdir, "dangling"));
    expect((await refusal("dangling")).code).toBe("outside-workdir");
    expect((await refusal("dangling/below.txt")).code).toBe("outside-workdir");
  });

  it("follows chains of dangling symlinks to their final target", async () => {
    await fs.symlink("second", path.join(workdir, "first"));
    await fs.symlink(path.join(outside, "new-dir", "f.txt"), path.join(workdir, "second"));
    expect((await refusal("first")).code).toBe("outside-workdir");
  });

  it("refuses symlink loops", async () => {
    await fs.symlink("loop-b", path.join(workdir, "loop-a"));
    await fs.symlink("loop-a", path.join(workdir, "loop-b"));
    expect((await refusal("loop-a/x")).code).toBe("symlink-loop");
  });

  it("refuses the state dir and everything in it, however it is reached", async () => {
    await fs.symlink(".ravenclaws", path.join(workdir, "state-link"));
    for (const p of [
      ".ravenclaws",
      ".ravenclaws/",
      ".ravenclaws/state.json",
      "src/../.ravenclaws/journal.jsonl",
      path.join(workdir, ".ravenclaws", "x"),
      "state-link",
      "state-link/state.json",
    ]) {
      const error = await refusal(p);
      expect(error.code).toBe("state-dir");
      expect(error.message).toContain("state directory");
    }
  });

  it("refuses a state dir outside the workdir, and treats the name as ordinary inside", async () => {
    const stateDir = path.join(base, "state");
    await fs.mkdir(stateDir);
    const other: ToolContext = { workdir, stateDir };
    await fs.symlink(stateDir, path.join(workdir, "to-state"));
    expect((await refusal(stateDir, undefined, other)).code).toBe("state-dir");
    expect((await refusal("../state/x.json", undefined, other)).code).toBe("state-dir");
    expect((await refusal("to-state/x.json", undefined, other)).code).toBe("state-dir");
    expect(await resolveInWorkspace(other, ".ravenclaws/x")).toBe(
      path.join(workdir, ".ravenclaws", "x"),
    );
  });

  it("refuses NUL bytes", async () => {
    const error = await refusal("src/a.ts\0.png");
    expect(error.code).toBe("nul-byte");
    expect(error.message).toContain("NUL byte");
    expect(error.message).not.toContain("\0");
  });

  it("refuses empty paths", async () => {
    expect((await refusal("")).code).toBe("empty-path");
    expect((await refusal("   ")).code).toBe("empty-path");
  });

  it("is not fooled by a sibling whose name starts with the workdir's name", async () => {
    const a = path.join(base, "a");
    const ab = path.join(base, "ab");
    await fs.mkdir(a);
    await fs.mkdir(ab);
    await fs.writeFile(path.join(ab, "x.txt"), "x");
    const prefixed: ToolContext = { workdir: a, stateDir: path.join(a, ".rc") };
    expect((await refusal(path.join(ab, "x.txt"), undefined, prefixed)).code).toBe(
      "outside-workdir",
    );
    expect((await refusal("../ab/x.txt", undefined, prefixed)).code).toBe("outside-workdir");
    // Same trap for the state dir: `.rcx` is not inside `.rc`.
    expect(await resolveInWorkspace(prefixed, ".rcx/file")).toBe(path.join(a, ".rcx", "file"));
  });

  it("reports missing paths as not-found only when they must exist", async () => {
    const error = await refusal("src/missing.ts", { mustExist: true });
    expect(error.code).toBe("not-found");
    expect(error.message).toContain("list_dir");
    expect((await refusal("src/a.ts/below", { mustExist: true })).code).toBe("not-found");
  });

  it("checks confinement before existence, so nothing is revealed about outside", async () => {
    expect((await refusal("../outside/missing", { mustExist: true })).code).toBe("outside-workdir");
  });
});

describe("isWithin and toWorkspacePath", () => {
  it("compares by path components, not string prefixes", () => {
    expect(isWithin("/w/a", "/w/a")).toBe(true);
    expect(isWithin("/w/a", "/w/a/b")).toBe(true);
    expect(isWithin("/w/a", "/w/ab")).toBe(false);
    expect(isWithin("/w/a", "/w")).toBe(false);
    expect(isWithin("/w/a", "/w/a/..b")).toBe(true);
  });

  it("shows workspace paths relative to the root", () => {
    expect(toWorkspacePath(ctx, workdir)).toBe(".");
    expect(toWorkspacePath(ctx, path.join(workdir, "notes", "N.md"))).toBe("notes/N.md");
  });
});
