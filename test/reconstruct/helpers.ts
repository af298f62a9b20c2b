import { type GenServicePort, generateIptablesRestore } from "../../src/lab/kubeproxy-gen.js";
import { RuleSetTimeline, ServiceIndex } from "../../src/reconstruct/index-services.js";
import { netfilterSimulator, ruleSetView } from "../../src/reconstruct/load.js";
import { mergeByTime, reconstruct } from "../../src/reconstruct/reconstruct.js";
import type {
  Connection,
  ConntrackView,
  LegView,
  NodeInfo,
  TranslationView,
} from "../../src/reconstruct/types.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";
import type { RuleSet } from "../../src/rules/model.js";

export const NODES: NodeInfo[] = [
  { name: "n1", addresses: ["172.18.0.2", "10.244.1.1"] },
  { name: "n2", addresses: ["172.18.0.3", "10.244.2.1"] },
];

function port(over: Partial<GenServicePort>): GenServicePort {
  return {
    namespace: "default",
    name: "web",
    portName: "http",
    protocol: "TCP",
    clusterIP: "10.96.0.10",
    port: 80,
    nodePort: null,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: null,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: [],
    ...over,
  };
}

const ep = (ip: string, nodeName: string) => ({
  ip,
  port: 8080,
  ready: true,
  serving: true,
  terminating: false,
  nodeName,
});

/** web: 10.96.0.10:80 and NodePort 30080 → 10.244.1.5:8080 (n1), 10.244.2.5:8080 (n2); empty: 10.96.0.20:80, no endpoints. */
export const PORTS: GenServicePort[] = [
  port({ nodePort: 30080, endpoints: [ep("10.244.1.5", "n1"), ep("10.244.2.5", "n2")] }),
  port({ name: "empty", clusterIP: "10.96.0.20" }),
];

export function rulesFor(node: NodeInfo, ports: GenServicePort[] = PORTS): RuleSet {
  const text = generateIptablesRestore(ports, {
    name: node.name,
    nodeIPs: [node.addresses[0] ?? ""],
    clusterCIDR: "10.244.0.0/16",
  });
  return parseIptablesSave(text, { source: `${node.name}.rules` });
}

export interface World {
  legs?: LegView[];
  translations?: TranslationView[];
  conntrack?: ConntrackView[];
  skew?: number;
  ports?: GenServicePort[];
}

export function run(world: World): Connection[] {
  const parsed = new Map<number, RuleSet>();
  const views = NODES.map((n, i) => {
    const rs = rulesFor(n, world.ports);
    parsed.set(i + 1, rs);
    return ruleSetView(i + 1, n.name, 0, rs);
  });
  const addrs = new Map(NODES.map((n) => [n.name, n.addresses]));
  const out: Connection[] = [];
  const legs = [...(world.legs ?? [])].sort((a, b) => a.firstTs - b.firstTs);
  const trs = [...(world.translations ?? [])].sort((a, b) => a.firstTs - b.firstTs);
  reconstruct(
    {
      events: mergeByTime(legs, trs),
      conntrack: world.conntrack ?? [],
      services: new ServiceIndex(
        NODES,
        views.map((v) => v.services),
      ),
      rulesets: new RuleSetTimeline(views),
      simulator: netfilterSimulator(parsed, views, addrs),
      ...(world.skew === undefined ? {} : { skew: world.skew }),
    },
    (c) => out.push(c),
  );
  return out.sort((a, b) => a.id - b.id);
}

let legId = 1;
/** A leg "src:sport>dst:dport" seen on node at t. */
export function leg(node: string, tuple: string, t: number, over: Partial<LegView> = {}): LegView {
  const m = /^(.+):(\d+)>(.+):(\d+)$/.exec(tuple);
  if (m === null) throw new Error(tuple);
  return {
    kind: "leg",
    id: legId++,
    node,
    iface: null,
    proto: 6,
    origIp: m[1] ?? "",
    origPort: Number(m[2]),
    respIp: m[3] ?? "",
    respPort: Number(m[4]),
    firstTs: t,
    lastTs: t + 0.01,
    origPackets: 5,
    respPackets: 4,
    connState: "SF",
    history: "ShADadFf",
    direction: "in",
    icmpErrors: {},
    ...over,
  };
}

function tuple(text: string) {
  const m = /^(.+):(\d+)>(.+):(\d+)$/.exec(text);
  if (m === null) throw new Error(text);
  return {
    proto: 6,
    srcIp: m[1] ?? "",
    srcPort: Number(m[2]),
    dstIp: m[3] ?? "",
    dstPort: Number(m[4]),
  };
}

let trId = 1;
export function translation(node: string, pre: string, post: string, t: number): TranslationView {
  return {
    kind: "translation",
    id: trId++,
    node,
    pre: tuple(pre),
    post: tuple(post),
    firstTs: t,
    lastTs: t + 0.01,
    packets: 5,
  };
}

let ctId = 1;
export function conntrackEntry(
  node: string,
  orig: string,
  reply: string,
  takenAt = 100,
  proto = 6,
): ConntrackView {
  return {
    id: ctId++,
    node,
    takenAt,
    proto,
    orig: { ...tuple(orig), proto },
    reply: { ...tuple(reply), proto },
    state: "ESTABLISHED",
    timeout: 100,
  };
}
