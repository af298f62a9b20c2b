/**
 * Match compilers: each `-m module --options` of a parsed rule becomes a closure over the
 * thread's numeric fields that answers 0 (no), 1 (yes) or 2 (cannot tell: unknown input or an
 * unmodelled module). Probabilistic matches (statistic) become a weight instead of a closure.
 */

import type { Rule, RuleMatch, RuleOption } from "../rules/model.js";
import {
  type Cidr,
  cidrContainsV4,
  cidrContainsV6,
  maskV4,
  normalizeIP,
  parseCidr,
  parseIPv4,
  parseIPv6,
} from "../util/ip.js";
import {
  CT_DNAT,
  CT_ESTABLISHED,
  CT_INVALID,
  CT_NEW,
  CT_RELATED,
  CT_SNAT,
  CT_UNTRACKED,
  CTS_ASSURED,
  CTS_CONFIRMED,
  CTS_EXPECTED,
  CTS_SEEN_REPLY,
  type Thread,
} from "./thread.js";
import type { IpSetLookup } from "./types.js";

export interface CompiledContext {
  local4: Set<number>;
  local6: Uint8Array[];
  /** Interface → its addresses (v4 numbers, v6 bytes, texts). */
  ifaces: Map<string, { v4: number[]; v6: Uint8Array[]; texts: string[] }>;
  affinity: Map<string, Set<string>> | null;
  ipsets: IpSetLookup | null;
}

export const YES = 1;
export const NO = 0;
export const UNKNOWN = 2;

export type Cond = (t: Thread, c: CompiledContext) => number;

export interface CompiledMatches {
  conds: Cond[];
  /** For a cond that can answer UNKNOWN: the assumption text for the "matched" branch. */
  notes: string[];
  /** Product of statistic weights; null when the rule has no statistic match. */
  prob: number | null;
  /** Modules this simulator does not model (their conds always answer UNKNOWN). */
  unmodelled: string[];
  /** For dispatch indexes: the exact destination host (non-negated -d /32 or /128). */
  exactDst: { fam: 4 | 6; v4: number; v6: Uint8Array | null } | null;
  /** For dispatch indexes: the exact destination port (non-negated single --dport). */
  exactDport: number | null;
  /** Required protocol number when fixed by a non-negated -p (0 = any). */
  proto: number;
  /** Problems compiling an option: bad value text. */
  problems: string[];
}

const PROTOCOLS: Record<string, number> = {
  all: 0,
  "0": 0,
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmpv6: 58,
  "ipv6-icmp": 58,
  icmp6: 58,
  sctp: 132,
  udplite: 136,
  mh: 135,
};

export function protocolNumber(name: string): number {
  const known = PROTOCOLS[name.toLowerCase()];
  if (known !== undefined) return known;
  return /^\d{1,3}$/.test(name) ? Number(name) : -1;
}

const ICMP_TYPES: Record<string, [number, number]> = {
  any: [-1, -1],
  "echo-reply": [0, -1],
  pong: [0, -1],
  "destination-unreachable": [3, -1],
  "network-unreachable": [3, 0],
  "host-unreachable": [3, 1],
  "protocol-unreachable": [3, 2],
  "port-unreachable": [3, 3],
  "fragmentation-needed": [3, 4],
  "source-route-failed": [3, 5],
  "network-unknown": [3, 6],
  "host-unknown": [3, 7],
  "network-prohibited": [3, 9],
  "host-prohibited": [3, 10],
  "TOS-network-unreachable": [3, 11],
  "TOS-host-unreachable": [3, 12],
  "communication-prohibited": [3, 13],
  "host-precedence-violation": [3, 14],
  "precedence-cutoff": [3, 15],
  "source-quench": [4, -1],
  redirect: [5, -1],
  "echo-request": [8, -1],
  ping: [8, -1],
  "router-advertisement": [9, -1],
  "router-solicitation": [10, -1],
  "time-exceeded": [11, -1],
  "ttl-zero-during-transit": [11, 0],
  "ttl-zero-during-reassembly": [11, 1],
  "parameter-problem": [12, -1],
  "timestamp-request": [13, -1],
  "timestamp-reply": [14, -1],
  "address-mask-request": [17, -1],
  "address-mask-reply": [18, -1],
};

