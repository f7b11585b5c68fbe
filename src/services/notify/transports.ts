/**
 * The two ways an event leaves: an HTTP POST of the JSON (`--notify-url`),
 * and a command that reads it on stdin (`--notify-command`). Each delivery
 * attempt ends within its timeout; a failure says whether a retry may help.
 */
import { spawn } from "node:child_process";

/** A failed delivery attempt. */
export class DeliveryError extends Error {
  constructor(
    message: string,
    /** Whether another attempt may succeed (connection errors, timeouts, 408, 429, 5xx, a failing command). */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = "DeliveryError";
  }
}

/** One way to deliver an event. */
export interface Transport {
  /** `url` or `command`. */
  kind: "url" | "command";
  /** What the journal may name: the URL's origin (its path may be a secret), or `command`. */
  target: string;
  /** One attempt; rejects with {@link DeliveryError}. `body` is the event's JSON, already redacted. */
  send(body: string, signal: AbortSignal): Promise<void>;
}

/** Combines the caller's signal with a timeout; `timedOut()` tells which one fired. */
function deadline(signal: AbortSignal, timeoutMs: number) {
  const timeout = AbortSignal.timeout(timeoutMs);
  return { signal: AbortSignal.any([signal, timeout]), timedOut: () => timeout.aborted };
}

/**
 * POSTs the event to `url` (`content-type: application/json`), with
 * `Authorization: Bearer <token>` when a token is given. Redirects are not
 * followed (they would carry the token elsewhere); any status but 2xx fails.
 */
export function httpTransport(
  url: string,
  token: string | undefined,
  timeoutMs: number,
): Transport {
  const origin = new URL(url).origin;
  return {
    kind: "url",
    target: origin,
    async send(body, signal) {
      const limit = deadline(signal, timeoutMs);
      let response: Response;
      try {
        response = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "user-agent": "ravenclaws-heartbeat",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body,
          redirect: "manual",
          signal: limit.signal,
        });
        // Drain (bounded by the same deadline) so the connection is released.
        await response.arrayBuffer().catch(() => undefined);
      } catch (error) {
        if (limit.timedOut()) throw new DeliveryError(`no answer within ${timeoutMs} ms`, true);
        if (signal.aborted) throw new DeliveryError("cancelled at exit", false);
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        throw new DeliveryError(
          `cannot reach ${origin}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
          true,
        );
      }
      const status = response.status;
      if (status >= 200 && status < 300) return;
      if (status >= 300 && status < 400) {
        throw new DeliveryError(`HTTP ${status} (redirects are not followed)`, false);
      }
      throw new DeliveryError(`HTTP ${status}`, status === 408 || status === 429 || status >= 500);
    },
  };
}

/** Bytes of a failing command's stderr kept for the journal. */
const STDERR_TAIL = 300;

/**
 * Runs `command` with `sh -c` (outside the tool sandbox: it is the user's
 * own program), the event as JSON on stdin, in `cwd` with `env`. Exit 0 is
 * delivered; anything else, or the timeout (the process group is killed),
 * fails.
 */
export function commandTransport(
  command: string,
  options: { env: NodeJS.ProcessEnv; cwd: string; timeoutMs: number },
): Transport {
  return {
    kind: "command",
    target: "command",
    send(body, signal) {
      return new Promise<void>((resolve, reject) => {
        const limit = deadline(signal, options.timeoutMs);
        if (limit.signal.aborted) {
          reject(new DeliveryError("cancelled at exit", false));
          return;
        }
        const child = spawn("/bin/sh", ["-c", command], {
          cwd: options.cwd,
          env: options.env,
          stdio: ["pipe", "ignore", "pipe"],
          detached: true,
        });
        let stderr = "";
        child.stderr?.on("data", (chunk: Buffer) => {
          stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL * 4);
        });
        // A command that does not read its stdin closes the pipe: not an error.
        child.stdin?.on("error", () => {});
        child.stdin?.end(body);
        const kill = () => {
          try {
            if (child.pid) process.kill(-child.pid, "SIGKILL");
          } catch {
            child.kill("SIGKILL");
          }
        };
        limit.signal.addEventListener("abort", kill, { once: true });
        child.on("error", (error) => {
          limit.signal.removeEventListener("abort", kill);
          reject(new DeliveryError(`cannot run the command: ${error.message}`, false));
        });
        child.on("close", (code, sig) => {
          limit.signal.removeEventListener("abort", kill);
          if (limit.timedOut()) {
            reject(new DeliveryError(`the command ran past ${options.timeoutMs} ms`, true));
          } else if (signal.aborted) {
            reject(new DeliveryError("cancelled at exit", false));
          } else if (code === 0) {
            resolve();
          } else {
            const tail = stderr.trim().replace(/\s+/g, " ").slice(-STDERR_TAIL);
            reject(
              new DeliveryError(
                `the command exited with ${code === null ? `signal ${sig}` : `code ${code}`}${tail ? `: ${tail}` : ""}`,
                true,
              ),
            );
          }
        });
      });
    },
  };
}

/**
 * The environment a notify command gets: this process's, without the
 * variables named in `dropNames` and without any variable whose value holds
 * one of `secrets` (the API key, the notify token), whatever its name.
 */
export function commandEnv(
  env: NodeJS.ProcessEnv,
  dropNames: readonly string[],
  secrets: ReadonlyArray<string | undefined>,
): NodeJS.ProcessEnv {
  const values = secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || dropNames.includes(name)) continue;
    if (values.some((secret) => value.includes(secret))) continue;
    out[name] = value;
  }
  return out;
}
