/**
 * `ravenclaws deny <id> [--call <callId>] [--reason "…"]`: refuses a tool
 * call (or all pending calls of a heartbeat) that an `ask` rule holds; the
 * model gets the refusal, with the reason, as the call's result.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { type DecideArgs, decide, decideOptions } from "./approve.js";
import type { RunEnvironment } from "./run.js";

/** `deny`'s yargs module, bound to the process it runs in. */
export function denyCommand(environment: () => RunEnvironment) {
  return {
    command: "deny <id>",
    describe: "Deny tool calls waiting for approval; the model is told (with --reason)",
    builder: (yargs: Argv) =>
      decideOptions(yargs)
        .option("reason", { type: "string", describe: "Why; the model reads it" })
        .example('$0 deny my-heartbeat --reason "not now"', "refuse every pending call"),
    handler: (argv: ArgumentsCamelCase<DecideArgs>) => decide(argv, environment(), "deny"),
  };
}
