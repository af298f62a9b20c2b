export { type Db, migrate, type OpenOptions, openDb, schemaVersion } from "./db.js";
export { type Migration, migrations } from "./migrations.js";
export * from "./queries.js";
export * from "./writer.js";
