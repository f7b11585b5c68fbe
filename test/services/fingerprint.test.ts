import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mayBeInWorkTree, workspaceFingerprint } from "../../src/services/fingerprint.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-fp-")));
  dirs.push(dir);
  return dir;
}

const noGitEnv = { ...process.env, GIT_DIR: undefined };

describe("workspaceFingerprint", () => {
  it("asks git only inside a work tree: a plain directory is walked, a repository is git's", async () => {
    const plain = await tempDir();
    await fs.writeFile(path.join(plain, "a.txt"), "a");
    expect(mayBeInWorkTree(plain, noGitEnv)).toBe(false);
    expect(await workspaceFingerprint(plain, { stateDir: path.join(plain, ".rc") })).toMatch(
      /^walk:/,
    );

    const repo = await tempDir();
    const git = (...args: string[]) =>
      execFileSync("git", args, {
        cwd: repo,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: "t",
          GIT_AUTHOR_EMAIL: "t@t",
          GIT_COMMITTER_NAME: "t",
          GIT_COMMITTER_EMAIL: "t@t",
        },
      });
    git("init", "-q");
    await fs.writeFile(path.join(repo, "a.txt"), "a");
    git("add", "a.txt");
    git("commit", "-qm", "a");
    await fs.mkdir(path.join(repo, "sub"));
    expect(mayBeInWorkTree(path.join(repo, "sub"), noGitEnv)).toBe(true);
    const options = { stateDir: path.join(repo, ".rc") };
    const before = await workspaceFingerprint(repo, options);
    expect(before).toMatch(/^git:/);
    expect(await workspaceFingerprint(repo, options)).toBe(before);
    await fs.writeFile(path.join(repo, "a.txt"), "changed");
    expect(await workspaceFingerprint(repo, options)).not.toBe(before);
  });
});
