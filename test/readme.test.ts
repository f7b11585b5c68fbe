/**
 * The README embeds the statechart diagram; this fails when the machines
 * changed and the embedded copy was not regenerated.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { heartbeatMachine } from "../src/machines/heartbeat.machine.js";
import { DIAGRAM_END, DIAGRAM_START, embeddedDiagram, toMermaid } from "../src/services/diagram.js";
import {
  embedded,
  OPTIONS_END,
  OPTIONS_START,
  optionsMarkdown,
  SETTINGS_END,
  SETTINGS_START,
  settingsMarkdown,
} from "../src/services/settingsDoc.js";
import { SETTINGS } from "../src/settings.js";

const README = fileURLToPath(new URL("../README.md", import.meta.url));

describe("README", () => {
  it("embeds the current statechart diagram", async () => {
    const text = await readFile(README, "utf8");
    const embedded = embeddedDiagram(text);
    expect(
      embedded,
      `README.md needs a \`\`\`mermaid block between ${DIAGRAM_START} and ${DIAGRAM_END}`,
    ).not.toBeNull();
    expect(
      embedded,
      "The diagram in README.md is stale: run `npm run docs:diagram` (or `node dist/cli.js diagram --embed README.md` after a build)",
    ).toBe(toMermaid(heartbeatMachine));
  });

  it("holds the run options and configuration tables generated from the settings table", async () => {
    const text = await readFile(README, "utf8");
    const options = embedded(text, OPTIONS_START, OPTIONS_END);
    expect(
      options,
      `README.md needs the run options between ${OPTIONS_START} and ${OPTIONS_END}`,
    ).not.toBeNull();
    expect(options, "The run options in README.md are stale: run `npm run docs:settings`").toBe(
      optionsMarkdown(),
    );
    const config = embedded(text, SETTINGS_START, SETTINGS_END);
    expect(
      config,
      `README.md needs the configuration table between ${SETTINGS_START} and ${SETTINGS_END}`,
    ).not.toBeNull();
    expect(
      config,
      "The configuration table in README.md is stale: run `npm run docs:settings`",
    ).toBe(settingsMarkdown());
    // Every setting, its flag, its variables and its toml key appear in it.
    for (const spec of Object.values(SETTINGS) as {
      flag?: string;
      env?: readonly string[];
      toml?: string;
      commands?: readonly string[];
    }[]) {
      // A setting of other commands (the database's) is in the configuration table, not run's options.
      const runOption = !spec.commands || spec.commands.includes("run");
      if (spec.flag) expect(runOption ? options : config).toContain(`\`--${spec.flag}\``);
      for (const name of spec.env ?? []) expect(config).toContain(`\`${name}\``);
      if (spec.toml) expect(config).toContain(spec.toml.split(".")[1]);
    }
  });
});
