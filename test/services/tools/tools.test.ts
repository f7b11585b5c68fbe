import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createToolbox, type Toolbox } from "../../../src/services/tools/index.js";
import { PathRefusal } from "../../../src/services/tools/pathJail.js";
import { READ_FILE_MAX_CHARS } from "../../../src/services/tools/readFile.js";
import type { Tool, ToolContext, ToolOutcome } from "../../../src/services/tools/types.js";

let base: string;
let workdir: string;
let outside: string;
let stateDir: string;
let ctx: ToolContext;
let toolbox: Toolbox;
let callCount = 0;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-tools-")));
  workdir = path.join(base, "work");
  outside = path.join(base, "outside");
  stateDir = path.join(workdir, ".ravenclaws");
  await fs.mkdir(path.join(workdir, "src"), { recursive: true });
  await fs.mkdir(stateDir);
  await fs.mkdir(outside);
  await fs.writeFile(path.join(workdir, "README.md"), "# Hello\n");
  await fs.writeFile(path.join(workdir, "src", "b.ts"), "export const b = 2;\n");
  await fs.writeFile(path.join(workdir, "src", "a.ts"), "export const a = 1;\n");
  await fs.writeFile(path.join(stateDir, "state.json"), "{}\n");
  await fs.writeFile(path.join(outside, "secret.txt"), "secret\n");
  ctx = { workdir, stateDir };
  toolbox = createToolbox(ctx);
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

