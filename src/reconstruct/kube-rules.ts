import { buildKubeModel, type KubeEndpoint, type KubeServicePort } from "../rules/kube-model.js";
import type { RuleSet } from "../rules/model.js";
import type { EndpointView, Proto, RuleLine, ServicePortView } from "./types.js";

/**
 * What kube-proxy meant, as the analysis needs it: the rules module's kube model
 * (`buildKubeModel`) reduced to the views the judge and the checks read. Services are named by
 * kube-proxy's comments; without them (large clusters) the KUBE-SVC chain name stands in.
 */
export interface KubeRulesModel {
  services: ServicePortView[];
  orphanChains: string[];
}

export function extractKubeModel(rs: RuleSet): KubeRulesModel {
  const model = buildKubeModel(rs);
  return { services: model.servicePorts.map(toView), orphanChains: model.orphanChains };
}

function toProto(protocol: string): Proto {
  const p = protocol.toLowerCase();
  return p === "udp" || p === "sctp" ? p : "tcp";
}

function endpointView(ep: KubeEndpoint): EndpointView {
  return {
    ip: ep.ip,
    port: ep.port,
    probability: ep.probability,
    ready: true,
    node: null,
    chain: ep.chain,
  };
}

function toView(sp: KubeServicePort): ServicePortView {
  // Cluster traffic goes through KUBE-SVC, or KUBE-SVL under internalTrafficPolicy: Local.
  const chain = sp.chains.svc ?? sp.chains.svl;
  const endpoints = sp.chains.svc !== null ? sp.endpoints : sp.localEndpoints;
  const masquerade = sp.chains.ext !== null ? sp.externalMasquerade : sp.clusterIPMasquerade;
  return {
    key: sp.name,
    proto: toProto(sp.protocol),
    type:
      sp.loadBalancerIPs.length > 0
        ? "LoadBalancer"
        : sp.nodePorts.length > 0
          ? "NodePort"
          : "ClusterIP",
    clusterIPs: sp.clusterIP === null ? [] : [sp.clusterIP],
    port: sp.port ?? 0,
    nodePort: sp.nodePorts[0] ?? null,
    externalIPs: [...sp.externalIPs, ...sp.otherExternal].map((d) => d.ip),
    loadBalancerIPs: sp.loadBalancerIPs.map((d) => d.ip),
    affinityTimeout: sp.affinitySeconds,
    externalTrafficPolicy: sp.externalTrafficPolicy,
    endpoints: endpoints.map(endpointView),
    externalName: null,
    chain,
    masquerades: masquerade === null ? null : masquerade !== "none",
    rejects: sp.noEndpoints.some((n) => n.scope === "internal"),
    createdAt: null,
  };
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
