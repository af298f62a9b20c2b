import type { DnsAnswer, DnsRecord, LegRecord, TranslationRecord } from "../flow/types.js";
import type { Db } from "./db.js";
import type { ConntrackRow } from "./writer.js";

/**
 * Typed reads over the store, for the CLI, reconstruct, checks and report. Each returns plain
 * objects in the flow/rules vocabulary (camelCase), never raw rows. The `iterate*` variants
 * stream, for tables that can hold millions of rows.
 */

export interface StoredCapture {
  id: number;
  inputId: number;
  path: string;
  sha256: string;
  format: string;
  compressed: boolean;
  node: string | null;
  firstTs: number | null;
  lastTs: number | null;
  packets: number;
  bytes: number;
  linkTypes: number[];
  warnings: string[];
  legs: number;
  translations: number;
  dnsMessages: number;
}

export interface StoredInterface {
  captureId: number;
  idx: number;
  name: string | null;
  linkType: number;
}

export interface StoredLeg extends LegRecord {
  id: number;
  captureId: number;
  node: string | null;
}

export interface StoredTranslation extends TranslationRecord {
  id: number;
  captureId: number;
  node: string | null;
}

/** `id` is the DNS message id; the row's own id is `rowId`. */
export interface StoredDns extends DnsRecord {
  rowId: number;
  captureId: number;
  node: string | null;
}

export interface StoredRuleSet {
  id: number;
  inputId: number;
  node: string | null;
  kind: string;
  family: "ipv4" | "ipv6";
  takenAt: number | null;
  generator: string | null;
  source: string;
  sha256: string;
}

export interface StoredRule {
  rulesetId: number;
  table: string;
  chain: string;
  index: number;
  line: number;
  raw: string;
  target: string | null;
  comment: string | null;
}

export interface StoredConntrack extends ConntrackRow {
  id: number;
  inputId: number;
  node: string | null;
  takenAt: number | null;
}

export interface StoredInventorySnapshot {
  id: number;
  inputId: number;
  takenAt: number | null;
  source: string;
}

export interface StoredService {
  snapshotId: number;
  namespace: string;
  name: string;
  type: string;
  clusterIps: string[];
  ports: unknown[];
  externalIps: string[];
  loadBalancerIps: string[];
  sessionAffinity: string | null;
  affinityTimeout: number | null;
  externalTrafficPolicy: string | null;
  internalTrafficPolicy: string | null;
  externalName: string | null;
}

export interface StoredEndpoint {
  snapshotId: number;
  namespace: string;
  slice: string;
  service: string | null;
  address: string;
  portName: string | null;
  port: number | null;
  protocol: string | null;
  ready: boolean | null;
  serving: boolean | null;
  terminating: boolean | null;
  nodeName: string | null;
  target: string | null;
}

export interface StoredDocument {
  id: number;
  inputId: number;
  kind: string;
  node: string | null;
  takenAt: number | null;
  source: string;
  text: string;
}

type Row = Record<string, unknown>;

const num = (v: unknown): number => v as number;
const numOrNull = (v: unknown): number | null => (v === null ? null : (v as number));
const str = (v: unknown): string => v as string;
const strOrNull = (v: unknown): string | null => (v === null ? null : (v as string));
const boolOrNull = (v: unknown): boolean | null => (v === null ? null : v === 1);

/** Builds `WHERE a = ? AND …` from optional filters; undefined filters are left out. */
class Where {
  readonly parts: string[] = [];
  readonly args: unknown[] = [];
  add(sql: string, ...args: unknown[]): void {
    this.parts.push(sql);
    this.args.push(...args);
  }
  toString(): string {
    return this.parts.length === 0 ? "" : `WHERE ${this.parts.join(" AND ")}`;
  }
}

export function listCaptures(db: Db): StoredCapture[] {
  return (db.prepare("SELECT * FROM captures ORDER BY id").all() as Row[]).map((r) => ({
    id: num(r.id),
    inputId: num(r.input_id),
    path: str(r.path),
    sha256: str(r.sha256),
    format: str(r.format),
    compressed: r.compressed === 1,
    node: strOrNull(r.node),
    firstTs: numOrNull(r.first_ts),
    lastTs: numOrNull(r.last_ts),
    packets: num(r.packets),
    bytes: num(r.bytes),
    linkTypes: JSON.parse(str(r.link_types)) as number[],
    warnings: JSON.parse(str(r.warnings)) as string[],
    legs: num(r.legs),
    translations: num(r.translations),
    dnsMessages: num(r.dns_messages),
  }));
}

