/**
 * The simulator: walks a packet through the hooks of a compiled rule set in kernel order and
 * enumerates every outcome with its probability. Probabilistic and unknown matches fork the
 * walk (a "thread"); the threads run depth-first, so outcomes come out in rule order.
 */

import type { RuleSet, TableName } from "../rules/model.js";
import { InputError, SvctraceError } from "../util/errors.js";
import { formatAddrPort, normalizeIP, parseIPv4, parseIPv6 } from "../util/ip.js";
import {
  type CChain,
  type CompiledRuleSet,
  type CRule,
  compileRuleSet,
  type DnatAlt,
} from "./compile.js";
import { addrKey, type CompiledContext, equal16, NO, protocolNumber, UNKNOWN } from "./matches.js";
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
  CTS_SEEN_REPLY,
  type Stage,
  Thread,
} from "./thread.js";
import type {
  CtState,
  Hook,
  NodeContext,
  Outcome,
  SimOptions,
  SimPacket,
  SimResult,
  UnmodelledItem,
} from "./types.js";

const MAX_DEPTH = 128;
/** Rules one path may examine: a guard, since looping rule sets are refused up front. */
const MAX_STEPS = 1_000_000;

/** The node context turned into numbers once, for many packets. */
export function compileContext(ctx: NodeContext): CompiledContext {
  const local4 = new Set<number>();
  const local6: Uint8Array[] = [];
  const ifaces = new Map<string, { v4: number[]; v6: Uint8Array[]; texts: string[] }>();
  const addLocal = (text: string): void => {
    const v4 = parseIPv4(text);
    if (v4 >= 0) local4.add(v4);
    else {
      const v6 = parseIPv6(text);
      if (v6 !== null) local6.push(v6);
    }
  };
  for (const a of ctx.localAddresses) addLocal(a);
  for (const [name, addrs] of Object.entries(ctx.interfaces ?? {})) {
    const entry = { v4: [] as number[], v6: [] as Uint8Array[], texts: [] as string[] };
    for (const a of addrs) {
      const n = normalizeIP(a.split("/")[0] ?? "");
      if (n === null) continue;
      addLocal(n);
      entry.texts.push(n);
      const v4 = parseIPv4(n);
      if (v4 >= 0) entry.v4.push(v4);
      else entry.v6.push(parseIPv6(n)!);
    }
    ifaces.set(name, entry);
  }
  let affinity: Map<string, Set<string>> | null = null;
  if (ctx.affinity !== undefined) {
    affinity = new Map();
    for (const [list, members] of ctx.affinity) {
      affinity.set(list, new Set([...members].map((m) => normalizeIP(m) ?? m)));
    }
  }
  return { local4, local6, ifaces, affinity, ipsets: ctx.ipsets ?? null };
}

interface Pipelines {
  pre: Stage[];
  localIn: Stage[];
  forward: Stage[];
  out: Stage[];
  loopIn: Stage[];
  upstream: Stage[];
}

/** A rule set compiled once, ready to trace many packets against one node's context. */
export class Simulator {
  readonly compiled: CompiledRuleSet;
  private readonly ctx: CompiledContext;
  private readonly pipes: Pipelines;
  private limit = 100_000;

