/**
 * The HTTP server over real HTTP, in front of the real host (real heartbeats,
 * real state files, the real `openai` client against the fake model server):
 * routes, 4xx with field names, the token, Host and Origin checks, JSON only,
 * body limits, the page's headers and static files, the event stream, and no
 * secret in any response.
 */
import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as path from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHost } from "../../src/host/host.js";
import type { Host } from "../../src/host/types.js";
import type {
  ApiError,
  HeartbeatDetail,
  HeartbeatList,
  JournalResponse,
  MachineResponse,
} from "../../src/serve/api.types.js";
import { approvalsPort } from "../../src/serve/approvals.js";
import { type ApiServer, startApiServer } from "../../src/serve/server.js";
import { createRedactor } from "../../src/services/redact.js";
import { tempDir } from "../support/cli.js";
import {
  type FakeOpenAI,
  message,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

const SECRET = "sk-serve-test-SECRET-0123456789";
const TOKEN = "t0ken-for-the-serve-tests-0123456789";

/** Every response body any test received: none may hold the API key. */
const bodies: string[] = [];

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests dig into JSON bodies.
  json: any;
}

/** One raw HTTP request (the path is sent exactly as given: no client-side normalising). */
function request(
  url: string,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<Reply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: hostname,
        port,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers ?? {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          bodies.push(text);
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

const postJson = (url: string, p: string, body: unknown, headers: Record<string, string> = {}) =>
  request(url, {
    method: "POST",
    path: p,
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

/** Resolves once `check` passes, polling the server (no fixed sleeps). */
async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let model: FakeOpenAI;
let root: string;
let host: Host;
let server: ApiServer | undefined;
let dashboardDir: string;
let stateDir: string;

async function start(
  options: { token?: string; listenHost?: string; built?: boolean; approvals?: boolean } = {},
) {
  server = await startApiServer({
    host,
    ...(options.approvals
      ? {
          approvals: await approvalsPort(
            stateDir,
            (id) => (host.list().find((s) => s.id === id)?.pendingApprovals ?? 0) > 0,
          ),
        }
      : {}),
    port: 0,
    dashboardDir: options.built === false ? path.join(root, "nothing-here") : dashboardDir,
    redact: createRedactor([SECRET]),
    ...(options.token ? { token: options.token } : {}),
    ...(options.listenHost ? { listenHost: options.listenHost } : {}),
    keepAliveMs: 100,
    log: () => {},
  });
  return server.url;
}

beforeEach(async () => {
  model = await startFakeOpenAI();
  root = await tempDir("ravenclaws-serve-");
  const workdir = path.join(root, "work");
  await fs.mkdir(workdir);
  dashboardDir = path.join(root, "dashboard");
  await fs.mkdir(path.join(dashboardDir, "assets"), { recursive: true });
  await fs.writeFile(
    path.join(dashboardDir, "index.html"),
    '<!doctype html><html><head><script type="module" src="/assets/app.js"></script></head><body>dash</body></html>\n',
  );
  await fs.writeFile(path.join(dashboardDir, "assets", "app.js"), "export const x = 1;\n");
  await fs.writeFile(path.join(dashboardDir, "assets", "app.css"), "body{}\n");
  await fs.writeFile(path.join(root, "outside.txt"), "OUTSIDE-THE-DASHBOARD\n");
  stateDir = path.join(workdir, ".ravenclaws");
  host = await createHost({
    stateDir,
    workdir,
    env: {
      OPENAI_API_KEY: SECRET,
      PATH: process.env.PATH ?? "",
      RAVENCLAWS_CONFIG_DIR: path.join(root, "user-config"),
    },
    defaults: { baseUrl: model.baseURL, model: "fake", maxRetries: 0 },
  });
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  await host.close();
  await model.close();
  await fs.rm(root, { recursive: true, force: true });
});

afterAll(() => {
  // No response of any test carried the API key.
  for (const body of bodies) expect(body).not.toContain(SECRET);
});

describe("the API", () => {
  it("creates heartbeats, lists them, shows one and its journal; ticks run against the model", async () => {
    const url = await start();
    // A key pasted into a goal is redacted from every answer.
    const pasted = await postJson(url, "/api/heartbeats", {
      goal: `Use the key ${SECRET}`,
      id: "pasted",
      tickInterval: 3600,
      tools: false,
    });
    expect(pasted.status, pasted.text).toBe(201);
    expect(pasted.json.goalText).toBe("Use the key [redacted]");
    expect((await request(url, { path: "/api/heartbeats/pasted" })).json.goalText).toBe(
      "Use the key [redacted]",
    );
    expect((await postJson(url, "/api/heartbeats/pasted/stop", {})).status).toBe(202);
    const created = await postJson(url, "/api/heartbeats", {
      goal: "Keep notes",
      id: "alpha",
      tickInterval: 0,
      maxTicks: 2,
      tools: false,
    });
    expect(created.status, created.text).toBe(201);
    expect(created.headers.location).toBe("/api/heartbeats/alpha");
    const detail = created.json as HeartbeatDetail;
    expect(detail).toMatchObject({ id: "alpha", goalText: "Keep notes", maxTicks: 2 });
    expect(detail.settings).toMatchObject({ tickInterval: 0, maxTicks: 2, model: "fake" });
    expect(Object.keys(detail.settings)).not.toContain("apiKey");

    const done = await until(async () => {
      const d = (await request(url, { path: "/api/heartbeats/alpha" })).json as HeartbeatDetail;
      return d.status === "completed" ? d : undefined;
    }, "alpha to complete");
    expect(done).toMatchObject({ tick: 2, reason: "max-ticks", lastOutcome: "ok" });
    expect(done.usage.totalTokens).toBeGreaterThan(0);
    expect(done.lastPlan?.steps).toEqual(["Do the next thing"]);

    const list = (await request(url, { path: "/api/heartbeats" })).json as HeartbeatList;
    expect(list.heartbeats.map((h) => [h.id, h.status]).sort()).toEqual([
      ["alpha", "completed"],
      ["pasted", "stopped"],
    ]);
    expect(list.heartbeats.find((h) => h.id === "alpha")?.tick).toBe(2);
    expect(Date.parse(list.now)).not.toBeNaN();

    const journal = (await request(url, { path: "/api/heartbeats/alpha/journal?type=tick" }))
      .json as JournalResponse;
    expect(journal.entries.map((e) => [e.type, e.tick])).toEqual([
      ["tick", 1],
      ["tick", 2],
    ]);
    const last = await request(url, { path: "/api/heartbeats/alpha/journal?limit=1" });
    expect(last.json.entries).toHaveLength(1);
    expect(last.json.truncated).toBe(true);

    const machine = (await request(url, { path: "/api/machine" })).json as MachineResponse;
    expect(machine.root).toBe("heartbeat");
    expect(Object.keys(machine.machines)).toEqual(
      expect.arrayContaining(["heartbeat", "toolLoop"]),
    );
    expect(Object.values(machine.invokes)).toContain("toolLoop");
  });

  it("refuses bad input with 4xx naming the field, never a stack trace", async () => {
    const url = await start();
    const cases: Array<[unknown, number, string, string]> = [
      [{ goal: "g", tickInterval: "soon" }, 400, "invalid-setting", "tickInterval"],
      [{ goal: "g", maxTicks: -1 }, 400, "invalid-setting", "maxTicks"],
      [{ goal: "g", tickIntervall: 5 }, 400, "unknown-setting", "tickIntervall"],
      [{ tickInterval: 5 }, 400, "goal-required", "goal"],
      [{ goal: "  " }, 400, "invalid-setting", "goal"],
      [{ goal: "g", apiKey: "sk-other-key-123" }, 400, "secret-refused", "apiKey"],
      [{ goal: "g", json: true }, 400, "not-a-heartbeat-setting", "json"],
      [{ goal: "g", id: "../etc" }, 400, "invalid-setting", "id"],
      [{ goal: "g", sandbox: "maybe" }, 400, "invalid-setting", "sandbox"],
    ];
    for (const [body, status, code, field] of cases) {
      const reply = await postJson(url, "/api/heartbeats", body);
      expect(reply.status, JSON.stringify(body)).toBe(status);
      const error = (reply.json as ApiError).error;
      expect(error, JSON.stringify(body)).toMatchObject({ code, field });
      expect(error.message).not.toMatch(/\n\s+at /);
    }
    const typo = await postJson(url, "/api/heartbeats", { goal: "g", tickIntervall: 5 });
    expect(typo.json.error.message).toContain("Did you mean tickInterval?");
    const notJson = await request(url, {
      method: "POST",
      path: "/api/heartbeats",
      headers: { "Content-Type": "application/json" },
      body: "{goal:",
    });
    expect(notJson.status).toBe(400);
    expect(notJson.json.error.code).toBe("bad-json");
    const missing = await request(url, { path: "/api/heartbeats/nobody" });
    expect(missing.status).toBe(404);
    expect(missing.json.error).toMatchObject({ code: "not-found", field: "id" });
    const badLimit = await request(url, { path: "/api/heartbeats/nobody/journal?limit=0" });
    expect(badLimit.status).toBe(404);
    const route = await request(url, { path: "/api/nothing" });
    expect(route.status).toBe(404);
    expect(route.headers["content-type"]).toContain("application/json");
    const method = await request(url, { method: "DELETE", path: "/api/heartbeats" });
    expect(method.status).toBe(405);
    const wrongMethod = await postJson(url, "/api/heartbeats/alpha/journal", {});
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe("GET");
    const big = await postJson(url, "/api/heartbeats", { goal: "x".repeat(100 * 1024) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe("payload-too-large");
    expect((await request(url, { path: "/api/heartbeats" })).json.heartbeats).toEqual([]);
  });

  it("wake, stop and start a heartbeat; approve/deny answer 501 on a server started without approvals", async () => {
    const url = await start();
    expect(
      (
        await postJson(url, "/api/heartbeats", {
          goal: "Sleep",
          id: "s1",
          tickInterval: 3600,
          tools: false,
        })
      ).status,
    ).toBe(201);
    await until(async () => {
      const d = (await request(url, { path: "/api/heartbeats/s1" })).json as HeartbeatDetail;
      return d.status === "sleeping" && d.tick === 1 ? d : undefined;
    }, "s1 asleep after tick 1");
    const wake = await postJson(url, "/api/heartbeats/s1/wake", {});
    expect(wake.status, wake.text).toBe(202);
    expect(wake.json).toMatchObject({ ok: true, action: "wake" });
    await until(async () => {
      const d = (await request(url, { path: "/api/heartbeats/s1" })).json as HeartbeatDetail;
      return d.tick === 2 && d.status === "sleeping" ? d : undefined;
    }, "s1 ticked again after the wake");
    const stop = await postJson(url, "/api/heartbeats/s1/stop", {});
    expect(stop.status, stop.text).toBe(202);
    expect(stop.json.heartbeat.status).toBe("stopped");
    const startAgain = await postJson(url, "/api/heartbeats/s1/start", {});
    expect(startAgain.status, startAgain.text).toBe(202);
    expect(startAgain.json.heartbeat.status).not.toBe("stopped");

    const approve = await postJson(url, "/api/heartbeats/s1/approve", {});
    expect(approve.status).toBe(501);
    expect(approve.json.error.code).toBe("not-implemented");
    const badDeny = await postJson(url, "/api/heartbeats/s1/deny", { callId: 5 });
    expect(badDeny.status).toBe(400);
    expect(badDeny.json.error.field).toBe("callId");
    expect((await postJson(url, "/api/heartbeats/ghost/wake", {})).status).toBe(404);
  });
});

describe("listening", () => {
  it("a port in use or an address not on this machine is a usage error naming the option", async () => {
    const url = await start();
    const port = Number(new URL(url).port);
    const common = { host, dashboardDir, redact: (t: string) => t, log: () => {} };
    await expect(startApiServer({ ...common, port })).rejects.toMatchObject({
      code: "port-in-use",
      option: "--port",
      exitCode: 2,
    });
    await expect(
      startApiServer({ ...common, port: 0, listenHost: "192.0.2.1", token: TOKEN }),
    ).rejects.toMatchObject({ code: "host-unavailable", option: "--host" });
  });
});

describe("approvals", () => {
  it("a call matched by an ask rule waits; the API lists it, approves one and denies another with a reason", async () => {
    const url = await start({ approvals: true });
    model.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "call_w",
                  name: "write_file",
                  arguments: { path: "notes.md", content: "approved" },
                },
                {
                  id: "call_x",
                  name: "write_file",
                  arguments: { path: "other.md", content: "no" },
                },
              ])
            : message("Done."),
      }),
    );
    const created = await postJson(url, "/api/heartbeats", {
      goal: "Write notes",
      id: "ap",
      tickInterval: 3600,
      maxTicks: 1,
      toolAsk: ["write(**)"],
      sandbox: "off",
    });
    expect(created.status, created.text).toBe(201);
    const waiting = await until(async () => {
      const d = (await request(url, { path: "/api/heartbeats/ap" })).json as HeartbeatDetail;
      return d.approvals.length === 2 ? d : undefined;
    }, "two calls waiting for approval");
    expect(waiting.pendingApprovals).toBe(2);
    expect(waiting.approvals.map((a) => [a.callId, a.tool, a.rule])).toEqual([
      ["call_w", "write_file", "write(**)"],
      ["call_x", "write_file", "write(**)"],
    ]);
    expect(waiting.approvals[0]?.args).toContain("notes.md");

    const unknown = await postJson(url, "/api/heartbeats/ap/approve", { callId: "nope" });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatchObject({ code: "unknown-call", field: "callId" });
    const approved = await postJson(url, "/api/heartbeats/ap/approve", { callId: "call_w" });
    expect(approved.status, approved.text).toBe(200);
    expect(approved.json).toEqual({ ok: true, decision: "approve", callIds: ["call_w"] });
    const again = await postJson(url, "/api/heartbeats/ap/approve", { callId: "call_w" });
    expect(again.status).toBe(409);
    const denied = await postJson(url, "/api/heartbeats/ap/deny", {
      callId: "call_x",
      reason: "only notes",
    });
    expect(denied.status, denied.text).toBe(200);

    await until(async () => {
      const d = (await request(url, { path: "/api/heartbeats/ap" })).json as HeartbeatDetail;
      return d.status === "completed" ? d : undefined;
    }, "the tick to finish after the decisions");
    expect(await fs.readFile(path.join(root, "work", "notes.md"), "utf8")).toBe("approved");
    await expect(fs.stat(path.join(root, "work", "other.md"))).rejects.toThrow();
    const tools = (await request(url, { path: "/api/heartbeats/ap/journal?type=tool" })).json
      .entries as Array<{ callId: string; status: string }>;
    expect(tools.map((t) => [t.callId, t.status])).toEqual([
      ["call_w", "ok"],
      ["call_x", "refused"],
    ]);
    const nothing = await postJson(url, "/api/heartbeats/ap/approve", {});
    expect(nothing.status).toBe(409);
  });
});

