import { createHash } from "node:crypto";
import type { Command } from "commander";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "../../flow/types.js";
import { openDb } from "../../store/db.js";
import {
  iterateLegs,
  type LegFilter,
  listInterfaces,
  type StoredLeg,
} from "../../store/queries.js";
import { UsageError } from "../../util/errors.js";
import { parseIPv4, parseIPv6 } from "../../util/ip.js";
import { formatTimeISO } from "../../util/time.js";

const PROTO_NAMES: Record<number, string> = {
  [PROTO_ICMP]: "icmp",
  [PROTO_TCP]: "tcp",
  [PROTO_UDP]: "udp",
  [PROTO_ICMPV6]: "icmp6",
  [PROTO_SCTP]: "sctp",
};

export function protoName(proto: number): string {
  return PROTO_NAMES[proto] ?? String(proto);
}

/** `tcp`, `udp`, `sctp`, `icmp`, `icmp6` or a protocol number. */
export function parseProtoArg(text: string): number {
  const lower = text.toLowerCase();
  if (lower === "icmpv6") return PROTO_ICMPV6;
  for (const [num, name] of Object.entries(PROTO_NAMES)) if (name === lower) return Number(num);
  const n = Number(text);
  if (Number.isInteger(n) && n >= 0 && n <= 255) return n;
  throw new UsageError(
    `unknown protocol ${JSON.stringify(text)} (tcp, udp, sctp, icmp, icmp6 or a number)`,
  );
}

const ZEEK_FIELDS = [
  ["ts", "time"],
  ["uid", "string"],
  ["id.orig_h", "addr"],
  ["id.orig_p", "port"],
  ["id.resp_h", "addr"],
  ["id.resp_p", "port"],
  ["proto", "enum"],
  ["service", "string"],
  ["duration", "interval"],
  ["orig_bytes", "count"],
  ["resp_bytes", "count"],
  ["conn_state", "string"],
  ["local_orig", "bool"],
  ["local_resp", "bool"],
  ["missed_bytes", "count"],
  ["history", "string"],
  ["orig_pkts", "count"],
  ["orig_ip_bytes", "count"],
  ["resp_pkts", "count"],
  ["resp_ip_bytes", "count"],
  ["tunnel_parents", "set[string]"],
  ["community_id", "string"],
  // Not Zeek's own: where the leg was seen, so legs of one connection can be told apart.
  ["svctrace_node", "string"],
  ["svctrace_iface", "count"],
  ["svctrace_direction", "string"],
] as const;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A Zeek-looking uid ("C" + 17 base62 characters), stable for a given database row. */
export function zeekUid(leg: { captureId: number; id: number }): string {
  const digest = createHash("sha256").update(`${leg.captureId}/${leg.id}`).digest();
  let out = "C";
  for (let i = 0; i < 17; i++) out += BASE62[(digest[i] ?? 0) % 62];
  return out;
}

/** Zeek writes times as epoch seconds with microseconds. */
const zeekTime = (t: number): string => t.toFixed(6);

function zeekOpenTime(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${date.getUTCFullYear()}-${p(date.getUTCMonth() + 1)}-${p(date.getUTCDate())}-${p(date.getUTCHours())}-${p(date.getUTCMinutes())}-${p(date.getUTCSeconds())}`;
}

export function zeekHeader(now: Date): string {
  return [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tconn",
    `#open\t${zeekOpenTime(now)}`,
    `#fields\t${ZEEK_FIELDS.map((f) => f[0]).join("\t")}`,
    `#types\t${ZEEK_FIELDS.map((f) => f[1]).join("\t")}`,
  ].join("\n");
}

/**
 * One conn.log line. Our byte counts are transport payload bytes, as Zeek's `orig_bytes` /
 * `resp_bytes` (Zeek derives them from sequence numbers; we sum payload lengths, so they differ
 * only for retransmissions). IP-level byte counts and the site-dependent `local_*` and
 * `missed_bytes` are unset (`-`).
 */
export function zeekLine(leg: StoredLeg): string {
  const tunnel =
    leg.tunnel === null
      ? "(empty)"
      : `${leg.tunnel.kind}:${leg.tunnel.outerSrc}>${leg.tunnel.outerDst}`;
  const fields = [
    zeekTime(leg.firstTs),
    zeekUid(leg),
    leg.origIp,
    String(leg.origPort),
    leg.respIp,
    String(leg.respPort),
    leg.proto === PROTO_TCP
      ? "tcp"
      : leg.proto === PROTO_UDP
        ? "udp"
        : leg.proto === PROTO_ICMP || leg.proto === PROTO_ICMPV6
          ? "icmp"
          : "unknown_transport",
    "-",
    (leg.lastTs - leg.firstTs).toFixed(6),
    String(leg.origBytes),
    String(leg.respBytes),
    leg.connState,
    "-",
    "-",
    "-",
    leg.history === "" ? "(empty)" : leg.history,
    String(leg.origPackets),
    "-",
    String(leg.respPackets),
    "-",
    tunnel,
    leg.communityId === "" ? "-" : leg.communityId,
    leg.node ?? "-",
    String(leg.interfaceId),
    leg.direction,
  ];
  return fields.join("\t");
}

