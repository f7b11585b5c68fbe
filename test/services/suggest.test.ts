import { describe, expect, it } from "vitest";
import { didYouMean, editDistance, nearest } from "../../src/services/suggest.js";

describe("nearest", () => {
  const heartbeatKeys = ["goal", "tick_interval_secs", "max_ticks", "max_tokens", "workdir"];

  it("finds the likely typo: a missing letter, a swap, a wrong letter", () => {
    expect(nearest("max_tick", heartbeatKeys)).toBe("max_ticks");
    expect(nearest("modle", ["model", "base_url", "api_key"])).toBe("model");
    expect(nearest("hearbeat", ["heartbeat", "llm", "tools"])).toBe("heartbeat");
    expect(nearest("tick-intervall", ["tick-interval", "max-ticks"])).toBe("tick-interval");
  });

  it("treats - and _ and case alike", () => {
    expect(editDistance("Max-Ticks", "max_ticks")).toBe(0);
  });

  it("counts a swap of neighbours as one edit", () => {
    expect(editDistance("modle", "model")).toBe(1);
    expect(editDistance("abc", "abc")).toBe(0);
    expect(editDistance("", "abc")).toBe(3);
  });

  it("suggests nothing for a name far from every candidate", () => {
    expect(nearest("colour", heartbeatKeys)).toBeUndefined();
    expect(nearest("x", [])).toBeUndefined();
    expect(didYouMean("colour", heartbeatKeys)).toBe("");
  });

  it("says it as a sentence, in the caller's notation", () => {
    expect(didYouMean("hearbeat", ["heartbeat"], (s) => `[${s}]`)).toBe(
      " Did you mean [heartbeat]?",
    );
  });
});
