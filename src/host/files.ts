/**
 * The host's files in a state dir, beside each heartbeat's state file,
 * journal and lock:
 *
 * - `heartbeat-<id>.host`: hosting record (`workdir`, `stopped`), written
 *   atomically. Not part of the state file: the state file is the persisted
 *   snapshot, written only by its lock holder's `persist`, while a stop on
 *   purpose must be recorded (and cleared by `ravenclaws start`) by whoever
 *   asks, with or without the lock.
 * - `host.lease`: the running host's lease (pid, host, since), refreshed for
 *   all its heartbeats at once; each hosted lock names it.
 * - `requests/<action>.<id>`: a control request (`stop`, `wake`, `start`)
 *   from another terminal, picked up by the host within a second and removed.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { z } from "zod";
import { HOST_LEASE_FILE, readRegularFile, writeFileAtomic } from "../services/store/index.js";

/** The hosting record of one heartbeat. */
export const HostRecordSchema = z.object({
  schemaVersion: z.literal(1),
  /** Where its tools work. */
  workdir: z.string().nullable(),
  /** Set when it was stopped on purpose: it is not run again until started. */
  stopped: z.object({ at: z.string(), by: z.string() }).nullable(),
});

/** A heartbeat's hosting record. */
export type HostRecord = z.infer<typeof HostRecordSchema>;

/** Path of `heartbeat-<id>.host`. */
export const hostRecordPath = (stateDir: string, id: string) =>
  path.join(stateDir, `heartbeat-${id}.host`);

/** Reads a hosting record; null when there is none or it cannot be used (it is then rewritten only by an explicit stop/start). */
export async function readHostRecord(stateDir: string, id: string): Promise<HostRecord | null> {
  let text: string | null;
  try {
    text = await readRegularFile(hostRecordPath(stateDir, id));
  } catch {
    return null;
  }
  if (text === null) return null;
  try {
    const parsed = HostRecordSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Writes a hosting record atomically. */
export async function writeHostRecord(
  stateDir: string,
  id: string,
  record: HostRecord,
): Promise<void> {
  await writeFileAtomic(hostRecordPath(stateDir, id), `${JSON.stringify(record)}\n`);
}

/** Marks a heartbeat stopped on purpose (or clears the mark), keeping its workdir. */
export async function setStopped(
  stateDir: string,
  id: string,
  stopped: HostRecord["stopped"],
): Promise<void> {
  const current = await readHostRecord(stateDir, id);
  await writeHostRecord(stateDir, id, {
    schemaVersion: 1,
    workdir: current?.workdir ?? null,
    stopped,
  });
}

/** The control requests a host picks up. */
export type HostRequestAction = "stop" | "wake" | "start";

const ACTIONS: readonly HostRequestAction[] = ["stop", "wake", "start"];

/** The requests dir of a state dir. */
export const requestsDir = (stateDir: string) => path.join(stateDir, "requests");

/** The lease file of a state dir's host. */
export const leasePath = (stateDir: string) => path.join(stateDir, HOST_LEASE_FILE);

/** Leaves a durable request for the host (atomic; the same request twice is one). */
export async function writeRequest(
  stateDir: string,
  action: HostRequestAction,
  id: string,
  by: string,
): Promise<void> {
  const dir = requestsDir(stateDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(
    path.join(dir, `${action}.${id}`),
    `${JSON.stringify({ action, id, at: new Date().toISOString(), by })}\n`,
  );
}

/** The pending requests (oldest first by name order is fine: each is idempotent). */
export async function readRequests(
  stateDir: string,
): Promise<{ action: HostRequestAction; id: string; file: string }[]> {
  let names: string[];
  try {
    names = await fs.readdir(requestsDir(stateDir));
  } catch {
    return [];
  }
  const requests: { action: HostRequestAction; id: string; file: string }[] = [];
  for (const name of names) {
    if (name.startsWith(".")) continue; // a temp file of a write in progress
    const dot = name.indexOf(".");
    const action = name.slice(0, dot) as HostRequestAction;
    if (dot < 0 || !ACTIONS.includes(action)) continue;
    requests.push({
      action,
      id: name.slice(dot + 1),
      file: path.join(requestsDir(stateDir), name),
    });
  }
  return requests;
}
