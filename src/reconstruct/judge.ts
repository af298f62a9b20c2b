import { addressFamily } from "../util/ip.js";
import type { RuleSetTimeline, ServiceIndex } from "./index-services.js";
import type { WorkConnection } from "./reconstruct.js";
import type {
  AddrPort,
  Candidate,
  Connection,
  Hook,
  LegView,
  SimOutcome,
  SimResult,
  Simulator,
  TupleView,
  Verdict,
} from "./types.js";
import { addrPortText, protoName } from "./types.js";

const CACHE_LIMIT = 200_000;
const NO_CANDIDATES: Candidate[] = [];
const NO_PATH: string[] = [];
const BUILTIN_CHAINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);

/** Did the server side (or a router for it) refuse: TCP RST answer or ICMP unreachable? */
export function legRefused(leg: LegView): boolean {
  if (leg.connState === "REJ" || leg.connState === "RSTR" || leg.connState === "RSTOS0") {
    return true;
  }
  for (const k in leg.icmpErrors) {
    // ICMPv4 3/x destination unreachable, ICMPv6 1/x.
    if (k.startsWith("3/") || k.startsWith("1/")) return true;
  }
  return false;
}

function refusalOf(legs: readonly LegView[]): "rst" | "icmp" | null {
  let out: "rst" | "icmp" | null = null;
  for (const leg of legs) {
    for (const k in leg.icmpErrors) if (k.startsWith("3/") || k.startsWith("1/")) return "icmp";
    if (leg.connState === "REJ" || leg.connState === "RSTR" || leg.connState === "RSTOS0") {
      out = "rst";
    }
  }
  return out;
}

function legAnswered(leg: LegView): boolean {
  return leg.respPackets > 0 && leg.connState !== "REJ";
}

/**
 * Turns an assembled connection into a judged one: which node and hook, which rules were in
 * force, what the simulator says could happen there, and how that compares with what the
 * wire shows. Simulator results are cached per (rule set, hook, proto, client IP, VIP, port):
 * outcomes never depend on the client port (affinity aside, which enumerates both branches).
 */
export class Judge {
  /** By rule set and hook, then client address, VIP and port (shared strings: no key text). */
  private readonly cache = new Map<number, Map<string, Map<string, Map<number, SimResult>>>>();
  private cached = 0;
  simulations = 0;
  cacheHits = 0;
  readonly unmodelled = new Set<string>();

  constructor(
    private readonly services: ServiceIndex,
    private readonly rulesets: RuleSetTimeline,
    private readonly simulator: Simulator | null,
  ) {}

  private simulate(rulesetId: number, hook: Hook, pre: TupleView): SimResult | null {
    const proto = protoName(pre.proto);
    if (proto === null || this.simulator === null) return null;
    // Rule set, hook and protocol number (< 256) in one small integer.
    const scope = rulesetId * 512 + (hook === "output" ? 256 : 0) + pre.proto;
    const hit = this.cache.get(scope)?.get(pre.srcIp)?.get(pre.dstIp)?.get(pre.dstPort);
    if (hit !== undefined) {
      this.cacheHits++;
      return hit;
    }
    if (this.cached >= CACHE_LIMIT) {
      this.cache.clear();
      this.cached = 0;
    }
    const result = this.simulator.simulate(rulesetId, hook, {
      proto,
      srcIp: pre.srcIp,
      srcPort: pre.srcPort,
      dstIp: pre.dstIp,
      dstPort: pre.dstPort,
    });
    this.simulations++;
    for (const u of result.unmodelled) this.unmodelled.add(u);
    let byClient = this.cache.get(scope);
    if (byClient === undefined) this.cache.set(scope, (byClient = new Map()));
    let byVip = byClient.get(pre.srcIp);
    if (byVip === undefined) byClient.set(pre.srcIp, (byVip = new Map()));
    let byPort = byVip.get(pre.dstIp);
    if (byPort === undefined) byVip.set(pre.dstIp, (byPort = new Map()));
    byPort.set(pre.dstPort, result);
    this.cached++;
    return result;
  }

  /** The node that translated it: the translation's, or the one that saw the VIP coming in. */
  private pickNode(w: WorkConnection, family: 4 | 6): string | null {
    if (w.node !== null) return w.node;
    let fallback: string | null = null;
    for (const leg of w.preLegs) {
      if (leg.direction === "in" && this.rulesets.has(leg.node, family)) return leg.node;
      if (this.services.isLocal(leg.node, w.pre.srcIp) && this.rulesets.has(leg.node, family)) {
        fallback ??= leg.node;
      }
    }
    if (fallback !== null) return fallback;
    for (const leg of w.preLegs) if (leg.direction === "in") return leg.node;
    return w.preLegs[0]?.node ?? null;
  }

  // Shared by every connection with the same simulation: no per-connection arrays (and the
  // writer serialises each once).
  private readonly candidateCache = new WeakMap<SimResult, Candidate[]>();
  private readonly pathCache = new WeakMap<SimOutcome, string[]>();

  private candidatesOf(sim: SimResult): Candidate[] {
    let out = this.candidateCache.get(sim);
    if (out !== undefined) return out;
    const byEp = new Map<string, number>();
    for (const o of sim.outcomes) {
      if (o.verdict === "DNAT" && o.endpoint !== null) {
        byEp.set(o.endpoint, (byEp.get(o.endpoint) ?? 0) + o.probability);
      }
    }
    out = [...byEp].map(([endpoint, probability]) => ({ endpoint, probability }));
    this.candidateCache.set(sim, out);
    return out;
  }