  constructor(rules: RuleSet | CompiledRuleSet, ctx: NodeContext) {
    this.compiled = "steps" in rules ? rules : compileRuleSet(rules);
    const loop = this.compiled.loop;
    if (loop !== null) {
      throw new InputError(`chain loop ${loop.text}: the kernel refuses this rule set`, {
        file: this.compiled.source,
        line: loop.line,
      });
    }
    this.ctx = compileContext(ctx);
    const st = (table: TableName, chain: string): Stage => ({
      table,
      chain,
      chainRef: this.compiled.tables.get(table)?.get(chain) ?? null,
      kind: "chain",
      builtin: true,
    });
    const user = (chain: string): Stage => ({ ...st("filter", chain), builtin: false });
    const pseudo = (kind: Stage["kind"]): Stage => ({
      table: "",
      chain: "",
      chainRef: null,
      kind,
      builtin: false,
    });
    this.pipes = {
      pre: [
        st("raw", "PREROUTING"),
        st("mangle", "PREROUTING"),
        st("nat", "PREROUTING"),
        pseudo("route"),
      ],
      localIn: [
        st("mangle", "INPUT"),
        st("filter", "INPUT"),
        st("security", "INPUT"),
        st("nat", "INPUT"),
      ],
      forward: [
        st("mangle", "FORWARD"),
        st("filter", "FORWARD"),
        st("security", "FORWARD"),
        st("mangle", "POSTROUTING"),
        st("nat", "POSTROUTING"),
      ],
      out: [
        st("raw", "OUTPUT"),
        st("mangle", "OUTPUT"),
        st("nat", "OUTPUT"),
        st("filter", "OUTPUT"),
        st("security", "OUTPUT"),
        st("mangle", "POSTROUTING"),
        st("nat", "POSTROUTING"),
        pseudo("loop"),
      ],
      // A packet looped back over lo: PREROUTING again (nat is already decided), then INPUT.
      loopIn: [
        st("raw", "PREROUTING"),
        st("mangle", "PREROUTING"),
        st("mangle", "INPUT"),
        st("filter", "INPUT"),
        st("security", "INPUT"),
      ],
      upstream: [
        st("nat", "PREROUTING"),
        pseudo("upstream-route"),
        user("KUBE-SERVICES"),
        user("KUBE-EXTERNAL-SERVICES"),
        user("KUBE-NODEPORTS"),
        user("KUBE-PROXY-FIREWALL"),
      ],
    };
  }

  /** Every outcome of `packet` at this node, with probabilities summing to 1. */
  trace(packet: SimPacket, options: SimOptions = {}): SimResult {
    const t0 = this.initialThread(packet, options);
    const max = options.maxOutcomes ?? 100_000;
    this.limit = max;
    const work: Thread[] = [t0];
    const finished: Thread[] = [];
    while (work.length > 0) {
      const t = work.pop()!;
      this.advance(t, work);
      finished.push(t);
      if (finished.length + work.length > max) {
        throw new SvctraceError(
          `${this.compiled.source}: more than ${max} outcomes for one packet; raise maxOutcomes`,
        );
      }
    }
    return this.collect(finished);
  }

  private initialThread(p: SimPacket, options: SimOptions): Thread {
    const t = new Thread();
    const s4 = parseIPv4(p.src);
    const d4 = parseIPv4(p.dst);
    if (s4 >= 0 && d4 >= 0) {
      t.fam = 4;
      t.src4 = s4;
      t.dst4 = d4;
    } else {
      const s6 = parseIPv6(p.src);
      const d6 = parseIPv6(p.dst);
      if (s6 === null) throw new InputError(`not an IP address: ${p.src}`);
      if (d6 === null) throw new InputError(`not an IP address: ${p.dst}`);
      if (s4 >= 0 || d4 >= 0) throw new InputError(`source and destination differ in family`);
      t.fam = 6;
      t.src6 = s6;
      t.dst6 = d6;
    }
    if (p.family !== undefined && p.family !== t.fam) {
      throw new InputError(`family ${p.family} does not match the addresses ${p.src} ${p.dst}`);
    }
    t.srcText = normalizeIP(p.src) ?? p.src;
    t.dstText = normalizeIP(p.dst) ?? p.dst;
    t.proto = protocolNumber(p.proto);
    if (t.proto < 0) throw new InputError(`unknown protocol: ${p.proto}`);
    t.sport = p.sport ?? 40000;
    t.dport = p.dport;
    t.odst4 = t.dst4;
    t.odst6 = t.dst6;
    t.odport = t.dport;
    t.inIface = p.inIface ?? null;
    t.outIface = p.outIface ?? null;
    const state: CtState = p.ctState ?? "NEW";
    t.ct = ctBits(state);
    t.ctStatus =
      state === "NEW" || state === "INVALID" || state === "UNTRACKED"
        ? 0
        : CTS_SEEN_REPLY | CTS_ASSURED | CTS_CONFIRMED;
    t.mark = (p.mark ?? 0) >>> 0;
    t.ctMark = (p.ctMark ?? 0) >>> 0;
    t.tcpFlags = p.tcpFlags ?? (state === "NEW" ? 2 : 16);
    t.icmpType = p.icmpType ?? (t.proto === 58 ? 128 : 8);
    t.icmpCode = p.icmpCode ?? 0;
    t.upstream = options.mode === "upstream";
    const hook: Hook = options.hook ?? (this.isLocal(t, "src") ? "output" : "prerouting");
    t.hook = hook;
    if (t.upstream) t.stages = this.pipes.upstream;
    else t.stages = hook === "output" ? this.pipes.out : this.pipes.pre;
    if (hook === "output" && t.outIface === null && this.isLocal(t, "dst")) t.outIface = "lo";
    return t;
  }

