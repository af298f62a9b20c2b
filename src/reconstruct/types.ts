/**
 * The narrow interface between the store/rules/simulator and the analysis. Reconstruction and
 * the checks only see these shapes; `load.ts` builds them from the database, tests build them by
 * hand, and nothing else has to change when a producer's schema moves.
 */

export type Proto = "tcp" | "udp" | "sctp";
export type Hook = "prerouting" | "output";

export interface AddrPort {
  ip: string;
  port: number;
}

export interface NodeInfo {
  name: string;
  /** Every address of the node (all interfaces), for NodePorts and `addrtype LOCAL`. */
  addresses: string[];
}

/** One leg as stored (see src/flow/types.ts LegRecord), with the node that captured it. */
export interface LegView {
  kind: "leg";
  id: number;
  node: string;
  iface: string | null;
  proto: number;
  origIp: string;
  origPort: number;
  respIp: string;
  respPort: number;
  firstTs: number;
  lastTs: number;
  origPackets: number;
  respPackets: number;
  connState: string;
  history: string;
  direction: "in" | "out" | "unknown";
  /** ICMP errors that quoted this leg, by "type/code". */
  icmpErrors: Record<string, number>;
}

export interface TupleView {
  proto: number;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

/** A NAT translation observed in one node's packet stream. */
export interface TranslationView {
  kind: "translation";
  id: number;
  node: string;
  pre: TupleView;
  post: TupleView;
  firstTs: number;
  lastTs: number;
  packets: number;
}

/** One `conntrack -L` entry: the kernel's own record of a translation. */
export interface ConntrackView {
  id: number;
  node: string;
  takenAt: number;
  proto: number;
  orig: TupleView;
  /** The reply direction as conntrack prints it: src is the endpoint, dst the client or SNAT. */
  reply: TupleView;
  state: string | null;
  /** Seconds left when dumped; null when unknown. */
  timeout: number | null;
}

export interface EndpointView {
  ip: string;
  port: number;
  /** Selection probability the rules give it (null for inventory endpoints). */
  probability: number | null;
  ready: boolean;
  node: string | null;
  /** The KUBE-SEP chain (rules) or null. */
  chain: string | null;
}

/** One Service port as the rules or the inventory describe it. */
export interface ServicePortView {
  /** "ns/name:port" (port name, or the number when unnamed). */
  key: string;
  proto: Proto;
  type: string | null;
  clusterIPs: string[];
  port: number;
  nodePort: number | null;
  externalIPs: string[];
  loadBalancerIPs: string[];
  /** ClientIP affinity timeout in seconds; null without affinity. */
  affinityTimeout: number | null;
  externalTrafficPolicy: "Cluster" | "Local" | null;
  endpoints: EndpointView[];
  /** ExternalName target, if any. */
  externalName: string | null;
  /** Service chain in the rules (KUBE-SVC-…), null for the inventory. */
  chain: string | null;
  /** Whether the rules masquerade off-cluster traffic (KUBE-MARK-MASQ on the SVC/EXT chain); null when unknown. */
  masquerades: boolean | null;
  /** The rules reject or drop traffic to it (no endpoints). */
  rejects: boolean;
  /** Service creation time (inventory metadata.creationTimestamp); null when unknown. */
  createdAt: number | null;
}

export interface RuleLine {
  table: string;
  chain: string;
  index: number;
  line: number;
  rule: string;
}

/** A node's rule set at a time, with the kube model extracted from it. */
export interface RuleSetView {
  id: number;
  node: string;
  /** iptables-save (4) or ip6tables-save (6): a dual-stack node has a rule set of each. */
  family: 4 | 6;
  takenAt: number;
  services: ServicePortView[];
  /** KUBE-SVC/SEP/EXT/FW chains nothing jumps to. */
  orphanChains: string[];
  /** The rules of a chain, for evidence; may return [] when the rule text is not at hand. */
  chainRules(chain: string): RuleLine[];
}

/** A Service as kubectl reported it (only what the checks need). */
export interface InventorySnapshot {
  takenAt: number;
  services: ServicePortView[];
  /** Names of Services ("ns/name") present, including ones without ports (ExternalName). */
  serviceNames: string[];
}

export interface DnsView {
  id: number;
  node: string;
  ts: number;
  clientIp: string;
  serverIp: string;
  isResponse: boolean;
  qname: string;
  qtype: string;
  rcode: string | null;
  answers: { name: string; type: string; data: string }[];
}

export interface PodEnvView {
  /** "ns/name" */
  pod: string;
  /** When the pod started (env is fixed then); null when unknown. */
  startedAt: number | null;
  vars: Record<string, string>;
  source: string;
}

export interface SimPacket {
  proto: Proto;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

export interface SimOutcome {
  verdict: "DNAT" | "ACCEPT" | "DROP" | "REJECT";
  /** "ip:port" the DNAT chose; null otherwise. */
  endpoint: string | null;
  probability: number;
  masquerade: boolean;
  snat: string | null;
  path: RuleLine[];
}

export interface SimResult {
  outcomes: SimOutcome[];
  unmodelled: string[];
}

/** What reconstruction needs from the netfilter simulator. */
export interface Simulator {
  simulate(rulesetId: number, hook: Hook, packet: SimPacket): SimResult;
}

export type Verdict =
  | "consistent"
  | "unexpected-endpoint"
  | "rejected"
  | "dropped"
  | "blackholed"
  | "refused"
  | "untranslated"
  | "predicted"
  | "vip-inferred"
  | "unjudged";

export const VERDICTS: Record<Verdict, string> = {
  consistent: "the observed endpoint is one the rules in force could choose",
  "unexpected-endpoint": "translated to an endpoint the rules in force could not choose",
  rejected: "the rules reject it (or the client got RST / ICMP unreachable before any DNAT)",
  dropped: "a filter rule dropped it and no answer came",
  blackholed: "translated, never answered (Zeek S0 after DNAT)",
  refused: "translated, and the endpoint answered with RST or ICMP unreachable",
  untranslated: "VIP traffic left the node unchanged",
  predicted: "no post-NAT leg captured: the simulator's distribution is the answer",
  "vip-inferred":
    "only the post-NAT side was seen and no rule set judges it; the VIP comes from conntrack",
  unjudged: "no rule set for the node at that time: nothing to judge against",
};

export interface Candidate {
  endpoint: string;
  probability: number;
}

/** One reconstructed connection: a set of legs with one verdict. */
export interface Connection {
  id: number;
  proto: Proto;
  client: AddrPort;
  vip: AddrPort;
  service: string | null;
  node: string | null;
  hook: Hook;
  endpoint: AddrPort | null;
  snat: AddrPort | null;
  verdict: Verdict;
  start: number;
  end: number;
  /** Chains of the rule path that explains the observed outcome. */
  path: string[];
  candidates: Candidate[];
  /** How the VIP is known: seen before NAT in a capture, from a translation, from conntrack. */
  vipFrom: "capture" | "translation" | "conntrack";
  /** Whether any leg of it saw an answer from the server side. */
  answered: boolean;
  /** What the client got instead of an answer: a TCP RST, an ICMP unreachable, or nothing. */
  refusal: "rst" | "icmp" | null;
  /** Zeek conn_state of the leg nearest the endpoint (post-NAT if seen, else pre-NAT). */
  connState: string | null;
  rulesetId: number | null;
  legIds: number[];
  translationIds: number[];
  conntrackIds: number[];
}

export function protoName(proto: number): Proto | null {
  return proto === 6 ? "tcp" : proto === 17 ? "udp" : proto === 132 ? "sctp" : null;
}

export function protoNumber(proto: Proto): number {
  return proto === "tcp" ? 6 : proto === "udp" ? 17 : 132;
}

export function addrPortText(ap: AddrPort): string {
  return ap.ip.includes(":") ? `[${ap.ip}]:${ap.port}` : `${ap.ip}:${ap.port}`;
}
