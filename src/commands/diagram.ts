/**
 * `ravenclaws diagram`: the statechart as Mermaid `stateDiagram-v2` (for docs)
 * or as the machine definitions in JSON (for Stately tools), generated from
 * the machines themselves.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import {
  DIAGRAM_END,
  DIAGRAM_START,
  embedDiagram,
  toDefinitionJson,
  toMermaid,
} from "../services/diagram.js";
import type { RunEnvironment } from "./run.js";

/** Output formats of `diagram`. */
export const DIAGRAM_FORMATS = ["mermaid", "json"] as const;

/** Options of `diagram`. */
export interface DiagramArgs {
  format?: (typeof DIAGRAM_FORMATS)[number];
  embed?: string;
}

/**
 * Prints the diagram, or with `--embed FILE` replaces the Mermaid block
 * between `<!-- diagram:start -->` and `<!-- diagram:end -->` in FILE.
 */
export async function diagramHandler(
  argv: DiagramArgs,
  io: Pick<RunEnvironment, "cwd" | "stdout" | "stderr">,
): Promise<void> {
  const format = argv.format ?? "mermaid";
  const { heartbeatMachine } = await import("../runtime.js");
  if (argv.embed === undefined) {
    io.stdout.write(
      format === "json" ? toDefinitionJson(heartbeatMachine) : toMermaid(heartbeatMachine),
    );
    return;
  }
  if (format !== "mermaid") {
    throw new UsageError(
      "--embed writes the Mermaid diagram; it cannot be used with --format json.",
      {
        option: "--embed",
      },
    );
  }
  const file = path.resolve(io.cwd, argv.embed);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    throw new UsageError(`Cannot read ${file}: ${(error as Error).message}`, { option: "--embed" });
  }
  const updated = embedDiagram(text, toMermaid(heartbeatMachine));
  if (updated === null) {
    throw new UsageError(`${file} has no ${DIAGRAM_START} … ${DIAGRAM_END} markers.`, {
      option: "--embed",
      hint: `Add the two markers on their own lines where the diagram goes.`,
    });
  }
  if (updated !== text) await fs.writeFile(file, updated);
  io.stderr.write(
    `ravenclaws: ${updated === text ? "the diagram in" : "updated the diagram in"} ${file}${updated === text ? " is current" : ""}.\n`,
  );
}

/** `diagram`'s yargs module. */
export function diagramCommand(
  environment: () => Pick<RunEnvironment, "cwd" | "stdout" | "stderr">,
) {
  return {
    command: "diagram",
    describe: "Print the statechart (Mermaid stateDiagram-v2, or the machine definitions as JSON)",
    builder: (yargs: Argv) =>
      yargs
        .option("format", {
          choices: DIAGRAM_FORMATS,
          default: "mermaid" as const,
          describe: "Output format",
        })
        .option("embed", {
          type: "string",
          requiresArg: true,
          describe: `Replace the diagram between ${DIAGRAM_START} and ${DIAGRAM_END} in this Markdown file instead of printing it`,
        })
        .example("$0 diagram > statechart.mmd", "the Mermaid diagram")
        .example("$0 diagram --format json", "the definitions, for Stately tools")
        .example("$0 diagram --embed README.md", "refresh the diagram in the README"),
    handler: (argv: ArgumentsCamelCase<DiagramArgs>) => diagramHandler(argv, environment()),
  };
}