/** Interface names by capture and capture-local interface id, for the legs' observation points. */
export type InterfaceNames = Map<number, Map<number, string>>;

export function interfaceNames(db: ReturnType<typeof openDb>): InterfaceNames {
  const names: InterfaceNames = new Map();
  for (const i of listInterfaces(db)) {
    if (i.name === null) continue;
    const byId = names.get(i.captureId) ?? new Map<number, string>();
    byId.set(i.idx, i.name);
    names.set(i.captureId, byId);
  }
  return names;
}

/** One leg as a fixed-width line for people. */
export function humanLine(leg: StoredLeg, names: InterfaceNames = new Map()): string {
  const iface = names.get(leg.captureId)?.get(leg.interfaceId) ?? `if${leg.interfaceId}`;
  const time = formatTimeISO(leg.firstTs).replace("T", " ").replace("Z", "");
  const ep = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
  return [
    time.padEnd(23),
    (leg.node ?? "-").padEnd(10),
    `${iface}/${leg.direction}`.padEnd(12),
    protoName(leg.proto).padEnd(5),
    `${ep(leg.origIp, leg.origPort)} → ${ep(leg.respIp, leg.respPort)}`.padEnd(46),
    leg.connState.padEnd(6),
    leg.history.padEnd(10),
    `${leg.origPackets}/${leg.respPackets} pkts`,
  ].join(" ");
}

interface LegsOptions {
  db: string;
  node?: string;
  proto?: string;
  host?: string;
  limit?: string;
  json?: boolean;
  format?: string;
}

export function registerLegs(program: Command): void {
  program
    .command("legs")
    .description(
      "list legs: each conversation at one observation point (capture × interface × 5-tuple)",
    )
    .option("--db <file>", "database", "svctrace.db")
    .option("--node <name>", "only legs seen on this node")
    .option("--proto <proto>", "tcp, udp, sctp, icmp, icmp6 or a protocol number")
    .option("--host <ip>", "only legs with this address at either end")
    .option("--limit <n>", "at most this many legs")
    .option("--json", "one JSON object per line")
    .option("--format <format>", "table, json or zeek (a Zeek conn.log)", "table")
    .action((opts: LegsOptions) => {
      const format = opts.json ? "json" : (opts.format ?? "table");
      if (format !== "table" && format !== "json" && format !== "zeek") {
        throw new UsageError(`unknown format ${JSON.stringify(format)} (table, json or zeek)`);
      }
      if (
        opts.json &&
        opts.format !== undefined &&
        opts.format !== "table" &&
        opts.format !== "json"
      ) {
        throw new UsageError("--json and --format zeek exclude each other");
      }
      const filter: LegFilter = {};
      if (opts.node !== undefined) filter.node = opts.node;
      if (opts.proto !== undefined) filter.proto = parseProtoArg(opts.proto);
      if (opts.host !== undefined) {
        if (parseIPv4(opts.host) < 0 && parseIPv6(opts.host) === null) {
          throw new UsageError(`--host: not an IP address: ${JSON.stringify(opts.host)}`);
        }
        filter.host = opts.host;
      }
      if (opts.limit !== undefined) {
        const n = Number(opts.limit);
        if (!Number.isInteger(n) || n < 0)
          throw new UsageError(`--limit: not a count: ${JSON.stringify(opts.limit)}`);
        filter.limit = n;
      }
      const db = openDb(opts.db, { readonly: true });
      try {
        writeLegs(db, filter, format);
      } finally {
        db.close();
      }
    });
}

function writeLegs(
  db: ReturnType<typeof openDb>,
  filter: LegFilter,
  format: "table" | "json" | "zeek",
): void {
  // Buffered: millions of legs must not mean millions of write calls.
  let buf = "";
  const out = (line: string) => {
    buf += `${line}\n`;
    if (buf.length > 1 << 16) {
      process.stdout.write(buf);
      buf = "";
    }
  };
  if (format === "zeek") out(zeekHeader(new Date()));
  let n = 0;
  const names = interfaceNames(db);
  for (const leg of iterateLegs(db, filter)) {
    n++;
    const interfaceName = names.get(leg.captureId)?.get(leg.interfaceId) ?? null;
    if (format === "json") out(JSON.stringify({ ...leg, interfaceName }));
    else if (format === "zeek") out(zeekLine(leg));
    else out(humanLine(leg, names));
  }
  if (format === "zeek") out(`#close\t${zeekOpenTime(new Date())}`);
  if (format === "table" && n === 0) out("no legs");
  process.stdout.write(buf);
}
