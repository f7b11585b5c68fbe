/**
 * The README's configuration table, generated from the settings table
 * (`src/settings.ts`) and embedded between markers; `test/readme.test.ts`
 * fails when the README's copy is stale. `npm run docs:settings` rewrites it.
 */
import { defaultTextOf, type SettingSpec, settingEntries } from "../settings.js";

/** Marks the start of the generated configuration table in the README. */
export const SETTINGS_START = "<!-- settings:start -->";
/** Marks its end. */
export const SETTINGS_END = "<!-- settings:end -->";
/** Marks the start of the generated `run` options table in the README. */
export const OPTIONS_START = "<!-- options:start -->";
/** Marks its end. */
export const OPTIONS_END = "<!-- options:end -->";

const code = (text: string) => `\`${text.replace(/\|/g, "\\|")}\``;

function defaultCell(spec: SettingSpec): string {
  const text = defaultTextOf(spec);
  if (text.includes("<")) return code(text);
  if (spec.default === undefined || Array.isArray(spec.default)) return text;
  const value = String(spec.default);
  // "0 (unlimited)": the value in code, the words after it.
  return text.startsWith(value) ? `${code(value)}${text.slice(value.length)}` : text;
}

function row(spec: SettingSpec, key: string): string[] {
  const flags = spec.flag
    ? [spec.flag, ...(spec.aliases ?? [])]
        .map((f) => (f.length === 1 ? `-${f}` : `--${f}`))
        .map(code)
        .join(", ")
    : "";
  const [section, tomlKey] = spec.toml?.split(".") ?? [];
  return [
    spec.label,
    flags,
    (spec.env ?? []).map(code).join(", "),
    spec.toml ? `\`[${section}] ${tomlKey}\`` : "",
    spec.user ? code(key) : "",
    spec.typeText,
    defaultCell(spec),
    spec.scope === "heartbeat" ? "yes" : "",
  ];
}

function flagsCell(spec: SettingSpec): string {
  const flags = [spec.flag ?? "", ...(spec.aliases ?? [])].map((f) =>
    f.length === 1 ? `-${f}` : `--${f}`,
  );
  if (spec.type === "boolean" && spec.default === true) flags.push(`--no-${spec.flag}`);
  return flags.map(code).join(", ");
}

/** The `run` options that are settings, as a Markdown table: option, type, default, meaning. */
export function optionsMarkdown(): string {
  return table([
    ["option", "type", "default", "meaning"],
    ...settingEntries()
      .filter(([, spec]) => spec.flag && (!spec.commands || spec.commands.includes("run")))
      .map(([, spec]) => [
        flagsCell(spec),
        spec.typeText,
        defaultCell(spec),
        spec.doc ?? spec.help,
      ]),
  ]);
}

/** The configuration table as Markdown, columns padded like a formatter would. */
export function settingsMarkdown(): string {
  return table([
    [
      "setting",
      "flag",
      "environment",
      "`ravenclaws.toml`",
      "user config key",
      "type",
      "default",
      "saved",
    ],
    ...settingEntries().map(([key, spec]) => row(spec, key)),
  ]);
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(3, ...rows.map((r) => (r[i] ?? "").length))) ?? [];
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  const [head, ...body] = rows;
  return [line(head ?? []), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** The text between two markers in `document`, or null when they are missing. */
export function embedded(document: string, startMark: string, endMark: string): string | null {
  const start = document.indexOf(startMark);
  const end = document.indexOf(endMark);
  if (start < 0 || end < start) return null;
  return document.slice(start + startMark.length, end).trim();
}

function replaceBetween(document: string, startMark: string, endMark: string, text: string) {
  const start = document.indexOf(startMark);
  const end = document.indexOf(endMark);
  if (start < 0 || end < start) return null;
  return `${document.slice(0, start + startMark.length)}\n\n${text}\n\n${document.slice(end)}`;
}

/** `document` with both current tables between their markers, or null when a pair is missing. */
export function embedSettings(document: string): string | null {
  const withOptions = replaceBetween(document, OPTIONS_START, OPTIONS_END, optionsMarkdown());
  return withOptions === null
    ? null
    : replaceBetween(withOptions, SETTINGS_START, SETTINGS_END, settingsMarkdown());
}