const ICMP6_TYPES: Record<string, [number, number]> = {
  "destination-unreachable": [1, -1],
  "no-route": [1, 0],
  "communication-prohibited": [1, 1],
  "address-unreachable": [1, 3],
  "port-unreachable": [1, 4],
  "packet-too-big": [2, -1],
  "time-exceeded": [3, -1],
  "parameter-problem": [4, -1],
  "echo-request": [128, -1],
  ping: [128, -1],
  "echo-reply": [129, -1],
  pong: [129, -1],
  "router-solicitation": [133, -1],
  "router-advertisement": [134, -1],
  "neighbour-solicitation": [135, -1],
  "neighbor-solicitation": [135, -1],
  "neighbour-advertisement": [136, -1],
  "neighbor-advertisement": [136, -1],
  redirect: [137, -1],
};

const TCP_FLAGS: Record<string, number> = {
  FIN: 1,
  SYN: 2,
  RST: 4,
  PSH: 8,
  ACK: 16,
  URG: 32,
  ALL: 63,
  NONE: 0,
};

const CT_STATES: Record<string, number> = {
  INVALID: CT_INVALID,
  ESTABLISHED: CT_ESTABLISHED,
  RELATED: CT_RELATED,
  NEW: CT_NEW,
  UNTRACKED: CT_UNTRACKED,
  SNAT: CT_SNAT,
  DNAT: CT_DNAT,
};

const CT_STATUSES: Record<string, number> = {
  NONE: 0,
  EXPECTED: CTS_EXPECTED,
  SEEN_REPLY: CTS_SEEN_REPLY,
  ASSURED: CTS_ASSURED,
  CONFIRMED: CTS_CONFIRMED,
};

/** Modules that never change whether a rule matches, as far as one packet is concerned. */
const ALWAYS_MATCH = new Set(["comment", "limit", "nfacct", "hashlimit"]);

/** Options of the protocol modules, accepted whichever module the parser filed them under. */
const PORT_MODULES = new Set(["", "tcp", "udp", "sctp", "udplite", "dccp"]);

const ICMP_MODULES = new Set(["icmp", "icmp6", "icmpv6", "ipv6-icmp"]);

/** Parse "0x4000", "16384"; NaN when neither. */
export function parseNumber(text: string): number {
  if (/^0x[0-9a-fA-F]+$/.test(text)) return Number.parseInt(text.slice(2), 16);
  if (/^\d+$/.test(text)) return Number(text);
  return Number.NaN;
}

/** "value[/mask]" as uint32s; mask defaults to all ones. */
export function parseValueMask(text: string): { value: number; mask: number } | null {
  const slash = text.indexOf("/");
  const value = parseNumber(slash < 0 ? text : text.slice(0, slash));
  const mask = slash < 0 ? 0xffffffff : parseNumber(text.slice(slash + 1));
  if (!Number.isFinite(value) || !Number.isFinite(mask)) return null;
  return { value: value >>> 0, mask: mask >>> 0 };
}

/** "80", "1000:2000", ":1024", "1024:" → inclusive range; null when invalid. */
export function parsePortRange(text: string): [number, number] | null {
  const colon = text.indexOf(":");
  const portOf = (s: string, dflt: number): number => {
    if (s === "") return dflt;
    if (!/^\d{1,5}$/.test(s)) return Number.NaN;
    return Number(s);
  };
  const lo = colon < 0 ? portOf(text, Number.NaN) : portOf(text.slice(0, colon), 0);
  const hi = colon < 0 ? lo : portOf(text.slice(colon + 1), 65535);
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo > 65535 || hi > 65535) return null;
  return lo <= hi ? [lo, hi] : [hi, lo];
}

