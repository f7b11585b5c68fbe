/**
 * The PostgreSQL database of heartbeats (`--database-url`): a `pg.Pool` behind
 * a small interface the store, the queue and the commands share. `pg` is
 * imported only when a database is opened, so commands that never use one
 * do not load it.
 *
 * The URL's password is a secret like the API key: {@link Database.url} shows
 * the URL with it redacted, and {@link Database.redact} removes it (and every
 * secret of the caller's redactor) from text before it is written anywhere.
 */
import type { Pool, PoolClient, QueryResultRow } from "pg";
import { DatabaseError } from "../../errors.js";
import { createRedactor, type Redactor } from "../redact.js";

/** The result of one statement. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/**
 * Something that runs SQL: the pool, or one transaction's connection. It is
 * also a pg-boss `db` (`executeSql`), so pg-boss can write inside our
 * transactions (`send(name, data, { db: tx })`).
 */
export interface Executor {
  query<R extends QueryResultRow = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<QueryResult<R>>;
  /** The same as {@link query}, under the name pg-boss calls. */
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** An open database. */
export interface Database extends Executor {
  /** The URL, its password redacted: what messages show. */
  readonly url: string;
  /** Removes the URL's password and the caller's secrets from text. */
  readonly redact: Redactor;
  /**
   * Runs `fn` in one transaction (BEGIN … COMMIT on one connection); rolls
   * back and rethrows when it throws.
   */
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/** Options of {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** The caller's redactor (API key, notify token…); the URL's password is added to it. */
  redact?: Redactor;
  /** Most connections at once (default 10). */
  max?: number;
  /** Shown in `pg_stat_activity` (default `ravenclaws`). */
  applicationName?: string;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Check the server answers before returning (default true). */
  check?: boolean;
}

/** The URL with its password replaced by `***` (unchanged when it has none or cannot be parsed). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@");
  }
}

/** The password of a URL, as written and decoded (both are secrets). */
function passwordsOf(url: string): string[] {
  try {
    const raw = new URL(url).password;
    if (!raw) return [];
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      // Not percent-encoded.
    }
    return [raw, decoded];
  } catch {
    return [];
  }
}

/**
 * A redactor that removes the URL's password (as written and decoded) and,
 * after that, whatever `redact` removes.
 */
export function urlRedactor(url: string, redact?: Redactor): Redactor {
  const own = createRedactor(passwordsOf(url));
  return redact ? (text) => redact(own(text)) : own;
}

/** Checks that `url` is a PostgreSQL URL; a {@link DatabaseError} (`bad-url`, exit 2) otherwise. */
export function checkDatabaseUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseError("bad-url", "The database URL is not a URL.", redactUrl(url), {
      hint: "Give it as postgres://USER:PASSWORD@HOST:PORT/DATABASE (--database-url or RAVENCLAWS_DATABASE_URL).",
    });
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:")
    throw new DatabaseError(
      "bad-url",
      `The database URL ${redactUrl(url)} is not a PostgreSQL URL (it starts with ${parsed.protocol}).`,
      redactUrl(url),
      {
        hint: "Give it as postgres://USER:PASSWORD@HOST:PORT/DATABASE (--database-url or RAVENCLAWS_DATABASE_URL).",
      },
    );
}

const PG_CODES: Record<string, "auth-failed" | "not-found"> = {
  "28P01": "auth-failed",
  "28000": "auth-failed",
  "3D000": "not-found",
};
const NET_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ECONNRESET",
]);

/**
 * Turns a connection failure into a {@link DatabaseError} that says what,
 * where and what to do; other errors are returned as they are.
 */
export function connectionError(error: unknown, url: string): unknown {
  if (error instanceof DatabaseError) return error;
  const shown = redactUrl(url);
  const redact = urlRedactor(url);
  const code = (error as { code?: unknown } | null)?.code;
  const message = redact(error instanceof Error ? error.message : String(error));
  let host = "";
  try {
    const parsed = new URL(url);
    host = `${parsed.hostname}:${parsed.port || "5432"}`;
  } catch {
    // Reported as it is.
  }
  if (typeof code === "string" && PG_CODES[code] === "auth-failed")
    return new DatabaseError(
      "auth-failed",
      `The database at ${shown} refused the login: ${message}.`,
      shown,
      { hint: "Check the user and password in --database-url (or RAVENCLAWS_DATABASE_URL)." },
    );
  if (typeof code === "string" && PG_CODES[code] === "not-found")
    return new DatabaseError(
      "not-found",
      `The database at ${shown} does not exist: ${message}.`,
      shown,
      {
        hint: "Create it (createdb), or correct the database name at the end of --database-url.",
      },
    );
  if (
    (typeof code === "string" && NET_CODES.has(code)) ||
    /timeout|terminated|connect/i.test(message)
  )
    return new DatabaseError(
      "unreachable",
      `Cannot reach the database at ${host || shown}: ${message}.`,
      shown,
      {
        hint: "Check that PostgreSQL runs there and accepts connections from this machine (host, port, firewall), or use --embedded-db DIR to run one here.",
      },
    );
  return error;
}

/**
 * Opens the database at `url` over a connection pool, and (unless `check` is
 * false) checks that it answers; a {@link DatabaseError} when it cannot be
 * used (bad URL, unreachable, login refused, no such database).
 */
export async function openDatabase(
  url: string,
  options: OpenDatabaseOptions = {},
): Promise<Database> {
  checkDatabaseUrl(url);
  const { default: pg } = await import("pg");
  const pool: Pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? "ravenclaws",
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
  });
  // An idle connection the server dropped: the next query gets a new one.
  pool.on("error", () => {});
  const db = databaseOver(pool, url, options.redact);
  if (options.check !== false) {
    try {
      await db.query("SELECT 1");
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
  }
  return db;
}

function executorOf(
  run: (text: string, values?: unknown[]) => Promise<{ rows: unknown[]; rowCount: number | null }>,
  url: string,
): Executor {
  const query = async <R extends QueryResultRow>(text: string, values?: unknown[]) => {
    try {
      const result = await run(text, values);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw connectionError(error, url);
    }
  };
  return { query, executeSql: query };
}

function databaseOver(pool: Pool, url: string, redact?: Redactor): Database {
  const base = executorOf((text, values) => pool.query(text, values), url);
  let closed = false;
  return {
    ...base,
    url: redactUrl(url),
    redact: urlRedactor(url, redact),
    async transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
      let client: PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw connectionError(error, url);
      }
      const tx = executorOf((text, values) => client.query(text, values), url);
      let broken = false;
      try {
        await tx.query("BEGIN");
        const result = await fn(tx);
        await tx.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        client.release(broken);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
