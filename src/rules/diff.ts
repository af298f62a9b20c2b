/**
 * What changed between two rule sets: per service port (endpoints, probabilities, VIPs,
 * policies, masquerade, affinity), chains leaked (present in NEW, nothing jumps to them), and
 * the raw rule differences per chain. Rules are compared in a canonical form, so kube-proxy's
 * restore input (`-s 10.0.0.1`, `--or-mark 0x4000`, `0.3333333333`) and what iptables-save
 * prints for it (`-s 10.0.0.1/32`, `--set-xmark 0x4000/0x4000`, `0.33333333349`) are equal.
 */

import { normalizeIP } from "../util/ip.js";
import {
  buildKubeModel,
  type KubeModel,
  type KubeModelOptions,
  type KubeServicePort,
  type RuleRef,
  ruleRef,
} from "./kube-model.js";
import { endpointString } from "./kube-names.js";
import type { Rule, RuleOption, RuleSet, TableName } from "./model.js";
import {
  canonicalOptionName,
  kernelProbability,
  markTargetOperation,
  parseMark,
  parseProbability,
  sameProbability,
} from "./rule-helpers.js";

export interface FieldChange {
  field: string;
  old: unknown;
  new: unknown;
}

export interface ProbabilityChange {
  endpoint: string;
  old: number;
  new: number;
}

export interface ServicePortDiff {
  name: string;
  change: "added" | "removed" | "changed";
  endpointsAdded: string[];
  endpointsRemoved: string[];
  probabilityChanges: ProbabilityChange[];
  localEndpointsAdded: string[];
  localEndpointsRemoved: string[];
  /** VIPs, node ports, policies, masquerade, affinity, no-endpoint verdicts… */
  fieldChanges: FieldChange[];
}

export interface ChainDiff {
  table: TableName;
  chain: string;
  change: "added" | "removed" | "changed";
  /** Rules only in NEW / only in OLD (compared canonically, as multisets). */
  rulesAdded: RuleRef[];
  rulesRemoved: RuleRef[];
  /** Same rules, different order (matters: first match wins). */
  reordered: boolean;
}

export interface RuleSetDiff {
  servicePorts: ServicePortDiff[];
  /** Per-service chains in NEW that nothing jumps to. */
  leakedChains: string[];
  /** Of those, the ones that were still referenced (or absent) in OLD. */
  newlyLeakedChains: string[];
  danglingJumps: RuleRef[];
  chains: ChainDiff[];
  masqueradeMark: FieldChange | null;
}

/** Diff two rule sets (old first). The inventory, if any, names comment-less chains. */
export function diffRuleSets(
  oldRs: RuleSet,
  newRs: RuleSet,
  options: KubeModelOptions = {},
): RuleSetDiff {
  const oldModel = buildKubeModel(oldRs, options);
  const newModel = buildKubeModel(newRs, options);
  const d = diffKubeModels(oldModel, newModel);
  return { ...d, chains: diffChains(oldRs, newRs) };
}

/** The service-level part of the diff, from two kube models. */
export function diffKubeModels(oldM: KubeModel, newM: KubeModel): Omit<RuleSetDiff, "chains"> {
  const oldPorts = new Map(oldM.servicePorts.map((p) => [p.name, p]));
  const newPorts = new Map(newM.servicePorts.map((p) => [p.name, p]));
  const names = [...new Set([...oldPorts.keys(), ...newPorts.keys()])].sort();
  const servicePorts: ServicePortDiff[] = [];
  for (const name of names) {
    const a = oldPorts.get(name);
    const b = newPorts.get(name);
    const d = diffPort(name, a, b);
    if (d !== null) servicePorts.push(d);
  }
  const oldOrphans = new Set(oldM.orphanChains);
  return {
    servicePorts,
    leakedChains: newM.orphanChains,
    newlyLeakedChains: newM.orphanChains.filter((c) => !oldOrphans.has(c)),
    danglingJumps: newM.danglingJumps,
    masqueradeMark:
      oldM.masqueradeMark === newM.masqueradeMark
        ? null
        : { field: "masqueradeMark", old: oldM.masqueradeMark, new: newM.masqueradeMark },
  };
}

