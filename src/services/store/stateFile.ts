import * as nodeFs from "node:fs/promises";
import * as path from "node:path";
import { StateFileError } from "../../errors.js";
// The state names only, to refuse a snapshot in a state the machine does not have.
import { HEARTBEAT_STATES } from "../../machines/shared.js";
import {
  STATE_SCHEMA_VERSION,
  type StateFile,
  StateFileSchema,
  stateFileSchemaFor,
} from "../../schemas/stateFile.js";
import { NotRegularFileError, readRegularFile } from "../regularFile.js";
import type { StoreFs } from "./atomicWrite.js";
import type { HeartbeatPaths } from "./types.js";

/** Paths of heartbeat `id` under `stateDir`. */
export function heartbeatPaths(stateDir: string, id: string): HeartbeatPaths {
  return {
    stateDir,
    stateFile: path.join(stateDir, `heartbeat-${id}.json`),
    journal: path.join(stateDir, `heartbeat-${id}.jsonl`),
    lock: path.join(stateDir, `heartbeat-${id}.lock`),
  };
}

/** The previous good version of a state file. */
export function prevPathOf(stateFile: string): string {
  return `${stateFile}.prev`;
}

/**
 * Reads and validates a state file. Returns `null` when there is none; throws
 * {@link StateFileError} when there is one that cannot be used.
 */
export async function loadStateFile(
  file: string,
  fs: Pick<StoreFs, "open"> = nodeFs,
): Promise<StateFile | null> {
  const text = await readStateText(file, fs);
  if (text === null) return null;
  const state = parseStateFile(text, file);
  checkStateFile(state, file);
  return state;
}

export async function readStateText(
  file: string,
  fs: Pick<StoreFs, "open">,
): Promise<string | null> {
  try {
    return await readRegularFile(file, fs);
  } catch (error) {
    if (error instanceof NotRegularFileError) {
      throw new StateFileError(
        `The state file ${file} is ${error.kind}, not a regular file; it was not read.`,
        file,
        "unreadable",
        {
          cause: error,
          hint: "Something else took the state file's place: move it away, then restore the state file (or run with --recover to resume from the previous version).",
        },
      );
    }
    throw new StateFileError(
      `Cannot read the state file ${file}: ${(error as Error).message}`,
      file,
      "unreadable",
      { cause: error, hint: "Check the file's permissions; it was not modified." },
    );
  }
}

/** The id a state file's name says it holds (`heartbeat-<id>.json`, or its `.prev`); null for other names. */
function idOfFileName(file: string): string | null {
  return /^heartbeat-(.+)\.json(?:\.prev)?$/.exec(path.basename(file))?.[1] ?? null;
}

/**
 * Refuses a state file that passes the schema but contradicts itself: an `id`
 * other than its file name's, or than its snapshot's; a goal or `tick` other
 * than its snapshot's; a snapshot in a state the heartbeat machine does not
 * have, or in XState's `error` status. Resuming such a file would rewrite it
 * from a state nobody wrote. Throws {@link StateFileError} (`invalid`, exit 3).
 */
export function checkStateFile(state: StateFile, file: string): void {
  const snapshot = state.snapshot;
  const ctx = snapshot.context;
  const problems: string[] = [];
  const named = idOfFileName(file);
  if (named !== null && named !== state.id)
    problems.push(`its id is "${state.id}" but its file name says "${named}"`);
  if (ctx.id !== state.id)
    problems.push(`its id is "${state.id}" but its snapshot's is "${ctx.id}"`);
  if (ctx.goal !== state.goal) problems.push("its goal differs from its snapshot's");
  if (ctx.tick !== state.tick)
    problems.push(`its tick is ${state.tick} but its snapshot's is ${ctx.tick}`);
  if (snapshot.status === "error") problems.push(`its snapshot's status is "error"`);
  const value =
    typeof snapshot.value === "string" ? snapshot.value : Object.keys(snapshot.value)[0];
  if (value === undefined || !(HEARTBEAT_STATES as readonly string[]).includes(value))
    problems.push(
      `its snapshot is in state ${JSON.stringify(snapshot.value)}, which does not exist`,
    );
  if (problems.length === 0) return;
  throw new StateFileError(
    `The state file ${file} contradicts itself: ${problems.join("; ")}.`,
    file,
    "invalid",
    {
      hint: `${untouched} It was not written by ravenclaws as it is: restore it from a backup, or run again with --recover to resume from the previous version (${path.basename(prevPathOf(file))}).`,
    },
  );
}

const untouched = "The file was left as it is.";

/** Parses and validates state file text; `file` is used in messages. */
export function parseStateFile(text: string, file: string): StateFile {
  const recover = `${untouched} Run again with --recover to move it aside and resume from the previous version (${path.basename(prevPathOf(file))}), or restore it from a backup.`;
  if (text.trim() === "") {
    throw new StateFileError(`The state file ${file} is empty.`, file, "empty", { hint: recover });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(
      `The state file ${file} is not valid JSON (${(error as Error).message}).`,
      file,
      "not-json",
      { hint: recover },
    );
  }
  const version = (data as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === "number" && Number.isInteger(version) && version > STATE_SCHEMA_VERSION) {
    throw new StateFileError(
      `The state file ${file} has schemaVersion ${version}, written by a newer ravenclaws; this one reads version ${STATE_SCHEMA_VERSION}.`,
      file,
      "future-version",
      { hint: `${untouched} Upgrade ravenclaws to resume this heartbeat.` },
    );
  }
  // Known versions are read with their own schema and migrated to the current
  // one; anything else (no version, 0, a string) fails the current schema.
  const parsed = (stateFileSchemaFor(version) ?? StateFileSchema).safeParse(data);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new StateFileError(
      `The state file ${file} does not validate: ${issues}.`,
      file,
      "invalid",
      { hint: recover },
    );
  }
  return parsed.data;
}
