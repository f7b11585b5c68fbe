/**
 * Counting the processes of one PID namespace from the host, for the
 * process limit of the sandbox (see {@link watchProcessCount}).
 */
import fs from "node:fs";

/** How many processes on the host live in the PID namespace with inode `nsInode`. */
export function countInPidNamespace(nsInode: number): number {
  const wanted = `pid:[${nsInode}]`;
  let count = 0;
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    try {
      if (fs.readlinkSync(`/proc/${entry}/ns/pid`) === wanted) count += 1;
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return count;
}

/**
 * Polls the process count of a PID namespace every `intervalMs` and calls
 * `onExceeded` once when it passes `max`.
 *
 * Why not RLIMIT_NPROC: the kernel does not enforce it for real uid 0 (the
 * usual CI case, and root inside the sandbox's user namespace maps to it),
 * and for other users it counts every process of that user on the host, so
 * a limit low enough to stop a fork bomb would break a user with many
 * processes. The namespace count is exact for both.
 *
 * @returns Stops the polling.
 */
export function watchProcessCount(
  nsInode: number,
  max: number,
  onExceeded: (count: number) => void,
  intervalMs = 100,
): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    if (stopped) return;
    const count = countInPidNamespace(nsInode);
    if (count > max) {
      stopped = true;
      clearInterval(timer);
      onExceeded(count);
    }
  }, intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
