/**
 * `ravenclaws inspect replay FILE`: serves an inspection log captured with
 * `run --inspect-log FILE` to the Stately inspector, so a past run can be
 * looked at later.
 */
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { UsageError } from "../errors.js";
import type { RunEnvironment } from "./run.js";

/** Options of `inspect replay`. */
export interface ReplayArgs {
  file: string;
  port?: number;
  open?: boolean;
  once?: boolean;
}

/**
 * Starts the inspector server with the log's events, prints the URL (stdout)
 * and waits for SIGINT/SIGTERM, or with `--once` until a first viewer has
 * received every event.
 */
export async function replayHandler(argv: ReplayArgs, io: RunEnvironment): Promise<void> {
  const { DEFAULT_INSPECT_PORT, openInBrowser, readInspectionLog, startInspectorServer } =
    await import("../services/inspection/index.js");
  const port = argv.port ?? DEFAULT_INSPECT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError(`--port must be a port number (0-65535), not ${argv.port}.`, {
      option: "--port",
      hint: "Use 0 for any free port.",
    });
  }
  const file = path.resolve(io.cwd, argv.file);
  const messages = await readInspectionLog(file);
  const server = await startInspectorServer({
    port,
    portOption: "--port",
    retain: { actors: Number.POSITIVE_INFINITY, events: Number.POSITIVE_INFINITY },
  });
  try {
    for (const message of messages) server.publish(message);
    io.stdout.write(`${server.url}\n`);
    io.stderr.write(
      `ravenclaws: serving ${messages.length} inspection events from ${file} at ${server.url}\n` +
        `  Open it in a browser${argv.open ? "" : " (or pass --open)"}; ${argv.once ? "exits once a viewer has them all" : "Ctrl-C stops"}.\n`,
    );
    if (argv.open) void openInBrowser(server.url);
    await new Promise<void>((resolve) => {
      const unsubscribe = io.onSignal(() => {
        unsubscribe();
        resolve();
      });
      if (argv.once) {
        server.served().then(() => {
          unsubscribe();
          resolve();
        });
      }
    });
  } finally {
    await server.close();
  }
}

/** `inspect`'s yargs module, bound to the process it runs in. */
export function inspectCommand(environment: () => RunEnvironment) {
  return {
    command: "inspect",
    describe: "Look at a heartbeat in the Stately inspector",
    builder: (yargs: Argv) =>
      yargs
        .command({
          command: "replay <file>",
          describe: "Serve an inspection log (run --inspect-log FILE) to the Stately inspector",
          builder: (y: Argv) =>
            y
              .positional("file", {
                type: "string",
                describe: "The inspection log",
                demandOption: true,
              })
              .option("port", {
                type: "number",
                describe: "Port of the inspector server on 127.0.0.1 (0 = any free port)",
                defaultDescription: "8080",
                requiresArg: true,
              })
              .option("open", { type: "boolean", describe: "Open the inspector in the browser" })
              .option("once", {
                type: "boolean",
                describe: "Exit once the first viewer has received every event",
              })
              .example("$0 inspect replay run.jsonl --open", "look at a captured run"),
          handler: (argv: ArgumentsCamelCase<ReplayArgs>) => replayHandler(argv, environment()),
        })
        .demandCommand(1, "Which inspect command? Try `ravenclaws inspect replay FILE`."),
    handler: () => {},
  };
}