  private pathOf(outcome: SimOutcome): string[] {
    let path = this.pathCache.get(outcome);
    if (path !== undefined) return path;
    path = [];
    for (const step of outcome.path) {
      if (step.table !== "nat" && step.table !== "filter") continue;
      // Built-in hook chains are implied by `hook`; the path names kube-proxy's chains, a chain
      // re-entered after a jump returns (KUBE-MARK-MASQ) once.
      if (BUILTIN_CHAINS.has(step.chain) || path.includes(step.chain)) continue;
      path.push(step.chain);
    }
    this.pathCache.set(outcome, path);
    return path;
  }

  judge(w: WorkConnection): Connection {
    const pre = w.pre;
    // IPv6 connections go through the node's ip6tables rules, IPv4 ones through iptables.
    const family = addressFamily(pre.dstIp);
    const node = this.pickNode(w, family);
    const local = node !== null && this.services.isLocal(node, pre.srcIp);
    const hook: Hook = local ? "output" : "prerouting";
    const ruleset = node === null ? null : this.rulesets.at(node, w.start, family);
    const sim = ruleset === null ? null : this.simulate(ruleset.id, hook, pre);

    // The kernel's first choice; a later one (translation changed midway) is evidence only.
    const post = w.posts[0] ?? null;
    const dnat = post !== null && (post.dstIp !== pre.dstIp || post.dstPort !== pre.dstPort);
    const endpoint: AddrPort | null =
      dnat && post !== null ? { ip: post.dstIp, port: post.dstPort } : null;
    const snat: AddrPort | null =
      post !== null && (post.srcIp !== pre.srcIp || post.srcPort !== pre.srcPort)
        ? { ip: post.srcIp, port: post.srcPort }
        : null;

    const candidates = sim === null ? NO_CANDIDATES : this.candidatesOf(sim);
    const endpointText = endpoint === null ? null : addrPortText(endpoint);

    const nearLegs = w.postLegs.length > 0 ? w.postLegs : w.preLegs;
    const answered = nearLegs.some(legAnswered) || w.preLegs.some(legAnswered);
    const near = pickNearest(nearLegs);

    let verdict: Verdict;
    if (endpoint !== null) {
      const known = sim !== null;
      const inCandidates = candidates.some((c) => c.endpoint === endpointText);
      if (known && !inCandidates) verdict = "unexpected-endpoint";
      else if (w.postLegs.length > 0 && w.postLegs.some(legRefused)) verdict = "refused";
      else if ((w.postLegs.length > 0 || w.preLegs.length > 0) && !answered) verdict = "blackholed";
      else if (!known) verdict = w.vipFrom === "conntrack" ? "vip-inferred" : "unjudged";
      else verdict = "consistent";
    } else {
      const outcomes = sim?.outcomes ?? [];
      const all = (v: string) => outcomes.length > 0 && outcomes.every((o) => o.verdict === v);
      const leftUnchanged =
        node !== null &&
        w.preLegs.some((l) => l.node === node && l.direction === "out") &&
        (local || w.preLegs.some((l) => l.node === node && l.direction === "in"));
      if (w.preLegs.some(legRefused) || all("REJECT")) verdict = "rejected";
      else if (leftUnchanged) verdict = "untranslated";
      else if (all("DROP") && !answered) verdict = "dropped";
      else if (sim === null) verdict = "unjudged";
      else verdict = "predicted";
    }

    // The path that explains what was seen: the outcome that reached the observed endpoint,
    // else the one matching the verdict, else the likeliest.
    let best = sim?.outcomes[0] ?? null;
    if (sim !== null) {
      for (const o of sim.outcomes) {
        if (endpointText !== null && o.endpoint === endpointText) {
          best = o;
          break;
        }
        if (verdict === "rejected" && o.verdict === "REJECT") best = o;
        if (verdict === "dropped" && o.verdict === "DROP") best = o;
        if (best !== null && o.probability > best.probability && endpointText === null) best = o;
      }
    }
    const path = best === null ? NO_PATH : this.pathOf(best);

    const legIds = new Array<number>(w.preLegs.length + w.postLegs.length);
    let n = 0;
    for (const l of w.preLegs) legIds[n++] = l.id;
    for (const l of w.postLegs) legIds[n++] = l.id;
    return {
      id: w.id,
      proto: protoName(w.proto) ?? "tcp",
      client: { ip: pre.srcIp, port: pre.srcPort },
      vip: { ip: pre.dstIp, port: pre.dstPort },
      service: this.services.vip(pre.proto, pre.dstIp, pre.dstPort),
      node,
      hook,
      endpoint,
      snat,
      verdict,
      start: w.start,
      end: Math.max(w.lastTs, w.start),
      path,
      candidates,
      vipFrom: w.vipFrom,
      answered,
      refusal: refusalOf(w.preLegs),
      connState: near?.connState ?? null,
      rulesetId: ruleset?.id ?? null,
      legIds,
      translationIds: w.translationIds,
      conntrackIds: w.conntrackIds,
    };
  }
}

/** The leg with the most answer traffic: the one closest to the server. */
function pickNearest(legs: readonly LegView[]): LegView | null {
  let best: LegView | null = null;
  for (const l of legs) if (best === null || l.respPackets > best.respPackets) best = l;
  return best;
}
