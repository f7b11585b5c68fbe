import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithChromium, launchChromium } from "./chromium.js";

describeWithChromium("test/support/chromium", () => {
  let server: Server;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(
        "<p>static</p><script>addEventListener('load', () => document.body.append('inserted by script'))</script>",
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it("launches the system Chromium, which renders a local page and runs its script", async () => {
    const page = await browser.newPage();
    await page.goto(base, { waitUntil: "load" });
    await page.getByText("inserted by script").waitFor();
    expect(await page.locator("body").textContent()).toContain("static");
    await page.close();
  });
});
