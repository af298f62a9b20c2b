/**
 * `conntrack -L` / `-L -o extended[,id]` listings and `conntrack -E [-o timestamp]` events:
 * the kernel's own record of each translation. The reply tuple says where the connection
 * really went: a reply source that differs from the original destination is a DNAT, a reply
 * destination that differs from the original source is an SNAT/masquerade.
 */

import { InputError, quoteInput } from "../util/errors.js";
import { normalizeIP } from "../util/ip.js";
import type { IpFamily } from "./model.js";

export interface ConntrackTuple {
  src: string;
  dst: string;
  /** null for protocols without ports (ICMP, GRE…). */
  sport: number | null;
  dport: number | null;
  /** ICMP / ICMPv6 type, code and identifier; null otherwise. */
  icmpType: number | null;
  icmpCode: number | null;
  icmpId: number | null;
  /** Per-direction counters when accounting is on (nf_conntrack_acct=1). */
  packets: number | null;
  bytes: number | null;
}

export interface ConntrackEntry {
  line: number;
  raw: string;
  /** `conntrack -E`: the event; null for a listing. */
  event: "NEW" | "UPDATE" | "DESTROY" | null;
  /** `-o timestamp` events: epoch seconds of the event. */
  eventTime: number | null;
  family: IpFamily;
  /** "tcp", "udp", "icmp", "icmpv6", "sctp"… as conntrack prints it. */
  proto: string;
  protoNumber: number;
  /** Seconds left; null when not printed (DESTROY events). */
  timeout: number | null;
  /** TCP/SCTP/DCCP state (ESTABLISHED, TIME_WAIT…); null for stateless protocols. */
  state: string | null;
  original: ConntrackTuple;
  reply: ConntrackTuple;
  /** ASSURED, UNREPLIED, OFFLOAD, HW_OFFLOAD…, without brackets. */
  flags: string[];
  mark: number | null;
  zone: number | null;
  use: number | null;
  /** `-o id`. */
  id: number | null;
  /** Anything else printed as key=value (secctx, labels, helper, delta-time…), kept as text. */
  extra: Record<string, string>;
  /** The destination was translated (reply comes from elsewhere than the original destination). */
  dnat: boolean;
  /** The source was translated (SNAT or MASQUERADE). */
  snat: boolean;
}

export interface ParseConntrackOptions {
  source: string;
}

const EVENT = /^\[(NEW|UPDATE|DESTROY)\]$/;
const TIMESTAMP = /^\[(\d+(?:\.\d+)?)\]$/;
const NUMBER = /^\d+$/;
const SUMMARY = /^conntrack v\S+ \(conntrack-tools\):/;

/** Parse a whole listing or event log. Blank lines, `#` comments and the summary are skipped. */
export function parseConntrack(text: string, options: ParseConntrackOptions): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  let lineNo = 0;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    const raw = text.slice(pos, end).replace(/\r$/, "");
    pos = end + 1;
    lineNo++;
    const line = raw.trim();
    if (line === "" || line[0] === "#" || SUMMARY.test(line)) continue;
    out.push(parseConntrackLine(raw, lineNo, options.source));
  }
  return out;
}

function emptyTuple(): ConntrackTuple {
  return {
    src: "",
    dst: "",
    sport: null,
    dport: null,
    icmpType: null,
    icmpCode: null,
    icmpId: null,
    packets: null,
    bytes: null,
  };
}