function call(name: string, args: unknown, box: Toolbox = toolbox): Promise<ToolOutcome> {
  callCount += 1;
  return box.call({ id: `call_${callCount}`, name, arguments: JSON.stringify(args) });
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

describe("read_file", () => {
  it("returns the file text exactly", async () => {
    const outcome = await call("read_file", { path: "src/a.ts" });
    expect(outcome).toEqual({
      callId: `call_${callCount}`,
      name: "read_file",
      arguments: JSON.stringify({ path: "src/a.ts" }),
      status: "ok",
      content: "export const a = 1;\n",
    });
  });

  it("reads a range of lines and says how to continue", async () => {
    const text = Array.from({ length: 10 }, (_, i) => `line ${i + 1}`).join("\r\n");
    await fs.writeFile(path.join(workdir, "ten.txt"), text);
    const middle = await call("read_file", { path: "ten.txt", offset: 3, limit: 2 });
    expect(middle.status).toBe("ok");
    expect(middle.content).toBe(
      "line 3\r\nline 4\r\n[Showing lines 3-4. The file continues; use offset=5 to read more.]",
    );
    const tail = await call("read_file", { path: "ten.txt", offset: 9 });
    expect(tail.content).toBe("line 9\r\nline 10");
    const past = await call("read_file", { path: "ten.txt", offset: 50 });
    expect(past.content).toContain("has 10 lines; offset 50 is past the end");
  });

  it("caps output at 100,000 characters and says so", async () => {
    const line = `${"x".repeat(999)}\n`;
    await fs.writeFile(path.join(workdir, "big.txt"), line.repeat(150));
    const outcome = await call("read_file", { path: "big.txt" });
    expect(outcome.status).toBe("ok");
    const [body, note] = [
      outcome.content.slice(0, READ_FILE_MAX_CHARS),
      outcome.content.slice(READ_FILE_MAX_CHARS),
    ];
    expect(body).toBe(line.repeat(100));
    expect(note).toBe(
      "[Output cut at 100,000 characters: showing lines 1-100. Use offset=101 to continue.]",
    );

    await fs.writeFile(path.join(workdir, "one-line.txt"), "y".repeat(250_000));
    const long = await call("read_file", { path: "one-line.txt" });
    expect(long.content.startsWith("y".repeat(READ_FILE_MAX_CHARS))).toBe(true);
    expect(long.content).toContain("in the middle of line 1");
    expect(long.content.length).toBeLessThan(READ_FILE_MAX_CHARS + 200);
  });

  it("refuses directories with a pointer to list_dir", async () => {
    const outcome = await call("read_file", { path: "src" });
    expect(outcome.status).toBe("error");
    expect(outcome.content).toBe(
      'Error: "src" is a directory, not a file. Use list_dir to see what it contains.',
    );
  });

  it("refuses binary files", async () => {
    await fs.writeFile(path.join(workdir, "image.png"), Buffer.from([0x89, 0x50, 0x00, 0x47]));
    const outcome = await call("read_file", { path: "image.png" });
    expect(outcome.status).toBe("error");
    expect(outcome.content).toContain("binary");
  });

  it("reports empty and missing files", async () => {
    await fs.writeFile(path.join(workdir, "empty.txt"), "");
    expect((await call("read_file", { path: "empty.txt" })).content).toBe(
      '[The file "empty.txt" is empty.]',
    );
    const missing = await call("read_file", { path: "nope.txt" });
    expect(missing.status).toBe("refused");
    expect(missing.content).toContain("does not exist");
  });
});

describe("write_file", () => {
  it("creates parent directories and reports the bytes written", async () => {
    const content = "Notes: café ☕\n";
    const outcome = await call("write_file", { path: "notes/NOTES.md", content });
    expect(outcome.status).toBe("ok");
    expect(outcome.content).toBe(`Wrote ${Buffer.byteLength(content)} bytes to notes/NOTES.md`);
    expect(await fs.readFile(path.join(workdir, "notes", "NOTES.md"), "utf8")).toBe(content);
  });

  it("replaces files atomically, keeping their mode and leaving no temp files", async () => {
    const target = path.join(workdir, "run.sh");
    await fs.writeFile(target, "old");
    await fs.chmod(target, 0o751);
    const outcome = await call("write_file", { path: "./run.sh", content: "new" });
    expect(outcome.content).toBe("Wrote 3 bytes to run.sh");
    expect(await fs.readFile(target, "utf8")).toBe("new");
    expect((await fs.stat(target)).mode & 0o777).toBe(0o751);
    expect((await fs.readdir(workdir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("accepts an absolute path inside the workdir", async () => {
    const target = path.join(workdir, "abs.txt");
    const outcome = await call("write_file", { path: target, content: "ok" });
    expect(outcome.status).toBe("ok");
    expect(await fs.readFile(target, "utf8")).toBe("ok");
  });

  it("refuses to overwrite a directory", async () => {
    const outcome = await call("write_file", { path: "src", content: "x" });
    expect(outcome.status).toBe("error");
    expect(outcome.content).toContain("is a directory");
  });
});

describe("list_dir", () => {
  it("lists the root by default, sorted, with directories and symlinks marked", async () => {
    await fs.symlink("src/a.ts", path.join(workdir, "link.ts"));
    const outcome = await call("list_dir", {});
    expect(outcome.status).toBe("ok");
    expect(outcome.content).toBe(["README.md", "link.ts -> src/a.ts", "src/"].join("\n"));
  });

  it("lists a subdirectory", async () => {
    expect((await call("list_dir", { path: "src" })).content).toBe("a.ts\nb.ts");
  });

  it("lists recursively, showing .git/ but not its contents, never following symlinks", async () => {
    await fs.mkdir(path.join(workdir, ".git", "objects"), { recursive: true });
    await fs.writeFile(path.join(workdir, ".git", "HEAD"), "ref: refs/heads/main\n");
    await fs.mkdir(path.join(workdir, "src", "deep"));
    await fs.writeFile(path.join(workdir, "src", "deep", "c.ts"), "");
    await fs.symlink(outside, path.join(workdir, "escape"));
    const outcome = await call("list_dir", { path: ".", recursive: true });
    expect(outcome.content).toBe(
      [
        ".git/",
        "README.md",
        `escape -> ${outside}`,
        "src/",
        "src/a.ts",
        "src/b.ts",
        "src/deep/",
        "src/deep/c.ts",
      ].join("\n"),
    );
  });

  it("stops a recursive listing at 500 entries and counts the rest", async () => {
    const many = path.join(workdir, "many");
    await fs.mkdir(many);
    await Promise.all(
      Array.from({ length: 520 }, (_, i) =>
        fs.writeFile(path.join(many, `f${String(i).padStart(3, "0")}.txt`), ""),
      ),
    );
    const outcome = await call("list_dir", { path: ".", recursive: true });
    const lines = outcome.content.split("\n");
    // README.md, many/ and 498 files are shown; 22 files, src/ and its 2 files are left out.
    expect(lines).toHaveLength(501);
    expect(lines[1]).toBe("many/");
    expect(lines[499]).toBe("many/f497.txt");
    expect(lines[500]).toBe(
      "[Listing stopped at 500 entries; 25 more were left out. List a subdirectory to see them.]",
    );
  });

  it("refuses files with a pointer to read_file and reports empty directories", async () => {
    const file = await call("list_dir", { path: "README.md" });
    expect(file.status).toBe("error");
    expect(file.content).toContain("Use read_file");
    await fs.mkdir(path.join(workdir, "empty"));
    expect((await call("list_dir", { path: "empty" })).content).toBe(
      '[The directory "empty" is empty.]',
    );
  });
});

describe("confinement through the tools", () => {
  it("refuses '..' escapes and absolute paths outside for every tool", async () => {
    for (const p of ["../outside/secret.txt", path.join(outside, "secret.txt")]) {
      const read = await call("read_file", { path: p });
      expect(read.status).toBe("refused");
      expect(read.content).toMatch(/^Refused: .* resolves outside the workspace\./);
      expect((await call("write_file", { path: p, content: "pwned" })).status).toBe("refused");
      expect((await call("list_dir", { path: path.dirname(p) })).status).toBe("refused");
    }
    expect(await fs.readFile(path.join(outside, "secret.txt"), "utf8")).toBe("secret\n");
  });

  it("refuses reading, writing and listing through a symlink to a directory outside", async () => {
    await fs.symlink(outside, path.join(workdir, "escape"));
    const outcomes = [
      await call("read_file", { path: "escape/secret.txt" }),
      await call("write_file", { path: "escape/secret.txt", content: "pwned" }),
      await call("write_file", { path: "escape/new/file.txt", content: "pwned" }),
      await call("list_dir", { path: "escape" }),
      await call("list_dir", { path: "escape", recursive: true }),
    ];
    for (const outcome of outcomes) {
      expect(outcome.status).toBe("refused");
      expect(outcome.content).toContain("through a symbolic link");
      expect(outcome.content).not.toContain("secret\n");
    }
    expect(await fs.readdir(outside)).toEqual(["secret.txt"]);
    expect(await fs.readFile(path.join(outside, "secret.txt"), "utf8")).toBe("secret\n");
  });

  it("refuses writing to a dangling symlink that points outside", async () => {
    const planted = path.join(outside, "planted.txt");
    await fs.symlink(planted, path.join(workdir, "trap.txt"));
    const outcome = await call("write_file", { path: "trap.txt", content: "pwned" });
    expect(outcome.status).toBe("refused");
    expect(await exists(planted)).toBe(false);
    expect(await fs.readdir(outside)).toEqual(["secret.txt"]);
  });

  it("refuses the state dir for read, write and list, and hides it from listings", async () => {
    const outcomes = [
      await call("read_file", { path: ".ravenclaws/state.json" }),
      await call("write_file", { path: ".ravenclaws/state.json", content: "{}" }),
      await call("write_file", { path: ".ravenclaws/new.json", content: "{}" }),
      await call("list_dir", { path: ".ravenclaws" }),
      await call("list_dir", { path: stateDir, recursive: true }),
    ];
    for (const outcome of outcomes) {
      expect(outcome.status).toBe("refused");
      expect(outcome.content).toContain("state directory");
    }
    expect(await fs.readdir(stateDir)).toEqual(["state.json"]);
    expect(await fs.readFile(path.join(stateDir, "state.json"), "utf8")).toBe("{}\n");

    expect((await call("list_dir", {})).content).not.toContain(".ravenclaws");
    expect((await call("list_dir", { recursive: true })).content).not.toContain(".ravenclaws");
  });

  it("refuses a state dir outside the workdir and lists a same-named dir inside", async () => {
    const outerState = path.join(base, "state");
    await fs.mkdir(outerState);
    await fs.writeFile(path.join(outerState, "state.json"), "{}");
    const box = createToolbox({ workdir, stateDir: outerState });
    expect((await call("read_file", { path: "../state/state.json" }, box)).status).toBe("refused");
    expect((await call("list_dir", { path: outerState }, box)).status).toBe("refused");
    expect(
      (await call("write_file", { path: path.join(outerState, "x"), content: "" }, box)).status,
    ).toBe("refused");
    expect((await call("list_dir", {}, box)).content).toContain(".ravenclaws/");
  });

  it("refuses NUL bytes in paths", async () => {
    for (const outcome of [
      await call("read_file", { path: "README.md\0" }),
      await call("write_file", { path: "x\0.txt", content: "" }),
      await call("list_dir", { path: "src\0" }),
    ]) {
      expect(outcome.status).toBe("refused");
      expect(outcome.content).toContain("NUL byte");
    }
  });

  it("is not fooled by a sibling directory sharing the workdir's name as a prefix", async () => {
    const sibling = `${workdir}x`;
    await fs.mkdir(sibling);
    await fs.writeFile(path.join(sibling, "f.txt"), "sibling");
    const outcome = await call("read_file", { path: path.join(sibling, "f.txt") });
    expect(outcome.status).toBe("refused");
    expect((await call("list_dir", { path: "../workx" })).status).toBe("refused");
  });
});

describe("createToolbox", () => {
  it("describes the default tools with JSON schemas for the model", () => {
    expect(toolbox.definitions.map((d) => d.function.name)).toEqual([
      "shell_exec",
      "read_file",
      "write_file",
      "edit_file",
      "list_dir",
    ]);
    for (const definition of toolbox.definitions.filter((d) => d.function.name !== "shell_exec")) {
      expect(definition.type).toBe("function");
      expect(definition.function.description.length).toBeGreaterThan(20);
      const parameters = definition.function.parameters as {
        type: string;
        properties: Record<string, { type: string; description?: string }>;
        required?: string[];
      };
      expect(parameters).not.toHaveProperty("$schema");
      expect(parameters.type).toBe("object");
      expect(parameters.properties.path?.type).toBe("string");
      expect(parameters.properties.path?.description).toBeTruthy();
    }
    const [shell, read, write, edit, list] = toolbox.definitions.map(
      (d) => d.function.parameters as { required?: string[] },
    );
    expect(shell?.required).toEqual(["command"]);
    expect(read?.required).toEqual(["path"]);
    expect(write?.required).toEqual(["path", "content"]);
    expect(edit?.required).toEqual(["path", "oldText", "newText"]);
    // Fields with defaults are optional for the model.
    expect(list?.required ?? []).toEqual([]);
  });

  it("answers unknown tools with the list of known tools", async () => {
    const outcome = await call("delete_everything", {});
    expect(outcome.status).toBe("invalid");
    expect(outcome.name).toBe("delete_everything");
    expect(outcome.content).toBe(
      'Unknown tool "delete_everything". Available tools: shell_exec, read_file, write_file, edit_file, list_dir.',
    );
  });

  it("answers malformed JSON with the parse error and the raw arguments", async () => {
    const raw = '{"path": "README.md"';
    const outcome = await toolbox.call({ id: "c1", name: "read_file", arguments: raw });
    expect(outcome.status).toBe("invalid");
    expect(outcome.arguments).toBe(raw);
    expect(outcome.content).toMatch(/^Invalid arguments for read_file: not valid JSON \(.+\)/);
    expect(outcome.content).toContain(`Raw arguments: ${raw}`);
  });

  it("treats empty arguments as an empty object", async () => {
    const outcome = await toolbox.call({ id: "c2", name: "list_dir", arguments: "" });
    expect(outcome.status).toBe("ok");
    expect(outcome.content).toContain("README.md");
  });

  it("answers schema failures with each issue's path and message", async () => {
    const args = { path: 42, offset: 0 };
    const outcome = await call("read_file", args);
    expect(outcome.status).toBe("invalid");
    const lines = outcome.content.split("\n");
    expect(lines[0]).toBe("Invalid arguments for read_file:");
    expect(lines.some((l) => l.startsWith("- path: "))).toBe(true);
    expect(lines.some((l) => l.startsWith("- offset: "))).toBe(true);
    expect(lines.at(-1)).toBe(`Raw arguments: ${JSON.stringify(args)}`);

    const notObject = await toolbox.call({ id: "c3", name: "write_file", arguments: "[1]" });
    expect(notObject.status).toBe("invalid");
    expect(notObject.content).toContain("- (arguments): ");
  });

  it("returns refusals and failures as outcomes instead of throwing", async () => {
    const calls: string[] = [];
    const tools: Tool<{ what: string }>[] = [
      {
        name: "fail",
        description: "Fails in the way it is asked to.",
        schema: z.object({ what: z.string() }),
        async run(args) {
          calls.push(args.what);
          if (args.what === "refuse") throw new PathRefusal("outside-workdir", "x", "Refused: x.");
          if (args.what === "string") throw "plain string";
          const error = new Error("disk on fire");
          error.stack = "Error: disk on fire\n    at secret (internal.ts:1:1)";
          throw error;
        },
      },
    ];
    const box = createToolbox(ctx, { tools });
    await expect(call("fail", { what: "refuse" }, box)).resolves.toMatchObject({
      status: "refused",
      content: "Refused: x.",
    });
    await expect(call("fail", { what: "error" }, box)).resolves.toMatchObject({
      status: "error",
      content: "Error: disk on fire",
    });
    await expect(call("fail", { what: "string" }, box)).resolves.toMatchObject({
      status: "error",
      content: "Error: plain string",
    });
    expect(calls).toEqual(["refuse", "error", "string"]);
  });

  it("passes the context's abort signal to the tools", async () => {
    const controller = new AbortController();
    controller.abort();
    const box = createToolbox({ ...ctx, signal: controller.signal });
    const outcome = await call("write_file", { path: "aborted.txt", content: "x" }, box);
    expect(outcome.status).toBe("error");
    expect(await exists(path.join(workdir, "aborted.txt"))).toBe(false);
    expect((await fs.readdir(workdir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});
