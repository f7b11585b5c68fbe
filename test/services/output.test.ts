/**
 * surviveClosedOutput / outputClosed on real streams: a write error on a
 * watched stream is absorbed and marks it closed; other streams are untouched.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { outputClosed, surviveClosedOutput } from "../../src/services/output.js";

/** A stream whose every write fails like a pipe whose reader has gone. */
const brokenPipe = () =>
  new Writable({
    autoDestroy: false,
    write(_chunk, _encoding, callback) {
      callback(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
    },
  });

describe("surviveClosedOutput", () => {
  it("absorbs a write error and reports the stream closed; an unwatched stream still throws", async () => {
    const watched = brokenPipe();
    const other = brokenPipe();
    surviveClosedOutput([watched, watched]);
    expect(watched.listenerCount("error")).toBe(1);
    expect(outputClosed(watched)).toBe(false);
    watched.write("line\n");
    await new Promise((resolve) => setImmediate(resolve));
    expect(outputClosed(watched)).toBe(true);
    expect(outputClosed(other)).toBe(false);

    // Without the listener the same error is an unhandled 'error' event.
    const thrown = new Promise((resolve) => other.once("error", resolve));
    other.write("line\n");
    expect(await thrown).toMatchObject({ code: "EPIPE" });
  });
});
