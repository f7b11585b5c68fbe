/**
 * `ravenclaws completion [bash|zsh]`: prints yargs' shell completion script.
 * The script asks `ravenclaws --get-yargs-completions …` for candidates, so
 * commands and options complete as the parser knows them.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { RunEnvironment } from "./run.js";

/** Options of `completion`. */
export interface CompletionArgs {
  shell?: "bash" | "zsh";
}

/** `completion`'s yargs module, bound to the process it runs in. */
export function completionCommand(environment: () => RunEnvironment) {
  return {
    command: "completion [shell]",
    describe: "Print a shell completion script (bash or zsh)",
    builder: (yargs: Argv) =>
      yargs
        .positional("shell", {
          type: "string",
          choices: ["bash", "zsh"] as const,
          describe: "The shell",
          defaultDescription: "zsh when $SHELL is zsh, else bash",
        })
        .example("$0 completion >> ~/.bashrc", "bash: install (then open a new shell)")
        .example("$0 completion zsh > ~/.zfunc/_ravenclaws", "zsh: install into your fpath"),
    handler: async (argv: ArgumentsCamelCase<CompletionArgs>) => {
      const io = environment();
      const shell = argv.shell ?? (/zsh/.test(io.env.SHELL ?? "") ? "zsh" : "bash");
      // yargs picks the template from $SHELL when an instance is created.
      const saved = { SHELL: process.env.SHELL, ZSH_NAME: process.env.ZSH_NAME };
      process.env.SHELL = `/bin/${shell}`;
      delete process.env.ZSH_NAME;
      try {
        const { default: yargs } = await import("yargs");
        yargs([]).scriptName("ravenclaws").showCompletionScript();
      } finally {
        for (const [key, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
      }
    },
  };
}
