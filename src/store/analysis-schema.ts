import type { Db } from "./db.js";

/**
 * What `svctrace analyze` writes: reconstructed connections (with the legs they are made of) and
 * findings. `analyze` replaces all of it on every run. The row shapes here mirror
 * src/reconstruct/types.ts `Connection` and src/checks/types.ts `Finding` structurally (the store
 * may not import those layers).
 */
export const analysisSchema = `
CREATE TABLE connections (
  id INTEGER PRIMARY KEY,
  proto TEXT NOT NULL,
  client_ip TEXT NOT NULL,
  client_port INTEGER NOT NULL,
  vip_ip TEXT NOT NULL,
  vip_port INTEGER NOT NULL,
  service TEXT,
  node TEXT,
  hook TEXT NOT NULL,
  endpoint_ip TEXT,
  endpoint_port INTEGER,
  snat_ip TEXT,
  snat_port INTEGER,
  verdict TEXT NOT NULL,
  start REAL NOT NULL,
  end REAL NOT NULL,
  path TEXT NOT NULL,
  candidates TEXT NOT NULL,
  vip_from TEXT NOT NULL,
  answered INTEGER NOT NULL,
  refusal TEXT,
  conn_state TEXT,
  ruleset_id INTEGER,
  translation_ids TEXT NOT NULL,
  conntrack_ids TEXT NOT NULL
);
CREATE INDEX connections_start ON connections (start);

CREATE TABLE connection_legs (
  connection_id INTEGER NOT NULL,
  leg_id INTEGER NOT NULL,
  PRIMARY KEY (connection_id, leg_id)
) WITHOUT ROWID;

CREATE TABLE findings (
  id INTEGER PRIMARY KEY,
  check_id TEXT NOT NULL,
  severity TEXT NOT NULL,
  service TEXT,
  node TEXT,
  from_ts REAL,
  to_ts REAL,
  summary TEXT NOT NULL,
  evidence TEXT NOT NULL
);

CREATE TABLE analysis_runs (
  id INTEGER PRIMARY KEY,
  ran_at REAL NOT NULL,
  seconds REAL NOT NULL,
  stats TEXT NOT NULL
);
`;

/**
 * One row per connection instead of one per (connection, leg): at a million connections the
 * child table's inserts and its WAL pages cost more than everything else analyze writes.
 */
export const legIdsColumn = `
ALTER TABLE connections ADD COLUMN leg_ids TEXT NOT NULL DEFAULT '[]';
DROP TABLE connection_legs;
`;

/**
 * A million connections share a few hundred (path, candidates) pairs — one per Service port,
 * node, rule set and chosen endpoint: stored once in `connection_paths`, not on every row (the
 * two JSON texts were half of each row's bytes and of analyze's write time). The connections are
 * analyze's output, rebuilt on every run: the migration drops them instead of converting them.
 */
export const connectionPaths = `
DROP TABLE connections;
CREATE TABLE connection_paths (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  candidates TEXT NOT NULL
);
CREATE TABLE connections (
  id INTEGER PRIMARY KEY,
  proto TEXT NOT NULL,
  client_ip TEXT NOT NULL,
  client_port INTEGER NOT NULL,
  vip_ip TEXT NOT NULL,
  vip_port INTEGER NOT NULL,
  service TEXT,
  node TEXT,
  hook TEXT NOT NULL,
  endpoint_ip TEXT,
  endpoint_port INTEGER,
  snat_ip TEXT,
  snat_port INTEGER,
  verdict TEXT NOT NULL,
  start REAL NOT NULL,
  end REAL NOT NULL,
  path_id INTEGER NOT NULL,
  vip_from TEXT NOT NULL,
  answered INTEGER NOT NULL,
  refusal TEXT,
  conn_state TEXT,
  ruleset_id INTEGER,
  translation_ids TEXT NOT NULL,
  conntrack_ids TEXT NOT NULL,
  leg_ids TEXT NOT NULL
);
CREATE INDEX connections_start ON connections (start);
-- For other tools (sqlite3, Datasette): every connection with its path and candidates.
CREATE VIEW connections_full AS
  SELECT c.*, p.path, p.candidates FROM connections c JOIN connection_paths p ON p.id = c.path_id;
DELETE FROM findings;
DELETE FROM analysis_runs;
`;

export interface StoredConnection {
  id: number;
  proto: "tcp" | "udp" | "sctp";
  client: { ip: string; port: number };
  vip: { ip: string; port: number };
  service: string | null;
  node: string | null;
  hook: "prerouting" | "output";
  endpoint: { ip: string; port: number } | null;
  snat: { ip: string; port: number } | null;
  verdict: string;
  start: number;
  end: number;
  path: string[];
  candidates: { endpoint: string; probability: number }[];
  vipFrom: "capture" | "translation" | "conntrack";
  answered: boolean;
  refusal: "rst" | "icmp" | null;
  connState: string | null;
  rulesetId: number | null;
  legIds: number[];
  translationIds: number[];
  conntrackIds: number[];
}

export interface StoredFinding {
  id?: number;
  check: string;
  severity: "error" | "warning" | "info";
  service: string | null;
  node: string | null;
  from: number | null;
  to: number | null;
  summary: string;
  evidence: Record<string, unknown>;
}

export interface ConnectionFilter {
  service?: string;
  node?: string;
  verdict?: string;
  verdicts?: readonly string[];
}

type Row = Record<string, unknown>;

const COLUMNS =
  "id, proto, client_ip, client_port, vip_ip, vip_port, service, node, hook, endpoint_ip, endpoint_port, snat_ip, snat_port, verdict, start, end, path_id, vip_from, answered, refusal, conn_state, ruleset_id";
