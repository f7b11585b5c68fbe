/**
 * Retries of a failed write: OS errors that may pass (a full disk being
 * cleaned, a transient I/O error) are retried with backoff; then a
 * {@link PersistError} names the path, the OS error and what to do.
 */
import * as path from "node:path";
import { errnoCode, LockCompromisedError, PersistError, StateFileError } from "../../errors.js";

/** How often and how patiently a write is retried. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** Delay before the first retry, doubled for each next one. */
  retryDelayMs: number;
  /** Sleeps `ms`. */
  delay: (ms: number) => Promise<void>;
}

/** What the user can do about an OS error while writing. */
function hintFor(code: string | undefined, target: string): string {
  const dir = path.dirname(target);
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return `The disk holding ${dir} is full: free some space (the last good state was kept).`;
    case "EROFS":
      return `${dir} is on a read-only file system: remount it read-write or choose another --state-dir (the last good state was kept).`;
    case "EIO":
      return `The disk reported an I/O error: check it (dmesg, SMART) before resuming (the last good state was kept).`;
    case "EACCES":
    case "EPERM":
      return `No permission to write in ${dir}: fix its permissions or choose another --state-dir.`;
    default:
      return `Check ${dir} (the last good state was kept).`;
  }
}

/**
 * Runs `work` (which writes `target`), retrying OS errors with backoff; gives
 * up with a {@link PersistError}. `fence` runs before every attempt and throws
 * to stop (a lost lock); a {@link LockCompromisedError} from the work is
 * passed to `compromised` and rethrown, like a {@link StateFileError}: waiting
 * does not heal them.
 */
export async function retrying(
  what: string,
  target: string,
  policy: RetryPolicy,
  work: () => Promise<void>,
  fence: { check(): void; compromised(error: LockCompromisedError): void },
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    fence.check();
    try {
      await work();
      return;
    } catch (error) {
      if (error instanceof LockCompromisedError) {
        fence.compromised(error);
        throw error;
      }
      if (error instanceof StateFileError) throw error;
      const code = errnoCode(error);
      // A missing or misshapen directory does not heal by waiting.
      const lasting = code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR";
      if (code !== undefined && !lasting && attempt < policy.retries) {
        await policy.delay(policy.retryDelayMs * 2 ** attempt);
        continue;
      }
      const detail = (error as Error).message;
      const shown = code && !detail.startsWith(code) ? `${code}: ${detail}` : detail;
      const attempts = attempt + 1;
      throw new PersistError(
        `Cannot ${what} ${target}${attempts > 1 ? ` (${attempts} attempts)` : ""}: ${shown}`,
        target,
        { cause: error, hint: hintFor(code, target) },
      );
    }
  }
}
