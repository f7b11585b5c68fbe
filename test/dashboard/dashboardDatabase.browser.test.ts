/**
 * The dashboard over PostgreSQL in a real browser: the system Chromium
 * (playwright-core) on the page of a `serve --database-url --no-ticks`, while
 * a second `serve` on the same database runs the ticks. What the page shows
 * of a tick came from the other process through the database (the event
 * stream polls it); its buttons act on the other process through the tick
 * queue.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithChromium, launchChromium } from "../support/chromium.js";
import { type CliProcess, cleanEnv, startCli } from "../support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fakeOpenAI.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();

describeWithChromium(
  "dashboard in Chromium over PostgreSQL (serve --no-ticks + a ticking serve)",
  () => {
    let fake: FakeOpenAI;
    let viewer: CliProcess;
    let ticker: CliProcess;
    let browser: Browser | undefined;
    let launching: Promise<Browser> | undefined;
    let page: Page;
    let url: string;
    let tmp: string;
    let password: string;
    let drop: () => Promise<void>;
    const problems: string[] = [];

    beforeAll(async () => {
      // Chromium starts while the servers do.
      launching = launchChromium();
      launching.catch(() => {}); // awaited below; a failure there fails the hook
      fake = await startFakeOpenAI();
      tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ravenclaws-dashboard-db-"));
      const db = await pg.freshDatabase();
      drop = db.drop;
      password = new URL(db.url).password;
      const common = [
        "--workdir",
        tmp,
        "--port",
        "0",
        "--base-url",
        fake.baseURL,
        "--model",
        "fake",
      ];
      viewer = startCli(["serve", "--database-url", db.url, "--no-ticks", ...common], {
        cwd: tmp,
        env: cleanEnv(),
      });
      ticker = startCli(["serve", "--database-url", db.url, ...common, "--api-key", "sk-dash-db"], {
        cwd: tmp,
        env: cleanEnv(),
      });
      await viewer.waitForOutput(/^http:\/\/\S+\n/, 30_000);
      await ticker.waitForOutput(/^http:\/\/\S+\n/, 30_000);
      url = (viewer.stdout().split("\n")[0] ?? "").trim();
      const res = await fetch(`${url}/api/heartbeats`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          id: "db-notes",
          goal: "Keep notes",
          tickInterval: 3600,
          maxTicks: 20,
        }),
      });
      expect(res.status, await res.text()).toBe(201);
      browser = await launching;
      page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } });
      page.setDefaultTimeout(20_000);
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    }, 90_000);

    afterAll(async () => {
      // Launched even when the hook failed before awaiting it.
      await (browser ?? (await launching?.catch(() => undefined)))?.close();
      for (const cli of [viewer, ticker]) cli?.child.kill("SIGTERM");
      await Promise.all([viewer?.exited, ticker?.exited]);
      await fake?.close();
      await drop?.().catch(() => {});
      if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    });

    it("shows the other process's ticks live; wake, stop and start from the page reach it; no password on the page", async () => {
      await page.goto(`${url}/`);
      const row = page.locator('tr[data-id="db-notes"]');
      await row.waitFor();
      // Its first tick ran on the other process; the page learnt it from the database.
      await row.locator('[data-status="sleeping"]').waitFor();
      await expect(row.locator(".tick-cell").textContent()).resolves.toBe("1");
      await page.locator('[data-live="live"]').waitFor();

      await row.locator("a.hb-link").click();
      await page.locator('tr[data-tick="1"]').waitFor();
      await expect(page.locator('tr[data-tick="2"]').count()).resolves.toBe(0);
      // No reload from here on: what changes comes through the event stream.
      await page.locator("button.wake:not([disabled])").click();
      await page.locator('tr[data-tick="2"]').waitFor();
      await expect(page.locator(".tick-value").textContent()).resolves.toBe("2");

      await page.locator("button.stop:not([disabled])").click();
      await page.locator('[data-status="stopped"]').first().waitFor();
      await page.locator("button.start:not([disabled])").click();
      // Started: a tick is queued now, and the other process runs it.
      await page.locator('tr[data-tick="3"]').waitFor();

      const html = await page.content();
      expect(html).not.toContain(password);
      expect(problems).toEqual([]);
    }, 90_000);
  },
);