  private isLocal(t: Thread, field: "src" | "dst"): boolean {
    if (t.fam === 4) {
      const a = field === "src" ? t.src4 : t.dst4;
      return a >>> 24 === 127 || this.ctx.local4.has(a);
    }
    const a = field === "src" ? t.src6 : t.dst6;
    let loop = a[15] === 1;
    for (let i = 0; i < 15 && loop; i++) if (a[i] !== 0) loop = false;
    if (loop) return true;
    for (const l of this.ctx.local6) if (equal16(l, a)) return true;
    return false;
  }

  /** Run one thread to its end, pushing the forks it makes onto `work`. */
  private advance(t: Thread, work: Thread[]): void {
    const ctx = this.ctx;
    while (!t.done) {
      if (t.frames.length === 0) {
        if (t.stageIdx >= t.stages.length) {
          this.finish(t);
          return;
        }
        const st = t.stages[t.stageIdx++]!;
        if (st.kind !== "chain") {
          this.route(t, st);
          continue;
        }
        if (st.chainRef === null) continue;
        // The nat table sees only the first packet of a connection.
        if (st.table === "nat" && (t.ct & CT_NEW) === 0) continue;
        t.stage = st;
        const chain = st.chainRef as CChain;
        t.frames.push({ chain, cands: candidates(chain, t), pos: 0 });
        continue;
      }
      const frame = t.frames[t.frames.length - 1]!;
      const chain = frame.chain as CChain;
      let pos: number;
      if (frame.cands !== null)
        pos = frame.pos < frame.cands.length ? frame.cands[frame.pos++]! : -1;
      else pos = frame.pos < chain.rules.length ? frame.pos++ : -1;
      if (pos < 0) {
        t.frames.pop();
        if (t.frames.length === 0) this.chainEnd(t);
        continue;
      }
      const rule = chain.rules[pos]!;
      if (++t.steps > MAX_STEPS) {
        throw new InputError(
          `a packet went through more than ${MAX_STEPS} rules (last in ${chain.name})`,
          { file: this.compiled.source, line: rule.rule.line },
        );
      }
      let unknown = -1;
      let matched = true;
      const conds = rule.conds;
      for (let i = 0; i < conds.length; i++) {
        const r = conds[i]!(t, ctx);
        if (r === NO) {
          matched = false;
          break;
        }
        if (r === UNKNOWN) unknown = unknown < 0 ? i : unknown;
      }
      if (!matched) continue;
      if (rule.unmodelled.length > 0) t.unmodelled.push(...rule.unmodelled);
      if (unknown >= 0) {
        const note = rule.notes[unknown] || `line ${rule.rule.line} matched`;
        const other = t.clone();
        other.prob *= 0.5;
        other.assumed.push(`not: ${note} (line ${rule.rule.line})`);
        work.push(other);
        t.prob *= 0.5;
        t.assumed.push(`${note} (line ${rule.rule.line})`);
      }
      if (rule.prob !== null) {
        const p = rule.prob;
        if (p <= 0 && !t.upstream) continue;
        if (p < 1) {
          const other = t.clone();
          other.prob *= 1 - p;
          if (other.prob > 0 || t.upstream) work.push(other);
          t.prob *= p;
        }
      }
      if (work.length > this.limit) {
        throw new SvctraceError(
          `${this.compiled.source}: more than ${this.limit} outcomes for one packet (line ${rule.rule.line} branches again); raise maxOutcomes`,
        );
      }
      t.path.push(rule.stepIndex);
      this.applyTarget(t, rule, work);
    }
  }

