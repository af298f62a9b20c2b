import { analysisSchema, connectionPaths, legIdsColumn } from "./analysis-schema.js";

/**
 * The schema, as an ordered list of migrations. `PRAGMA user_version` holds how many have been
 * applied; opening a database applies the rest, each in its own transaction. Never edit a
 * migration that has shipped: append a new one (one line in `migrations` below).
 *
 * Conventions: times are epoch seconds (REAL), addresses are text as the flow layer formats
 * them, JSON columns hold small lists/maps and end in `_json` when the name would be ambiguous.
 */

export interface Migration {
  /** What it adds, for `svctrace` messages and the README. */
  name: string;
  sql: string;
}

const inputsAndCaptures = `
CREATE TABLE inputs (
  id INTEGER PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  path TEXT NOT NULL,
  kind TEXT NOT NULL,
  node TEXT,
  size INTEGER NOT NULL,
  taken_at REAL,
  ingested_at REAL NOT NULL
);

CREATE TABLE captures (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  format TEXT NOT NULL,
  compressed INTEGER NOT NULL,
  node TEXT,
  first_ts REAL,
  last_ts REAL,
  packets INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  link_types TEXT NOT NULL,
  warnings TEXT NOT NULL,
  legs INTEGER NOT NULL,
  translations INTEGER NOT NULL,
  dns_messages INTEGER NOT NULL
);

CREATE TABLE interfaces (
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  name TEXT,
  link_type INTEGER NOT NULL,
  PRIMARY KEY (capture_id, idx)
) WITHOUT ROWID;

CREATE TABLE legs (
  id INTEGER PRIMARY KEY,
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  node TEXT,
  interface_id INTEGER NOT NULL,
  proto INTEGER NOT NULL,
  orig_ip TEXT NOT NULL,
  orig_port INTEGER NOT NULL,
  resp_ip TEXT NOT NULL,
  resp_port INTEGER NOT NULL,
  first_ts REAL NOT NULL,
  last_ts REAL NOT NULL,
  orig_packets INTEGER NOT NULL,
  orig_bytes INTEGER NOT NULL,
  resp_packets INTEGER NOT NULL,
  resp_bytes INTEGER NOT NULL,
  conn_state TEXT NOT NULL,
  history TEXT NOT NULL,
  community_id TEXT NOT NULL,
  direction TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  tunnel_kind TEXT,
  tunnel_outer_src TEXT,
  tunnel_outer_dst TEXT,
  tunnel_vni INTEGER,
  icmp_errors TEXT
);
CREATE INDEX legs_resp ON legs (resp_ip, resp_port);
CREATE INDEX legs_community ON legs (community_id);

CREATE TABLE translations (
  id INTEGER PRIMARY KEY,
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  node TEXT,
  interface_in INTEGER NOT NULL,
  interface_out INTEGER NOT NULL,
  proto INTEGER NOT NULL,
  pre_src_ip TEXT NOT NULL,
  pre_src_port INTEGER NOT NULL,
  pre_dst_ip TEXT NOT NULL,
  pre_dst_port INTEGER NOT NULL,
  post_src_ip TEXT NOT NULL,
  post_src_port INTEGER NOT NULL,
  post_dst_ip TEXT NOT NULL,
  post_dst_port INTEGER NOT NULL,
  kind TEXT NOT NULL,
  packets INTEGER NOT NULL,
  first_ts REAL NOT NULL,
  last_ts REAL NOT NULL
);
CREATE INDEX translations_pre_dst ON translations (pre_dst_ip, pre_dst_port);

CREATE TABLE dns (
  id INTEGER PRIMARY KEY,
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  node TEXT,
  ts REAL NOT NULL,
  interface_id INTEGER NOT NULL,
  proto INTEGER NOT NULL,
  client_ip TEXT NOT NULL,
  client_port INTEGER NOT NULL,
  server_ip TEXT NOT NULL,
  server_port INTEGER NOT NULL,
  dns_id INTEGER NOT NULL,
  is_response INTEGER NOT NULL,
  qname TEXT NOT NULL,
  qtype TEXT NOT NULL,
  rcode TEXT,
  answers TEXT NOT NULL
);
CREATE INDEX dns_qname ON dns (qname);

CREATE TABLE anomalies (
  capture_id INTEGER NOT NULL REFERENCES captures(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (capture_id, name)
) WITHOUT ROWID;
`;