describe("safe by default", () => {
  it("state-changing requests must be JSON and, with an Origin, from the server's own origin", async () => {
    const url = await start();
    const form = await request(url, {
      method: "POST",
      path: "/api/heartbeats",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "goal=hi",
    });
    expect(form.status).toBe(415);
    expect(form.json.error.code).toBe("unsupported-media-type");
    const text = await request(url, {
      method: "POST",
      path: "/api/heartbeats",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ goal: "hi" }),
    });
    expect(text.status).toBe(415);

    const foreign = await postJson(
      url,
      "/api/heartbeats",
      { goal: "hi", id: "o1", tools: false },
      { Origin: "http://evil.example" },
    );
    expect(foreign.status).toBe(403);
    expect(foreign.json.error.code).toBe("forbidden-origin");
    const sameHostOtherPort = await postJson(
      url,
      "/api/heartbeats",
      { goal: "hi", id: "o1", tools: false },
      { Origin: "http://127.0.0.1:1" },
    );
    expect(sameHostOtherPort.status).toBe(403);
    const own = await postJson(
      url,
      "/api/heartbeats",
      { goal: "hi", id: "o1", tools: false, tickInterval: 3600 },
      { Origin: url },
    );
    expect(own.status, own.text).toBe(201);
    expect((await request(url, { path: "/api/heartbeats" })).json.heartbeats).toHaveLength(1);
  });

  it("a loopback server answers only requests addressed to a loopback name (no DNS rebinding)", async () => {
    const url = await start();
    const rebound = await request(url, {
      path: "/api/heartbeats",
      headers: { Host: "evil.example:80" },
    });
    expect(rebound.status).toBe(403);
    expect(rebound.json.error.code).toBe("forbidden-host");
    const local = await request(url, {
      path: "/api/heartbeats",
      headers: { Host: `localhost:${new URL(url).port}` },
    });
    expect(local.status).toBe(200);
  });

  it("a non-loopback server needs a token; with one, every request carries it (header, cookie, query)", async () => {
    await expect(
      startApiServer({ host, port: 0, listenHost: "0.0.0.0", dashboardDir, redact: (t) => t }),
    ).rejects.toMatchObject({ code: "token-required", option: "--token" });

    const bound = await start({ token: TOKEN, listenHost: "0.0.0.0" });
    const url = `http://127.0.0.1:${new URL(bound).port}`;
    const none = await request(url, { path: "/api/heartbeats" });
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe("unauthorized");
    expect(none.headers["www-authenticate"]).toContain("Bearer");
    const wrong = await request(url, {
      path: "/api/heartbeats",
      headers: { Authorization: "Bearer not-the-token-at-all-000000000000" },
    });
    expect(wrong.status).toBe(401);
    const page = await request(url, { path: "/" });
    expect(page.status).toBe(401);
    expect(page.text).not.toContain("dash");
    const events = await request(url, { path: "/api/events" });
    expect(events.status).toBe(401);
    const post = await postJson(url, "/api/heartbeats", { goal: "hi", tools: false });
    expect(post.status).toBe(401);

    const bearer = await request(url, {
      path: "/api/heartbeats",
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    expect(bearer.status).toBe(200);
    const query = await request(url, { path: `/api/heartbeats?token=${TOKEN}` });
    expect(query.status).toBe(200);
    // The page opened with ?token= keeps it in a cookie and drops it from the address.
    const opened = await request(url, { path: `/?token=${TOKEN}` });
    expect(opened.status).toBe(303);
    expect(opened.headers.location).toBe("/");
    const cookie = String(opened.headers["set-cookie"]);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    const withCookie = await request(url, {
      path: "/",
      headers: { Cookie: cookie.split(";")[0] ?? "" },
    });
    expect(withCookie.status).toBe(200);
    expect(withCookie.text).toContain("dash");
    const postWithCookie = await postJson(
      url,
      "/api/heartbeats",
      { goal: "hi", id: "c1", tools: false, tickInterval: 3600 },
      { Cookie: cookie.split(";")[0] ?? "" },
    );
    expect(postWithCookie.status, postWithCookie.text).toBe(201);
  });

  it("the page: strict CSP, nosniff, content types, no path traversal; 503 when not built", async () => {
    const url = await start();
    const page = await request(url, { path: "/" });
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    const csp = String(page.headers["content-security-policy"]);
    for (const directive of [
      "default-src 'self'",
      "script-src 'self'",
      "frame-ancestors 'none'",
      "object-src 'none'",
      "base-uri 'none'",
    ]) {
      expect(csp).toContain(directive);
    }
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["x-frame-options"]).toBe("DENY");
    expect((await request(url, { path: "/assets/app.js" })).headers["content-type"]).toBe(
      "text/javascript; charset=utf-8",
    );
    expect((await request(url, { path: "/assets/app.css" })).headers["content-type"]).toBe(
      "text/css; charset=utf-8",
    );
    // The page's own routes get index.html; a missing asset is a 404.
    expect((await request(url, { path: "/heartbeats/alpha" })).text).toContain("dash");
    expect((await request(url, { path: "/assets/missing.js" })).status).toBe(404);
    for (const evil of [
      "/../outside.txt",
      "/assets/../../outside.txt",
      "/%2e%2e/outside.txt",
      "/assets/%2e%2e%2f%2e%2e%2foutside.txt",
      "/..%2foutside.txt",
      "/assets/..%5c..%5coutside.txt",
      "/%00index.html",
    ]) {
      const reply = await request(url, { path: evil });
      expect(reply.text, evil).not.toContain("OUTSIDE-THE-DASHBOARD");
      expect(reply.status, evil).toBe(404);
    }
    // A symlink out of the dashboard is not followed.
    await fs.symlink(path.join(root, "outside.txt"), path.join(dashboardDir, "assets", "link.txt"));
    expect((await request(url, { path: "/assets/link.txt" })).status).toBe(404);

    await server?.close();
    const bare = await start({ built: false });
    const missing = await request(bare, { path: "/" });
    expect(missing.status).toBe(503);
    expect(missing.text).toContain("The dashboard was not built");
    expect(missing.headers["content-security-policy"]).toContain("default-src 'self'");
  });
});

