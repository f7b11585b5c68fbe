/**
 * `ravenclaws config get|set|unset|list|path`: the user settings (conf),
 * the lowest layer below flags, environment and `ravenclaws.toml`. Keys and
 * their validation come from the one settings schema; the API key is stored
 * with file mode 0600 and shown masked unless `--show-secret` is given.
 * `set apiKey --stdin` reads the key from stdin, out of the shell history.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import { ConfigError, UsageError } from "../errors.js";
import { didYouMean } from "../services/suggest.js";
import { type RunSettingKey, SETTINGS, type SettingSpec, userKeys } from "../settings.js";
import type { RunEnvironment } from "./run.js";

/** Options of the `config` subcommands. */
export interface ConfigArgs {
  key?: string;
  value?: string;
  json?: boolean;
  showSecret?: boolean;
  stdin?: boolean;
}

/** The user keys that hold secrets (masked when shown). */
const SECRET_KEYS = new Set(
  Object.entries(SETTINGS)
    .filter(([, spec]) => (spec as SettingSpec).secret)
    .map(([key]) => key),
);

/** `sk-…cdef`: enough to tell keys apart, not enough to use one. */
export function maskSecret(value: string): string {
  return value.length >= 12 ? `${value.slice(0, 3)}…${value.slice(-4)}` : "****";
}

const normalise = (key: string) => key.replace(/[-_]/g, "").toLowerCase();

type Store = Awaited<ReturnType<typeof import("../services/config.js").openUserStore>>;

/** The user keys, in the table's order. */
const USER_KEYS: string[] = userKeys();

/** The user key `name` stands for (`tick-interval`, `tick_interval` and `TickInterval` work too), or exit 2 naming the nearest. */
function resolveKey(name: string): RunSettingKey {
  const found = USER_KEYS.find((k) => normalise(k) === normalise(name));
  if (found) return found as RunSettingKey;
  throw new UsageError(`"${name}" is not a user setting.${didYouMean(name, USER_KEYS)}`, {
    option: "<key>",
    code: "unknown-key",
    hint: `Valid keys: ${USER_KEYS.join(", ")}.`,
  });
}

/** The default of a setting, if it has one. */
function defaultOf(key: RunSettingKey): unknown {
  return (SETTINGS[key] as SettingSpec).default;
}

async function settingsModule() {
  const config = await import("../services/config.js");

  /** Parses a value given as text (a list comma-separated, as in the environment) with the setting's own schema. */
  function parseValue(key: RunSettingKey, raw: string): unknown {
    const parsed = config.parseSettingText(key, raw);
    if (parsed.ok) return parsed.value;
    const shown = SECRET_KEYS.has(key) ? "(hidden)" : JSON.stringify(raw);
    throw new UsageError(`config set ${key}: ${parsed.message} (got ${shown}).`, {
      option: "<value>",
      code: "invalid-value",
    });
  }

  /** Opens the store; a broken one is a config error naming its file (exit 2). */
  async function open(env: NodeJS.ProcessEnv): Promise<Store> {
    try {
      return await config.openUserStore(env);
    } catch (error) {
      const dir = env.RAVENCLAWS_CONFIG_DIR ?? "~/.config/ravenclaws";
      throw new ConfigError(
        `Cannot open the user config in ${dir}: ${(error as Error).message}`,
        "(user config)",
        dir,
        { hint: `Fix or delete ${dir}/config.json.` },
      );
    }
  }

  return { parseValue, open };
}

function show(key: string, value: unknown, showSecret: boolean): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return SECRET_KEYS.has(key) && !showSecret && typeof value === "string"
    ? maskSecret(value)
    : text;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** `config`'s yargs module, bound to the process it runs in. */