function endpointMap(p: KubeServicePort | undefined, local: boolean): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of (local ? p?.localEndpoints : p?.endpoints) ?? []) {
    out.set(e.endpoint === "" ? e.chain : e.endpoint, (out.get(e.endpoint) ?? 0) + e.probability);
  }
  return out;
}

const FIELDS: [string, (p: KubeServicePort) => unknown][] = [
  ["clusterIP", (p) => (p.clusterIP === null ? null : endpointString(p.clusterIP, p.port ?? 0))],
  ["nodePorts", (p) => [...p.nodePorts].sort((x, y) => x - y)],
  ["externalIPs", (p) => p.externalIPs.map((x) => endpointString(x.ip, x.port)).sort()],
  ["loadBalancerIPs", (p) => p.loadBalancerIPs.map((x) => endpointString(x.ip, x.port)).sort()],
  ["loadBalancerSourceRanges", (p) => [...p.loadBalancerSourceRanges].sort()],
  ["affinitySeconds", (p) => p.affinitySeconds],
  ["internalTrafficPolicy", (p) => p.internalTrafficPolicy],
  ["externalTrafficPolicy", (p) => p.externalTrafficPolicy],
  ["clusterIPMasquerade", (p) => p.clusterIPMasquerade],
  ["localDetector", (p) => p.localDetector],
  ["externalMasquerade", (p) => p.externalMasquerade],
  ["healthCheckNodePort", (p) => p.healthCheckNodePort],
  [
    "noEndpoints",
    (p) => p.noEndpoints.map((n) => `${n.verdict} ${n.scope} ${n.destination}`).sort(),
  ],
];

function diffPort(
  name: string,
  a: KubeServicePort | undefined,
  b: KubeServicePort | undefined,
): ServicePortDiff | null {
  const out: ServicePortDiff = {
    name,
    change: a === undefined ? "added" : b === undefined ? "removed" : "changed",
    endpointsAdded: [],
    endpointsRemoved: [],
    probabilityChanges: [],
    localEndpointsAdded: [],
    localEndpointsRemoved: [],
    fieldChanges: [],
  };
  for (const local of [false, true]) {
    const ea = endpointMap(a, local);
    const eb = endpointMap(b, local);
    const added = [...eb.keys()].filter((k) => !ea.has(k));
    const removed = [...ea.keys()].filter((k) => !eb.has(k));
    if (local) {
      out.localEndpointsAdded = added;
      out.localEndpointsRemoved = removed;
    } else {
      out.endpointsAdded = added;
      out.endpointsRemoved = removed;
      for (const [k, pa] of ea) {
        const pb = eb.get(k);
        if (pb !== undefined && !sameProbability(pa, pb) && Math.abs(pa - pb) > 1e-9) {
          out.probabilityChanges.push({ endpoint: k, old: pa, new: pb });
        }
      }
    }
  }
  if (a !== undefined && b !== undefined) {
    for (const [field, get] of FIELDS) {
      const va = get(a);
      const vb = get(b);
      if (JSON.stringify(va) !== JSON.stringify(vb))
        out.fieldChanges.push({ field, old: va, new: vb });
    }
  }
  const changed =
    out.change !== "changed" ||
    out.endpointsAdded.length + out.endpointsRemoved.length + out.probabilityChanges.length > 0 ||
    out.localEndpointsAdded.length + out.localEndpointsRemoved.length + out.fieldChanges.length > 0;
  return changed ? out : null;
}

