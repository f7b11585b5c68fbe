/**
 * The dashboard in a real browser: the system Chromium (playwright-core)
 * against a real `ravenclaws serve` child process (the built CLI and the
 * built page) whose heartbeats talk to the fake OpenAI server. One server and
 * one browser for the file. Every wait is on a page condition; the fake model
 * holds a phase's reply until the test has seen that phase lit.
 *
 * Writes the README's screenshots to docs/screenshots/.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { HeartbeatDetail } from "../../src/serve/api.types.js";
import { describeWithChromium, launchChromium } from "../support/chromium.js";
import { type CliProcess, cleanEnv, startCli } from "../support/cli.js";
import {
  DEFAULT_ASSESSMENT,
  type FakeOpenAI,
  jsonMessage,
  message,
  type Reply,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

const SCREENSHOTS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../docs/screenshots",
);

/** Model phases the test can hold: a held phase's reply waits until released. */
type Phase = "assess" | "plan" | "execute";
const held = new Map<Phase, { promise: Promise<void>; release: () => void }>();
function hold(phase: Phase): void {
  let release = () => {};
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  held.set(phase, { promise, release });
}
function release(phase: Phase): void {
  held.get(phase)?.release();
  held.delete(phase);
}
const usage = (n: number) => ({ prompt_tokens: 900 + ((n * 379) % 700), completion_tokens: 120 });
async function after(phase: Phase, reply: Reply): Promise<Reply> {
  await held.get(phase)?.promise;
  return reply;
}

