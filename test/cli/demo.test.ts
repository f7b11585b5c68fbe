/**
 * `ravenclaws demo` as a child process: no API key, no endpoint of the
 * user's, a scripted model on 127.0.0.1; it completes and says where its files are.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "../support/cli.js";

describe("ravenclaws demo", () => {
  it("runs three ticks offline against the scripted model, labelled as not AI, and prints where its files are", async () => {
    const started = Date.now();
    const result = await runCli(["demo"], {
      env: cleanEnv({
        // Neither a key nor the user's endpoint may matter: this one would fail at once if used.
        OPENAI_API_KEY: undefined,
        OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
        RAVENCLAWS_STATE_DIR: "/nonexistent/state",
      }),
    });
    const seconds = (Date.now() - started) / 1000;
    expect(result.code, result.stderr).toBe(0);
    expect(seconds).toBeLessThan(25);
    const out = result.stdout;
    expect(out).toContain("SCRIPTED DEMONSTRATION, NOT AI");
    expect(out).toContain("Heartbeat completed: goal met at tick 3.");

    const workdir = /^ {2}workspace: {3}(\S+)/m.exec(out)?.[1];
    expect(workdir).toBeDefined();
    const root = path.dirname(workdir as string);
    try {
      const stateFile = path.join(workdir as string, ".ravenclaws", "heartbeat-demo.json");
      expect(out).toContain(`state file:  ${stateFile}`);
      expect(out).toContain(`journal:     ${stateFile}l`);
      const state = JSON.parse(await fs.readFile(stateFile, "utf8"));
      expect(state).toMatchObject({
        status: "completed",
        reason: "goal-met",
        tick: 3,
        completed: true,
      });
      expect(await fs.readFile(path.join(workdir as string, "NOTES.md"), "utf8")).toBe(
        "# Demo notes\n\n- Tick 1: started these notes.\n- Tick 2: read them back and added this entry.\n",
      );

      // Every phase shows in the run's own output.
      for (const phase of ["assessing", "planning", "executing"]) {
        expect(result.stderr).toContain(`[tick 1] ${phase}`);
      }
      expect(result.stderr).toContain("write_file ok");
      expect(result.stderr).toContain("next tick at");
      expect(result.stderr).toContain("model scripted-demo (not AI)");

      // status and logs output for it.
      expect(out).toContain(`$ ravenclaws status --workdir ${workdir}`);
      expect(out).toMatch(/^demo\s+completed \(goal met\)\s+3\/3\s/m);
      expect(out).toContain(`$ ravenclaws logs demo --workdir ${workdir}`);
      expect(out.match(/^#\d\s/gm)).toEqual(["#1 ", "#2 ", "#3 "]);
      expect(out).toMatch(/^end\s.*completed \(goal-met\) at tick 3$/m);
      expect(out).toContain(`rm -rf ${root}`);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
