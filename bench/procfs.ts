/**
 * Process figures from Linux's /proc for `npm run bench:scale`: the RSS and
 * CPU time of the worker processes and of a PostgreSQL server (the postmaster
 * with its backends). Elsewhere every figure is null.
 */
import { readdirSync, readFileSync } from "node:fs";
import * as os from "node:os";

const CLOCK_TICKS = 100; // USER_HZ on Linux
const PAGE_KB = 4;

function read(file: string): string | null {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
}

/** Resident set size of `pid` in MB, null when it is gone or there is no /proc. */
export function rssMbOf(pid: number): number | null {
  const status = read(`/proc/${pid}/status`);
  const kb = status ? /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] : undefined;
  return kb === undefined ? null : Number(kb) / 1024;
}

interface Stat {
  ppid: number;
  /** utime + stime, ms. */
  own: number;
  /** cutime + cstime (reaped children), ms. */
  children: number;
  /** Resident pages, MB. */
  rssMb: number;
}

function statOf(pid: number): Stat | null {
  const text = read(`/proc/${pid}/stat`);
  if (!text) return null;
  // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const n = (i: number) => Number(fields[i - 3]);
  return {
    ppid: n(4),
    own: ((n(14) + n(15)) * 1000) / CLOCK_TICKS,
    children: ((n(16) + n(17)) * 1000) / CLOCK_TICKS,
    rssMb: (n(24) * PAGE_KB) / 1024,
  };
}

/** CPU time (user + system) of `pid` itself, ms; null when it is gone. */
export function cpuMsOf(pid: number): number | null {
  return statOf(pid)?.own ?? null;
}

/**
 * CPU time of a process tree one level deep (a PostgreSQL postmaster and its
 * backends), ms: the parent's own and reaped children's time plus that of its
 * live children. Also the summed RSS of them all, MB.
 */
export function treeFigures(pid: number): { cpuMs: number; rssMb: number } | null {
  const parent = statOf(pid);
  if (!parent) return null;
  let cpuMs = parent.own + parent.children;
  let rssMb = parent.rssMb;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const child = statOf(Number(entry));
    if (child && child.ppid === pid) {
      cpuMs += child.own + child.children;
      rssMb += child.rssMb;
    }
  }
  return { cpuMs, rssMb };
}

/** The 1-minute load average. */
export function loadAverage(): number {
  return Math.round((os.loadavg()[0] ?? 0) * 100) / 100;
}
