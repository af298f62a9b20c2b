/**
 * Compile a parsed RuleSet once into chains of rules with closures for their matches, resolved
 * jump targets and dispatch indexes, so that evaluating a packet touches only the rules that
 * can match it.
 */

import type { Rule, RuleOption, RuleSet, TableName } from "../rules/model.js";
import { formatAddrPort, formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "../util/ip.js";
import { addrKey, type Cond, compileMatches, parseNumber, parseValueMask } from "./matches.js";
import type { ChainLike } from "./thread.js";
import type { PathStep, UnmodelledItem } from "./types.js";

export interface DnatAlt {
  fam: 4 | 6;
  v4: number;
  v6: Uint8Array | null;
  /** Address text (canonical) or null to keep the address (port-only DNAT). */
  ip: string | null;
  /** New port, or -1 to keep the packet's port. */
  port: number;
  /** "ip:port" when both are fixed, built once here instead of per packet. */
  text: string | null;
}

export type CTarget =
  | { kind: "none" }
  | { kind: "accept" }
  | { kind: "drop" }
  | { kind: "reject"; with: string }
  | { kind: "return" }
  | { kind: "jump"; chain: CChain }
  | { kind: "goto"; chain: CChain }
  | { kind: "dnat"; alts: DnatAlt[]; note: string | null }
  | { kind: "redirect"; port: number }
  | { kind: "snat"; address: string }
  | { kind: "masquerade" }
  | { kind: "mark"; and: number; xor: number }
  | { kind: "ctmark"; and: number; xor: number }
  | { kind: "savemark"; nfmask: number; ctmask: number }
  | { kind: "restoremark"; nfmask: number; ctmask: number }
  | { kind: "notrack" }
  | { kind: "continue" }
  | { kind: "unknown"; item: UnmodelledItem };

export interface CRule {
  readonly stepIndex: number;
  rule: Rule;
  conds: Cond[];
  notes: string[];
  prob: number | null;
  target: CTarget;
  /** Unmodelled modules on this rule (their conds answer UNKNOWN). */
  unmodelled: UnmodelledItem[];
  /** Dispatch keys: exact destination (address key) and exact destination port, if any. */
  keyDst: number | null;
  keyPort: number | null;
}

export interface DispatchIndex {
  /** (dst key * 65536 + dport) → candidate positions. */
  dstPort: Map<number, Int32Array>;
  /** The same lists already merged with `rest`, for the common case of one exact hit. */
  dstPortWithRest: Map<number, Int32Array>;
  dst: Map<number, Int32Array>;
  port: Map<number, Int32Array>;
  /** Positions the index cannot narrow; always candidates. */
  rest: Int32Array;
}

export interface CChain extends ChainLike {
  name: string;
  table: TableName;
  builtin: boolean;
  /** ACCEPT or DROP for built-in chains. */
  policy: "ACCEPT" | "DROP";
  line: number;
  rules: CRule[];
  index: DispatchIndex | null;
}

export interface CompiledRuleSet {
  family: 4 | 6;
  source: string;
  tables: Map<TableName, Map<string, CChain>>;
  /** Every compiled rule's path step, by CRule.stepIndex. */
  steps: PathStep[];
  rules: CRule[];
  /** Unmodelled matches and targets anywhere in the set (not only on a packet's path). */
  unmodelled: UnmodelledItem[];
  /** Rules with option values we could not read (kept as unmodelled too). */
  problems: Array<{ line: number; problem: string }>;
  /**
   * A jump/goto cycle reachable from a built-in chain, as "table: A → B → A" with the line of
   * the rule that closes it; null when there is none. The kernel refuses such rule sets.
   */
  loop: { text: string; line: number } | null;
}

const BUILTIN: Record<string, string[]> = {
  raw: ["PREROUTING", "OUTPUT"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  security: ["INPUT", "FORWARD", "OUTPUT"],
};

/** Targets that only observe or tweak the packet and then let it go on. */
const CONTINUE_TARGETS = new Set([
  "LOG",
  "NFLOG",
  "ULOG",
  "TRACE",
  "AUDIT",
  "CT",
  "CLASSIFY",
  "DSCP",
  "TOS",
  "TTL",
  "HL",
  "TCPMSS",
  "CHECKSUM",
  "SET",
  "SECMARK",
  "CONNSECMARK",
  "IDLETIMER",
  "LED",
  "RATEEST",
]);

/** A chain with at least this many rules gets a dispatch index (if its rules allow one). */
const INDEX_MIN_RULES = 16;

export interface CompileOptions {
  /** Build dispatch indexes for long chains (default true; false only to measure them). */
  dispatchIndex?: boolean;
}

export function compileRuleSet(rs: RuleSet, options: CompileOptions = {}): CompiledRuleSet {
  const indexes = options.dispatchIndex ?? true;
  const out: CompiledRuleSet = {
    family: rs.family === "ipv6" ? 6 : 4,
    source: rs.source,
    tables: new Map(),
    steps: [],
    rules: [],
    unmodelled: [],
    problems: [],
    loop: null,
  };
  // First create every chain so jumps can be resolved in any order.
  for (const [tname, table] of rs.tables) {
    const chains = new Map<string, CChain>();
    for (const [cname, chain] of table.chains) {
      const builtin = BUILTIN[tname]?.includes(cname) ?? false;
      chains.set(cname, {
        name: cname,
        table: tname,
        builtin,
        policy: chain.policy === "DROP" ? "DROP" : "ACCEPT",
        line: chain.line,
        rules: [],
        index: null,
      });
    }
    out.tables.set(tname, chains);
  }
  for (const [tname, table] of rs.tables) {
    const chains = out.tables.get(tname)!;
    for (const [cname, chain] of table.chains) {
      const cchain = chains.get(cname)!;
      for (const rule of chain.rules) {
        const cm = compileMatches(rule);
        const stepIndex = out.steps.length;
        out.steps.push({
          table: tname,
          chain: cname,
          index: rule.index,
          line: rule.line,
          rule: rule.raw,
        });
        const items: UnmodelledItem[] = cm.unmodelled.map((what) => ({
          line: rule.line,
          table: tname,
          chain: cname,
          what,
          rule: rule.raw,
        }));
        for (const p of cm.problems) {
          out.problems.push({ line: rule.line, problem: p });
        }
        const target = compileTarget(rule, tname, chains, out.family);
        if (target.kind === "unknown") items.push(target.item);
        const crule: CRule = {
          stepIndex,
          rule,
          conds: cm.conds,
          notes: cm.notes,
          prob: cm.prob,
          target,
          unmodelled: items,
          keyDst:
            cm.exactDst === null ? null : addrKey(cm.exactDst.fam, cm.exactDst.v4, cm.exactDst.v6),
          keyPort: cm.exactDport,
        };
        out.unmodelled.push(...items);
        out.rules.push(crule);
        cchain.rules.push(crule);
      }
      if (indexes && cchain.rules.length >= INDEX_MIN_RULES) cchain.index = buildIndex(cchain);
    }
  }
  out.loop = findLoop(out.tables);
  return out;
}

/** Depth-first search of the jump graph from every built-in chain. */
function findLoop(
  tables: Map<TableName, Map<string, CChain>>,
): { text: string; line: number } | null {
  for (const [tname, chains] of tables) {
    const state = new Map<CChain, 1 | 2>();
    const stack: CChain[] = [];
    const visit = (c: CChain): { text: string; line: number } | null => {
      state.set(c, 1);
      stack.push(c);
      for (const r of c.rules) {
        const tg = r.target;
        if (tg.kind !== "jump" && tg.kind !== "goto") continue;
        const seen = state.get(tg.chain);
        if (seen === 1) {
          const from = stack.indexOf(tg.chain);
          const names = [...stack.slice(from), tg.chain].map((x) => x.name);
          return { text: `${tname}: ${names.join(" → ")}`, line: r.rule.line };
        }
        if (seen === undefined) {
          const found = visit(tg.chain);
          if (found !== null) return found;
        }
      }
      stack.pop();
      state.set(c, 2);
      return null;
    };
    for (const c of chains.values()) {
      if (!c.builtin || state.has(c)) continue;
      const found = visit(c);
      if (found !== null) return found;
    }
  }
  return null;
}

function buildIndex(chain: CChain): DispatchIndex | null {
  const dstPort = new Map<number, number[]>();
  const dst = new Map<number, number[]>();
  const port = new Map<number, number[]>();
  const rest: number[] = [];
  let narrowed = 0;
  chain.rules.forEach((r, pos) => {
    // The keys are necessary conditions of the rule matching; its own conds decide the rest.
    const cm = { dst: r.keyDst, port: r.keyPort };
    const add = (m: Map<number, number[]>, k: number): void => {
      const list = m.get(k);
      if (list === undefined) m.set(k, [pos]);
      else list.push(pos);
    };
    if (cm.dst !== null && cm.port !== null) add(dstPort, cm.dst * 65536 + cm.port);
    else if (cm.dst !== null) add(dst, cm.dst);
    else if (cm.port !== null) add(port, cm.port);
    else {
      rest.push(pos);
      return;
    }
    narrowed++;
  });
  // An index pays off only when it leaves few rules to always try.
  if (narrowed < INDEX_MIN_RULES / 2 || rest.length > narrowed / 4 + 8) return null;
  const freeze = (m: Map<number, number[]>): Map<number, Int32Array> => {
    const f = new Map<number, Int32Array>();
    for (const [k, v] of m) f.set(k, Int32Array.from(v));
    return f;
  };
  const dstPortWithRest = new Map<number, Int32Array>();
  for (const [k, v] of dstPort) {
    dstPortWithRest.set(k, Int32Array.from([...v, ...rest].sort((a, b) => a - b)));
  }
  return {
    dstPort: freeze(dstPort),
    dstPortWithRest,
    dst: freeze(dst),
    port: freeze(port),
    rest: Int32Array.from(rest),
  };
}

function optionValue(options: RuleOption[], ...names: string[]): string | undefined {
  return options.find((o) => names.includes(o.name))?.values[0];
}

function compileTarget(
  rule: Rule,
  table: TableName,
  chains: Map<string, CChain>,
  family: 4 | 6,
): CTarget {
  const t = rule.target;
  if (t === null) return { kind: "none" };
  const unknown = (what: string): CTarget => ({
    kind: "unknown",
    item: { line: rule.line, table, chain: rule.chain, what, rule: rule.raw },
  });
  const target = chains.get(t.name);
  if (target !== undefined) {
    return t.kind === "goto" ? { kind: "goto", chain: target } : { kind: "jump", chain: target };
  }
  const o = t.options;
  switch (t.name) {
    case "ACCEPT":
      return { kind: "accept" };
    case "DROP":
      return { kind: "drop" };
    case "RETURN":
      return { kind: "return" };
    case "REJECT":
      return {
        kind: "reject",
        with:
          optionValue(o, "--reject-with") ??
          (family === 6 ? "icmp6-port-unreachable" : "icmp-port-unreachable"),
      };
    case "DNAT": {
      const tos = o.filter((x) => x.name === "--to-destination" || x.name === "--to");
      if (tos.length === 0) return unknown("DNAT without --to-destination");
      const alts: DnatAlt[] = [];
      let note: string | null = null;
      for (const to of tos) {
        const parsed = parseNatSpec(to.values[0] ?? "");
        if (parsed === null) return unknown(`DNAT ${to.values[0] ?? ""}`);
        alts.push(...parsed.alts);
        if (parsed.note !== null) note = parsed.note;
      }
      return { kind: "dnat", alts, note };
    }
    case "REDIRECT": {
      const ports = optionValue(o, "--to-ports", "--to-port");
      const port = ports === undefined ? -1 : Number.parseInt(ports, 10);
      return { kind: "redirect", port: Number.isFinite(port) ? port : -1 };
    }
    case "SNAT": {
      const to = optionValue(o, "--to-source", "--to");
      if (to === undefined) return unknown("SNAT without --to-source");
      return { kind: "snat", address: natAddressText(to) };
    }
    case "MASQUERADE":
      return { kind: "masquerade" };
    case "MARK": {
      const m = markOp(o);
      return m === null
        ? unknown(`MARK ${o.map((x) => x.name).join(" ")}`)
        : { kind: "mark", ...m };
    }
    case "CONNMARK": {
      const nfmask = parseNumber(optionValue(o, "--nfmask", "--mask") ?? "0xffffffff") >>> 0;
      const ctmask = parseNumber(optionValue(o, "--ctmask", "--mask") ?? "0xffffffff") >>> 0;
      if (o.some((x) => x.name === "--save-mark")) return { kind: "savemark", nfmask, ctmask };
      if (o.some((x) => x.name === "--restore-mark"))
        return { kind: "restoremark", nfmask, ctmask };
      const m = markOp(o);
      return m === null ? unknown("CONNMARK") : { kind: "ctmark", ...m };
    }
    case "NOTRACK":
      return { kind: "notrack" };
    case "CT":
      return o.some((x) => x.name === "--notrack") ? { kind: "notrack" } : { kind: "continue" };
    default:
      if (CONTINUE_TARGETS.has(t.name)) return { kind: "continue" };
      return unknown(
        chains.size > 0 && /^[A-Z0-9-]+$/.test(t.name) && !isExtension(t.name)
          ? `jump to missing chain ${t.name}`
          : t.name,
      );
  }
}

/** Targets that are kernel extensions we do not model (as opposed to a missing user chain). */
function isExtension(name: string): boolean {
  return [
    "QUEUE",
    "NFQUEUE",
    "TPROXY",
    "NETMAP",
    "TEE",
    "SYNPROXY",
    "CLUSTERIP",
    "TRACE",
    "DNPT",
    "SNPT",
    "HMARK",
    "IDLETIMER",
  ].includes(name);
}

/** MARK/CONNMARK value operations as mark = (mark & and) ^ xor. */
function markOp(o: RuleOption[]): { and: number; xor: number } | null {
  for (const x of o) {
    const vm = parseValueMask(x.values[0] ?? "");
    if (vm === null) continue;
    const { value, mask } = vm;
    const hasMask = (x.values[0] ?? "").includes("/");
    switch (x.name) {
      case "--set-xmark":
        return { and: ~mask >>> 0, xor: value };
      case "--set-mark":
        // (m & ~mask) | v  ==  (m & ~mask & ~v) ^ v
        return { and: ~(mask | value) >>> 0, xor: value };
      case "--and-mark":
        return { and: value, xor: 0 };
      case "--or-mark":
        return { and: ~value >>> 0, xor: value };
      case "--xor-mark":
        return { and: 0xffffffff, xor: value };
      default:
        if (hasMask) continue;
    }
  }
  return null;
}

/** The address part of a NAT spec ("1.2.3.4:80" → "1.2.3.4"; "[fd00::1]:80" → "fd00::1"). */
function natAddressText(spec: string): string {
  if (spec.startsWith("[")) {
    const close = spec.indexOf("]");
    return close < 0 ? spec : spec.slice(1, close);
  }
  const colon = spec.indexOf(":");
  if (colon >= 0 && spec.indexOf(":", colon + 1) < 0) return spec.slice(0, colon);
  return spec;
}

/** How many alternatives a range may expand into before we summarise it. */
const MAX_ALTS = 256;

/**
 * DNAT spec: `ip`, `ip:port`, `ip-ip:port-port`, `[v6]:port`, `:port`. The kernel picks one
 * address and port of a range per connection; we enumerate them with equal weight.
 */
export function parseNatSpec(spec: string): { alts: DnatAlt[]; note: string | null } | null {
  let addrPart = spec;
  let portPart: string | null = null;
  if (spec.startsWith("[")) {
    const close = spec.indexOf("]");
    if (close < 0) return null;
    addrPart = spec.slice(1, close);
    const rest = spec.slice(close + 1);
    if (rest.startsWith(":")) portPart = rest.slice(1);
    else if (rest !== "") return null;
  } else {
    const colons = spec.split(":").length - 1;
    if (colons === 1) {
      const i = spec.indexOf(":");
      addrPart = spec.slice(0, i);
      portPart = spec.slice(i + 1);
    }
  }
  let ports: number[] = [-1];
  if (portPart !== null && portPart !== "") {
    const dash = portPart.indexOf("-");
    const lo = Number(dash < 0 ? portPart : portPart.slice(0, dash));
    const hi = dash < 0 ? lo : Number(portPart.slice(dash + 1));
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo > hi || hi > 65535) return null;
    ports = [];
    for (let p = lo; p <= hi && ports.length <= MAX_ALTS; p++) ports.push(p);
  }
  const addrs: Array<{ fam: 4 | 6; v4: number; v6: Uint8Array | null; ip: string | null }> = [];
  if (addrPart === "") {
    addrs.push({ fam: 4, v4: 0, v6: null, ip: null });
  } else {
    const dash = addrPart.indexOf("-");
    const loText = dash < 0 ? addrPart : addrPart.slice(0, dash);
    const hiText = dash < 0 ? addrPart : addrPart.slice(dash + 1);
    const lo4 = parseIPv4(loText);
    const hi4 = parseIPv4(hiText);
    if (lo4 >= 0 && hi4 >= lo4) {
      for (let a = lo4; a <= hi4 && addrs.length <= MAX_ALTS; a++) {
        addrs.push({ fam: 4, v4: a, v6: null, ip: formatIPv4(a) });
      }
    } else {
      const v6 = parseIPv6(loText);
      if (v6 === null || (dash >= 0 && loText !== hiText)) return null;
      addrs.push({ fam: 6, v4: 0, v6, ip: formatIPv6(v6) });
    }
  }
  let note: string | null = null;
  const alts: DnatAlt[] = [];
  outer: for (const a of addrs) {
    for (const p of ports) {
      if (alts.length >= MAX_ALTS) {
        note = `DNAT range ${spec} has more than ${MAX_ALTS} choices; only the first are listed`;
        break outer;
      }
      const text = a.ip !== null && p >= 0 ? formatAddrPort(a.ip, p) : null;
      alts.push({ fam: a.fam, v4: a.v4, v6: a.v6, ip: a.ip, port: p, text });
    }
  }
  return { alts, note };
}
