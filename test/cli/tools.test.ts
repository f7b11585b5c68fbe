/**
 * The tools end to end: the built CLI, the fake OpenAI server scripting tool
 * calls, real files and real child processes.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { StateFileSchema } from "../../src/schemas/stateFile.js";
import { chromiumPath } from "../support/chromium.js";
import { cleanEnv, runCli } from "../support/cli.js";
import { message, type RecordedRequest, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-test-TOOLS-0123456789abcdef";
const GOAL = "Tidy the workspace";

const h = useCliHarness({
  prefix: "ravenclaws-tools-",
  realpath: true,
  subdir: "work",
  model: "test-model",
  flags: ["--goal", GOAL],
});
const { runArgs: args } = h;
const outside = () => path.join(h.root, "outside");
beforeEach(async () => {
  await fs.mkdir(outside());
});
const env = () => cleanEnv({ OPENAI_API_KEY: API_KEY });

/** The tool messages the model was sent back, by call id. */
function toolReplies(requests: RecordedRequest[]): Map<string, string> {
  const replies = new Map<string, string>();
  for (const req of requests) {
    for (const m of req.body?.messages ?? []) {
      if (m.role === "tool") replies.set(m.tool_call_id, String(m.content));
    }
  }
  return replies;
}

function offeredTools(req: RecordedRequest): string[] {
  return (req.body?.tools ?? []).map((t: { function: { name: string } }) => t.function.name);
}

const executeRequests = () => h.server.chatRequests().filter((r) => Array.isArray(r.body?.tools));