describe("the event stream", () => {
  it("delivers state, tool and tick events with keep-alives, and releases a client that leaves", async () => {
    const url = await start();
    const { port } = new URL(url);
    let text = "";
    const req = http.get({ host: "127.0.0.1", port, path: "/api/events" });
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on("response", resolve));
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    res.on("data", (c: Buffer) => {
      text += c.toString();
    });
    await until(async () => (server?.eventClients() === 1 ? true : undefined), "the client");
    // The tick lists the workdir with a tool, then reports.
    model.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([{ id: "call_ls", name: "list_dir", arguments: { path: "." } }])
            : message("Listed."),
      }),
    );
    expect(
      (
        await postJson(url, "/api/heartbeats", {
          goal: "Tick once",
          id: "e1",
          tickInterval: 0,
          maxTicks: 1,
          sandbox: "off",
        })
      ).status,
    ).toBe(201);
    const tick = await until(async () => {
      const block = text.split("\n\n").find((b) => b.startsWith("event: tick\n"));
      return block ? JSON.parse(block.slice(block.indexOf("data: ") + 6)) : undefined;
    }, "a tick event");
    expect(tick).toMatchObject({ id: "e1", entry: { type: "tick", tick: 1, status: "ok" } });
    expect(tick.heartbeat.id).toBe("e1");
    expect(text).toMatch(/event: state\ndata: \{"id":"e1"/);
    expect(text).toMatch(
      /event: tool\ndata: \{"id":"e1","tick":1,"callId":"call_ls","name":"list_dir","status":"ok"/,
    );
    expect(text).toMatch(/event: heartbeat\ndata: \{"kind":"added","id":"e1"/);
    await until(async () => (text.includes(": keep-alive\n\n") ? true : undefined), "a keep-alive");
    expect(text).not.toContain(SECRET);
    bodies.push(text);
    req.destroy();
    await until(
      async () => (server?.eventClients() === 0 ? true : undefined),
      "the client to be released",
    );
  });
});
