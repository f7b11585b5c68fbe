import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { chromiumArgs, findChromium } from "../../../src/services/browser/chromium.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "ravenclaws-chromium-lookup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function executable(name: string, mode = 0o755): string {
  const file = path.join(dir, name);
  writeFileSync(file, "#!/bin/sh\n");
  chmodSync(file, mode);
  return file;
}

describe("findChromium", () => {
  it("takes a configured path when it is an executable file", () => {
    const file = executable("my-chrome");
    expect(findChromium(file, "")).toEqual({ path: file });
  });

  it("refuses a configured path that is missing or not executable, saying how to fix it", () => {
    const plain = executable("not-exec", 0o644);
    for (const configured of [plain, path.join(dir, "absent"), dir]) {
      const found = findChromium(configured, "");
      expect(found.path).toBeUndefined();
      expect("problem" in found && found.problem).toMatch(
        /apt-get install chromium.*--browser-path/,
      );
    }
  });

  it("looks a configured bare name up on PATH", () => {
    const file = executable("chrome-on-path");
    expect(findChromium("chrome-on-path", `/nonexistent${path.delimiter}${dir}`)).toEqual({
      path: file,
    });
  });

  it("finds chromium-browser on PATH when nothing is configured", () => {
    const sub = mkdtempSync(path.join(dir, "path-"));
    const file = path.join(sub, "chromium-browser");
    writeFileSync(file, "#!/bin/sh\n");
    chmodSync(file, 0o755);
    const found = findChromium(undefined, sub);
    // /usr/bin/chromium comes first where it is installed.
    expect([file, "/usr/bin/chromium"]).toContain(found.path);
  });

  it("adds --no-sandbox only as root, and always the no-background-networking flags", () => {
    expect(chromiumArgs(true)).toContain("--no-sandbox");
    expect(chromiumArgs(false)).not.toContain("--no-sandbox");
    expect(chromiumArgs(false)).toEqual(
      expect.arrayContaining(["--headless", "--disable-background-networking", "--disable-quic"]),
    );
  });
});