describe("tools through the CLI", () => {
  it("refuses writes to ../x, an absolute path outside and the state file, and keeps ticking", async () => {
    const stateFile = h.stateFile("esc");
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                { id: "up", name: "write_file", arguments: { path: "../x", content: "pwned" } },
                {
                  id: "abs",
                  name: "write_file",
                  arguments: { path: path.join(outside(), "abs.txt"), content: "pwned" },
                },
                {
                  id: "state",
                  name: "write_file",
                  arguments: { path: ".ravenclaws/heartbeat-esc.json", content: "{}" },
                },
                {
                  id: "config",
                  name: "write_file",
                  arguments: { path: "ravenclaws.toml", content: "[tools]\nmode = 'full'\n" },
                },
                {
                  id: "ok",
                  name: "write_file",
                  arguments: { path: "inside.txt", content: "fine" },
                },
              ])
            : message("Done for this tick."),
      }),
    );
    await fs.writeFile(
      path.join(h.workdir, "ravenclaws.toml"),
      "[tools]\nmode = 'workspace-write'\n",
    );
    const result = await runCli(args("--id", "esc", "--max-ticks", "2"), {
      cwd: h.workdir,
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);

    const replies = toolReplies(h.server.chatRequests());
    expect(replies.get("up")).toContain('Refused: "../x" resolves outside the workspace');
    expect(replies.get("abs")).toContain("resolves outside the workspace");
    expect(replies.get("state")).toContain("the agent's private state directory");
    expect(replies.get("config")).toContain("sets the agent's own tool policy");
    expect(replies.get("ok")).toContain("Wrote 4 bytes to inside.txt");

    expect(await fs.readdir(h.root)).toEqual(["outside", "work"]);
    expect(await fs.readdir(outside())).toEqual([]);
    expect(await fs.readFile(path.join(h.workdir, "ravenclaws.toml"), "utf8")).toContain(
      "workspace-write",
    );
    expect(await fs.readFile(path.join(h.workdir, "inside.txt"), "utf8")).toBe("fine");

    const state = StateFileSchema.parse(JSON.parse(await fs.readFile(stateFile, "utf8")));
    expect(state).toMatchObject({ tick: 2, status: "completed", reason: "max-ticks" });

    const journal = (await fs.readFile(h.journalFile("esc"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const tools = journal.filter((e) => e.type === "tool" && e.status !== undefined);
    expect(tools.map((t) => [t.callId, t.status])).toEqual(
      expect.arrayContaining([
        ["up", "refused"],
        ["abs", "refused"],
        ["state", "refused"],
        ["config", "refused"],
        ["ok", "ok"],
      ]),
    );
  });

  it("refuses to create a ravenclaws.toml that the next run would read, even when none exists yet", async () => {
    const cwd = path.join(h.root, "cwd");
    await fs.mkdir(cwd);
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "toml",
                  name: "write_file",
                  arguments: { path: "ravenclaws.toml", content: "[tools]\nmode = 'full'\n" },
                },
              ])
            : message("Done for this tick."),
      }),
    );
    const result = await runCli(args("--id", "loosen", "--max-ticks", "1"), { cwd, env: env() });
    expect(result.code, result.stderr).toBe(0);
    const replies = toolReplies(h.server.chatRequests());
    expect(replies.get("toml")).toContain("sets the agent's own tool policy");
    await expect(fs.access(path.join(h.workdir, "ravenclaws.toml"))).rejects.toThrow();
  });

  it("shell_exec `env; pwd` shows no API key and prints the workdir", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([{ id: "sh", name: "shell_exec", arguments: { command: "env; pwd" } }])
            : message("Done."),
      }),
    );
    const result = await runCli(args("--id", "sh", "--max-ticks", "1"), {
      env: cleanEnv({
        OPENAI_API_KEY: API_KEY,
        GITHUB_TOKEN: "ghp_not_for_tools",
        VISIBLE_SETTING: "yes",
      }),
    });
    expect(result.code, result.stderr).toBe(0);
    const reply = toolReplies(h.server.chatRequests()).get("sh") ?? "";
    expect(reply).toContain("Exit code 0");
    expect(reply).toContain(`\n${h.workdir}\n`);
    expect(reply).toContain("VISIBLE_SETTING=yes");
    expect(reply).not.toContain(API_KEY);
    expect(reply).not.toMatch(/^(OPENAI_API_KEY|GITHUB_TOKEN)=/m);
    const stored = await fs.readFile(h.journalFile("sh"), "utf8");
    expect(stored).not.toContain(API_KEY);
  });

  const offered = async (id: string, ...extra: string[]) => {
    h.server.requests.length = 0;
    const result = await runCli(args("--id", id, "--max-ticks", "1", ...extra), { env: env() });
    expect(result.code, result.stderr).toBe(0);
    const [first] = executeRequests();
    expect(first).toBeDefined();
    return offeredTools(first as RecordedRequest);
  };

  it("offers exactly the five tools, and web_fetch (and the browser) with --allow-web", async () => {
    expect(await offered("five")).toEqual([
      "shell_exec",
      "read_file",
      "write_file",
      "edit_file",
      "list_dir",
    ]);
    // The browser comes with the web when a Chromium is found (always in CI).
    expect(await offered("six", "--allow-web")).toEqual([
      "shell_exec",
      "read_file",
      "write_file",
      "edit_file",
      "list_dir",
      "web_fetch",
      ...(chromiumPath ? ["browser"] : []),
    ]);
  });

  it("offers only what can succeed in read-only mode (web_fetch with --allowed-hosts)", async () => {
    expect(
      await offered("ro", "--tool-mode", "read-only", "--allowed-hosts", "docs.example.com"),
    ).toEqual(["read_file", "list_dir", "web_fetch", ...(chromiumPath ? ["browser"] : [])]);
  });

  it("applies --deny rules and [tools] from ravenclaws.toml", async () => {
    await fs.writeFile(
      path.join(h.workdir, "ravenclaws.toml"),
      '[tools]\ndeny = ["write(notes/**)"]\nask = ["shell(npm publish*)"]\n',
    );
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                { id: "w", name: "write_file", arguments: { path: "notes/a.md", content: "a" } },
                { id: "s", name: "shell_exec", arguments: { command: "touch flag; git push" } },
                { id: "p", name: "shell_exec", arguments: { command: "npm publish" } },
              ])
            : message("Done."),
      }),
    );
    const result = await runCli(
      args(
        "--id",
        "rules",
        "--max-ticks",
        "1",
        "--deny",
        "shell(git push*)",
        "--ask-timeout",
        "1s",
      ),
      {
        cwd: h.workdir,
        env: env(),
      },
    );
    expect(result.code, result.stderr).toBe(0);
    const replies = toolReplies(h.server.chatRequests());
    expect(replies.get("w")).toContain('the deny rule "write(notes/**)" matches');
    expect(replies.get("s")).toContain('the deny rule "shell(git push*)" matches');
    // Not a terminal: an ask rule waits for approve/deny; nobody answers within --ask-timeout,
    // and the fallback (deny) decides, journaled as a timeout.
    expect(replies.get("p")).toContain("nobody answered within 1 s (--ask-timeout)");
    const decision = (await h.journalOf("rules")).find((e) => e.type === "approval");
    expect(decision).toMatchObject({ callId: "p", decision: "deny", via: "timeout", by: null });
    await expect(fs.access(path.join(h.workdir, "flag"))).rejects.toThrow();
  });

  it("rejects a bad --tool-mode or rule with exit 2 naming the option", async () => {
    const mode = await runCli(args("--tool-mode", "yolo"), { env: env() });
    expect(mode.code).toBe(2);
    expect(mode.stderr).toContain(
      'option --tool-mode: must be one of "read-only", "workspace-write", "full"',
    );
    const rule = await runCli(args("--allow", "delete(*)"), { env: env() });
    expect(rule.code).toBe(2);
    expect(rule.stderr).toContain("option --allow: must be rules written KIND or KIND(PATTERN)");
    expect(h.server.chatRequests()).toHaveLength(0);
  });
});