  private applyTarget(t: Thread, rule: CRule, work: Thread[]): void {
    const tg = rule.target;
    switch (tg.kind) {
      case "none":
      case "continue":
        return;
      case "unknown":
        t.unmodelled.push(tg.item);
        return;
      case "accept":
        t.frames.length = 0;
        this.stageAccepted(t, "rule");
        return;
      case "drop":
        this.stop(t, "DROP", "rule", null);
        return;
      case "reject":
        this.stop(t, "REJECT", "rule", tg.with);
        return;
      case "return":
        t.frames.pop();
        if (t.frames.length === 0) this.chainEnd(t);
        return;
      case "jump":
      case "goto": {
        if (t.upstream && tg.chain.name === "KUBE-MARK-MASQ") t.markMasqJump = true;
        if (tg.kind === "goto") t.frames.pop();
        if (t.frames.length >= MAX_DEPTH) {
          throw new InputError(`chain loop: jumps nest deeper than ${MAX_DEPTH}`, {
            file: this.compiled.source,
            line: rule.rule.line,
          });
        }
        t.frames.push({ chain: tg.chain, cands: candidates(tg.chain, t), pos: 0 });
        return;
      }
      case "dnat": {
        const alts = tg.alts;
        if (alts.length > 1) {
          const share = 1 / alts.length;
          for (let i = alts.length - 1; i >= 1; i--) {
            const other = t.clone();
            other.prob *= share;
            this.dnat(other, alts[i]!);
            work.push(other);
          }
          t.prob *= share;
        }
        if (tg.note !== null) t.assumed.push(tg.note);
        this.dnat(t, alts[0]!);
        return;
      }
      case "redirect": {
        const out = t.hook === "output" && t.stage?.chain === "OUTPUT";
        let ip: string | null = null;
        if (out) ip = t.fam === 4 ? "127.0.0.1" : "::1";
        else if (t.inIface !== null) {
          const addrs = this.ctx.ifaces.get(t.inIface);
          ip = addrs?.texts.find((a) => (a.includes(":") ? 6 : 4) === t.fam) ?? null;
        }
        if (ip === null) {
          ip = t.fam === 4 ? "127.0.0.1" : "::1";
          t.assumed.push(
            "REDIRECT to the input interface's address (unknown here; loopback shown)",
          );
        }
        const v4 = parseIPv4(ip);
        this.dnat(t, {
          fam: t.fam,
          v4: Math.max(v4, 0),
          v6: v4 < 0 ? parseIPv6(ip) : null,
          ip,
          port: tg.port,
          text: null,
        });
        return;
      }
      case "snat":
        t.snat = tg.address;
        t.ct |= CT_SNAT;
        this.natDone(t);
        return;
      case "masquerade": {
        t.masq = true;
        t.ct |= CT_SNAT;
        if (t.outIface !== null) {
          const addrs = this.ctx.ifaces.get(t.outIface);
          t.snat = addrs?.texts.find((a) => (a.includes(":") ? 6 : 4) === t.fam) ?? null;
        }
        this.natDone(t);
        return;
      }
      case "mark":
        t.mark = ((t.mark & tg.and) ^ tg.xor) >>> 0;
        return;
      case "ctmark":
        t.ctMark = ((t.ctMark & tg.and) ^ tg.xor) >>> 0;
        return;
      case "savemark":
        t.ctMark = ((t.ctMark & ~tg.ctmask) ^ (t.mark & tg.nfmask)) >>> 0;
        return;
      case "restoremark":
        t.mark = ((t.mark & ~tg.nfmask) ^ (t.ctMark & tg.ctmask)) >>> 0;
        return;
      case "notrack":
        t.ct = CT_UNTRACKED;
        return;
    }
  }