function hostOf(cidr: Cidr): { fam: 4 | 6; v4: number; v6: Uint8Array | null } | null {
  if (cidr.family === 4 && cidr.prefix === 32) return { fam: 4, v4: cidr.v4, v6: null };
  if (cidr.family === 6 && cidr.prefix === 128) return { fam: 6, v4: 0, v6: cidr.v6 };
  return null;
}

function addrCond(cidrs: Cidr[], negated: boolean, field: "src" | "dst"): Cond {
  const v4 = cidrs.filter((c) => c.family === 4);
  const v6 = cidrs.filter((c) => c.family === 6);
  const hit = negated ? NO : YES;
  const miss = negated ? YES : NO;
  if (cidrs.length === 1 && v4.length === 1) {
    const c = v4[0]!;
    const mask = maskV4(c.prefix);
    const net = c.v4;
    return field === "src"
      ? (t) => (t.fam === 4 && (t.src4 & mask) >>> 0 === net ? hit : miss)
      : (t) => (t.fam === 4 && (t.dst4 & mask) >>> 0 === net ? hit : miss);
  }
  return (t) => {
    if (t.fam === 4) {
      const a = field === "src" ? t.src4 : t.dst4;
      for (const c of v4) if (cidrContainsV4(c, a)) return hit;
    } else {
      const a = field === "src" ? t.src6 : t.dst6;
      for (const c of v6) if (cidrContainsV6(c, a)) return hit;
    }
    return miss;
  };
}

function ifaceCond(name: string, negated: boolean, field: "in" | "out"): Cond {
  const wildcard = name.endsWith("+");
  const stem = wildcard ? name.slice(0, -1) : name;
  const hit = negated ? NO : YES;
  const miss = negated ? YES : NO;
  return (t) => {
    const iface = field === "in" ? t.inIface : t.outIface;
    if (iface === null) return UNKNOWN;
    const same = wildcard ? iface.startsWith(stem) : iface === stem;
    return same ? hit : miss;
  };
}

function portsCond(
  ranges: Array<[number, number]>,
  negated: boolean,
  field: "s" | "d" | "sd",
): Cond {
  const hit = negated ? NO : YES;
  const miss = negated ? YES : NO;
  const inRanges = (p: number): boolean => {
    for (const [lo, hi] of ranges) if (p >= lo && p <= hi) return true;
    return false;
  };
  if (ranges.length === 1 && field === "d") {
    const [lo, hi] = ranges[0]!;
    return (t) => (t.dport >= lo && t.dport <= hi ? hit : miss);
  }
  return (t) => {
    if (field === "s") return inRanges(t.sport) ? hit : miss;
    if (field === "d") return inRanges(t.dport) ? hit : miss;
    return inRanges(t.sport) || inRanges(t.dport) ? hit : miss;
  };
}

function isLocal(t: Thread, c: CompiledContext, field: "src" | "dst"): boolean {
  if (t.fam === 4) {
    const a = field === "src" ? t.src4 : t.dst4;
    return a >>> 24 === 127 || c.local4.has(a);
  }
  const a = field === "src" ? t.src6 : t.dst6;
  if (isLoopback6(a)) return true;
  for (const l of c.local6) if (equal16(l, a)) return true;
  return false;
}

function isLoopback6(a: Uint8Array): boolean {
  for (let i = 0; i < 15; i++) if (a[i] !== 0) return false;
  return a[15] === 1;
}

