/**
 * The heartbeat's checklist (`HEARTBEAT.md` in the workdir, or
 * `--checklist FILE`): standing instructions included in every assessment,
 * and recurring tasks (`- [every 1h] Check the plants`) that enter the prompt
 * only when due. Read safely (a regular file only, bounded); never written.
 */
import type * as nodeFs from "node:fs/promises";
import * as path from "node:path";
import type { ChecklistTask, ChecklistView } from "../machines/heartbeat.types.js";
import { parseDuration } from "./duration.js";
import { openRegularFile } from "./regularFile.js";

/** The checklist's default file name, in the workdir. */
export const CHECKLIST_FILE = "HEARTBEAT.md";
/** Most bytes of the file read; the rest is ignored (tasks included). */
export const CHECKLIST_READ_LIMIT = 256 * 1024;
/** Most recurring tasks taken from the file. */
export const CHECKLIST_TASKS_LIMIT = 50;

/** `- [every 1h] Check the plants` (also `*` or `+` bullets). */
const TASK_LINE = /^\s*[-*+]\s+\[every\s+([^\]]+)\]\s*(.+?)\s*$/i;

/** The checklist text split: standing instructions and recurring tasks. */
export function parseChecklist(text: string): { instructions: string; tasks: ChecklistTask[] } {
  const keep: string[] = [];
  const tasks: ChecklistTask[] = [];
  const seen = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const match = TASK_LINE.exec(line);
    const everySec = match ? parseDuration(match[1] as string) : null;
    if (!match || everySec === null || everySec <= 0) {
      keep.push(line);
      continue;
    }
    const task = (match[2] as string).slice(0, 500);
    if (seen.has(task) || tasks.length >= CHECKLIST_TASKS_LIMIT) continue;
    seen.add(task);
    tasks.push({ task, everySec, source: "file" });
  }
  return { instructions: keep.join("\n").trim(), tasks };
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes (never inside a character). */
function cutBytes(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  return bytes
    .subarray(0, maxBytes)
    .toString("utf8")
    .replace(/\uFFFD$/, "");
}

/**
 * Reads the checklist at `file`: null when it does not exist. Throws
 * `NotRegularFileError` for a FIFO, device or directory in its place (it is
 * never opened blocking). The standing instructions are capped at `maxBytes`.
 */
export async function readChecklist(
  file: string,
  maxBytes: number,
  fs?: Pick<typeof nodeFs, "open">,
): Promise<ChecklistView | null> {
  const handle = await openRegularFile(file, fs);
  if (!handle) return null;
  let raw: string;
  try {
    const buffer = Buffer.alloc(CHECKLIST_READ_LIMIT);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    raw = buffer.subarray(0, length).toString("utf8");
  } finally {
    await handle.close().catch(() => {});
  }
  const { instructions, tasks } = parseChecklist(raw);
  const bytes = Buffer.byteLength(instructions, "utf8");
  const truncated = bytes > maxBytes;
  return {
    path: file,
    text: truncated ? cutBytes(instructions, maxBytes) : instructions,
    truncated,
    bytes,
    tasks,
  };
}

/** Where a heartbeat's checklist is: `--checklist` (relative to the workdir) or `HEARTBEAT.md` in it. */
export function checklistPath(workdir: string, setting: string | undefined | null): string {
  return path.resolve(workdir, setting ?? CHECKLIST_FILE);
}
