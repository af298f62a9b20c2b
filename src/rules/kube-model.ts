/**
 * What kube-proxy meant, read back from its iptables rules (pkg/proxy/iptables/proxier.go):
 *
 *   nat KUBE-SERVICES  -d VIP --dport P → KUBE-SVC (cluster IP, Cluster policy) / KUBE-SVL
 *                                         (internalTrafficPolicy Local) / KUBE-EXT (external
 *                                         IPs, LB) / KUBE-FW (LB with source ranges)
 *   nat KUBE-NODEPORTS --dport N        → KUBE-EXT
 *   KUBE-EXT: masquerade, short-circuits, then KUBE-SVC or KUBE-SVL
 *   KUBE-SVC/SVL: masquerade off-cluster sources, `recent --rcheck` affinity, then one
 *                 `statistic --probability` rule per endpoint → KUBE-SEP
 *   KUBE-SEP: hairpin masquerade, `recent --set`, DNAT --to-destination ip:port
 *   filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: REJECT (no endpoints) / DROP (no local ones)
 *
 * Service ports are named by kube-proxy's comments, checked against the chain-name hashes; when
 * comments are missing the names come from an inventory (hashes of its service ports), else the
 * chain name stands in. Older families (KUBE-XLB, KUBE-MARK-DROP) are read too. Every rule the
 * model did not account for in a KUBE-* chain is listed as unmodelled, never skipped silently.
 */

import { normalizeIP } from "../util/ip.js";
import {
  endpointChainName,
  endpointString,
  kubeChainKind,
  servicePortChains,
} from "./kube-names.js";
import { endpointsFor, type InventorySnapshot, servicePortName } from "./kubernetes.js";
import type { IpFamily, Rule, RuleSet, Table } from "./model.js";
import {
  findOption,
  markTargetOperation,
  optionValue,
  parseProbability,
  targetOption,
} from "./rule-helpers.js";

export interface RuleRef {
  /** The restore file the line number refers to, when not the base dump. */
  source?: string;
  table: string;
  chain: string;
  index: number;
  line: number;
  rule: string;
}

export interface KubeEndpoint {
  /** `ip:port` (`[ip6]:port`), from the DNAT target. */
  endpoint: string;
  ip: string;
  port: number;
  chain: string;
  /** Effective probability of reaching it from its policy chain (the statistic sequence). */
  probability: number;
  /** The SEP chain masquerades traffic from the endpoint itself (hairpin). */
  hairpinMasquerade: boolean;
  /** The SEP chain records ClientIP affinity (`recent --set`). */
  affinity: boolean;
  /** Chain name equals the recomputed kube-proxy hash for this service port and endpoint. */
  hashVerified: boolean;
  /** Jumped to, but the SEP chain is missing or has no DNAT: traffic would fall through. */
  broken: string | null;
}

export interface ExternalDestination {
  ip: string;
  port: number;
}

export type NoEndpointsVerdict = "REJECT" | "DROP";

export interface KubeServicePort {
  /** `ns/name:port` from comments or inventory; the KUBE-SVC… chain name when unknown. */
  name: string;
  /** How the name was found. */
  nameFrom: "comment" | "inventory" | "chain";
  namespace: string | null;
  service: string | null;
  portName: string | null;
  protocol: string;
  clusterIP: string | null;
  port: number | null;
  nodePorts: number[];
  externalIPs: ExternalDestination[];
  loadBalancerIPs: ExternalDestination[];
  /** Destinations sent to KUBE-EXT without a comment saying whether they are external or LB IPs. */
  otherExternal: ExternalDestination[];
  loadBalancerSourceRanges: string[];
  /** ClientIP affinity timeout from `recent --rcheck --seconds`; null without affinity. */
  affinitySeconds: number | null;
  internalTrafficPolicy: "Cluster" | "Local" | null;
  externalTrafficPolicy: "Cluster" | "Local" | null;
  /**
   * Masquerade of cluster-IP traffic: "off-cluster" (only sources outside `clusterCIDR`,
   * kube-proxy's local detector), "all" (--masquerade-all), "none".
   */
  clusterIPMasquerade: "off-cluster" | "all" | "none" | null;
  /** The condition that marks "not from this cluster", e.g. `! -s 10.0.0.0/8`. */
  localDetector: string | null;
  /** Masquerade of external traffic: "all" (Cluster policy), "local-sources" (Local), "none". */
  externalMasquerade: "all" | "local-sources" | "none" | null;
  healthCheckNodePort: number | null;
  chains: {
    svc: string | null;
    svl: string | null;
    ext: string | null;
    fw: string | null;
    xlb: string | null;
  };
  /** Endpoints of the Cluster-policy chain (KUBE-SVC), in rule order. */
  endpoints: KubeEndpoint[];
  /** Endpoints of the Local-policy chain (KUBE-SVL / KUBE-XLB), this node's. */
  localEndpoints: KubeEndpoint[];
  /** Filter rules answering for a service without (local) endpoints. */
  noEndpoints: {
    verdict: NoEndpointsVerdict;
    scope: "internal" | "external";
    destination: string;
    rule: RuleRef;
  }[];
  /** Service chain names are the recomputed hashes of `name` + protocol. */
  hashVerified: boolean;
}

