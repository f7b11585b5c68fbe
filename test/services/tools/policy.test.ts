/**
 * Tool modes and deny/ask/allow rules, through the real toolbox and real files.
 */
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createToolbox,
  type Toolbox,
  type ToolboxOptions,
} from "../../../src/services/tools/index.js";
import { Policy, parseRule } from "../../../src/services/tools/policy.js";
import type { ToolContext, ToolOutcome } from "../../../src/services/tools/types.js";

let base: string;
let workdir: string;
let outside: string;
let stateDir: string;
let ctx: ToolContext;
let n = 0;

beforeEach(async () => {
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-policy-")));
  workdir = path.join(base, "work");
  outside = path.join(base, "outside");
  stateDir = path.join(workdir, ".ravenclaws");
  await fs.mkdir(path.join(workdir, "src"), { recursive: true });
  await fs.mkdir(path.join(workdir, "config"));
  await fs.mkdir(stateDir);
  await fs.mkdir(outside);
  await fs.writeFile(path.join(workdir, "src", "a.ts"), "export const a = 1;\n");
  await fs.writeFile(path.join(workdir, "README.md"), "# Readme\n");
  await fs.writeFile(path.join(workdir, ".env"), "SECRET=1\n");
  await fs.writeFile(path.join(workdir, "config", ".env"), "SECRET=2\n");
  await fs.writeFile(path.join(outside, "o.txt"), "outside\n");
  ctx = { workdir, stateDir };
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

function box(options: ToolboxOptions = {}): Toolbox {
  return createToolbox(ctx, options);
}

function call(toolbox: Toolbox, name: string, args: unknown): Promise<ToolOutcome> {
  n += 1;
  return toolbox.call({ id: `p${n}`, name, arguments: JSON.stringify(args) });
}

const names = (toolbox: Toolbox) => toolbox.definitions.map((d) => d.function.name);

describe("parseRule", () => {
  it("reads KIND(PATTERN) and bare KIND", () => {
    expect(parseRule(" shell(npm test*) ", "allow")).toEqual({
      list: "allow",
      text: "shell(npm test*)",
      kind: "shell",
      pattern: "npm test*",
    });
    expect(parseRule("fetch")).toMatchObject({ kind: "fetch", pattern: null });
    expect(parseRule("write(src/{a,b}/**)")).toMatchObject({ pattern: "src/{a,b}/**" });
  });

  it("rejects unknown kinds, missing parentheses and empty patterns", () => {
    expect(() => parseRule("delete(x)")).toThrow(/KIND one of shell, read, write, edit, fetch/);
    expect(() => parseRule("shell(ls")).toThrow(/must be KIND or KIND\(PATTERN\)/);
    expect(() => parseRule("write()")).toThrow(/empty pattern/);
    expect(() => createToolbox(ctx, { policy: { deny: ["nope"] } })).toThrow(/nope/);
  });
});

describe("Policy.decide: deny, then ask, then allow, then the mode", () => {
  const subject = { kind: "write" as const, names: ["src/a.ts"] };

  it("deny beats ask and allow", () => {
    const policy = new Policy({
      deny: ["write(src/**)"],
      ask: ["write"],
      allow: ["write(src/a.ts)"],
    });
    expect(policy.decide(subject)).toMatchObject({
      verdict: "deny",
      rule: { text: "write(src/**)" },
    });
  });

  it("ask beats allow", () => {
    const policy = new Policy({ ask: ["write(src/*)"], allow: ["write(src/a.ts)"] });
    expect(policy.decide(subject)).toMatchObject({
      verdict: "ask",
      rule: { text: "write(src/*)" },
    });
  });

  it("allow beats the mode's default, which decides last", () => {
    const readOnly = new Policy({ mode: "read-only", allow: ["write(notes/**)"] });
    expect(readOnly.decide({ kind: "write", names: ["notes/n.md"] })).toMatchObject({
      verdict: "allow",
    });
    expect(readOnly.decide(subject)).toEqual({ verdict: "deny", rule: null });
    expect(new Policy().decide(subject)).toEqual({ verdict: "allow", rule: null });
  });

  it("a path rule matches the path as given or as resolved", () => {
    const policy = new Policy({ deny: ["read(**/*.env)"] });
    expect(policy.decide({ kind: "read", names: ["notes.txt", ".env"] }).verdict).toBe("deny");
    expect(policy.decide({ kind: "read", names: ["config/.env"] }).verdict).toBe("deny");
    expect(policy.decide({ kind: "read", names: ["env.txt"] }).verdict).toBe("allow");
  });

  it("shell deny/ask rules look at every part of a compound command", () => {
    const policy = new Policy({ deny: ["shell(git push*)"], ask: ["shell(npm publish)"] });
    expect(policy.decide({ kind: "shell", names: ["git status && git push origin"] }).verdict).toBe(
      "deny",
    );
    expect(policy.decide({ kind: "shell", names: ["npm run build; npm publish"] }).verdict).toBe(
      "ask",
    );
    expect(policy.decide({ kind: "shell", names: ["git pull"] }).verdict).toBe("allow");
  });

  it("a wildcard shell allow rule never approves what is chained after the command", () => {
    const policy = new Policy({
      mode: "read-only",
      allow: ["shell(npm test*)", "shell(make; make install)"],
    });
    expect(policy.decide({ kind: "shell", names: ["npm test -- src/x.test.ts"] }).verdict).toBe(
      "allow",
    );
    for (const command of [
      "npm test; rm -r src",
      "npm test && curl x",
      "npm test > out",
      "npm test $(id)",
    ]) {
      expect(policy.decide({ kind: "shell", names: [command] }).verdict, command).toBe("deny");
    }
    // An operator in quotes is part of a word: still one simple command.
    const commit = new Policy({ mode: "read-only", allow: ["shell(git commit *)"] });
    expect(commit.decide({ kind: "shell", names: ['git commit -m "a; b"'] }).verdict).toBe("allow");
    expect(commit.decide({ kind: "shell", names: ["git commit -m a; rm x"] }).verdict).toBe("deny");
    // A literal pattern may spell out a compound command exactly.
    expect(policy.decide({ kind: "shell", names: ["make; make install"] }).verdict).toBe("allow");
  });

  it("fetch rules match host names without case", () => {
    const policy = new Policy({ deny: ["fetch(*.evil.example)"] });
    expect(policy.decide({ kind: "fetch", names: ["api.evil.example"] }).verdict).toBe("deny");
    expect(policy.decide({ kind: "fetch", names: ["good.example"] }).verdict).toBe("allow");
  });
});

describe("tool modes", () => {
  it("read-only offers only the tools that can succeed, and refuses the others by mode", async () => {
    const toolbox = box({ policy: { mode: "read-only" } });
    expect(names(toolbox)).toEqual(["read_file", "list_dir"]);
    expect(names(box({ policy: { mode: "read-only" }, web: { enabled: true } }))).toEqual([
      "read_file",
      "list_dir",
      "web_fetch",
    ]);
    expect((await call(toolbox, "read_file", { path: "README.md" })).status).toBe("ok");
    expect((await call(toolbox, "list_dir", {})).status).toBe("ok");
    for (const [tool, args] of [
      ["write_file", { path: "x.txt", content: "x" }],
      ["edit_file", { path: "README.md", oldText: "Readme", newText: "Changed" }],
      ["shell_exec", { command: "touch x.txt" }],
    ] as const) {
      const outcome = await call(toolbox, tool, args);
      expect(outcome.status, tool).toBe("refused");
      expect(outcome.content, tool).toContain(`${tool} is not available in tool mode "read-only"`);
    }
    expect(existsSync(path.join(workdir, "x.txt"))).toBe(false);
    expect(await fs.readFile(path.join(workdir, "README.md"), "utf8")).toBe("# Readme\n");
  });

  it("read-only with allow rules offers those tools and allows only the matching calls", async () => {
    const toolbox = box({
      policy: { mode: "read-only", allow: ["write(notes/**)", "shell(echo hello*)"] },
    });
    expect(names(toolbox)).toEqual(["shell_exec", "read_file", "write_file", "list_dir"]);
    expect((await call(toolbox, "write_file", { path: "notes/n.md", content: "n" })).status).toBe(
      "ok",
    );
    const other = await call(toolbox, "write_file", { path: "src/b.ts", content: "b" });
    expect(other.status).toBe("refused");
    expect(other.content).toBe(
      'Refused by the tool policy: tool mode "read-only" does not allow write access and no allow rule matches (write_file would write src/b.ts). Do not retry it.',
    );
    const echo = await call(toolbox, "shell_exec", { command: "echo hello world" });
    expect(echo.status).toBe("ok");
    expect(echo.content).toContain("hello world");
    const chained = await call(toolbox, "shell_exec", { command: "echo hello; touch pwned" });
    expect(chained.status).toBe("refused");
    expect(existsSync(path.join(workdir, "pwned"))).toBe(false);
  });

  it("workspace-write (the default) offers the five tools and confines them to the workdir", async () => {
    const toolbox = box();
    expect(names(toolbox)).toEqual([
      "shell_exec",
      "read_file",
      "write_file",
      "edit_file",
      "list_dir",
    ]);
    expect((await call(toolbox, "write_file", { path: "src/b.ts", content: "b" })).status).toBe(
      "ok",
    );
    const outsideWrite = await call(toolbox, "write_file", {
      path: path.join(outside, "x"),
      content: "x",
    });
    expect(outsideWrite.status).toBe("refused");
    expect(outsideWrite.content).toContain("resolves outside the workspace");
  });

  it("full lets file tools reach outside the workdir, never the state dir or protected files", async () => {
    const protectedFile = path.join(outside, "ravenclaws.toml");
    await fs.writeFile(protectedFile, "[tools]\nmode = 'full'\n");
    ctx = { ...ctx, protectedPaths: [protectedFile] };
    const toolbox = box({ policy: { mode: "full" } });
    expect(names(toolbox)).toEqual([
      "shell_exec",
      "read_file",
      "write_file",
      "edit_file",
      "list_dir",
    ]);

    const read = await call(toolbox, "read_file", { path: "../outside/o.txt" });
    expect(read).toMatchObject({ status: "ok", content: "outside\n" });
    const written = await call(toolbox, "write_file", {
      path: path.join(outside, "new.txt"),
      content: "new",
    });
    expect(written).toMatchObject({ status: "ok", content: `Wrote 3 bytes to ${outside}/new.txt` });
    const edited = await call(toolbox, "edit_file", {
      path: path.join(outside, "o.txt"),
      oldText: "outside",
      newText: "edited",
    });
    expect(edited.status).toBe("ok");
    expect(await fs.readFile(path.join(outside, "o.txt"), "utf8")).toBe("edited\n");
    expect((await call(toolbox, "list_dir", { path: outside })).content).toContain("new.txt");

    for (const outcome of [
      await call(toolbox, "read_file", { path: path.join(stateDir, "x.json") }),
      await call(toolbox, "write_file", { path: ".ravenclaws/x.json", content: "{}" }),
      await call(toolbox, "list_dir", { path: stateDir }),
    ]) {
      expect(outcome.status).toBe("refused");
      expect(outcome.content).toContain("state directory");
    }
    expect(await fs.readdir(stateDir)).toEqual([]);

    const config = await call(toolbox, "write_file", { path: protectedFile, content: "" });
    expect(config.status).toBe("refused");
    expect(config.content).toContain("sets the agent's own tool policy");
    expect((await call(toolbox, "read_file", { path: protectedFile })).status).toBe("ok");
    expect(await fs.readFile(protectedFile, "utf8")).toContain("mode = 'full'");
  });

  it("full still applies the built-in shell deny list and the rules", async () => {
    const toolbox = box({ policy: { mode: "full", deny: ["write(/etc/**)"] } });
    expect((await call(toolbox, "shell_exec", { command: "rm -rf /" })).status).toBe("refused");
    const etc = await call(toolbox, "write_file", { path: "/etc/ravenclaws-test", content: "x" });
    expect(etc.status).toBe("refused");
    expect(etc.content).toContain('deny rule "write(/etc/**)"');
  });
});

describe("rules through the toolbox", () => {
  it("a deny rule refuses with a message naming the rule, for each kind", async () => {
    const toolbox = box({
      policy: {
        deny: ["write(src/**)", "read(**/*.env)", "edit(README.md)", "shell(git push*)"],
      },
    });
    const cases: [string, unknown, string][] = [
      ["write_file", { path: "src/new.ts", content: "x" }, "write(src/**)"],
      ["read_file", { path: ".env" }, "read(**/*.env)"],
      ["read_file", { path: "config/.env" }, "read(**/*.env)"],
      ["edit_file", { path: "README.md", oldText: "Readme", newText: "X" }, "edit(README.md)"],
      ["shell_exec", { command: "git status; git push --force" }, "shell(git push*)"],
    ];
    for (const [tool, args, rule] of cases) {
      const outcome = await call(toolbox, tool, args);
      expect(outcome.status, tool).toBe("refused");
      expect(outcome.content, tool).toMatch(
        new RegExp(
          `^Refused by the tool policy: the deny rule "${rule.replace(/[()*]/g, "\\$&")}" matches \\(${tool} would `,
        ),
      );
    }
    expect(existsSync(path.join(workdir, "src", "new.ts"))).toBe(false);
    expect((await call(toolbox, "write_file", { path: "notes.md", content: "ok" })).status).toBe(
      "ok",
    );
  });

  it("a path rule also matches the resolved target of a symlink", async () => {
    await fs.symlink(".env", path.join(workdir, "innocent.txt"));
    const toolbox = box({ policy: { deny: ["read(**/*.env)"] } });
    const outcome = await call(toolbox, "read_file", { path: "innocent.txt" });
    expect(outcome.status).toBe("refused");
    expect(outcome.content).not.toContain("SECRET");
  });

  it("ask: the operator's yes runs the call, no refuses it, with the question naming both", async () => {
    const questions: string[] = [];
    let answer = true;
    const toolbox = box({
      policy: { ask: ["write(src/**)"] },
      ask: async (question) => {
        questions.push(question);
        return answer;
      },
    });
    expect((await call(toolbox, "write_file", { path: "src/yes.ts", content: "y" })).status).toBe(
      "ok",
    );
    answer = false;
    const no = await call(toolbox, "write_file", { path: "src/no.ts", content: "n" });
    expect(no.status).toBe("refused");
    expect(no.content).toBe(
      'Refused by the operator: write_file would write src/no.ts; the ask rule "write(src/**)" was answered no. Do not retry it.',
    );
    expect(questions).toEqual([
      'write_file wants to write src/yes.ts (rule ask "write(src/**)"). Allow?',
      'write_file wants to write src/no.ts (rule ask "write(src/**)"). Allow?',
    ]);
    expect(existsSync(path.join(workdir, "src", "yes.ts"))).toBe(true);
    expect(existsSync(path.join(workdir, "src", "no.ts"))).toBe(false);
    // Calls no ask rule matches are not asked about.
    expect((await call(toolbox, "write_file", { path: "other.md", content: "o" })).status).toBe(
      "ok",
    );
    expect(questions).toHaveLength(2);
  });

  it("ask without an interactive terminal is a refusal", async () => {
    const toolbox = box({ policy: { ask: ["shell"] } });
    const outcome = await call(toolbox, "shell_exec", { command: "touch asked" });
    expect(outcome.status).toBe("refused");
    expect(outcome.content).toBe(
      'Refused: the ask rule "shell" needs the operator\'s approval (shell_exec would run the shell command: touch asked), and there is no interactive terminal to ask. Do not retry it.',
    );
    expect(existsSync(path.join(workdir, "asked"))).toBe(false);
  });

  it("asks one question at a time when calls run in parallel, and a failing prompter is a no", async () => {
    let open = 0;
    let maxOpen = 0;
    const toolbox = box({
      policy: { ask: ["write"] },
      ask: async (question) => {
        open += 1;
        maxOpen = Math.max(maxOpen, open);
        await new Promise((r) => setTimeout(r, 20));
        open -= 1;
        if (question.includes("boom")) throw new Error("terminal went away");
        return true;
      },
    });
    const outcomes = await Promise.all(
      ["a", "b", "boom", "c"].map((f) =>
        call(toolbox, "write_file", { path: `${f}.txt`, content: f }),
      ),
    );
    expect(maxOpen).toBe(1);
    expect(outcomes.map((o) => o.status)).toEqual(["ok", "ok", "refused", "ok"]);
  });

  it("deny beats ask: a denied call is never asked about", async () => {
    const questions: string[] = [];
    const toolbox = box({
      policy: { deny: ["shell(rm *)"], ask: ["shell"] },
      ask: async (q) => {
        questions.push(q);
        return true;
      },
    });
    expect((await call(toolbox, "shell_exec", { command: "ls && rm notes" })).status).toBe(
      "refused",
    );
    expect(questions).toEqual([]);
  });

  it("the built-in deny list comes before any question", async () => {
    const questions: string[] = [];
    const toolbox = box({
      policy: { ask: ["shell"], allow: ["shell"] },
      ask: async (q) => {
        questions.push(q);
        return true;
      },
    });
    const outcome = await call(toolbox, "shell_exec", { command: "mkfs.ext4 /dev/sdz" });
    expect(outcome.content).toContain('built-in deny pattern "mkfs');
    expect(questions).toEqual([]);
  });
});