export function listInterfaces(db: Db, captureId?: number): StoredInterface[] {
  const w = new Where();
  if (captureId !== undefined) w.add("capture_id = ?", captureId);
  return (
    db.prepare(`SELECT * FROM interfaces ${w} ORDER BY capture_id, idx`).all(...w.args) as Row[]
  ).map((r) => ({
    captureId: num(r.capture_id),
    idx: num(r.idx),
    name: strOrNull(r.name),
    linkType: num(r.link_type),
  }));
}

export interface LegFilter {
  node?: string;
  /** IP protocol number. */
  proto?: number;
  /** Either end of the leg. */
  host?: string;
  /** Responder address (and port): the Service VIP before DNAT, or the endpoint after. */
  respIp?: string;
  respPort?: number;
  captureId?: number;
  /** Legs active at or after / before these times. */
  since?: number;
  until?: number;
  limit?: number;
}

function legWhere(f: LegFilter): Where {
  const w = new Where();
  if (f.node !== undefined) w.add("node = ?", f.node);
  if (f.proto !== undefined) w.add("proto = ?", f.proto);
  if (f.host !== undefined) w.add("(orig_ip = ? OR resp_ip = ?)", f.host, f.host);
  if (f.respIp !== undefined) w.add("resp_ip = ?", f.respIp);
  if (f.respPort !== undefined) w.add("resp_port = ?", f.respPort);
  if (f.captureId !== undefined) w.add("capture_id = ?", f.captureId);
  if (f.since !== undefined) w.add("last_ts >= ?", f.since);
  if (f.until !== undefined) w.add("first_ts <= ?", f.until);
  return w;
}

function toLeg(r: Row): StoredLeg {
  return {
    id: num(r.id),
    captureId: num(r.capture_id),
    node: strOrNull(r.node),
    interfaceId: num(r.interface_id),
    proto: num(r.proto),
    origIp: str(r.orig_ip),
    origPort: num(r.orig_port),
    respIp: str(r.resp_ip),
    respPort: num(r.resp_port),
    firstTs: num(r.first_ts),
    lastTs: num(r.last_ts),
    origPackets: num(r.orig_packets),
    origBytes: num(r.orig_bytes),
    respPackets: num(r.resp_packets),
    respBytes: num(r.resp_bytes),
    connState: str(r.conn_state),
    history: str(r.history),
    communityId: str(r.community_id),
    direction: str(r.direction) as LegRecord["direction"],
    fingerprint: str(r.fingerprint),
    tunnel:
      r.tunnel_kind === null
        ? null
        : {
            kind: str(r.tunnel_kind) as "vxlan" | "geneve" | "ipip",
            outerSrc: str(r.tunnel_outer_src),
            outerDst: str(r.tunnel_outer_dst),
            vni: numOrNull(r.tunnel_vni),
          },
    icmpErrors:
      r.icmp_errors === null ? {} : (JSON.parse(str(r.icmp_errors)) as Record<string, number>),
  };
}

