import type { Chain, Rule, RuleSet } from "../rules/model.js";
import { findMatch, optionValue, parseProbability, targetOption } from "../rules/rule-helpers.js";
import { normalizeIP, parseAddrPort } from "../util/ip.js";
import type { EndpointView, Proto, RuleLine, ServicePortView } from "./types.js";

/**
 * What kube-proxy meant, read back from its iptables rules: Service ports with their VIPs,
 * endpoints and the selection probability each gets, affinity, masquerade, reject/drop rules
 * and chains nothing jumps to. Services are named by kube-proxy's comments; without them (large
 * clusters) the KUBE-SVC chain name stands in for the name.
 */
export interface KubeRulesModel {
  services: ServicePortView[];
  orphanChains: string[];
}

const SERVICE_CHAIN = /^KUBE-(SVC|SVL|EXT|FW|XLB)-/;
const KUBE_CHAIN = /^KUBE-(SVC|SVL|EXT|FW|XLB|SEP)-/;

function commentKey(rule: Rule): string | null {
  const c = rule.comment;
  if (c === null) return null;
  const first = c.split(" ")[0] ?? "";
  return /^[^/\s]+\/[^:\s]+:\S+$/.test(first) ? first : null;
}

function protoOf(rule: Rule): Proto | null {
  const p = optionValue(rule, "", "-p");
  return p === "tcp" || p === "udp" || p === "sctp" ? p : null;
}

function dport(rule: Rule): number | null {
  for (const mod of ["tcp", "udp", "sctp", ""]) {
    const v = optionValue(rule, mod, "--dport");
    if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  }
  return null;
}

function dst(rule: Rule): string | null {
  const v = optionValue(rule, "", "-d");
  if (v === undefined) return null;
  return normalizeIP(v.split("/")[0] ?? v);
}

function jumpTarget(rule: Rule): string | null {
  return rule.target?.name ?? null;
}