/** Raw differences per chain, rules compared by canonical form. */
export function diffChains(oldRs: RuleSet, newRs: RuleSet): ChainDiff[] {
  const out: ChainDiff[] = [];
  const tables = new Set<TableName>([...oldRs.tables.keys(), ...newRs.tables.keys()]);
  for (const t of tables) {
    const oc = oldRs.tables.get(t)?.chains ?? new Map();
    const nc = newRs.tables.get(t)?.chains ?? new Map();
    const names = [...new Set([...oc.keys(), ...nc.keys()])];
    for (const name of names) {
      const a: Rule[] = oc.get(name)?.rules ?? [];
      const b: Rule[] = nc.get(name)?.rules ?? [];
      const change = !oc.has(name) ? "added" : !nc.has(name) ? "removed" : "changed";
      const ka = a.map(canonicalRule);
      const kb = b.map(canonicalRule);
      const counts = new Map<string, number>();
      for (const k of ka) counts.set(k, (counts.get(k) ?? 0) + 1);
      const rulesAdded: RuleRef[] = [];
      b.forEach((r, i) => {
        const k = kb[i] as string;
        const n = counts.get(k) ?? 0;
        if (n > 0) counts.set(k, n - 1);
        else rulesAdded.push(ruleRef(r));
      });
      const left = new Map<string, number>();
      for (const k of kb) left.set(k, (left.get(k) ?? 0) + 1);
      const rulesRemoved: RuleRef[] = [];
      a.forEach((r, i) => {
        const k = ka[i] as string;
        const n = left.get(k) ?? 0;
        if (n > 0) left.set(k, n - 1);
        else rulesRemoved.push(ruleRef(r));
      });
      const reordered =
        rulesAdded.length === 0 && rulesRemoved.length === 0 && ka.some((k, i) => k !== kb[i]);
      if (change !== "changed" || rulesAdded.length > 0 || rulesRemoved.length > 0 || reordered) {
        out.push({ table: t, chain: name, change, rulesAdded, rulesRemoved, reordered });
      }
    }
  }
  return out;
}

/** Defaults iptables-save adds for `recent`, absent from what kube-proxy writes. */
const RECENT_DEFAULTS: Record<string, string> = { "--mask": "255.255.255.255", "--rsource": "" };

function canonicalAddress(v: string): string {
  const [ip, prefix] = v.split("/");
  const n = normalizeIP(ip ?? "");
  if (n === null) return v;
  const full = n.includes(":") ? "128" : "32";
  return `${n}/${prefix ?? full}`;
}

function canonicalOption(module: string, o: RuleOption): string | null {
  const name = canonicalOptionName(o.name);
  let values = o.values;
  if (module === "" && (name === "-s" || name === "-d")) values = values.map(canonicalAddress);
  if (module === "statistic" && name === "--probability") {
    const p = parseProbability(values[0] ?? "");
    if (p !== null) values = [kernelProbability(p).toFixed(11)];
  }
  if ((module === "mark" || module === "connmark") && name === "--mark") {
    const m = parseMark(values[0] ?? "");
    if (m !== null) values = [`0x${m.value.toString(16)}/0x${m.mask.toString(16)}`];
  }
  if (module === "recent" && RECENT_DEFAULTS[name] !== undefined) {
    const def = RECENT_DEFAULTS[name];
    if ((values[0] ?? "") === def && !o.negated) return null;
  }
  if (module === "comment") values = [values.join(" ")];
  // REJECT's default, printed by iptables-save but not written by kube-proxy.
  if (
    module === "REJECT" &&
    name === "--reject-with" &&
    /^icmp6?-port-unreachable$/.test(values[0] ?? "")
  ) {
    return null;
  }
  return `${o.negated ? "! " : ""}${name}${values.length > 0 ? ` ${values.join(" ")}` : ""}`;
}

/**
 * A rule's meaning as one string: chain, builtin options, modules (sorted, empty protocol
 * matches dropped), target with options; numbers and addresses in one spelling.
 */
export function canonicalRule(rule: Rule): string {
  const parts: string[] = [rule.chain];
  const builtin: string[] = [];
  const modules: string[] = [];
  for (const m of rule.matches) {
    const opts = m.options
      .map((o) => canonicalOption(m.module, o))
      .filter((x): x is string => x !== null);
    if (m.module === "") builtin.push(...opts);
    else if (opts.length > 0 || !["tcp", "udp", "sctp", "icmp", "icmpv6"].includes(m.module)) {
      modules.push(`-m ${m.module}${opts.length > 0 ? ` ${opts.sort().join(" ")}` : ""}`);
    }
  }
  parts.push(...builtin.sort(), ...modules.sort());
  const t = rule.target;
  if (t !== null) {
    let opts: string[];
    if (t.name === "MARK" || (t.name === "CONNMARK" && markTargetOperation(t) !== null)) {
      const op = markTargetOperation(t);
      opts =
        op === null ? [] : [`--set-xmark 0x${op.value.toString(16)}/0x${op.mask.toString(16)}`];
    } else {
      opts = t.options
        .map((o) => canonicalOption(t.name, o))
        .filter((x): x is string => x !== null)
        .sort();
    }
    parts.push(`${t.kind === "goto" ? "-g" : "-j"} ${t.name}`, ...opts);
  }
  return parts.join(" ");
}