const rulesConntrackInventory = `
CREATE TABLE rulesets (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
  node TEXT,
  kind TEXT NOT NULL,
  family TEXT NOT NULL,
  taken_at REAL,
  generator TEXT,
  source TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  raw_text TEXT NOT NULL
);
CREATE INDEX rulesets_node_time ON rulesets (node, taken_at);

CREATE TABLE rules (
  ruleset_id INTEGER NOT NULL REFERENCES rulesets(id) ON DELETE CASCADE,
  table_name TEXT NOT NULL,
  chain TEXT NOT NULL,
  idx INTEGER NOT NULL,
  line INTEGER NOT NULL,
  raw TEXT NOT NULL,
  target TEXT,
  comment TEXT,
  PRIMARY KEY (ruleset_id, table_name, chain, idx)
) WITHOUT ROWID;

CREATE TABLE conntrack (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
  node TEXT,
  taken_at REAL,
  line INTEGER NOT NULL,
  family TEXT NOT NULL,
  proto INTEGER NOT NULL,
  state TEXT,
  timeout INTEGER,
  orig_src TEXT NOT NULL,
  orig_dst TEXT NOT NULL,
  orig_sport INTEGER,
  orig_dport INTEGER,
  reply_src TEXT NOT NULL,
  reply_dst TEXT NOT NULL,
  reply_sport INTEGER,
  reply_dport INTEGER,
  mark INTEGER,
  zone INTEGER,
  flags TEXT NOT NULL,
  raw TEXT NOT NULL
);
CREATE INDEX conntrack_orig_dst ON conntrack (orig_dst, orig_dport);

CREATE TABLE inventory (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
  taken_at REAL,
  source TEXT NOT NULL,
  raw_json TEXT NOT NULL
);

CREATE TABLE services (
  snapshot_id INTEGER NOT NULL REFERENCES inventory(id) ON DELETE CASCADE,
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  cluster_ips TEXT NOT NULL,
  ports TEXT NOT NULL,
  external_ips TEXT NOT NULL,
  load_balancer_ips TEXT NOT NULL,
  session_affinity TEXT,
  affinity_timeout INTEGER,
  external_traffic_policy TEXT,
  internal_traffic_policy TEXT,
  external_name TEXT,
  PRIMARY KEY (snapshot_id, namespace, name)
) WITHOUT ROWID;

CREATE TABLE endpoints (
  snapshot_id INTEGER NOT NULL REFERENCES inventory(id) ON DELETE CASCADE,
  namespace TEXT NOT NULL,
  slice TEXT NOT NULL,
  service TEXT,
  address TEXT NOT NULL,
  port_name TEXT,
  port INTEGER,
  protocol TEXT,
  ready INTEGER,
  serving INTEGER,
  terminating INTEGER,
  node_name TEXT,
  target TEXT
);
CREATE INDEX endpoints_service ON endpoints (snapshot_id, namespace, service);

-- Inputs kept as text for later use (ipset save, nft -j, ip -j addr, bundle.json): no parser yet.
CREATE TABLE documents (
  id INTEGER PRIMARY KEY,
  input_id INTEGER NOT NULL REFERENCES inputs(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  node TEXT,
  taken_at REAL,
  source TEXT NOT NULL,
  text TEXT NOT NULL
);
`;

/**
 * Random-keyed indexes (community_id, addresses) cost more at ingest than the whole rest of the
 * leg insert, and the readers (reconstruct, `svctrace legs`) walk legs and translations in time
 * order; an index on time is nearly append-only since legs are written as they close.
 */
const timeIndexes = `
DROP INDEX legs_resp;
DROP INDEX legs_community;
DROP INDEX translations_pre_dst;
CREATE INDEX legs_time ON legs (first_ts);
CREATE INDEX translations_time ON translations (first_ts);
`;

/**
 * The same rule dump on two nodes, or unchanged between two times on one node, is two snapshots,
 * not one file ingested twice: `identity` is the content hash for captures, and the content hash
 * with the node and the time from outside the content for snapshots. Rebuilt by SQLite's
 * recipe (foreign keys off, see `migrate`), since a UNIQUE constraint cannot be dropped.
 */
const inputIdentity = `
CREATE TABLE inputs_new (
  id INTEGER PRIMARY KEY,
  identity TEXT NOT NULL UNIQUE,
  sha256 TEXT NOT NULL,
  path TEXT NOT NULL,
  kind TEXT NOT NULL,
  node TEXT,
  size INTEGER NOT NULL,
  taken_at REAL,
  ingested_at REAL NOT NULL
);
INSERT INTO inputs_new (id, identity, sha256, path, kind, node, size, taken_at, ingested_at)
  SELECT id, sha256, sha256, path, kind, node, size, taken_at, ingested_at FROM inputs;
DROP TABLE inputs;
ALTER TABLE inputs_new RENAME TO inputs;
CREATE INDEX inputs_sha256 ON inputs (sha256);
`;

/** Applied in order; the index + 1 is the `user_version` after it. Append only. */
export const migrations: readonly Migration[] = [
  {
    name: "inputs, captures, interfaces, legs, translations, dns, anomalies",
    sql: inputsAndCaptures,
  },
  {
    name: "rulesets, rules, conntrack, inventory, services, endpoints, documents",
    sql: rulesConntrackInventory,
  },
  { name: "connections, connection_legs, findings, analysis_runs", sql: analysisSchema },
  { name: "leg and translation indexes by time instead of by address", sql: timeIndexes },
  {
    name: "inputs keyed by identity (content, and node and time for snapshots)",
    sql: inputIdentity,
  },
  { name: "connections.leg_ids replaces connection_legs", sql: legIdsColumn },
  { name: "connection_paths: each (path, candidates) stored once", sql: connectionPaths },
];
