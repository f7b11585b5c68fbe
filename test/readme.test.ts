/**
 * The README embeds the statechart diagram; this fails when the machines
 * changed and the embedded copy was not regenerated.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { heartbeatMachine } from "../src/machines/heartbeat.machine.js";
import { DIAGRAM_END, DIAGRAM_START, embeddedDiagram, toMermaid } from "../src/services/diagram.js";

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
});
