/**
 * `npm run bench:scale` in small: the harness itself works end to end (an
 * embedded PostgreSQL, heartbeats created through the store, real `ravenclaws
 * worker` processes from dist/ against the stub model over HTTP), so it does
 * not rot between full runs. Timings are not asserted; counts are.
 */
import { describe, expect, it } from "vitest";
import { parseScaleArgs } from "../bench/scale.js";
import { startStubModelServer } from "../bench/stubModelServer.js";

describe("bench:scale helpers", () => {
  it("parses the smoke options", () => {
    const parsed = parseScaleArgs(["--heartbeats", "500", "--interval", "20", "--workers", "4,1"]);
    expect(parsed.config).toEqual({ heartbeats: 500, intervalSec: 20, workers: [4, 1] });
    expect(parsed.markdown).toBe(false);
    expect(() => parseScaleArgs(["--heartbeats", "0"])).toThrow(/--heartbeats must be/);
  });

  it("serves the stub model's idle answers in the Chat Completions format", async () => {
    const stub = await startStubModelServer();
    try {
      const response = await fetch(`${stub.baseURL}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "stub",
          messages: [{ role: "user", content: "Tick: 1" }],
          response_format: { type: "json_schema", json_schema: { name: "assessment" } },
        }),
      });
      const body = (await response.json()) as {
        choices: { message: { content: string } }[];
        usage: { total_tokens: number };
      };
      const assessment = JSON.parse(body.choices[0]?.message.content ?? "{}");
      expect(assessment).toMatchObject({ goalComplete: false, actionNeeded: false });
      expect(body.usage.total_tokens).toBeGreaterThan(0);
      expect(stub.counts()).toMatchObject({ assessment: 1, plan: 0, execute: 0, errors: 0 });
    } finally {
      await stub.close();
    }
  });
});
