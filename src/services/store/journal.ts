/**
 * The journal of the file store (`heartbeat-<id>.jsonl`): one JSON object per
 * line, appended whole and synced. A crash mid-append leaves a torn last
 * line, which readers skip and the next append starts after. A journal that
 * is not a regular file (a FIFO, a device) is refused, never opened blocking.
 */
import { constants as fsConstants, writeSync } from "node:fs";
import type * as nodeFs from "node:fs/promises";
import { errnoCode, StateFileError } from "../../errors.js";
import { crashPoint } from "../crashPoints.js";
import { kindOf, NotRegularFileError, openRegularFile, readRegularFile } from "../regularFile.js";
import type { StoreFs } from "./atomicWrite.js";
import type { JournalEntry } from "./types.js";

/** Parses journal text, skipping lines that are not whole JSON objects. */
export function parseJournal(text: string): JournalEntry[] {
  const entries: JournalEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line) as unknown;
      if (value && typeof value === "object" && !Array.isArray(value))
        entries.push(value as JournalEntry);
    } catch {
      // A torn line from a crash mid-append.
    }
  }
  return entries;
}

/** A journal that is not a regular file (a FIFO, a device) is refused like a bad state file (exit 3); other errors pass. */
export function journalError(journal: string, error: unknown): unknown {
  if (!(error instanceof NotRegularFileError)) return error;
  return new StateFileError(
    `The journal ${journal} is ${error.kind}, not a regular file; it was not read.`,
    journal,
    "unreadable",
    {
      cause: error,
      hint: "Something else took the journal's place: move it away and run again.",
    },
  );
}

/** Refuses a journal that exists but is not a regular file, without opening it. */
export async function checkJournalFile(journal: string, fs: Pick<StoreFs, "stat">): Promise<void> {
  const stat = await fs.stat(journal).catch(() => null);
  if (stat && !stat.isFile())
    throw journalError(journal, new NotRegularFileError(journal, kindOf(stat)));
}

/** Reads the journal; a torn last line (from a crash) is skipped; none: empty. */
export async function readJournalFile(
  journal: string,
  fs: Pick<StoreFs, "open">,
): Promise<JournalEntry[]> {
  let text: string | null;
  try {
    text = await readRegularFile(journal, fs);
  } catch (error) {
    throw journalError(journal, error);
  }
  return text === null ? [] : parseJournal(text);
}

/**
 * The highest journaled `seq` (a `recover` marker restarts the count) in the
 * last 256 KiB, and whether the file ends in a torn line.
 */
export async function readJournalTail(
  journal: string,
  fs: Pick<StoreFs, "open">,
): Promise<{ lastSeq: number; torn: boolean }> {
  let handle: nodeFs.FileHandle | undefined;
  try {
    handle = (await openRegularFile(journal, fs)) ?? undefined;
    if (!handle) return { lastSeq: 0, torn: false };
    const { size } = await handle.stat();
    const length = Math.min(size, 256 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    let lastSeq = 0;
    for (const entry of parseJournal(buffer.toString("utf8"))) {
      if (typeof entry.seq !== "number") continue;
      lastSeq = entry.type === "recover" ? entry.seq : Math.max(lastSeq, entry.seq);
    }
    return { lastSeq, torn: length > 0 && buffer[length - 1] !== 0x0a };
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { lastSeq: 0, torn: false };
    throw journalError(journal, error);
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** Appends `text` (whole lines) to the journal and syncs it; part of it may have landed when this throws. */
export async function appendJournalText(
  journal: string,
  text: string,
  fs: Pick<StoreFs, "open">,
): Promise<void> {
  let handle: nodeFs.FileHandle | undefined;
  try {
    // O_NONBLOCK: a FIFO in the journal's place fails at once (ENXIO) instead of blocking.
    handle = await fs.open(
      journal,
      fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NONBLOCK,
      0o600,
    );
    const stat = await handle.stat();
    if (!stat.isFile()) throw journalError(journal, new NotRegularFileError(journal, kindOf(stat)));
    const fd = handle.fd;
    crashPoint("journal:mid-line", () => {
      writeSync(fd, text.slice(0, Math.max(1, Math.floor(text.length / 2))));
    });
    await handle.appendFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle?.close().catch(() => {});
  }
}