export interface KubeModel {
  family: IpFamily;
  servicePorts: KubeServicePort[];
  /** Service ports whose traffic is rejected or dropped for lack of endpoints. */
  withoutEndpoints: string[];
  /** KUBE-SVC/SVL/EXT/FW/XLB/SEP chains that no rule jumps to. */
  orphanChains: string[];
  /** Per-service chains not reachable from a built-in chain (includes orphans' descendants). */
  unreachableChains: string[];
  /** Rules jumping to a chain that does not exist. */
  danglingJumps: RuleRef[];
  /** Rules in KUBE-* chains the model did not account for. */
  unmodelled: RuleRef[];
  /** From KUBE-MARK-MASQ, e.g. "0x4000"; null when absent. */
  masqueradeMark: string | null;
  /** KUBE-POSTROUTING masquerades with --random-fully. */
  masqueradeRandomFully: boolean | null;
}

export interface KubeModelOptions {
  /** Names service ports whose comments were dropped, and verifies the ones present. */
  inventory?: InventorySnapshot;
}

const BUILTIN_TARGETS = new Set([
  "ACCEPT",
  "DROP",
  "RETURN",
  "QUEUE",
  "REJECT",
  "DNAT",
  "SNAT",
  "MASQUERADE",
  "REDIRECT",
  "MARK",
  "CONNMARK",
  "LOG",
  "NFLOG",
  "TRACE",
  "NOTRACK",
  "CT",
  "NFQUEUE",
  "TPROXY",
  "CLASSIFY",
  "TCPMSS",
  "CHECKSUM",
]);

const NAME_SUFFIX =
  / (cluster IP|external IP|loadbalancer IP|has no endpoints|has no local endpoints|health check node port)$/;

export function ruleRef(r: Rule): RuleRef {
  const ref: RuleRef = {
    table: r.table,
    chain: r.chain,
    index: r.index,
    line: r.line,
    rule: r.raw,
  };
  if (r.source !== undefined) ref.source = r.source;
  return ref;
}

/** `ns/name:port` from a kube-proxy comment, or null. */
function nameFromComment(comment: string | null): string | null {
  if (comment === null) return null;
  const stripped = comment.replace(NAME_SUFFIX, "");
  // Older kube-proxy wrote unnamed ports as `ns/name:` (and hashed that string).
  const m = /^([^/\s]+\/[^:\s]+(?::\S*)?)(?: -> \S+)?$/.exec(stripped);
  return m === null ? null : (m[1] as string);
}

function protoOf(r: Rule): string | null {
  const p = optionValue(r, "", "-p");
  return p === undefined ? null : p.toLowerCase();
}

function dportOf(r: Rule): number | null {
  const p = protoOf(r);
  const v =
    (p === null ? undefined : optionValue(r, p, "--dport")) ?? optionValue(r, "", "--dport");
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
}

function addrOf(r: Rule, opt: "-d" | "-s"): string | null {
  const o = findOption(r, "", opt);
  if (o === undefined || o.negated) return null;
  const v = o.values[0] ?? "";
  const [ip, prefix] = v.split("/");
  const host = prefix === undefined || prefix === "32" || prefix === "128";
  return host ? (normalizeIP(ip ?? "") ?? v) : v;
}

function targetName(r: Rule): string | null {
  return r.target?.name ?? null;
}

