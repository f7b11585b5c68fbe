/**
 * `ravenclaws demo`: a short heartbeat in a fresh temporary workspace against
 * the built-in scripted model (src/services/demoModel.ts), so a newcomer sees
 * every phase, the state file, the journal and `status`/`logs` in seconds,
 * with no API key and no network. It is labelled plainly as not AI.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv } from "yargs";
import { type RunEnvironment, runHeartbeatCommand } from "./run.js";

/** Options of `demo`. */
export interface DemoArgs {
  tickInterval?: number;
}

/** The demo heartbeat's id. */
export const DEMO_ID = "demo";

/** The environment of the demo run: the caller's, minus every OpenAI and ravenclaws variable, plus the demo's. */
export function demoEnv(env: NodeJS.ProcessEnv, extra: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith("OPENAI_") && !key.startsWith("RAVENCLAWS_")) out[key] = value;
  }
  return { ...out, ...extra };
}

/** Runs the demo; resolves once it has printed where its files are. */
export async function runDemo(argv: DemoArgs, io: RunEnvironment): Promise<void> {
  const [
    { DEMO_GOAL, DEMO_MODEL, startDemoModel },
    { printStatus },
    { journalPrinter, readLines },
  ] = await Promise.all([
    import("../services/demoModel.js"),
    import("./status.js"),
    import("./logs.js"),
  ]);
  const out = io.stdout;
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "ravenclaws-demo-"));
  const workdir = path.join(root, "workspace");
  await fs.mkdir(workdir);
  const stateDir = path.join(workdir, ".ravenclaws");
  out.write(
    [
      "ravenclaws demo: a SCRIPTED DEMONSTRATION, NOT AI.",
      "A built-in fake model answers with canned replies, so you can watch a heartbeat's phases",
      "(assess, plan, execute with tools, persist, sleep) without an API key or network.",
      `Workspace: ${workdir}`,
      `Goal: ${DEMO_GOAL}`,
      "",
    ].join("\n"),
  );

  const model = await startDemoModel();
  try {
    await runHeartbeatCommand(
      {
        goal: DEMO_GOAL,
        id: DEMO_ID,
        tickInterval: String(argv.tickInterval ?? 1),
        maxTicks: "3",
        maxIterationsPerTick: "5",
        tools: true,
        model: DEMO_MODEL,
        workdir,
        json: false,
      },
      {
        ...io,
        cwd: workdir,
        env: demoEnv(io.env, {
          OPENAI_BASE_URL: model.baseURL,
          // A private, empty user config: the demo must not depend on (or use) the user's settings.
          RAVENCLAWS_CONFIG_DIR: path.join(root, "config"),
        }),
      },
    );
  } finally {
    await model.close();
  }

  const files = (await fs.readdir(workdir)).filter((f) => f !== ".ravenclaws").sort();
  out.write(
    [
      "",
      "Done: that was a scripted demonstration, not AI. Its files are kept for you to look at:",
      `  workspace:   ${workdir}  (${files.join(", ") || "empty"})`,
      `  state file:  ${path.join(stateDir, `heartbeat-${DEMO_ID}.json`)}  (try: jq .progress on it)`,
      `  journal:     ${path.join(stateDir, `heartbeat-${DEMO_ID}.jsonl`)}`,
      "",
      `$ ravenclaws status --workdir ${workdir}`,
      "",
    ].join("\n"),
  );
  await printStatus(stateDir, out);
  out.write(`\n$ ravenclaws logs ${DEMO_ID} --workdir ${workdir}\n`);
  const width = (out as { columns?: number }).columns || 160;
  const { onLine } = await journalPrinter(out, { width });
  await readLines(path.join(stateDir, `heartbeat-${DEMO_ID}.jsonl`), 0, onLine);
  out.write(
    [
      "",
      `Remove it all with: rm -rf ${root}`,
      'Run a real heartbeat with: ravenclaws run --goal "…" (set OPENAI_API_KEY, or --base-url for a local server).',
      "",
    ].join("\n"),
  );
}

/** `demo`'s yargs module, bound to the process it runs in. */
export function demoCommand(environment: () => RunEnvironment) {
  return {
    command: "demo",
    describe:
      "Watch a 3-tick heartbeat against a built-in scripted model (not AI; no key, no network)",
    builder: (yargs: Argv) =>
      yargs
        .option("tick-interval", {
          type: "number",
          describe: "Seconds between the demo's ticks",
          default: 1,
          requiresArg: true,
        })
        .example("$0 demo", "see every phase, the state file and the journal in a few seconds"),
    handler: (argv: ArgumentsCamelCase<DemoArgs>) => runDemo(argv, environment()),
  };
}