/** Legs in time order (then id). */
export function* iterateLegs(db: Db, filter: LegFilter = {}): Generator<StoredLeg> {
  const w = legWhere(filter);
  const limit = filter.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(filter.limit))}` : "";
  const stmt = db.prepare(`SELECT * FROM legs ${w} ORDER BY first_ts, id${limit}`);
  for (const r of stmt.iterate(...w.args)) yield toLeg(r as Row);
}

export function listLegs(db: Db, filter: LegFilter = {}): StoredLeg[] {
  return [...iterateLegs(db, filter)];
}

export function countLegs(db: Db, filter: LegFilter = {}): number {
  const w = legWhere(filter);
  return num((db.prepare(`SELECT count(*) AS n FROM legs ${w}`).get(...w.args) as Row).n);
}

export interface TranslationFilter {
  node?: string;
  captureId?: number;
  /** Pre-NAT destination: the Service VIP (and port). */
  preDstIp?: string;
  preDstPort?: number;
  kind?: "dnat" | "snat" | "both";
}

function toTranslation(r: Row): StoredTranslation {
  const proto = num(r.proto);
  return {
    id: num(r.id),
    captureId: num(r.capture_id),
    node: strOrNull(r.node),
    interfaceIn: num(r.interface_in),
    interfaceOut: num(r.interface_out),
    pre: {
      proto,
      srcIp: str(r.pre_src_ip),
      srcPort: num(r.pre_src_port),
      dstIp: str(r.pre_dst_ip),
      dstPort: num(r.pre_dst_port),
    },
    post: {
      proto,
      srcIp: str(r.post_src_ip),
      srcPort: num(r.post_src_port),
      dstIp: str(r.post_dst_ip),
      dstPort: num(r.post_dst_port),
    },
    kind: str(r.kind) as TranslationRecord["kind"],
    packets: num(r.packets),
    firstTs: num(r.first_ts),
    lastTs: num(r.last_ts),
  };
}

export function* iterateTranslations(
  db: Db,
  filter: TranslationFilter = {},
): Generator<StoredTranslation> {
  const w = new Where();
  if (filter.node !== undefined) w.add("node = ?", filter.node);
  if (filter.captureId !== undefined) w.add("capture_id = ?", filter.captureId);
  if (filter.preDstIp !== undefined) w.add("pre_dst_ip = ?", filter.preDstIp);
  if (filter.preDstPort !== undefined) w.add("pre_dst_port = ?", filter.preDstPort);
  if (filter.kind !== undefined) w.add("kind = ?", filter.kind);
  const stmt = db.prepare(`SELECT * FROM translations ${w} ORDER BY first_ts, id`);
  for (const r of stmt.iterate(...w.args)) yield toTranslation(r as Row);
}

export function listTranslations(db: Db, filter: TranslationFilter = {}): StoredTranslation[] {
  return [...iterateTranslations(db, filter)];
}

export function listDns(db: Db, filter: { node?: string; qname?: string } = {}): StoredDns[] {
  const w = new Where();
  if (filter.node !== undefined) w.add("node = ?", filter.node);
  if (filter.qname !== undefined) w.add("qname = ?", filter.qname);
  return (db.prepare(`SELECT * FROM dns ${w} ORDER BY ts, id`).all(...w.args) as Row[]).map(
    (r) => ({
      rowId: num(r.id),
      captureId: num(r.capture_id),
      node: strOrNull(r.node),
      ts: num(r.ts),
      interfaceId: num(r.interface_id),
      proto: num(r.proto),
      clientIp: str(r.client_ip),
      clientPort: num(r.client_port),
      serverIp: str(r.server_ip),
      serverPort: num(r.server_port),
      id: num(r.dns_id),
      isResponse: r.is_response === 1,
      qname: str(r.qname),
      qtype: str(r.qtype),
      rcode: strOrNull(r.rcode),
      answers: JSON.parse(str(r.answers)) as DnsAnswer[],
    }),
  );
}

/** Anomaly counts, summed over captures unless one is given. */
export function listAnomalies(db: Db, captureId?: number): { name: string; count: number }[] {
  const w = new Where();
  if (captureId !== undefined) w.add("capture_id = ?", captureId);
  return (
    db
      .prepare(`SELECT name, sum(count) AS count FROM anomalies ${w} GROUP BY name ORDER BY name`)
      .all(...w.args) as Row[]
  ).map((r) => ({ name: str(r.name), count: num(r.count) }));
}

function toRuleSet(r: Row): StoredRuleSet {
  return {
    id: num(r.id),
    inputId: num(r.input_id),
    node: strOrNull(r.node),
    kind: str(r.kind),
    family: str(r.family) as "ipv4" | "ipv6",
    takenAt: numOrNull(r.taken_at),
    generator: strOrNull(r.generator),
    source: str(r.source),
    sha256: str(r.sha256),
  };
}

/** Rule sets in time order (unknown times first), optionally of one node. */
export function listRuleSets(db: Db, node?: string): StoredRuleSet[] {
  const w = new Where();
  if (node !== undefined) w.add("node = ?", node);
  return (
    db
      .prepare(
        `SELECT id, input_id, node, kind, family, taken_at, generator, source, sha256
         FROM rulesets ${w} ORDER BY node, taken_at, id`,
      )
      .all(...w.args) as Row[]
  ).map(toRuleSet);
}

/** The dump exactly as ingested, for the rules parser; undefined when there is no such id. */
export function loadRuleSetText(db: Db, id: number): string | undefined {
  const r = db.prepare("SELECT raw_text FROM rulesets WHERE id = ?").get(id) as Row | undefined;
  return r === undefined ? undefined : str(r.raw_text);
}

export function listRules(db: Db, rulesetId: number): StoredRule[] {
  return (
    db.prepare("SELECT * FROM rules WHERE ruleset_id = ? ORDER BY line").all(rulesetId) as Row[]
  ).map((r) => ({
    rulesetId: num(r.ruleset_id),
    table: str(r.table_name),
    chain: str(r.chain),
    index: num(r.idx),
    line: num(r.line),
    raw: str(r.raw),
    target: strOrNull(r.target),
    comment: strOrNull(r.comment),
  }));
}

export interface ConntrackFilter {
  node?: string;
  inputId?: number;
  proto?: number;
  origDst?: string;
  origDport?: number;
}

export function listConntrack(db: Db, filter: ConntrackFilter = {}): StoredConntrack[] {
  const w = new Where();
  if (filter.node !== undefined) w.add("node = ?", filter.node);
  if (filter.inputId !== undefined) w.add("input_id = ?", filter.inputId);
  if (filter.proto !== undefined) w.add("proto = ?", filter.proto);
  if (filter.origDst !== undefined) w.add("orig_dst = ?", filter.origDst);
  if (filter.origDport !== undefined) w.add("orig_dport = ?", filter.origDport);
  return (
    db.prepare(`SELECT * FROM conntrack ${w} ORDER BY node, taken_at, id`).all(...w.args) as Row[]
  ).map((r) => ({
    id: num(r.id),
    inputId: num(r.input_id),
    node: strOrNull(r.node),
    takenAt: numOrNull(r.taken_at),
    line: num(r.line),
    family: str(r.family) as "ipv4" | "ipv6",
    proto: num(r.proto),
    state: strOrNull(r.state),
    timeout: numOrNull(r.timeout),
    origSrc: str(r.orig_src),
    origDst: str(r.orig_dst),
    origSport: numOrNull(r.orig_sport),
    origDport: numOrNull(r.orig_dport),
    replySrc: str(r.reply_src),
    replyDst: str(r.reply_dst),
    replySport: numOrNull(r.reply_sport),
    replyDport: numOrNull(r.reply_dport),
    mark: numOrNull(r.mark),
    zone: numOrNull(r.zone),
    flags: str(r.flags) === "" ? [] : str(r.flags).split(","),
    raw: str(r.raw),
  }));
}

/** Inventory snapshots in time order. */
export function listInventorySnapshots(db: Db): StoredInventorySnapshot[] {
  return (
    db
      .prepare("SELECT id, input_id, taken_at, source FROM inventory ORDER BY taken_at, id")
      .all() as Row[]
  ).map((r) => ({
    id: num(r.id),
    inputId: num(r.input_id),
    takenAt: numOrNull(r.taken_at),
    source: str(r.source),
  }));
}

export function loadInventoryJson(db: Db, id: number): string | undefined {
  const r = db.prepare("SELECT raw_json FROM inventory WHERE id = ?").get(id) as Row | undefined;
  return r === undefined ? undefined : str(r.raw_json);
}

export function listServices(db: Db, snapshotId: number): StoredService[] {
  return (
    db
      .prepare("SELECT * FROM services WHERE snapshot_id = ? ORDER BY namespace, name")
      .all(snapshotId) as Row[]
  ).map((r) => ({
    snapshotId: num(r.snapshot_id),
    namespace: str(r.namespace),
    name: str(r.name),
    type: str(r.type),
    clusterIps: JSON.parse(str(r.cluster_ips)) as string[],
    ports: JSON.parse(str(r.ports)) as unknown[],
    externalIps: JSON.parse(str(r.external_ips)) as string[],
    loadBalancerIps: JSON.parse(str(r.load_balancer_ips)) as string[],
    sessionAffinity: strOrNull(r.session_affinity),
    affinityTimeout: numOrNull(r.affinity_timeout),
    externalTrafficPolicy: strOrNull(r.external_traffic_policy),
    internalTrafficPolicy: strOrNull(r.internal_traffic_policy),
    externalName: strOrNull(r.external_name),
  }));
}

export function listEndpoints(db: Db, snapshotId: number): StoredEndpoint[] {
  return (
    db
      .prepare(
        "SELECT * FROM endpoints WHERE snapshot_id = ? ORDER BY namespace, service, slice, address, port",
      )
      .all(snapshotId) as Row[]
  ).map((r) => ({
    snapshotId: num(r.snapshot_id),
    namespace: str(r.namespace),
    slice: str(r.slice),
    service: strOrNull(r.service),
    address: str(r.address),
    portName: strOrNull(r.port_name),
    port: numOrNull(r.port),
    protocol: strOrNull(r.protocol),
    ready: boolOrNull(r.ready),
    serving: boolOrNull(r.serving),
    terminating: boolOrNull(r.terminating),
    nodeName: strOrNull(r.node_name),
    target: strOrNull(r.target),
  }));
}

export function listDocuments(db: Db, kind?: string): StoredDocument[] {
  const w = new Where();
  if (kind !== undefined) w.add("kind = ?", kind);
  return (db.prepare(`SELECT * FROM documents ${w} ORDER BY id`).all(...w.args) as Row[]).map(
    (r) => ({
      id: num(r.id),
      inputId: num(r.input_id),
      kind: str(r.kind),
      node: strOrNull(r.node),
      takenAt: numOrNull(r.taken_at),
      source: str(r.source),
      text: str(r.text),
    }),
  );
}

/** Distinct node names across captures, rule sets and conntrack dumps. */
export function listNodes(db: Db): string[] {
  return (
    db
      .prepare(
        `SELECT node FROM captures WHERE node IS NOT NULL UNION SELECT node FROM rulesets WHERE node IS NOT NULL
         UNION SELECT node FROM conntrack WHERE node IS NOT NULL ORDER BY 1`,
      )
      .all() as Row[]
  ).map((r) => str(r.node));
}