function splitName(name: string): { namespace: string; service: string; portName: string } | null {
  const m = /^([^/]+)\/([^:]+)(?::(.*))?$/.exec(name);
  if (m === null) return null;
  return { namespace: m[1] as string, service: m[2] as string, portName: m[3] ?? "" };
}

interface Draft extends KubeServicePort {
  /** Hash suffix shared by this port's chains, when known. */
  hash: string | null;
}

/** Build the kube model of one rule set (call once per family for dual-stack nodes). */
export function buildKubeModel(rs: RuleSet, options: KubeModelOptions = {}): KubeModel {
  const nat = rs.tables.get("nat");
  const filter = rs.tables.get("filter");
  const used = new Set<Rule>();
  const byHash = new Map<string, Draft>();
  const byName = new Map<string, Draft>();

  // Names from the inventory: hash → service port name (+ protocol), and SEP → endpoint.
  const invNames = new Map<string, { name: string; protocol: string }>();
  if (options.inventory !== undefined) {
    for (const svc of options.inventory.services) {
      for (const p of svc.ports) {
        const name = servicePortName(svc, p.name);
        const proto = p.protocol.toLowerCase();
        const chains = servicePortChains(name, proto);
        invNames.set(chains.SVC.slice(9), { name, protocol: proto });
        for (const e of endpointsFor(options.inventory, svc, p)) {
          invNames.set(endpointChainName(name, proto, endpointString(e.ip, e.port)), {
            name,
            protocol: proto,
          });
        }
      }
    }
  }

  const inventoryOwner = (
    ip: string | null,
    port: number | null,
    nodePort: boolean,
    proto: string,
  ): string | null => {
    for (const svc of options.inventory?.services ?? []) {
      for (const p of svc.ports) {
        if (p.protocol.toLowerCase() !== proto) continue;
        const hit = nodePort
          ? port !== null && p.nodePort === port
          : p.port === port &&
            ip !== null &&
            (svc.clusterIPs.includes(ip) ||
              svc.externalIPs.includes(ip) ||
              svc.loadBalancerIPs.includes(ip));
        if (hit) return servicePortName(svc, p.name);
      }
    }
    return null;
  };
  const healthCheckOwner = (port: number | null): string | null => {
    for (const svc of options.inventory?.services ?? []) {
      const p = svc.ports[0];
      if (port !== null && svc.healthCheckNodePort === port && p !== undefined)
        return servicePortName(svc, p.name);
    }
    return null;
  };

  const newDraft = (
    name: string,
    nameFrom: KubeServicePort["nameFrom"],
    protocol: string,
    hash: string | null,
  ): Draft => {
    const parts = nameFrom === "chain" ? null : splitName(name);
    const d: Draft = {
      name,
      nameFrom,
      namespace: parts?.namespace ?? null,
      service: parts?.service ?? null,
      portName: parts?.portName ?? null,
      protocol,
      clusterIP: null,
      port: null,
      nodePorts: [],
      externalIPs: [],
      loadBalancerIPs: [],
      otherExternal: [],
      loadBalancerSourceRanges: [],
      affinitySeconds: null,
      internalTrafficPolicy: null,
      externalTrafficPolicy: null,
      clusterIPMasquerade: null,
      localDetector: null,
      externalMasquerade: null,
      healthCheckNodePort: null,
      chains: { svc: null, svl: null, ext: null, fw: null, xlb: null },
      endpoints: [],
      localEndpoints: [],
      noEndpoints: [],
      hashVerified: false,
      hash,
    };
    if (hash !== null) byHash.set(hash, d);
    byName.set(name, d);
    return d;
  };

  /** The draft for a per-service chain, naming it from the comment, inventory or chain. */
  const draftForChain = (
    chain: string,
    comment: string | null,
    protocol: string | null,
  ): Draft | null => {
    const kind = kubeChainKind(chain);
    if (kind === null || kind === "SEP") return null;
    const hash = chain.slice(chain.indexOf("-", 5) + 1);
    const existing = byHash.get(hash);
    if (existing !== undefined) {
      if (existing.nameFrom === "chain") {
        const n = nameFromComment(comment);
        if (n !== null) rename(existing, n, "comment");
      }
      return existing;
    }
    const fromComment = nameFromComment(comment);
    const proto = protocol ?? invNames.get(hash)?.protocol ?? "tcp";
    if (fromComment !== null) {
      const d = byName.get(fromComment);
      if (d !== undefined && d.hash === null) {
        d.hash = hash;
        byHash.set(hash, d);
        return d;
      }
      return newDraft(fromComment, "comment", proto, hash);
    }
    const inv = invNames.get(hash);
    if (inv !== undefined) return newDraft(inv.name, "inventory", inv.protocol, hash);
    return newDraft(`KUBE-SVC-${hash}`, "chain", proto, hash);
  };

  const rename = (d: Draft, name: string, from: KubeServicePort["nameFrom"]) => {
    byName.delete(d.name);
    d.name = name;
    d.nameFrom = from;
    const parts = splitName(name);
    d.namespace = parts?.namespace ?? null;
    d.service = parts?.service ?? null;
    d.portName = parts?.portName ?? null;
    byName.set(name, d);
  };

  const natChain = (name: string) => nat?.chains.get(name);

  // 1. Dispatch: nat KUBE-SERVICES.
  for (const r of natChain("KUBE-SERVICES")?.rules ?? []) {
    const t = targetName(r);
    if (t === null) continue;
    if (t === "KUBE-MARK-MASQ" && nameFromComment(r.comment) !== null) {
      // Older kube-proxy marked off-cluster ClusterIP traffic here, before the SVC jump.
      used.add(r);
      continue;
    }
    if (t === "KUBE-NODEPORTS") {
      used.add(r);
      continue;
    }
    const kind = kubeChainKind(t);
    if (kind === null || kind === "SEP") continue;
    const d = draftForChain(t, r.comment, protoOf(r));
    if (d === null) continue;
    used.add(r);
    const ip = addrOf(r, "-d");
    const port = dportOf(r);
    const what = r.comment?.match(NAME_SUFFIX)?.[1] ?? null;
    if (kind === "SVC" || kind === "SVL" || what === "cluster IP") {
      d.clusterIP = ip;
      d.port = port;
      d.internalTrafficPolicy = kind === "SVL" ? "Local" : "Cluster";
    } else if (ip !== null && port !== null) {
      const dest = { ip, port };
      if (what === "external IP") d.externalIPs.push(dest);
      else if (what === "loadbalancer IP" || kind === "FW") d.loadBalancerIPs.push(dest);
      else d.otherExternal.push(dest);
      d.port ??= port;
    }
  }

  // 2. NodePorts: nat KUBE-NODEPORTS.
  for (const r of natChain("KUBE-NODEPORTS")?.rules ?? []) {
    const t = targetName(r);
    if (t === null) continue;
    if (t === "KUBE-MARK-MASQ") {
      // Older kube-proxy: masquerade NodePort traffic from 127.0.0.0/8 (route_localnet).
      used.add(r);
      continue;
    }
    const d = draftForChain(t, r.comment, protoOf(r));
    if (d === null) continue;
    used.add(r);
    const np = dportOf(r);
    if (np !== null && !d.nodePorts.includes(np)) d.nodePorts.push(np);
  }

  // 3. Per-service chains, including ones nothing dispatches to (reported as orphans too).
  const sepOwner = new Map<string, Draft>();
  for (const chain of nat?.chains.values() ?? []) {
    const kind = kubeChainKind(chain.name);
    if (kind === null || kind === "SEP") continue;
    const first = chain.rules.find((r) => nameFromComment(r.comment) !== null) ?? chain.rules[0];
    const d = draftForChain(
      chain.name,
      first?.comment ?? null,
      first === undefined ? null : protoOf(first),
    );
    if (d === null) continue;
    if (kind === "SVC") d.chains.svc = chain.name;
    else if (kind === "SVL") d.chains.svl = chain.name;
    else if (kind === "EXT") d.chains.ext = chain.name;
    else if (kind === "FW") d.chains.fw = chain.name;
    else d.chains.xlb = chain.name;

    if (kind === "SVC" || kind === "SVL" || kind === "XLB") {
      const eps = readPolicyChain(chain.rules, d, kind, used);
      if (kind === "SVC") d.endpoints = eps;
      else d.localEndpoints = eps;
      for (const e of eps) sepOwner.set(e.chain, d);
      if (kind === "XLB") {
        d.externalTrafficPolicy = "Local";
        d.externalMasquerade ??= "local-sources";
      }
    } else if (kind === "EXT") {
      readExtChain(chain.rules, d, used);
    } else {
      readFwChain(chain.rules, d, used);
    }
  }

  // 4. Endpoint chains: DNAT target, hairpin masquerade, affinity; verify the hashes.
  for (const d of byHash.values()) {
    for (const list of [d.endpoints, d.localEndpoints]) {
      for (const e of list) {
        const sep = natChain(e.chain);
        if (sep === undefined) {
          e.broken = "chain missing";
          continue;
        }
        for (const r of sep.rules) {
          const t = targetName(r);
          if (t === "DNAT") {
            const dest = targetOption(r.target, "--to-destination")?.values[0] ?? "";
            const parsed = parseEndpoint(dest);
            if (parsed !== null) {
              e.endpoint = endpointString(parsed.ip, parsed.port);
              e.ip = parsed.ip;
              e.port = parsed.port;
            }
            if (findOption(r, "recent", "--set") !== undefined) e.affinity = true;
            used.add(r);
          } else if (t === "KUBE-MARK-MASQ" && addrOf(r, "-s") !== null) {
            e.hairpinMasquerade = true;
            used.add(r);
          }
        }
        if (e.ip === "") e.broken = "no DNAT rule";
        else if (d.nameFrom !== "chain") {
          e.hashVerified = endpointChainName(d.name, d.protocol, e.endpoint) === e.chain;
        }
      }
    }
    if (d.nameFrom !== "chain" && d.hash !== null) {
      d.hashVerified = servicePortChains(d.name, d.protocol).SVC.endsWith(d.hash);
    }
  }

  // 5. Filter table: REJECT/DROP for (local-)endpoint-less services, health-check ports, FW drops.
  const noEndpoint = (r: Rule, scope: "internal" | "external") => {
    const verdict = targetName(r);
    if (verdict !== "REJECT" && verdict !== "DROP") return;
    const name = nameFromComment(r.comment);
    const ip = addrOf(r, "-d");
    const port = dportOf(r);
    const proto = protoOf(r) ?? "tcp";
    const local = findOption(r, "addrtype", "--dst-type");
    let d = name === null ? undefined : byName.get(name);
    // Without a comment: the service port that already owns this destination, else the
    // inventory's, else a placeholder named by the destination.
    d ??= [...byName.values()].find((x) =>
      local !== undefined && ip === null
        ? port !== null && x.nodePorts.includes(port)
        : ip !== null &&
          ((x.clusterIP === ip && x.port === port) ||
            [...x.externalIPs, ...x.loadBalancerIPs, ...x.otherExternal].some(
              (e) => e.ip === ip && e.port === port,
            )),
    );
    const inv =
      d === undefined ? inventoryOwner(ip, port, local !== undefined && ip === null, proto) : null;
    if (d === undefined && inv !== null)
      d = byName.get(inv) ?? newDraft(inv, "inventory", proto, null);
    d ??= newDraft(
      name ?? `${ip ?? "*"}:${port ?? "*"}/${proto}`,
      name === null ? "chain" : "comment",
      proto,
      null,
    );
    used.add(r);
    const destination =
      ip !== null
        ? ip.includes(":")
          ? `[${ip}]:${port ?? "*"}`
          : `${ip}:${port ?? "*"}`
        : local !== undefined
          ? `LOCAL:${port ?? "*"}`
          : `*:${port ?? "*"}`;
    d.noEndpoints.push({ verdict, scope, destination, rule: ruleRef(r) });
    const comment = r.comment ?? "";
    if (scope === "internal") {
      if (d.clusterIP === null && ip !== null) {
        d.clusterIP = ip;
        d.port = port;
      }
      if (comment.endsWith("has no local endpoints")) d.internalTrafficPolicy = "Local";
    } else {
      if (comment.endsWith("has no local endpoints")) d.externalTrafficPolicy = "Local";
      if (local !== undefined && port !== null && !d.nodePorts.includes(port))
        d.nodePorts.push(port);
      else if (ip !== null && port !== null) {
        const known = [...d.externalIPs, ...d.loadBalancerIPs, ...d.otherExternal].some(
          (x) => x.ip === ip,
        );
        if (!known) d.otherExternal.push({ ip, port });
      }
    }
  };
  for (const r of filter?.chains.get("KUBE-SERVICES")?.rules ?? []) noEndpoint(r, "internal");
  for (const r of filter?.chains.get("KUBE-EXTERNAL-SERVICES")?.rules ?? [])
    noEndpoint(r, "external");
  for (const r of filter?.chains.get("KUBE-NODEPORTS")?.rules ?? []) {
    let name = nameFromComment(r.comment);
    if (name !== null && !/health check node port$/.test(r.comment ?? "")) continue;
    if (name === null && r.target?.name === "ACCEPT") name = healthCheckOwner(dportOf(r));
    if (name === null) continue;
    const d = byName.get(name) ?? newDraft(name, "comment", "tcp", null);
    d.healthCheckNodePort = dportOf(r);
    used.add(r);
  }
  for (const r of filter?.chains.get("KUBE-PROXY-FIREWALL")?.rules ?? []) {
    const m = / traffic not accepted by (KUBE-FW-\S+)$/.exec(r.comment ?? "");
    const d = m === null ? undefined : draftForChain(m[1] as string, r.comment, protoOf(r));
    if (d === undefined || d === null) continue;
    used.add(r);
    const ip = addrOf(r, "-d");
    const port = dportOf(r);
    if (ip !== null && port !== null && !d.loadBalancerIPs.some((x) => x.ip === ip)) {
      d.loadBalancerIPs.push({ ip, port });
      d.otherExternal = d.otherExternal.filter((x) => x.ip !== ip);
    }
  }

  // 6. Infrastructure chains: masquerade mark, MASQUERADE, jumps from built-in chains.
  let masqueradeMark: string | null = null;
  let masqueradeRandomFully: boolean | null = null;
  for (const r of natChain("KUBE-MARK-MASQ")?.rules ?? []) {
    if (r.target?.name !== "MARK") continue;
    const op = markTargetOperation(r.target);
    if (op !== null) masqueradeMark = `0x${op.value.toString(16)}`;
    used.add(r);
  }
  for (const r of natChain("KUBE-POSTROUTING")?.rules ?? []) {
    if (r.target?.name === "MASQUERADE") {
      masqueradeRandomFully = targetOption(r.target, "--random-fully") !== undefined;
    }
    used.add(r);
  }
  for (const t of [nat, filter]) {
    for (const name of [
      "KUBE-FORWARD",
      "KUBE-FIREWALL",
      "KUBE-MARK-DROP",
      "KUBE-KUBELET-CANARY",
      "KUBE-PROXY-CANARY",
    ]) {
      for (const r of t?.chains.get(name)?.rules ?? []) used.add(r);
    }
  }

  // 7. Graph checks: orphans, unreachable chains, dangling jumps; unmodelled KUBE-* rules.
  const orphanChains: string[] = [];
  const unreachableChains: string[] = [];
  const danglingJumps: RuleRef[] = [];
  const unmodelled: RuleRef[] = [];
  for (const t of [nat, filter, rs.tables.get("mangle"), rs.tables.get("raw")]) {
    if (t === undefined) continue;
    const graph = chainGraph(t);
    for (const c of t.chains.values()) {
      if (kubeChainKind(c.name) !== null && t.name === "nat") {
        if (!graph.referenced.has(c.name)) orphanChains.push(c.name);
        if (!graph.reachable.has(c.name)) unreachableChains.push(c.name);
      }
      for (const r of c.rules) {
        const target = targetName(r);
        if (
          target !== null &&
          !BUILTIN_TARGETS.has(target) &&
          !t.chains.has(target) &&
          /^[A-Z0-9-]+$/.test(target) &&
          !/^[A-Z]+$/.test(target)
        ) {
          danglingJumps.push(ruleRef(r));
        }
        if (used.has(r)) continue;
        // Jumps from built-in chains into KUBE-* chains are kube-proxy's hooks.
        if (!c.name.startsWith("KUBE-")) {
          if (target?.startsWith("KUBE-") === true) continue;
          continue;
        }
        unmodelled.push(ruleRef(r));
      }
    }
  }

  // Comments say "external IP" or "loadbalancer IP"; without them the inventory does.
  for (const d of byName.values()) {
    if (d.otherExternal.length === 0 || options.inventory === undefined || d.service === null)
      continue;
    const svc = options.inventory.services.find(
      (x) => x.namespace === d.namespace && x.name === d.service,
    );
    if (svc === undefined) continue;
    const rest: ExternalDestination[] = [];
    for (const e of d.otherExternal) {
      if (svc.externalIPs.includes(e.ip)) d.externalIPs.push(e);
      else if (svc.loadBalancerIPs.includes(e.ip)) d.loadBalancerIPs.push(e);
      else rest.push(e);
    }
    d.otherExternal = rest;
  }

  // An empty per-service chain (flushed, never deleted) says nothing about a service: it is
  // reported in orphanChains / unreachableChains, not as a service port.
  const empty = (d: Draft) =>
    d.clusterIP === null &&
    d.endpoints.length === 0 &&
    d.localEndpoints.length === 0 &&
    d.noEndpoints.length === 0 &&
    d.nodePorts.length === 0 &&
    d.externalIPs.length + d.loadBalancerIPs.length + d.otherExternal.length === 0;
  const servicePorts = [...new Set([...byName.values()])]
    .filter((d) => !empty(d))
    .sort((a, b) => compareNames(a.name, b.name));
  for (const d of servicePorts) {
    // Service ports with endpoint chains but no external entry have no external policy.
    if (
      d.chains.ext === null &&
      d.chains.xlb === null &&
      d.noEndpoints.every((n) => n.scope === "internal")
    ) {
      d.externalTrafficPolicy ??= null;
    }
  }
  return {
    family: rs.family,
    servicePorts: servicePorts.map(({ hash: _hash, ...rest }) => rest),
    withoutEndpoints: servicePorts
      .filter(
        (d) =>
          d.endpoints.length === 0 && d.localEndpoints.length === 0 && d.noEndpoints.length > 0,
      )
      .map((d) => d.name),
    orphanChains: orphanChains.sort(),
    unreachableChains: unreachableChains.sort(),
    danglingJumps,
    unmodelled,
    masqueradeMark,
    masqueradeRandomFully,
  };
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function parseEndpoint(text: string): { ip: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (m === null) return null;
  const ip = normalizeIP(m[1] as string);
  return ip === null ? null : { ip, port: Number(m[2]) };
}

/**
 * A KUBE-SVC / KUBE-SVL / KUBE-XLB chain: masquerade and affinity rules, then the endpoint
 * jumps. The effective probability of jump i is p_i times what earlier jumps left over.
 */
function readPolicyChain(
  rules: Rule[],
  d: Draft,
  kind: "SVC" | "SVL" | "XLB",
  used: Set<Rule>,
): KubeEndpoint[] {
  const eps: KubeEndpoint[] = [];
  let remaining = 1;
  for (const r of rules) {
    const t = targetName(r);
    if (t === "KUBE-MARK-MASQ") {
      used.add(r);
      if (kind === "SVC" || kind === "SVL") {
        const s = findOption(r, "", "-s");
        const i = findOption(r, "", "-i");
        if (s?.negated === true) {
          d.clusterIPMasquerade = "off-cluster";
          d.localDetector = `! -s ${s.values[0] ?? ""}`;
        } else if (i?.negated === true) {
          d.clusterIPMasquerade = "off-cluster";
          d.localDetector = `! -i ${i.values[0] ?? ""}`;
        } else if (
          s === undefined &&
          i === undefined &&
          findOption(r, "physdev", "--physdev-is-in") === undefined
        ) {
          d.clusterIPMasquerade = "all";
        } else {
          d.clusterIPMasquerade = "off-cluster";
          d.localDetector = r.raw.replace(/^-A \S+ /, "").replace(/ -j KUBE-MARK-MASQ$/, "");
        }
        if (d.clusterIP === null) {
          d.clusterIP = addrOf(r, "-d");
          d.port = dportOf(r);
        }
      } else {
        d.externalMasquerade = "local-sources";
      }
      continue;
    }
    if (t === null) continue;
    if (kind === "XLB" && kubeChainKind(t) === "SVC") {
      // Old short-circuit: pod (or LOCAL) sources go to the cluster chain.
      used.add(r);
      continue;
    }
    if (kind === "XLB" && (t === "KUBE-MARK-DROP" || t === "DROP")) {
      // "has no local endpoints": external traffic is marked for the filter table to drop.
      used.add(r);
      d.noEndpoints.push({
        verdict: "DROP",
        scope: "external",
        destination: "KUBE-XLB",
        rule: ruleRef(r),
      });
      continue;
    }
    if (kubeChainKind(t) !== "SEP") continue;
    if (findOption(r, "recent", "--rcheck") !== undefined) {
      const secs = optionValue(r, "recent", "--seconds");
      if (secs !== undefined && /^\d+$/.test(secs)) d.affinitySeconds = Number(secs);
      used.add(r);
      continue;
    }
    used.add(r);
    let p = 1;
    const mode = optionValue(r, "statistic", "--mode");
    if (mode === "random") {
      p = parseProbability(optionValue(r, "statistic", "--probability") ?? "") ?? 1;
    } else if (mode === "nth") {
      const every = Number(optionValue(r, "statistic", "--every") ?? "1");
      p = every > 0 ? 1 / every : 1;
    }
    const eff = remaining * p;
    remaining -= eff;
    eps.push({
      endpoint: "",
      ip: "",
      port: 0,
      chain: t,
      probability: eff,
      hairpinMasquerade: false,
      affinity: false,
      hashVerified: false,
      broken: null,
    });
  }
  if (kind === "SVC" && d.clusterIPMasquerade === null && eps.length > 0)
    d.clusterIPMasquerade = "none";
  return eps;
}

function readExtChain(rules: Rule[], d: Draft, used: Set<Rule>): void {
  let masq: KubeServicePort["externalMasquerade"] = "none";
  let policy: "Cluster" | "Local" | null = null;
  for (const r of rules) {
    const t = targetName(r);
    if (t === null) continue;
    const localSrc = findOption(r, "addrtype", "--src-type")?.values[0] === "LOCAL";
    if (t === "KUBE-MARK-MASQ") {
      masq = localSrc ? "local-sources" : "all";
      used.add(r);
      continue;
    }
    const kind = kubeChainKind(t);
    if (kind === "SVC" || kind === "SVL") {
      used.add(r);
      const conditional = r.matches.some((m) => m.module !== "comment");
      // The unconditional last jump is the external policy chain.
      if (!conditional) policy = kind === "SVL" ? "Local" : "Cluster";
      else if (policy === null) policy = "Local";
    }
  }
  d.externalMasquerade = masq;
  d.externalTrafficPolicy =
    masq === "all" ? "Cluster" : (policy ?? d.externalTrafficPolicy ?? "Local");
}

function readFwChain(rules: Rule[], d: Draft, used: Set<Rule>): void {
  for (const r of rules) {
    const t = targetName(r);
    used.add(r);
    if (t === null || t === "KUBE-MARK-DROP" || t === "DROP") continue;
    const s = findOption(r, "", "-s");
    if (s !== undefined && !s.negated && s.values[0] !== undefined) {
      const v = s.values[0];
      if (!d.loadBalancerSourceRanges.includes(v)) d.loadBalancerSourceRanges.push(v);
    }
  }
}

/** Which chains are jumped to, and which are reachable from the built-in chains. */
function chainGraph(t: Table): { referenced: Set<string>; reachable: Set<string> } {
  const edges = new Map<string, string[]>();
  const referenced = new Set<string>();
  for (const c of t.chains.values()) {
    const out: string[] = [];
    for (const r of c.rules) {
      const target = r.target?.name;
      if (target !== undefined && t.chains.has(target)) {
        out.push(target);
        if (target !== c.name) referenced.add(target);
      }
    }
    edges.set(c.name, out);
  }
  const reachable = new Set<string>();
  // kube-proxy's own restore input has no built-in chains: its top-level chains count as roots.
  const stack = [...t.chains.keys()].filter((n) => BUILTINS.has(n) || ROOTS.has(n));
  while (stack.length > 0) {
    const n = stack.pop() as string;
    if (reachable.has(n)) continue;
    reachable.add(n);
    for (const e of edges.get(n) ?? []) if (!reachable.has(e)) stack.push(e);
  }
  return { referenced, reachable };
}

const BUILTINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);
const ROOTS = new Set([
  "KUBE-SERVICES",
  "KUBE-NODEPORTS",
  "KUBE-EXTERNAL-SERVICES",
  "KUBE-POSTROUTING",
  "KUBE-FORWARD",
  "KUBE-FIREWALL",
  "KUBE-PROXY-FIREWALL",
]);