export function equal16(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Address types as the kernel's route lookup would answer them, for what we know. */
function addrTypeBits(t: Thread, c: CompiledContext, field: "src" | "dst"): number {
  if (isLocal(t, c, field)) return ADDR_LOCAL;
  if (t.fam === 4) {
    const a = field === "src" ? t.src4 : t.dst4;
    if (a === 0) return ADDR_UNSPEC;
    if (a === 0xffffffff) return ADDR_BROADCAST;
    if (a >>> 28 === 14) return ADDR_MULTICAST;
    return ADDR_UNICAST;
  }
  const a = field === "src" ? t.src6 : t.dst6;
  if (a[0] === 0xff) return ADDR_MULTICAST;
  let zero = true;
  for (let i = 0; i < 16; i++) if (a[i] !== 0) zero = false;
  return zero ? ADDR_UNSPEC : ADDR_UNICAST;
}

const ADDR_UNSPEC = 1;
const ADDR_UNICAST = 2;
const ADDR_LOCAL = 4;
const ADDR_BROADCAST = 8;
const ADDR_MULTICAST = 32;
const ADDR_TYPES: Record<string, number> = {
  UNSPEC: ADDR_UNSPEC,
  UNICAST: ADDR_UNICAST,
  LOCAL: ADDR_LOCAL,
  BROADCAST: ADDR_BROADCAST,
  ANYCAST: 16,
  MULTICAST: ADDR_MULTICAST,
  BLACKHOLE: 64,
  UNREACHABLE: 128,
  PROHIBIT: 256,
  THROW: 512,
  NAT: 1024,
  XRESOLVE: 2048,
};

function opt(match: RuleMatch, ...names: string[]): RuleOption | undefined {
  return match.options.find((o) => names.includes(o.name));
}

function hash16(a: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i++) h = Math.imul(h ^ (a[i] ?? 0), 0x01000193);
  return h >>> 0;
}

/** Key of an address for dispatch indexes: the uint32 itself, or a hash of the 16 bytes. */
export function addrKey(fam: 4 | 6, v4: number, v6: Uint8Array | null): number {
  return fam === 4 ? v4 : hash16(v6 ?? new Uint8Array(16));
}

