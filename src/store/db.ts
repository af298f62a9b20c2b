import Database from "better-sqlite3";
import { InputError } from "../util/errors.js";
import { migrations as builtinMigrations, type Migration } from "./migrations.js";

export type Db = Database.Database;

export interface OpenOptions {
  /** Open an existing database without creating or migrating it. */
  readonly?: boolean;
  /** Migrations to apply (tests pass a prefix to check upgrades); defaults to all. */
  migrations?: readonly Migration[];
}

/**
 * Open (and create or upgrade) a svctrace database. WAL lets readers (`svctrace legs`, the web
 * view) run while an ingest writes.
 */
export function openDb(path: string, options: OpenOptions = {}): Db {
  let db: Db;
  try {
    db = new Database(path, {
      readonly: options.readonly ?? false,
      fileMustExist: options.readonly ?? false,
    });
  } catch (error) {
    throw new InputError(
      `cannot open database: ${(error as Error).message}`,
      { file: path },
      { cause: error },
    );
  }
  try {
    if (!options.readonly) {
      db.pragma("journal_mode = WAL");
      // A crash may lose the last transactions but never corrupts the file; every file's ingest
      // is one transaction, so a lost one is simply absent and can be ingested again.
      db.pragma("synchronous = NORMAL");
      migrate(db, options.migrations ?? builtinMigrations);
    } else {
      const version = schemaVersion(db);
      if (version === 0)
        throw new InputError("not a svctrace database (schema version 0)", { file: path });
    }
    db.pragma("cache_size = -16384");
    db.pragma("temp_store = MEMORY");
  } catch (error) {
    db.close();
    if (error instanceof InputError) throw error;
    throw new InputError(
      `not a usable svctrace database: ${(error as Error).message}`,
      { file: path },
      { cause: error },
    );
  }
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma("user_version", { simple: true }) as number;
}

/** Apply the migrations the database has not seen yet, each atomically with its version bump. */
export function migrate(db: Db, list: readonly Migration[] = builtinMigrations): number {
  const current = schemaVersion(db);
  if (current > list.length) {
    throw new InputError(
      `database schema version ${current} is newer than this svctrace knows (${list.length}); upgrade svctrace`,
    );
  }
  if (current === list.length) return current;
  // A migration may rebuild a parent table (SQLite's recipe for changing constraints): with
  // foreign keys on, dropping it would cascade into its children. Checked before each commit.
  const fk = db.pragma("foreign_keys", { simple: true }) as number;
  db.pragma("foreign_keys = OFF");
  try {
    // All pending migrations in one transaction: a database is at one version or the next,
    // and a new database is created with one commit instead of one per migration.
    db.transaction(() => {
      for (let v = current; v < list.length; v++) {
        const migration = list[v]!;
        db.exec(migration.sql);
        const broken = db.pragma("foreign_key_check") as unknown[];
        if (broken.length > 0) {
          throw new Error(
            `migration ${v + 1} (${migration.name}) broke ${broken.length} foreign keys`,
          );
        }
      }
      db.pragma(`user_version = ${list.length}`);
    })();
  } finally {
    db.pragma(`foreign_keys = ${fk ? "ON" : "OFF"}`);
  }
  return list.length;
}