/** One line; throws InputError naming the line when it is not a conntrack entry. */
export function parseConntrackLine(raw: string, lineNo: number, source: string): ConntrackEntry {
  const fail = (reason: string): never => {
    throw new InputError(`${reason}: ${quoteInput(raw)}`, { file: source, line: lineNo });
  };
  const toks = raw.trim().split(/\s+/);
  let i = 0;
  let eventTime: number | null = null;
  let event: ConntrackEntry["event"] = null;
  const ts = TIMESTAMP.exec(toks[i] ?? "");
  if (ts !== null) {
    eventTime = Number(ts[1]);
    i++;
  }
  const ev = EVENT.exec(toks[i] ?? "");
  if (ev !== null) {
    event = ev[1] as ConntrackEntry["event"];
    i++;
  }
  let family: IpFamily | null = null;
  if (toks[i] === "ipv4" || toks[i] === "ipv6") {
    family = toks[i] as IpFamily;
    if (!NUMBER.test(toks[i + 1] ?? "")) fail("layer-3 protocol number missing");
    i += 2;
  }
  const proto = toks[i];
  const protoNum = toks[i + 1];
  if (
    proto === undefined ||
    !/^[a-z][a-z0-9-]*$/.test(proto) ||
    protoNum === undefined ||
    !NUMBER.test(protoNum)
  ) {
    return fail("not a conntrack entry (expected `PROTO NUMBER`)");
  }
  i += 2;
  let timeout: number | null = null;
  if (NUMBER.test(toks[i] ?? "")) {
    timeout = Number(toks[i]);
    i++;
  }
  let state: string | null = null;
  const maybeState = toks[i];
  if (maybeState !== undefined && /^[A-Z][A-Z_]*$/.test(maybeState)) {
    state = maybeState;
    i++;
  }

  const original = emptyTuple();
  const reply = emptyTuple();
  let tuple: ConntrackTuple | null = null;
  let tuples = 0;
  let lastKey = "";
  const flags: string[] = [];
  let mark: number | null = null;
  let zone: number | null = null;
  let use: number | null = null;
  let id: number | null = null;
  const extra: Record<string, string> = {};
  const num = (key: string, v: string): number => {
    if (!NUMBER.test(v)) fail(`${key}= is not a number`);
    return Number(v);
  };

  for (; i < toks.length; i++) {
    const t = toks[i] as string;
    if (t.startsWith("[") && t.endsWith("]")) {
      const inner = t.slice(1, -1);
      if (inner.includes("=")) {
        const eq = inner.indexOf("=");
        extra[inner.slice(0, eq)] = inner.slice(eq + 1);
      } else flags.push(inner);
      continue;
    }
    const eq = t.indexOf("=");
    if (eq <= 0) {
      fail(`unexpected ${JSON.stringify(t)}`);
      continue;
    }
    const key = t.slice(0, eq);
    const value = t.slice(eq + 1);
    switch (key) {
      case "src": {
        if (tuples === 2) fail("more than two tuples");
        tuple = tuples === 0 ? original : reply;
        tuples++;
        const ip = normalizeIP(value);
        if (ip === null) fail(`src= is not an IP address`);
        tuple.src = ip ?? value;
        break;
      }
      case "dst": {
        if (tuple === null) return fail("dst= before src=");
        const ip = normalizeIP(value);
        if (ip === null) fail(`dst= is not an IP address`);
        tuple.dst = ip ?? value;
        break;
      }
      case "sport":
      case "dport":
      case "type":
      case "code":
      case "packets":
      case "bytes": {
        if (tuple === null) return fail(`${key}= before src=`);
        const n = num(key, value);
        if (key === "sport") tuple.sport = n;
        else if (key === "dport") tuple.dport = n;
        else if (key === "type") tuple.icmpType = n;
        else if (key === "code") tuple.icmpCode = n;
        else if (key === "packets") tuple.packets = n;
        else tuple.bytes = n;
        break;
      }
      case "id":
        // The ICMP identifier follows code= inside a tuple; `-o id` prints the entry id last.
        if (tuple !== null && lastKey === "code") tuple.icmpId = num(key, value);
        else id = num(key, value);
        break;
      case "mark":
        mark = num(key, value);
        tuple = null;
        break;
      case "zone":
        zone = num(key, value);
        break;
      case "use":
        use = num(key, value);
        tuple = null;
        break;
      default:
        extra[key] = value;
    }
    lastKey = key;
  }
  if (tuples < 2 || original.dst === "" || reply.dst === "") {
    return fail("an entry needs an original and a reply tuple (src= dst= twice)");
  }
  const fam: IpFamily = family ?? (original.src.includes(":") ? "ipv6" : "ipv4");
  return {
    line: lineNo,
    raw,
    event,
    eventTime,
    family: fam,
    proto,
    protoNumber: Number(protoNum),
    timeout,
    state,
    original,
    reply,
    flags,
    mark,
    zone,
    use,
    id,
    extra,
    dnat: reply.src !== original.dst || (original.dport !== null && reply.sport !== original.dport),
    snat: reply.dst !== original.src || (original.sport !== null && reply.dport !== original.sport),
  };
}