export function compileMatches(rule: Rule): CompiledMatches {
  const out: CompiledMatches = {
    conds: [],
    notes: [],
    prob: null,
    unmodelled: [],
    exactDst: null,
    exactDport: null,
    proto: 0,
    problems: [],
  };
  const push = (cond: Cond, note = ""): void => {
    out.conds.push(cond);
    out.notes.push(note);
  };
  const unmodelled = (what: string): void => {
    out.unmodelled.push(what);
    push(() => UNKNOWN, `unmodelled ${what} at line ${rule.line} matched`);
  };
  const bad = (o: RuleOption, why: string): void => {
    out.problems.push(`${o.name} ${o.values.join(" ")}: ${why}`);
  };

  for (const m of rule.matches) {
    const mod = m.module;
    if (ALWAYS_MATCH.has(mod)) continue;
    let handledAll = true;
    for (const o of m.options) {
      const v = o.values[0] ?? "";
      const neg = o.negated;
      const name = o.name;
      // Builtin matches and the protocol modules' port options.
      if (mod === "" || PORT_MODULES.has(mod) || ICMP_MODULES.has(mod)) {
        if (name === "-s" || name === "--source" || name === "--src") {
          const cidrs = v.split(",").map((s) => parseCidr(s));
          if (cidrs.some((c) => c === null)) bad(o, "not an address");
          else push(addrCond(cidrs as Cidr[], neg, "src"));
          continue;
        }
        if (name === "-d" || name === "--destination" || name === "--dst") {
          const cidrs = v.split(",").map((s) => parseCidr(s));
          if (cidrs.some((c) => c === null)) bad(o, "not an address");
          else {
            push(addrCond(cidrs as Cidr[], neg, "dst"));
            if (!neg && cidrs.length === 1) out.exactDst = hostOf(cidrs[0]!);
          }
          continue;
        }
        if (name === "-p" || name === "--protocol") {
          const p = protocolNumber(v);
          if (p < 0) {
            bad(o, "unknown protocol");
            continue;
          }
          if (p === 0) {
            if (neg) push(() => NO);
            continue;
          }
          if (!neg) out.proto = p;
          push(neg ? (t) => (t.proto === p ? NO : YES) : (t) => (t.proto === p ? YES : NO));
          continue;
        }
        if (name === "-i" || name === "--in-interface") {
          push(ifaceCond(v, neg, "in"), `input interface ${neg ? "not " : ""}${v}`);
          continue;
        }
        if (name === "-o" || name === "--out-interface") {
          push(ifaceCond(v, neg, "out"), `output interface ${neg ? "not " : ""}${v}`);
          continue;
        }
        if (name === "-f" || name === "--fragment") {
          // We simulate first fragments / whole packets only.
          push(() => (neg ? YES : NO));
          continue;
        }
        if (name === "--dport" || name === "--destination-port") {
          const r = parsePortRange(v);
          if (r === null) bad(o, "not a port");
          else {
            push(portsCond([r], neg, "d"));
            if (!neg && r[0] === r[1]) out.exactDport = r[0];
          }
          continue;
        }
        if (name === "--sport" || name === "--source-port") {
          const r = parsePortRange(v);
          if (r === null) bad(o, "not a port");
          else push(portsCond([r], neg, "s"));
          continue;
        }
        if (name === "--syn") {
          // SYN set, ACK/RST/FIN clear.
          push((t) => (((t.tcpFlags & 0x17) === 2) !== neg ? YES : NO));
          continue;
        }
        if (name === "--tcp-flags") {
          const mask = flagsOf(o.values[0] ?? "");
          const comp = flagsOf(o.values[1] ?? "");
          if (mask < 0 || comp < 0) bad(o, "unknown TCP flag");
          else push((t) => (((t.tcpFlags & mask) === comp) !== neg ? YES : NO));
          continue;
        }
        if (name === "--icmp-type" || name === "--icmpv6-type") {
          const table = name === "--icmp-type" ? ICMP_TYPES : ICMP6_TYPES;
          const tc = icmpTypeOf(v, table);
          if (tc === null) bad(o, "unknown ICMP type");
          else {
            const [type, code] = tc;
            push((t) => {
              const same = type < 0 || (t.icmpType === type && (code < 0 || t.icmpCode === code));
              return same !== neg ? YES : NO;
            });
          }
          continue;
        }
        if (mod === "") {
          handledAll = false;
          unmodelled(`option ${name}`);
          continue;
        }
      }
      switch (mod) {
        case "multiport": {
          const ranges = v.split(",").map(parsePortRange);
          if (ranges.some((r) => r === null)) {
            bad(o, "not a port list");
            break;
          }
          const field =
            name === "--dports" || name === "--destination-ports"
              ? "d"
              : name === "--sports" || name === "--source-ports"
                ? "s"
                : name === "--ports"
                  ? "sd"
                  : null;
          if (field === null) {
            handledAll = false;
            unmodelled(`multiport ${name}`);
          } else push(portsCond(ranges as Array<[number, number]>, neg, field));
          break;
        }
        case "addrtype": {
          if (name === "--src-type" || name === "--dst-type") {
            let bits = 0;
            for (const n of v.split(",")) bits |= ADDR_TYPES[n.toUpperCase()] ?? 0;
            const field = name === "--src-type" ? "src" : "dst";
            push((t, c) => (((addrTypeBits(t, c, field) & bits) !== 0) !== neg ? YES : NO));
          } else if (name === "--limit-iface-in" || name === "--limit-iface-out") {
            // Approximated by the node's whole address set; said so in the README.
          } else {
            handledAll = false;
            unmodelled(`addrtype ${name}`);
          }
          break;
        }
        case "statistic": {
          if (name === "--probability") {
            const p = Number(v);
            if (!Number.isFinite(p) || p < 0 || p > 1) bad(o, "not a probability");
            else out.prob = (out.prob ?? 1) * (neg ? 1 - p : p);
          } else if (name === "--every") {
            const n = parseNumber(v);
            if (!(n >= 1)) bad(o, "not a count");
            else out.prob = (out.prob ?? 1) * (neg ? 1 - 1 / n : 1 / n);
          }
          // --mode and --packet only qualify the above.
          break;
        }
        case "recent": {
          if (name === "--rcheck" || name === "--update" || name === "--remove") {
            const listName = opt(m, "--name")?.values[0] ?? "DEFAULT";
            const useDst = opt(m, "--rdest") !== undefined;
            const note = `recent ${listName}: client ${useDst ? "destination" : "source"} listed`;
            push((t, c) => {
              if (t.upstream) return NO;
              if (c.affinity === null) return UNKNOWN;
              const set = c.affinity.get(listName);
              const listed = set?.has(useDst ? t.dstText : t.srcText) === true;
              return listed !== neg ? YES : NO;
            }, note);
          }
          // --set always matches; --name --seconds --reap --hitcount --mask qualify the check.
          break;
        }
        case "mark":
        case "connmark": {
          if (name !== "--mark") {
            handledAll = false;
            unmodelled(`${mod} ${name}`);
            break;
          }
          const vm = parseValueMask(v);
          if (vm === null) {
            bad(o, "not a mark");
            break;
          }
          const { value, mask } = vm;
          const conn = mod === "connmark";
          push((t) => {
            if (t.upstream) return NO;
            const mk = conn ? t.ctMark : t.mark;
            return ((mk & mask) >>> 0 === value) !== neg ? YES : NO;
          });
          break;
        }
        case "conntrack":
        case "state": {
          if (name === "--ctstate" || name === "--state") {
            let bits = 0;
            for (const s of v.split(",")) {
              const b = CT_STATES[s.toUpperCase()];
              if (b === undefined) bad(o, `unknown state ${s}`);
              else bits |= b;
            }
            push((t) => (t.upstream ? NO : ((t.ct & bits) !== 0) !== neg ? YES : NO));
          } else if (name === "--ctstatus") {
            let bits = 0;
            let none = false;
            for (const s of v.split(",")) {
              const b = CT_STATUSES[s.toUpperCase()];
              if (b === undefined) bad(o, `unknown status ${s}`);
              else if (b === 0) none = true;
              else bits |= b;
            }
            push((t) => {
              if (t.upstream) return NO;
              const hit = (t.ctStatus & bits) !== 0 || (none && t.ctStatus === 0);
              return hit !== neg ? YES : NO;
            });
          } else if (name === "--ctorigdst" || name === "--ctorigsrc" || name === "--ctreplsrc") {
            const cidr = parseCidr(v);
            if (cidr === null) {
              bad(o, "not an address");
              break;
            }
            push((t) => {
              if (t.upstream) return NO;
              let hit: boolean;
              if (name === "--ctorigsrc") {
                hit = t.fam === 4 ? cidrContainsV4(cidr, t.src4) : cidrContainsV6(cidr, t.src6);
              } else if (name === "--ctorigdst") {
                hit = t.fam === 4 ? cidrContainsV4(cidr, t.odst4) : cidrContainsV6(cidr, t.odst6);
              } else {
                hit = t.fam === 4 ? cidrContainsV4(cidr, t.dst4) : cidrContainsV6(cidr, t.dst6);
              }
              return hit !== neg ? YES : NO;
            });
          } else if (name === "--ctorigdstport" || name === "--ctorigsrcport") {
            const r = parsePortRange(v);
            if (r === null) {
              bad(o, "not a port");
              break;
            }
            push((t) => {
              if (t.upstream) return NO;
              const p = name === "--ctorigdstport" ? t.odport : t.sport;
              return (p >= r[0] && p <= r[1]) !== neg ? YES : NO;
            });
          } else if (name === "--ctproto") {
            const p = protocolNumber(v);
            push((t) => (t.upstream ? NO : (t.proto === p) !== neg ? YES : NO));
          } else if (name === "--ctdir") {
            const original = v.toUpperCase() === "ORIGINAL";
            // Every simulated packet travels in the original direction.
            push((t) => (t.upstream ? NO : original !== neg ? YES : NO));
          } else {
            handledAll = false;
            unmodelled(`conntrack ${name}`);
          }
          break;
        }
        case "iprange": {
          if (name === "--src-range" || name === "--dst-range") {
            const dash = v.indexOf("-");
            const lo = normalizeIP(v.slice(0, dash));
            const hi = normalizeIP(v.slice(dash + 1));
            if (dash < 0 || lo === null || hi === null) {
              bad(o, "not an address range");
              break;
            }
            const field = name === "--src-range" ? "src" : "dst";
            const lo4 = parseIPv4(lo);
            const hi4 = parseIPv4(hi);
            const lo6 = parseIPv6(lo);
            const hi6 = parseIPv6(hi);
            push((t) => {
              let hit = false;
              if (t.fam === 4 && lo4 >= 0) {
                const a = field === "src" ? t.src4 : t.dst4;
                hit = a >= lo4 && a <= hi4;
              } else if (t.fam === 6 && lo6 !== null && hi6 !== null) {
                const a = field === "src" ? t.src6 : t.dst6;
                hit = compare16(a, lo6) >= 0 && compare16(a, hi6) <= 0;
              }
              return hit !== neg ? YES : NO;
            });
          } else {
            handledAll = false;
            unmodelled(`iprange ${name}`);
          }
          break;
        }
        case "set": {
          if (name === "--match-set") {
            const setName = v;
            const dirs = (o.values[1] ?? "src").split(",");
            push((t, c) => {
              if (c.ipsets === null) return UNKNOWN;
              const values = dirs.map((d) =>
                d === "src"
                  ? { ip: t.srcText, port: t.sport, proto: protoName(t.proto) }
                  : { ip: t.dstText, port: t.dport, proto: protoName(t.proto) },
              );
              const r = c.ipsets.test(setName, values);
              if (r === undefined) return UNKNOWN;
              return r !== neg ? YES : NO;
            }, `ipset ${setName} contains the packet`);
          }
          // --return-nomatch, --update-counters … do not change a single packet's match.
          break;
        }
        case "pkttype": {
          if (name === "--pkt-type") {
            const want = v.toLowerCase();
            push((t) => {
              const multicast = t.fam === 4 ? t.dst4 >>> 28 === 14 : t.dst6[0] === 0xff;
              const broadcast = t.fam === 4 && t.dst4 === 0xffffffff;
              const type = broadcast ? "broadcast" : multicast ? "multicast" : "unicast";
              return (type === want) !== neg ? YES : NO;
            });
          }
          break;
        }
        case "policy": {
          // Nothing in a simulated packet came through IPsec.
          if (name === "--pol") {
            const none = v === "none";
            push(() => (none !== neg ? YES : NO));
          }
          break;
        }
        default:
          handledAll = false;
          if (!out.unmodelled.includes(mod)) unmodelled(mod);
      }
    }
    // A module with no options we recognised still has to be named (e.g. `-m physdev`).
    if (
      m.options.length === 0 &&
      !KNOWN_MODULES.has(mod) &&
      handledAll &&
      !out.unmodelled.includes(mod)
    ) {
      unmodelled(mod);
    }
  }
  return out;
}

