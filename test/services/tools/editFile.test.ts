import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createToolbox, type Toolbox } from "../../../src/services/tools/index.js";
import type { ToolOutcome } from "../../../src/services/tools/types.js";

let base: string;
let workdir: string;
let outside: string;
let stateDir: string;
let toolbox: Toolbox;
let n = 0;

const SOURCE = "function a() {\n  return 1;\n}\n\nfunction b() {\n  return 1;\n}\n";

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-edit-")));
  workdir = path.join(base, "work");
  outside = path.join(base, "outside");
  stateDir = path.join(workdir, ".ravenclaws");
  await fs.mkdir(stateDir, { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(workdir, "code.js"), SOURCE);
  await fs.writeFile(path.join(outside, "secret.txt"), "secret\n");
  await fs.writeFile(path.join(stateDir, "heartbeat-x.json"), "{}\n");
  toolbox = createToolbox({ workdir, stateDir });
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

function edit(args: Record<string, unknown>): Promise<ToolOutcome> {
  n += 1;
  return toolbox.call({ id: `e${n}`, name: "edit_file", arguments: JSON.stringify(args) });
}

const read = (file: string) => fs.readFile(path.join(workdir, file), "utf8");

describe("edit_file", () => {
  it("replaces a unique exact match and reports where", async () => {
    const outcome = await edit({
      path: "code.js",
      oldText: "function b() {\n  return 1;",
      newText: "function b() {\n  // two\n  return 2;",
    });
    expect(outcome).toMatchObject({
      status: "ok",
      content: "Edited code.js: replaced 2 lines at line 5 with 3 lines.",
    });
    expect(await read("code.js")).toBe(
      "function a() {\n  return 1;\n}\n\nfunction b() {\n  // two\n  return 2;\n}\n",
    );
  });

  it("refuses an ambiguous match, saying how many and where, and changes nothing", async () => {
    const outcome = await edit({ path: "code.js", oldText: "return 1;", newText: "return 3;" });
    expect(outcome.status).toBe("error");
    expect(outcome.content).toBe(
      'Error: oldText occurs 2 times in "code.js" (lines 2, 6); it must occur exactly once. Include more surrounding context in oldText to pick one.',
    );
    expect(await read("code.js")).toBe(SOURCE);
  });

  it("counts overlapping matches as ambiguous", async () => {
    await fs.writeFile(path.join(workdir, "aaa.txt"), "aaa");
    const outcome = await edit({ path: "aaa.txt", oldText: "aa", newText: "b" });
    expect(outcome.content).toContain("occurs 2 times");
  });

  it("refuses a missing match, saying 0 and how to find the text", async () => {
    const outcome = await edit({ path: "code.js", oldText: "return 42;", newText: "x" });
    expect(outcome.status).toBe("error");
    expect(outcome.content).toMatch(/^Error: oldText was not found in "code.js" \(0 matches\)\./);
    expect(outcome.content).toContain("read_file");
  });

  it("explains a near miss: whitespace or CRLF line endings", async () => {
    const spaced = await edit({
      path: "code.js",
      oldText: "function a() {\n    return 1;",
      newText: "x",
    });
    expect(spaced.content).toContain("if whitespace is ignored");
    await fs.writeFile(path.join(workdir, "dos.txt"), "one\r\ntwo\r\n");
    const crlf = await edit({ path: "dos.txt", oldText: "one\ntwo", newText: "x" });
    expect(crlf.content).toContain("CRLF");
  });

  it("deletes text with an empty newText and keeps the file mode", async () => {
    await fs.chmod(path.join(workdir, "code.js"), 0o751);
    const outcome = await edit({
      path: "code.js",
      oldText: "\nfunction b() {\n  return 1;\n}\n",
      newText: "",
    });
    expect(outcome.content).toBe("Edited code.js: replaced 5 lines at line 4 with 0 lines.");
    expect(await read("code.js")).toBe("function a() {\n  return 1;\n}\n");
    expect((await fs.stat(path.join(workdir, "code.js"))).mode & 0o777).toBe(0o751);
    expect((await fs.readdir(workdir)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("rejects an empty oldText and a no-op edit, and missing files and directories", async () => {
    const empty = await edit({ path: "code.js", oldText: "", newText: "x" });
    expect(empty.status).toBe("invalid");
    expect(empty.content).toContain("- oldText: must not be empty: use write_file");
    expect((await edit({ path: "code.js", oldText: "a", newText: "a" })).content).toContain(
      "nothing would change",
    );
    const missing = await edit({ path: "nope.js", oldText: "a", newText: "b" });
    expect(missing.status).toBe("refused");
    expect(missing.content).toContain("does not exist");
    await fs.mkdir(path.join(workdir, "dir"));
    expect((await edit({ path: "dir", oldText: "a", newText: "b" })).content).toContain(
      "is a directory",
    );
  });

  it("refuses binary files", async () => {
    await fs.writeFile(path.join(workdir, "bin.dat"), Buffer.from([0x61, 0, 0x62]));
    expect((await edit({ path: "bin.dat", oldText: "a", newText: "b" })).content).toContain(
      "binary",
    );
  });
});

describe("edit_file confinement", () => {
  it("refuses '..', absolute paths outside, symlinks pointing out, the state dir and NUL bytes", async () => {
    await fs.symlink(outside, path.join(workdir, "escape"));
    await fs.symlink(path.join(outside, "secret.txt"), path.join(workdir, "link.txt"));
    const cases: [string, string][] = [
      ["../outside/secret.txt", "resolves outside the workspace"],
      [path.join(outside, "secret.txt"), "resolves outside the workspace"],
      ["escape/secret.txt", "through a symbolic link"],
      ["link.txt", "through a symbolic link"],
      [".ravenclaws/heartbeat-x.json", "state directory"],
      [path.join(stateDir, "heartbeat-x.json"), "state directory"],
      ["code.js\0.txt", "NUL byte"],
    ];
    for (const [p, message] of cases) {
      const outcome = await edit({ path: p, oldText: "secret", newText: "pwned" });
      expect(outcome.status, p).toBe("refused");
      expect(outcome.content, p).toContain(message);
    }
    expect(await fs.readFile(path.join(outside, "secret.txt"), "utf8")).toBe("secret\n");
    expect(await fs.readFile(path.join(stateDir, "heartbeat-x.json"), "utf8")).toBe("{}\n");
  });
});