describeWithChromium("dashboard in Chromium against ravenclaws serve", () => {
  let fake: FakeOpenAI;
  let serve: CliProcess;
  let browser: Browser;
  let page: Page;
  let url: string;
  let tmp: string;
  const requested: string[] = [];
  const problems: string[] = [];

  async function create(
    id: string,
    goal: string,
    extra: Record<string, unknown> = {},
  ): Promise<void> {
    const res = await fetch(`${url}/api/heartbeats`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        id,
        goal,
        tickInterval: 3600,
        maxTicks: 20,
        priceInput: 2.5,
        priceOutput: 10,
        ...extra,
      }),
    });
    expect(res.status, await res.text()).toBe(201);
  }

  beforeAll(async () => {
    fake = await startFakeOpenAI(
      scripted({
        assess: (n) => after("assess", jsonMessage(DEFAULT_ASSESSMENT, { usage: usage(n) })),
        plan: (n) =>
          after(
            "plan",
            jsonMessage(
              { steps: ["List the workspace", "Write the next note"] },
              { usage: usage(n) },
            ),
          ),
        // A tick's first execute call asks for a tool, the next one (after its result) ends.
        execute: (n, req) => {
          const messages = (req.body?.messages ?? []) as Array<{ role: string }>;
          if (messages.at(-1)?.role === "tool") {
            return after("execute", message("Done for this tick.", { usage: usage(n) }));
          }
          const greeter = JSON.stringify(req.body).includes("greeting");
          return after(
            "execute",
            greeter
              ? toolCalls(
                  [{ name: "write_file", arguments: { path: "hello.txt", content: "hello\n" } }],
                  {
                    usage: usage(n),
                  },
                )
              : toolCalls([{ name: "list_dir", arguments: { path: "." } }], { usage: usage(n) }),
          );
        },
      }),
    );
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ravenclaws-dashboard-"));
    serve = startCli(
      [
        "serve",
        "--workdir",
        tmp,
        "--port",
        "0",
        "--base-url",
        fake.baseURL,
        "--api-key",
        "sk-dashboard-test",
        "--model",
        "fake",
      ],
      { cwd: tmp, env: cleanEnv() },
    );
    await serve.waitForOutput(/^http:\/\/\S+\n/, 20_000);
    url = (serve.stdout().split("\n")[0] ?? "").trim();
    await create("docs-writer", "Keep docs/ in step with the CLI's --help output");
    await create("release-notes", "Draft the release notes from the merged changes");
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(20_000);
    page.on("request", (r) => requested.push(r.url()));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" && !/Failed to load resource/.test(m.text())) {
        problems.push(`console: ${m.text()}`);
      }
    });
    await fs.mkdir(SCREENSHOTS, { recursive: true });
  }, 90_000);

  afterAll(async () => {
    for (const phase of [...held.keys()]) release(phase);
    await browser?.close();
    serve?.child.kill("SIGTERM");
    await serve?.exited;
    await fake?.close();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it("lists every heartbeat with its state, tick, tokens and cost", async () => {
    await page.goto(`${url}/`);
    for (const id of ["docs-writer", "release-notes"]) {
      const row = page.locator(`tr[data-id="${id}"]`);
      await row.waitFor();
      // Both tick once when created, then sleep an hour.
      await row.locator('[data-status="sleeping"]').waitFor();
      await expect(row.locator(".tick-cell").textContent()).resolves.toBe("1");
      await expect(row.locator(".next-cell").textContent()).resolves.toMatch(/^in \d+ min/);
    }
    await page.locator('[data-live="live"]').waitFor();
    await page.screenshot({
      path: path.join(SCREENSHOTS, "dashboard-overview.png"),
      clip: { x: 0, y: 0, width: 1280, height: 260 },
    });
  }, 60_000);

  it("lights the active state as a heartbeat ticks; the wake button makes the sleeping heartbeat tick", async () => {
    await page.goto(`${url}/`);
    await page.locator('a.hb-link:text-is("docs-writer")').click();
    const lit = (state: string) => page.locator(`.chart [data-state="${state}"].active`);
    await lit("heartbeat.sleeping").waitFor();
    await page.locator('tr[data-tick="1"]').waitFor();
    await expect(page.locator('tr[data-tick="2"]').count()).resolves.toBe(0);

    hold("assess");
    hold("plan");
    hold("execute");
    await page.locator("button.wake").click();
    await lit("heartbeat.assessing").waitFor();
    await expect(lit("heartbeat.sleeping").count()).resolves.toBe(0);
    release("assess");
    await lit("heartbeat.planning").waitFor();
    release("plan");
    // The tool loop is drawn inside executing; both light up.
    await lit("toolLoop.calling").waitFor();
    await lit("heartbeat.executing").waitFor();
    await expect(lit("heartbeat.planning").count()).resolves.toBe(0);
    release("execute");
    await lit("heartbeat.sleeping").waitFor();

    const row = page.locator('tr[data-tick="2"]');
    await row.waitFor();
    await expect(row.locator('[data-label="Wake"]').textContent()).resolves.toBe("wake");
    await expect(row.locator('[data-label="Tools"]').textContent()).resolves.toContain("list_dir");
    await expect(page.locator(".tick-value").textContent()).resolves.toBe("2");

    // One more tick, for the plots and the screenshot.
    await page.locator("button.wake:not([disabled])").click();
    await page.locator('tr[data-tick="3"]').waitFor();
    await page.locator(".plot canvas").first().waitFor();
    await lit("heartbeat.sleeping").waitFor();
    await page.screenshot({
      path: path.join(SCREENSHOTS, "dashboard-heartbeat.png"),
      fullPage: true,
    });

    const detail = (await (
      await fetch(`${url}/api/heartbeats/docs-writer`)
    ).json()) as HeartbeatDetail;
    expect(detail.tick).toBe(3);
  }, 90_000);

  it("fits a phone-sized screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('tr[data-tick="3"]').waitFor();
    await expect(
      page.evaluate("document.documentElement.scrollWidth"),
    ).resolves.toBeLessThanOrEqual(390);
    await page.goto(`${url}/`);
    await page.locator('tr[data-id="release-notes"]').waitFor();
    await expect(
      page.evaluate("document.documentElement.scrollWidth"),
    ).resolves.toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 900 });
  }, 60_000);

  it("approves a waiting tool call from the page", async () => {
    await create("greeter", "Write a greeting to hello.txt", { toolAsk: ["write"] });
    await page.goto(`${url}/`);
    const row = page.locator('tr[data-id="greeter"]');
    await row.locator(".badge.waiting").waitFor();
    await row.locator("a.hb-link").click();
    const card = page.locator('.approval:has-text("write_file")');
    await card.waitFor();
    await page.locator('.chart [data-state="toolLoop.awaitingApproval"].active').waitFor();
    await expect(fs.stat(path.join(tmp, "hello.txt"))).rejects.toThrow();
    await card.locator("button.approve").click();
    const tick = page.locator('tr[data-tick="1"]');
    await tick.waitFor();
    await expect(tick.locator('[data-label="Tools"]').textContent()).resolves.toContain(
      "write_file",
    );
    await expect(page.locator(".approval").count()).resolves.toBe(0);
    await expect(fs.readFile(path.join(tmp, "hello.txt"), "utf8")).resolves.toBe("hello\n");
  }, 90_000);

  it("loads nothing from another host and breaks no rule of the page's Content-Security-Policy", async () => {
    const origin = new URL(url).origin;
    expect(requested.length).toBeGreaterThan(5);
    expect(requested.filter((u) => new URL(u).origin !== origin)).toEqual([]);
    expect(requested).toEqual(expect.arrayContaining([`${origin}/app.js`, `${origin}/app.css`]));
    const res = await fetch(`${url}/`);
    expect(res.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    expect(problems).toEqual([]);
  });
});
