/** The host's state values as the API's dotted paths. */
import { describe, expect, it } from "vitest";
import { statePath } from "../../src/serve/views.js";

describe("statePath", () => {
  it("turns plain names, JSON strings and nested values into dotted paths", () => {
    expect(statePath("sleeping")).toBe("sleeping");
    expect(statePath('"persisting"')).toBe("persisting");
    expect(statePath('{"executing":"calling"}')).toBe("executing.calling");
    expect(statePath({ executing: { loop: "acting" } })).toBe("executing.loop.acting");
    expect(statePath("{not json")).toBe("{not json");
  });
});