export function extractKubeModel(rs: RuleSet): KubeRulesModel {
  const nat = rs.tables.get("nat")?.chains ?? new Map<string, Chain>();
  const filter = rs.tables.get("filter")?.chains ?? new Map<string, Chain>();
  const byKey = new Map<string, ServicePortView>();
  const chainKey = new Map<string, string>();

  const get = (key: string, proto: Proto): ServicePortView => {
    let sp = byKey.get(key);
    if (sp === undefined) {
      sp = {
        key,
        proto,
        type: null,
        clusterIPs: [],
        port: 0,
        nodePort: null,
        externalIPs: [],
        loadBalancerIPs: [],
        affinityTimeout: null,
        externalTrafficPolicy: null,
        endpoints: [],
        externalName: null,
        chain: null,
        masquerades: null,
        rejects: false,
        createdAt: null,
      };
      byKey.set(key, sp);
    }
    return sp;
  };
  const push = (list: string[], ip: string | null) => {
    if (ip !== null && !list.includes(ip)) list.push(ip);
  };

  for (const rule of nat.get("KUBE-SERVICES")?.rules ?? []) {
    const target = jumpTarget(rule);
    if (target === null || !SERVICE_CHAIN.test(target)) continue;
    const proto = protoOf(rule) ?? "tcp";
    const key =
      commentKey(rule) ?? chainKey.get(target) ?? target.replace(/^KUBE-\w+-/, "KUBE-SVC-");
    chainKey.set(target, key);
    const sp = get(key, proto);
    const port = dport(rule);
    if (port !== null) sp.port = port;
    const c = rule.comment ?? "";
    if (c.endsWith("external IP")) push(sp.externalIPs, dst(rule));
    else if (c.endsWith("loadbalancer IP")) push(sp.loadBalancerIPs, dst(rule));
    else push(sp.clusterIPs, dst(rule));
    if (target.startsWith("KUBE-SVC-") || target.startsWith("KUBE-SVL-")) sp.chain ??= target;
  }
  for (const rule of nat.get("KUBE-NODEPORTS")?.rules ?? []) {
    const target = jumpTarget(rule);
    if (target === null || !SERVICE_CHAIN.test(target)) continue;
    const key = commentKey(rule) ?? chainKey.get(target) ?? target;
    chainKey.set(target, key);
    const sp = get(key, protoOf(rule) ?? "tcp");
    const np = dport(rule);
    if (np !== null) sp.nodePort = np;
  }

  // The Service's own chain: KUBE-SVC-<hash>, the same hash as its EXT/FW chains.
  for (const sp of byKey.values()) {
    if (sp.chain === null) {
      for (const [chain, key] of chainKey) {
        if (key !== sp.key) continue;
        const svc = chain.replace(/^KUBE-(EXT|FW|XLB)-/, "KUBE-SVC-");
        if (nat.has(svc)) sp.chain = svc;
      }
    }
    const ext = [...chainKey].find(([c, k]) => k === sp.key && c.startsWith("KUBE-EXT-"))?.[0];
    const extRules = ext === undefined ? [] : (nat.get(ext)?.rules ?? []);
    if (extRules.some((r) => jumpTarget(r)?.startsWith("KUBE-SVL-"))) {
      sp.externalTrafficPolicy = "Local";
    } else if (ext !== undefined) sp.externalTrafficPolicy = "Cluster";
    if (ext !== undefined) {
      sp.masquerades = extRules.some((r) => jumpTarget(r) === "KUBE-MARK-MASQ");
    } else if (sp.chain !== null) {
      sp.masquerades = (nat.get(sp.chain)?.rules ?? []).some(
        (r) => jumpTarget(r) === "KUBE-MARK-MASQ",
      );
    }
    sp.type =
      sp.loadBalancerIPs.length > 0
        ? "LoadBalancer"
        : sp.nodePort !== null
          ? "NodePort"
          : "ClusterIP";
    if (sp.chain !== null) readEndpoints(nat, sp, sp.chain);
  }

  // Services without endpoints: REJECT (or DROP) in filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES.
  for (const chainName of ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]) {
    for (const rule of filter.get(chainName)?.rules ?? []) {
      const t = jumpTarget(rule);
      if (t !== "REJECT" && t !== "DROP") continue;
      const key = commentKey(rule);
      if (key === null) continue;
      const sp = get(key, protoOf(rule) ?? "tcp");
      const port = dport(rule);
      if (chainName === "KUBE-SERVICES") {
        sp.rejects = true;
        if (port !== null && sp.port === 0) sp.port = port;
        push(sp.clusterIPs, dst(rule));
      }
    }
  }

  // Chains nothing jumps to.
  const referenced = new Set<string>();
  for (const chain of nat.values()) {
    for (const r of chain.rules) {
      const t = jumpTarget(r);
      if (t !== null) referenced.add(t);
      const name = optionValue(r, "recent", "--name");
      if (name !== undefined) referenced.add(name);
    }
  }
  const orphanChains: string[] = [];
  for (const name of nat.keys()) {
    if (KUBE_CHAIN.test(name) && !referenced.has(name)) orphanChains.push(name);
  }
  return { services: [...byKey.values()], orphanChains };
}

function readEndpoints(nat: Map<string, Chain>, sp: ServicePortView, chainName: string): void {
  let remaining = 1;
  const eps: EndpointView[] = [];
  for (const rule of nat.get(chainName)?.rules ?? []) {
    const t = jumpTarget(rule);
    if (t === null || !t.startsWith("KUBE-SEP-")) continue;
    if (findMatch(rule, "recent") !== undefined) {
      const secs = optionValue(rule, "recent", "--seconds");
      if (secs !== undefined) sp.affinityTimeout = Number(secs);
      continue;
    }
    const ptext = optionValue(rule, "statistic", "--probability");
    const p = ptext === undefined ? 1 : (parseProbability(ptext) ?? 1);
    const ep = sepDestination(nat.get(t));
    if (ep !== null) {
      eps.push({
        ip: ep.ip,
        port: ep.port,
        probability: remaining * p,
        ready: true,
        node: null,
        chain: t,
      });
    }
    remaining *= 1 - p;
  }
  sp.endpoints = eps;
}

function sepDestination(chain: Chain | undefined): { ip: string; port: number } | null {
  for (const rule of chain?.rules ?? []) {
    if (rule.target?.name !== "DNAT") continue;
    const to = targetOption(rule.target, "--to-destination")?.values[0];
    if (to === undefined) continue;
    return parseAddrPort(to);
  }
  return null;
}

/** The rules of one chain, for findings' evidence. */
export function chainRuleLines(rs: RuleSet, chain: string): RuleLine[] {
  const out: RuleLine[] = [];
  for (const [tableName, table] of rs.tables) {
    const c = table.chains.get(chain);
    if (c === undefined) continue;
    for (const r of c.rules) {
      out.push({ table: tableName, chain, index: r.index, line: r.line, rule: r.raw });
    }
  }
  return out;
}