  private dnat(t: Thread, alt: DnatAlt): void {
    if (alt.ip !== null && alt.fam === t.fam) {
      if (t.fam === 4) t.dst4 = alt.v4;
      else t.dst6 = alt.v6 ?? t.dst6;
      t.dstText = alt.ip;
    }
    const port = alt.port >= 0 ? alt.port : t.dport;
    t.dnatIp = t.dstText;
    t.dnatPort = port;
    t.dnatText = alt.fam === t.fam ? alt.text : null;
    // kube-proxy's tracer keeps matching the filter chains against the original port.
    if (!t.upstream) t.dport = port;
    t.ct |= CT_DNAT;
    this.natDone(t);
  }

  /** A NAT target ends the nat table's walk at this hook. */
  private natDone(t: Thread): void {
    t.frames.length = 0;
  }

  /** The top-level chain of a stage ran out (or RETURNed). */
  private chainEnd(t: Thread): void {
    const st = t.stage;
    if (st === null || !st.builtin) return;
    const chain = st.chainRef as CChain;
    if (chain.policy === "DROP") this.stop(t, "DROP", "policy", null);
    else this.stageAccepted(t, "policy");
  }

  private stageAccepted(t: Thread, by: "rule" | "policy"): void {
    const st = t.stage;
    if (st !== null && st.table === "filter") {
      t.filterVerdict = "ACCEPT";
      // Upstream's filter chains are walked one after another; a later miss does not undo a hit.
      if (!(t.upstream && !st.builtin && by === "policy")) t.filterDecidedBy = by;
    }
  }

  private stop(
    t: Thread,
    verdict: "DROP" | "REJECT",
    by: "rule" | "policy",
    rejectWith: string | null,
  ): void {
    t.verdict = verdict;
    t.decidedBy = by;
    t.filterVerdict = verdict;
    t.filterDecidedBy = by;
    t.rejectWith = rejectWith;
    t.frames.length = 0;
    t.done = true;
  }

  private route(t: Thread, st: Stage): void {
    if (st.kind === "route") {
      const local = this.isLocal(t, "dst");
      t.delivery = local ? "local" : "forward";
      t.stages = local ? this.pipes.localIn : this.pipes.forward;
      t.stageIdx = 0;
    } else if (st.kind === "loop") {
      if (this.isLocal(t, "dst")) {
        t.delivery = "local";
        if (t.inIface === null) t.inIface = "lo";
        t.stages = this.pipes.loopIn;
        t.stageIdx = 0;
      } else t.delivery = "forward";
    } else {
      t.delivery = this.isLocal(t, "dst") ? "local" : "forward";
    }
  }

  private finish(t: Thread): void {
    t.verdict = t.dnatIp !== null ? "DNAT" : "ACCEPT";
    t.decidedBy = t.dnatIp !== null ? "rule" : t.filterDecidedBy;
    t.done = true;
  }

  private collect(threads: Thread[]): SimResult {
    const steps = this.compiled.steps;
    // Identical outcomes (same verdict, translation and path) merge; found by a numeric hash.
    const buckets = new Map<number, Array<{ t: Thread; o: Outcome }>>();
    const outcomes: Outcome[] = [];
    const unmodelled: UnmodelledItem[] = [];
    const seen = new Set<string>();
    for (const t of threads) {
      if (t.prob <= 0 && !t.upstream) continue;
      const masquerade = t.upstream ? t.markMasqJump : t.masq;
      const h = threadHash(t, masquerade);
      const bucket = buckets.get(h);
      const twin = bucket?.find((b) => sameOutcome(b.t, t));
      if (twin !== undefined) {
        twin.o.probability += t.prob;
        continue;
      }
      for (const u of t.unmodelled) {
        const k = `${u.line} ${u.what}`;
        if (!seen.has(k)) {
          seen.add(k);
          unmodelled.push(u);
        }
      }
      const endpoint =
        t.dnatIp === null ? null : (t.dnatText ?? formatAddrPort(t.dnatIp, t.dnatPort));
      const o: Outcome = {
        verdict: t.verdict,
        decidedBy: t.decidedBy,
        endpoint,
        probability: t.prob,
        masquerade,
        snat: t.snat,
        rejectWith: t.verdict === "REJECT" ? t.rejectWith : null,
        path: t.path.map((i) => steps[i]!),
        hook: t.hook,
        delivery: t.delivery,
        filterVerdict: t.filterVerdict,
        mark: t.mark,
        assumed: t.assumed,
        unmodelled: t.unmodelled.length > 0,
      };
      if (bucket === undefined) buckets.set(h, [{ t, o }]);
      else bucket.push({ t, o });
      outcomes.push(o);
    }
    return { outcomes, unmodelled };
  }
}

