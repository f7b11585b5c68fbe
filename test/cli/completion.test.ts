/**
 * Shell completion, `--version`, and `--help` with examples on every command.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "../support/cli.js";

const pkg = JSON.parse(
  readFileSync(
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../package.json"),
    "utf8",
  ),
);

describe("ravenclaws completion, --version and --help", () => {
  it("prints a bash completion script, or zsh when asked or when $SHELL is zsh", async () => {
    const bash = await runCli(["completion"], { env: cleanEnv({ SHELL: "/bin/bash" }) });
    expect(bash.code, bash.stderr).toBe(0);
    expect(bash.stdout).toContain("###-begin-ravenclaws-completions-###");
    expect(bash.stdout).toContain("ravenclaws --get-yargs-completions");
    expect(bash.stdout).toContain(
      "complete -o bashdefault -o default -F _ravenclaws_yargs_completions ravenclaws",
    );

    const zsh = await runCli(["completion", "zsh"], { env: cleanEnv({ SHELL: "/bin/bash" }) });
    expect(zsh.code).toBe(0);
    expect(zsh.stdout.startsWith("#compdef ravenclaws\n")).toBe(true);
    const fromShell = await runCli(["completion"], { env: cleanEnv({ SHELL: "/usr/bin/zsh" }) });
    expect(fromShell.stdout).toBe(zsh.stdout);

    const fish = await runCli(["completion", "fish"]);
    expect(fish.code).toBe(2);
  });

  it("answers the script's completion requests with commands and options", async () => {
    const commands = await runCli(["--get-yargs-completions", "ravenclaws", ""]);
    expect(commands.code).toBe(0);
    const names = commands.stdout.trim().split("\n");
    for (const name of [
      "run",
      "status",
      "show",
      "logs",
      "stop",
      "wake",
      "config",
      "demo",
      "completion",
    ]) {
      expect(names).toContain(name);
    }
    const options = await runCli(["--get-yargs-completions", "ravenclaws", "logs", "--"]);
    expect(options.stdout.split("\n")).toEqual(
      expect.arrayContaining(["--follow", "--json", "--workdir"]),
    );
  });

  it("--version prints the package version", async () => {
    const result = await runCli(["--version"]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });

  it("every command's --help shows examples (for a command group, each of its commands)", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    const subcommands = (help: string, words: string[]) =>
      [
        ...help.matchAll(
          new RegExp(`^ {2}ravenclaws ${words.map((w) => `${w} `).join("")}(\\w\\S*)`, "gm"),
        ),
      ].map((m) => [...words, m[1] as string]);
    const commands = subcommands(top.stdout, []);
    expect(commands.map((c) => c[0])).toEqual(
      expect.arrayContaining([
        "run",
        "status",
        "show",
        "logs",
        "stop",
        "wake",
        "config",
        "demo",
        "completion",
      ]),
    );
    const leaves: string[][] = [];
    let pending = commands;
    while (pending.length > 0) {
      const helps = await Promise.all(
        pending.map(async (words) => ({ words, result: await runCli([...words, "--help"]) })),
      );
      pending = [];
      for (const { words, result } of helps) {
        expect(result.code, words.join(" ")).toBe(0);
        const children = result.stdout.includes("\nCommands:\n")
          ? subcommands(result.stdout, words)
          : [];
        if (children.length > 0) pending.push(...children);
        else {
          leaves.push(words);
          expect(result.stdout, `${words.join(" ")} --help`).toMatch(
            /\nExamples:\n {2}ravenclaws /,
          );
        }
      }
    }
    expect(leaves).toEqual(
      expect.arrayContaining([["config", "set"], ["config", "path"], ["status"]]),
    );
  }, 60_000);
});