const KNOWN_MODULES = new Set([
  "",
  "tcp",
  "udp",
  "sctp",
  "udplite",
  "dccp",
  "icmp",
  "icmp6",
  "icmpv6",
  "ipv6-icmp",
  "multiport",
  "addrtype",
  "statistic",
  "recent",
  "mark",
  "connmark",
  "conntrack",
  "state",
  "comment",
  "limit",
  "nfacct",
  "hashlimit",
  "iprange",
  "set",
  "pkttype",
  "policy",
]);

function compare16(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 16; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function protoName(p: number): string {
  return p === 6 ? "tcp" : p === 17 ? "udp" : p === 132 ? "sctp" : p === 1 ? "icmp" : String(p);
}

function flagsOf(text: string): number {
  let bits = 0;
  for (const f of text.split(",")) {
    const b = TCP_FLAGS[f.toUpperCase()];
    if (b === undefined) return -1;
    bits |= b;
  }
  return bits;
}

function icmpTypeOf(
  text: string,
  table: Record<string, [number, number]>,
): [number, number] | null {
  const named = table[text];
  if (named !== undefined) return named;
  const m = /^(\d{1,3})(?:\/(\d{1,3}))?$/.exec(text);
  if (m === null) return null;
  return [Number(m[1]), m[2] === undefined ? -1 : Number(m[2])];
}