function threadHash(t: Thread, masquerade: boolean): number {
  let h = t.path.length * 31 + (masquerade ? 7 : 0) + t.dnatPort;
  for (const i of t.path) h = (Math.imul(h, 0x01000193) ^ i) | 0;
  return h;
}

function sameOutcome(a: Thread, b: Thread): boolean {
  if (
    a.verdict !== b.verdict ||
    a.dnatIp !== b.dnatIp ||
    a.dnatPort !== b.dnatPort ||
    a.masq !== b.masq ||
    a.markMasqJump !== b.markMasqJump ||
    a.snat !== b.snat ||
    a.path.length !== b.path.length ||
    a.assumed.length !== b.assumed.length
  ) {
    return false;
  }
  for (let i = 0; i < a.path.length; i++) if (a.path[i] !== b.path[i]) return false;
  for (let i = 0; i < a.assumed.length; i++) if (a.assumed[i] !== b.assumed[i]) return false;
  return true;
}

function ctBits(state: CtState): number {
  switch (state) {
    case "NEW":
      return CT_NEW;
    case "ESTABLISHED":
      return CT_ESTABLISHED;
    case "RELATED":
      return CT_RELATED;
    case "INVALID":
      return CT_INVALID;
    case "UNTRACKED":
      return CT_UNTRACKED;
  }
}

const EMPTY = new Int32Array(0);

/** Candidate rule positions for a packet entering `chain`, in rule order; null = all rules. */
function candidates(chain: CChain, t: Thread): ArrayLike<number> | null {
  const idx = chain.index;
  if (idx === null) return null;
  const dk = addrKey(t.fam, t.dst4, t.fam === 6 ? t.dst6 : null);
  const key = dk * 65536 + t.dport;
  const b = idx.dst.get(dk) ?? EMPTY;
  const c = idx.port.get(t.dport) ?? EMPTY;
  if (b.length === 0 && c.length === 0) {
    const merged = idx.dstPortWithRest.get(key);
    if (merged !== undefined) return merged;
  }
  const a = idx.dstPort.get(key) ?? EMPTY;
  const r = idx.rest;
  const n = a.length + b.length + c.length + r.length;
  if (n === r.length) return r;
  if (n === a.length) return a;
  const out = new Int32Array(n);
  let ia = 0;
  let ib = 0;
  let ic = 0;
  let ir = 0;
  for (let k = 0; k < n; k++) {
    let best = 0x7fffffff;
    let which = 0;
    if (ia < a.length && a[ia]! < best) {
      best = a[ia]!;
      which = 1;
    }
    if (ib < b.length && b[ib]! < best) {
      best = b[ib]!;
      which = 2;
    }
    if (ic < c.length && c[ic]! < best) {
      best = c[ic]!;
      which = 3;
    }
    if (ir < r.length && r[ir]! < best) {
      best = r[ir]!;
      which = 4;
    }
    if (which === 1) ia++;
    else if (which === 2) ib++;
    else if (which === 3) ic++;
    else ir++;
    out[k] = best;
  }
  return out;
}

/** One-shot convenience: compile, trace one packet. Prefer `new Simulator` for many packets. */
export function simulate(
  rules: RuleSet | CompiledRuleSet,
  packet: SimPacket,
  ctx: NodeContext,
  options: SimOptions = {},
): SimResult {
  return new Simulator(rules, ctx).trace(packet, options);
}
