import type { CheckContext, CheckOptions } from "../../src/checks/types.js";
import { DEFAULT_CHECK_OPTIONS } from "../../src/checks/types.js";
import {
  InventoryTimeline,
  RuleSetTimeline,
  ServiceIndex,
} from "../../src/reconstruct/index-services.js";
import type {
  Connection,
  ConntrackView,
  DnsView,
  EndpointView,
  InventorySnapshot,
  NodeInfo,
  PodEnvView,
  RuleSetView,
  ServicePortView,
} from "../../src/reconstruct/types.js";

export function ep(text: string, probability: number | null = null): EndpointView {
  const [ip, port] = text.split(":");
  return { ip: ip ?? "", port: Number(port), probability, ready: true, node: null, chain: null };
}

export function svc(key: string, over: Partial<ServicePortView> = {}): ServicePortView {
  return {
    key,
    proto: "tcp",
    type: "ClusterIP",
    clusterIPs: ["10.96.0.10"],
    port: 80,
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
    ...over,
  };
}

export function ruleset(
  id: number,
  node: string,
  takenAt: number,
  services: ServicePortView[],
  orphanChains: string[] = [],
): RuleSetView {
  return { id, node, family: 4, takenAt, services, orphanChains, chainRules: () => [] };
}

export function snapshot(takenAt: number, services: ServicePortView[]): InventorySnapshot {
  const names = [...new Set(services.map((s) => s.key.split(":")[0] ?? s.key))];
  return { takenAt, services, serviceNames: names };
}

let nextId = 1;
export function conn(over: Partial<Connection> = {}): Connection {
  return {
    id: nextId++,
    proto: "tcp",
    client: { ip: "10.244.1.10", port: 40000 + (nextId % 20000) },
    vip: { ip: "10.96.0.10", port: 80 },
    service: "default/web:http",
    node: "n1",
    hook: "prerouting",
    endpoint: { ip: "10.244.2.5", port: 8080 },
    snat: null,
    verdict: "consistent",
    start: 1000,
    end: 1000.1,
    path: [],
    candidates: [],
    vipFrom: "translation",
    answered: true,
    refusal: null,
    connState: "SF",
    rulesetId: 1,
    legIds: [],
    translationIds: [],
    conntrackIds: [],
    ...over,
  };
}

export interface Parts {
  nodes?: NodeInfo[];
  rulesets?: RuleSetView[];
  inventory?: InventorySnapshot[];
  connections?: Connection[];
  conntrack?: ConntrackView[];
  dns?: DnsView[];
  podEnvs?: PodEnvView[];
  range?: { from: number; to: number } | null;
  options?: Partial<CheckOptions>;
}

export function context(p: Parts): CheckContext {
  const nodes = p.nodes ?? [
    { name: "n1", addresses: ["172.18.0.2"] },
    { name: "n2", addresses: ["172.18.0.3"] },
  ];
  const rulesets = p.rulesets ?? [];
  const inventory = p.inventory ?? [];
  const conns = [...(p.connections ?? [])].sort((a, b) => a.start - b.start || a.id - b.id);
  return {
    nodes,
    services: new ServiceIndex(nodes, [
      ...rulesets.map((r) => r.services),
      ...inventory.map((s) => s.services),
    ]),
    rulesets: new RuleSetTimeline(rulesets),
    inventory: new InventoryTimeline(inventory),
    connections: (verdicts) =>
      verdicts === undefined ? conns : conns.filter((c) => verdicts.includes(c.verdict)),
    conntrack: p.conntrack ?? [],
    dns: p.dns ?? [],
    podEnvs: p.podEnvs ?? [],
    range: p.range ?? null,
    options: { ...DEFAULT_CHECK_OPTIONS, ...p.options },
  };
}