export function configCommand(environment: () => RunEnvironment) {
  const keyPositional = <T>(y: Argv<T>) =>
    y.positional("key", { type: "string", describe: "A setting, e.g. model", demandOption: true });
  return {
    command: "config <command>",
    describe: "Read and change user settings (model, baseUrl, apiKey, tickInterval, …)",
    builder: (yargs: Argv) =>
      yargs
        .command({
          command: "get <key>",
          describe: "Print a setting's value (exit 1 if it is not set)",
          builder: (y: Argv) =>
            keyPositional(y)
              .option("show-secret", { type: "boolean", describe: "Print the API key unmasked" })
              .example("$0 config get model", "print the model")
              .example("$0 config get apiKey --show-secret", "print the stored key itself"),
          handler: async (argv: ArgumentsCamelCase<ConfigArgs>) => {
            const io = environment();
            const key = resolveKey(String(argv.key));
            const m = await settingsModule();
            const store = await m.open(io.env);
            const value = store.get(key);
            if (value === undefined) {
              const { CommandFailedError } = await import("../services/heartbeats.js");
              const fallback = defaultOf(key);
              throw new CommandFailedError(
                "config-not-set",
                `${key} is not set in ${store.path}.`,
                {
                  hint:
                    fallback === undefined
                      ? `Set it with \`ravenclaws config set ${key} <value>\`.`
                      : `Its default is ${JSON.stringify(fallback)}; set it with \`ravenclaws config set ${key} <value>\`.`,
                },
              );
            }
            io.stdout.write(`${show(key, value, argv.showSecret ?? false)}\n`);
          },
        })
        .command({
          command: "set <key> [value]",
          describe: "Store a setting (validated against the settings schema)",
          builder: (y: Argv) =>
            keyPositional(y)
              .positional("value", { type: "string", describe: "The value" })
              .option("stdin", {
                type: "boolean",
                describe: "Read the value from stdin (keeps an API key out of the shell history)",
              })
              .example("$0 config set model llama3.2", "use this model by default")
              .example("$0 config set baseUrl http://localhost:11434/v1", "a local Ollama server")
              .example(
                "pass show openai | $0 config set apiKey --stdin",
                "store the API key from stdin",
              ),
          handler: async (argv: ArgumentsCamelCase<ConfigArgs>) => {
            const io = environment();
            const key = resolveKey(String(argv.key));
            const m = await settingsModule();
            const fromStdin = argv.stdin ?? false;
            if (fromStdin === (argv.value !== undefined)) {
              throw new UsageError(
                fromStdin
                  ? "Give the value either as an argument or with --stdin, not both."
                  : `No value given for ${key}.`,
                {
                  option: "<value>",
                  hint: `\`ravenclaws config set ${key} <value>\`, or pipe it in with --stdin.`,
                },
              );
            }
            const raw = fromStdin ? await readStdin() : String(argv.value);
            const value = m.parseValue(key, raw);
            const store = await m.open(io.env);
            store.set(key, value);
            io.stdout.write(`Set ${key} = ${show(key, value, false)} in ${store.path}.\n`);
            if (SECRET_KEYS.has(key) && !fromStdin) {
              io.stderr.write(
                `Note: the key is now in your shell history; \`ravenclaws config set ${key} --stdin\` reads it from stdin instead.\n`,
              );
            }
          },
        })
        .command({
          command: "unset <key>",
          describe: "Remove a setting (its default applies again)",
          builder: (y: Argv) =>
            keyPositional(y).example(
              "$0 config unset tickInterval",
              "back to the default interval",
            ),
          handler: async (argv: ArgumentsCamelCase<ConfigArgs>) => {
            const io = environment();
            const m = await settingsModule();
            const store = await m.open(io.env);
            // A key the store holds verbatim may always be removed, known or not.
            const given = String(argv.key);
            const key = store.has(given) ? given : resolveKey(given);
            if (!store.has(key)) {
              io.stdout.write(`${key} was not set in ${store.path}.\n`);
              return;
            }
            store.delete(key);
            io.stdout.write(`Unset ${key} in ${store.path}.\n`);
          },
        })
        .command({
          command: "list",
          describe: "Print every stored setting (the API key masked)",
          builder: (y: Argv) =>
            y
              .option("json", { type: "boolean", describe: "Print one JSON object" })
              .option("show-secret", { type: "boolean", describe: "Print the API key unmasked" })
              .example("$0 config list", "what is stored")
              .example("$0 config list --json", "as JSON, the API key masked"),
          handler: async (argv: ArgumentsCamelCase<ConfigArgs>) => {
            const io = environment();
            const m = await settingsModule();
            const store = await m.open(io.env);
            const data = store.store;
            const showSecret = argv.showSecret ?? false;
            const known = USER_KEYS.filter((k) => data[k] !== undefined);
            const unknown = Object.keys(data)
              .filter((k) => !USER_KEYS.includes(k))
              .sort();
            if (argv.json) {
              const out: Record<string, unknown> = {};
              for (const k of [...known, ...unknown]) {
                const v = data[k];
                out[k] =
                  SECRET_KEYS.has(k) && !showSecret && typeof v === "string" ? maskSecret(v) : v;
              }
              io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
              return;
            }
            if (known.length === 0 && unknown.length === 0) {
              io.stdout.write(
                `No user settings in ${store.path}.\nSet one with \`ravenclaws config set <key> <value>\`; keys: ${USER_KEYS.join(", ")}.\n`,
              );
              return;
            }
            for (const k of known) io.stdout.write(`${k} = ${show(k, data[k], showSecret)}\n`);
            for (const k of unknown) {
              io.stdout.write(
                `${k} = ${show(k, data[k], showSecret)}  (not a setting: \`run\` refuses it;${didYouMean(k, USER_KEYS)} remove it with \`ravenclaws config unset ${k}\`)\n`,
              );
            }
          },
        })
        .command({
          command: "path",
          describe: "Print the path of the user config file",
          builder: (y: Argv) => y.example("$0 config path", "where the settings are stored"),
          handler: async () => {
            const io = environment();
            const m = await settingsModule();
            io.stdout.write(`${(await m.open(io.env)).path}\n`);
          },
        })
        .demandCommand(1, "Name a config command: get, set, unset, list or path.")
        .example("$0 config set model llama3.2", "store a setting")
        .example("$0 config list", "show the stored settings"),
    handler: () => {},
  };
}
