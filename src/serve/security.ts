/**
 * The server's access rules: the token (header, cookie or query), the Host
 * header on a loopback server (no DNS rebinding), the Origin of
 * state-changing requests, and the security headers of every response.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";

/** The cookie the page carries the token in once opened with `?token=`. */
export const TOKEN_COOKIE = "ravenclaws_token";

/**
 * The page's Content-Security-Policy: scripts, styles, fonts and
 * connections from this server only, no inline script, no framing.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers on every response. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
};

/** Sets {@link SECURITY_HEADERS} on a response. */
export function setSecurityHeaders(res: ServerResponse): void {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
}

/** True for an address or name that only this machine reaches (`127.0.0.0/8`, `::1`, `localhost`). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (bare === "localhost" || bare.endsWith(".localhost")) return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  if (isIP(bare) === 6) return bare === "::1" || bare === "0:0:0:0:0:0:0:1";
  if (bare.startsWith("::ffff:")) return bare.slice(7).startsWith("127.");
  return false;
}

/** A fresh random token (32 bytes, base64url). */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

/** Constant-time comparison of a given token with the expected one. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The value of a cookie in a request, if sent. */
export function cookieOf(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Where a request's token came from, if it carried the right one. */
export type TokenSource = "header" | "cookie" | "query";

/**
 * Which of the three places carried the expected token: `Authorization:
 * Bearer`, the {@link TOKEN_COOKIE} cookie, or `?token=`. Undefined when none did.
 */
export function tokenSourceOf(
  req: IncomingMessage,
  url: URL,
  expected: string,
): TokenSource | undefined {
  const auth = req.headers.authorization;
  if (auth && /^Bearer\s+/i.test(auth) && tokenMatches(auth.replace(/^Bearer\s+/i, ""), expected))
    return "header";
  if (tokenMatches(cookieOf(req, TOKEN_COOKIE), expected)) return "cookie";
  const query = url.searchParams.get("token");
  if (query !== null && tokenMatches(query, expected)) return "query";
  return undefined;
}

/** The `Set-Cookie` value that keeps the token for the page (HttpOnly, SameSite=Strict). */
export function tokenCookie(token: string): string {
  return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
}

/**
 * A loopback server answers only requests addressed to a loopback name, so a
 * web page whose own name was re-pointed at 127.0.0.1 (DNS rebinding) cannot
 * read it. True when the Host header is fine.
 */
export function hostHeaderAllowed(req: IncomingMessage, loopbackOnly: boolean): boolean {
  const host = req.headers.host;
  if (!host) return false;
  if (!loopbackOnly) return true;
  let name: string;
  try {
    name = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  return isLoopbackHost(name);
}

/**
 * A state-changing request from a browser must come from the server's own
 * page: its `Origin`, when sent, must be this server's origin (the scheme and
 * the Host the request was addressed to), and a `Sec-Fetch-Site` of
 * `cross-site` is refused. Requests without `Origin` (curl, scripts) pass.
 */
export function originAllowed(req: IncomingMessage): boolean {
  if (req.headers["sec-fetch-site"] === "cross-site") return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (origin === "null") return false;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false;
  }
  const host = req.headers.host;
  if (!host) return false;
  const forwardedProto = req.headers["x-forwarded-proto"];
  const schemes = new Set([
    "http:",
    typeof forwardedProto === "string" ? `${forwardedProto}:` : "",
  ]);
  return schemes.has(parsed.protocol) && parsed.host === host.toLowerCase();
}

/** True when the request says its body is JSON (`application/json`, any charset parameter). */
export function isJsonRequest(req: IncomingMessage): boolean {
  const type = req.headers["content-type"];
  if (!type) return false;
  return type.split(";")[0]?.trim().toLowerCase() === "application/json";
}