const ID_COLUMNS = ", translation_ids, conntrack_ids";

interface PathRow {
  path: string[];
  candidates: StoredConnection["candidates"];
}

/** Every (path, candidates) pair, parsed once and shared by the connections that use it. */
function loadPaths(db: Db): Map<number, PathRow> {
  const out = new Map<number, PathRow>();
  for (const r of db
    .prepare("SELECT id, path, candidates FROM connection_paths")
    .iterate() as IterableIterator<{ id: number; path: string; candidates: string }>) {
    out.set(r.id, {
      path: JSON.parse(r.path) as string[],
      candidates: JSON.parse(r.candidates) as StoredConnection["candidates"],
    });
  }
  return out;
}

const NO_PATH: PathRow = { path: [], candidates: [] };

function toConnection(r: unknown[], paths: Map<number, PathRow>, ids: boolean): StoredConnection {
  const p = paths.get(r[16] as number) ?? NO_PATH;
  const ap = (ip: unknown, port: unknown) =>
    ip === null ? null : { ip: ip as string, port: port as number };
  return {
    id: r[0] as number,
    proto: r[1] as StoredConnection["proto"],
    client: { ip: r[2] as string, port: r[3] as number },
    vip: { ip: r[4] as string, port: r[5] as number },
    service: r[6] as string | null,
    node: r[7] as string | null,
    hook: r[8] as StoredConnection["hook"],
    endpoint: ap(r[9], r[10]),
    snat: ap(r[11], r[12]),
    verdict: r[13] as string,
    start: r[14] as number,
    end: r[15] as number,
    path: p.path,
    candidates: p.candidates,
    vipFrom: r[17] as StoredConnection["vipFrom"],
    answered: r[18] === 1,
    refusal: r[19] as StoredConnection["refusal"],
    connState: r[20] as string | null,
    rulesetId: r[21] as number | null,
    legIds: [],
    translationIds: ids ? (JSON.parse(r[22] as string) as number[]) : [],
    conntrackIds: ids ? (JSON.parse(r[23] as string) as number[]) : [],
  };
}

/**
 * Connections ordered by start (then id). `service` matches "ns/name:port" exactly or
 * "ns/name" for every port. Leg ids are not filled (see `connectionLegs`); translation and
 * conntrack ids only with `ids`. Parsed `path` and `candidates` are shared between rows: do not
 * modify them.
 */
export function* iterateConnections(
  db: Db,
  filter: ConnectionFilter = {},
  options: { ids?: boolean } = {},
): Generator<StoredConnection> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.service !== undefined) {
    where.push("(service = ? OR service LIKE ? ESCAPE '\\')");
    args.push(filter.service, `${filter.service.replace(/[%_\\]/g, "\\$&")}:%`);
  }
  if (filter.node !== undefined) {
    where.push("node = ?");
    args.push(filter.node);
  }
  if (filter.verdict !== undefined) {
    where.push("verdict = ?");
    args.push(filter.verdict);
  }
  if (filter.verdicts !== undefined) {
    where.push(`verdict IN (${filter.verdicts.map(() => "?").join(", ") || "NULL"})`);
    args.push(...filter.verdicts);
  }
  const ids = options.ids ?? false;
  // The id lists are long strings nobody reads unless asked: do not fetch them.
  const sql = `SELECT ${COLUMNS}${ids ? ID_COLUMNS : ""} FROM connections ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY start, id`;
  const paths = loadPaths(db);
  for (const r of db
    .prepare(sql)
    .raw()
    .iterate(...args) as IterableIterator<unknown[]>) {
    yield toConnection(r, paths, ids);
  }
}

export function connectionLegs(db: Db, connectionId: number): number[] {
  const row = db.prepare("SELECT leg_ids FROM connections WHERE id = ?").get(connectionId) as
    | { leg_ids: string }
    | undefined;
  return row === undefined ? [] : (JSON.parse(row.leg_ids) as number[]).sort((a, b) => a - b);
}

export function countConnectionsByVerdict(db: Db): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of db
    .prepare("SELECT verdict, count(*) AS n FROM connections GROUP BY verdict ORDER BY n DESC")
    .all() as { verdict: string; n: number }[]) {
    out[r.verdict] = r.n;
  }
  return out;
}

export interface FindingFilter {
  check?: string;
  severity?: string;
}

export function listFindings(db: Db, filter: FindingFilter = {}): StoredFinding[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.check !== undefined) {
    where.push("check_id = ?");
    args.push(filter.check);
  }
  if (filter.severity !== undefined) {
    where.push("severity = ?");
    args.push(filter.severity);
  }
  const sql = `SELECT * FROM findings ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id`;
  return (db.prepare(sql).all(...args) as Row[]).map((r) => ({
    id: r.id as number,
    check: r.check_id as string,
    severity: r.severity as StoredFinding["severity"],
    service: r.service as string | null,
    node: r.node as string | null,
    from: r.from_ts as number | null,
    to: r.to_ts as number | null,
    summary: r.summary as string,
    evidence: JSON.parse(r.evidence as string) as Record<string, unknown>,
  }));
}

/** Has `analyze` run on this database? */
export function hasAnalysis(db: Db): boolean {
  // A database opened read-only is not migrated: it may predate these tables.
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'analysis_runs'")
    .get();
  if (table === undefined) return false;
  return (db.prepare("SELECT count(*) AS n FROM analysis_runs").get() as { n: number }).n > 0;
}
