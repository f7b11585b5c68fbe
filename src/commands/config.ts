/**
 * `ravenclaws config get|set|unset|list|path`: the user settings (conf),
 * the lowest layer below flags, environment and `ravenclaws.toml`. Keys and
 * their validation come from the one settings schema; the API key is stored
 * with file mode 0600 and shown masked unless `--show-secret` is given.
 * `set apiKey --stdin` reads the key from stdin, out of the shell history.
 */
import type { ArgumentsCamelCase, Argv } from "yargs";
import type { ZodType } from "zod";
import { ConfigError, UsageError } from "../errors.js";
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
const SECRET_KEYS = new Set(["apiKey"]);

/** `sk-…cdef`: enough to tell keys apart, not enough to use one. */
export function maskSecret(value: string): string {
  return value.length >= 12 ? `${value.slice(0, 3)}…${value.slice(-4)}` : "****";
}

const normalise = (key: string) => key.replace(/[-_]/g, "").toLowerCase();

type Store = Awaited<ReturnType<typeof import("../services/config.js").openUserStore>>;

async function settingsModule() {
  const [config, schemas, { z }, { splitList }] = await Promise.all([
    import("../services/config.js"),
    import("../schemas/config.js"),
    import("zod"),
    import("../services/tools/ruleSyntax.js"),
  ]);
  /** The keys the user store accepts, in the settings' order. */
  const userKeys = Object.values(config.KEYS)
    .map((spec) => spec.user)
    .filter((k): k is string => typeof k === "string");

  /** The user key `name` stands for (`tick-interval`, `tick_interval` and `TickInterval` work too), or exit 2 listing the keys. */
  function resolveKey(name: string): string {
    const found = userKeys.find((k) => normalise(k) === normalise(name));
    if (found) return found;
    throw new UsageError(`"${name}" is not a user setting.`, {
      option: "<key>",
      code: "unknown-key",
      hint: `Valid keys: ${userKeys.join(", ")}.`,
    });
  }

  function specOf(userKey: string) {
    const entry = Object.entries(config.KEYS).find(([, spec]) => spec.user === userKey);
    if (!entry) throw new Error(`no setting for user key ${userKey}`);
    const [settingKey, spec] = entry as [
      keyof typeof schemas.RunSettingsSchema.shape,
      (typeof entry)[1],
    ];
    return { settingKey, spec, field: schemas.RunSettingsSchema.shape[settingKey] as ZodType };
  }

  /** Parses a value given as text (a list comma-separated, as in the environment) with the setting's own zod schema. */
  function parseValue(userKey: string, raw: string): unknown {
    const { spec, field } = specOf(userKey);
    const schema =
      spec.type === "number"
        ? z
            .string()
            .trim()
            .min(1, "must be a number")
            .pipe(z.coerce.number({ error: "must be a number" }))
            .pipe(field as ZodType<unknown, number>)
        : spec.type === "boolean"
          ? z
              .stringbool({ error: "must be true or false" })
              .pipe(field as ZodType<unknown, boolean>)
          : spec.type === "list"
            ? z
                .string()
                .transform(splitList)
                .pipe(field as ZodType<unknown, string[]>)
            : field;
    const parsed = schema.safeParse(raw);
    if (parsed.success) return parsed.data;
    const shown = SECRET_KEYS.has(userKey) ? "(hidden)" : JSON.stringify(raw);
    throw new UsageError(
      `config set ${userKey}: ${parsed.error.issues[0]?.message ?? "invalid value"} (got ${shown}).`,
      { option: "<value>", code: "invalid-value" },
    );
  }

  /** The default of a setting, if it has one. */
  function defaultOf(userKey: string): unknown {
    const parsed = specOf(userKey).field.safeParse(undefined);
    return parsed.success ? parsed.data : undefined;
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

  return { userKeys, resolveKey, parseValue, defaultOf, open };
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
            const m = await settingsModule();
            const key = m.resolveKey(String(argv.key));
            const store = await m.open(io.env);
            const value = store.get(key);
            if (value === undefined) {
              const { CommandFailedError } = await import("../services/heartbeats.js");
              const fallback = m.defaultOf(key);
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
            const m = await settingsModule();
            const key = m.resolveKey(String(argv.key));
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
            const key = m.resolveKey(String(argv.key));
            const store = await m.open(io.env);
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
            const known = m.userKeys.filter((k) => data[k] !== undefined);
            const unknown = Object.keys(data)
              .filter((k) => !m.userKeys.includes(k))
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
                `No user settings in ${store.path}.\nSet one with \`ravenclaws config set <key> <value>\`; keys: ${m.userKeys.join(", ")}.\n`,
              );
              return;
            }
            for (const k of known) io.stdout.write(`${k} = ${show(k, data[k], showSecret)}\n`);
            for (const k of unknown) {
              io.stdout.write(`${k} = ${show(k, data[k], showSecret)}  (not a setting; ignored)\n`);
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
