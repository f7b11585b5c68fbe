import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createTerminalPrompter } from "../../../src/services/tools/prompt.js";

function streams() {
  const input = new PassThrough();
  const output = new PassThrough();
  let written = "";
  output.on("data", (d: Buffer) => {
    written += d.toString();
  });
  return { input, output, written: () => written };
}

describe("createTerminalPrompter", () => {
  it("writes the question and takes y/yes (any case) as yes, anything else as no", async () => {
    for (const [answer, expected] of [
      ["y", true],
      ["YES", true],
      [" yes ", true],
      ["n", false],
      ["", false],
      ["sure", false],
    ] as const) {
      const s = streams();
      const ask = createTerminalPrompter({ input: s.input, output: s.output });
      const pending = ask("shell_exec wants to run: npm publish. Allow?");
      s.input.write(`${answer}\n`);
      expect(await pending, answer).toBe(expected);
      expect(s.written()).toContain(
        "ravenclaws: shell_exec wants to run: npm publish. Allow? [y/N] ",
      );
    }
  });

  it("answers no when the input ends or the call is aborted", async () => {
    const ended = streams();
    const pending = createTerminalPrompter({ input: ended.input, output: ended.output })("Allow?");
    ended.input.end();
    expect(await pending).toBe(false);

    const aborted = streams();
    const controller = new AbortController();
    const waiting = createTerminalPrompter({ input: aborted.input, output: aborted.output })(
      "Allow?",
      controller.signal,
    );
    controller.abort();
    expect(await waiting).toBe(false);

    const already = streams();
    expect(
      await createTerminalPrompter({ input: already.input, output: already.output })(
        "Allow?",
        AbortSignal.abort(),
      ),
    ).toBe(false);
    expect(already.written()).toBe("");
  });
});
