/**
 * Public types of the netfilter simulator: what goes in (a packet and what is known about the
 * node) and what comes out (every outcome with its probability and the rules that explain it).
 */

import type { TableName } from "../rules/model.js";

export type SimProtocol = "tcp" | "udp" | "sctp" | "icmp" | "icmpv6";

/** Connection-tracking state of the packet's connection, as `-m conntrack --ctstate` sees it. */
export type CtState = "NEW" | "ESTABLISHED" | "RELATED" | "INVALID" | "UNTRACKED";

export interface SimPacket {
  /** Taken from the addresses when omitted. */
  family?: 4 | 6;
  proto: SimProtocol;
  src: string;
  sport?: number;
  dst: string;
  dport: number;
  /** Interface the packet came in on (PREROUTING, INPUT, FORWARD); unknown when omitted. */
  inIface?: string;
  /** Interface the packet leaves by (OUTPUT, FORWARD, POSTROUTING); unknown when omitted. */
  outIface?: string;
  /** Defaults to NEW: the first packet of a connection, the only one the nat table sees. */
  ctState?: CtState;
  /** nfmark on entry (0 when omitted). */
  mark?: number;
  /** Connection mark on entry (0 when omitted). */
  ctMark?: number;
  /** TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32); SYN for NEW, ACK otherwise. */
  tcpFlags?: number;
  /** ICMP / ICMPv6 type and code; echo request when omitted. */
  icmpType?: number;
  icmpCode?: number;
}

/** `-m recent` lists the node holds: list name → source addresses in it. */
export type AffinityState = Map<string, Set<string>>;

/** Membership test for `-m set --match-set NAME dirs`; undefined when the set is unknown. */
export interface IpSetLookup {
  test(
    name: string,
    values: ReadonlyArray<{ ip?: string; port?: number; proto?: string }>,
  ): boolean | undefined;
}

export interface NodeContext {
  /** The node's own addresses (`addrtype LOCAL`, routing: local delivery vs forward). */
  localAddresses: string[];
  /** Interface → its addresses, for `--limit-iface-in/out`, MASQUERADE and REDIRECT. */
  interfaces?: Record<string, string[]>;
  /**
   * `-m recent` state. Omitted: each `--rcheck/--update` keeps both branches (weight 1/2 each)
   * and marks the outcomes `assumed`. An empty map: nothing listed (a client's first connection).
   */
  affinity?: AffinityState;
  ipsets?: IpSetLookup;
}

export type Hook = "prerouting" | "output";

export interface SimOptions {
  /** Where the packet enters. Default: OUTPUT when the source is a local address, else PREROUTING. */
  hook?: Hook;
  /**
   * "kernel" (default): walk the hooks as the kernel does. "upstream": reproduce kube-proxy's
   * unit-test tracer (pkg/proxy/iptables/proxier_test.go tracePacket): nat PREROUTING, then the
   * filter chains KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL;
   * conntrack, mark and recent matches never match; masquerade means KUBE-MARK-MASQ was reached.
   */
  mode?: "kernel" | "upstream";
  /** Stop with an error beyond this many outcomes (runaway branching). Default 100000. */
  maxOutcomes?: number;
}

export type Verdict = "DNAT" | "ACCEPT" | "DROP" | "REJECT";

export interface PathStep {
  table: TableName;
  chain: string;
  /** 1-based rule index in its chain. */
  index: number;
  /** Source line of the rule. */
  line: number;
  rule: string;
}

export interface UnmodelledItem {
  line: number;
  table: TableName;
  chain: string;
  /** Module or target name, e.g. "physdev" or "TPROXY". */
  what: string;
  rule: string;
}

export interface Outcome {
  verdict: Verdict;
  /** Whether a rule's target or a built-in chain's policy made the final decision. */
  decidedBy: "rule" | "policy";
  /** Destination after DNAT as "ip:port" ("[v6]:port"); null when not translated. */
  endpoint: string | null;
  probability: number;
  masquerade: boolean;
  /** SNAT --to-source address (or range text); null without SNAT. */
  snat: string | null;
  /** REJECT's --reject-with (default icmp-port-unreachable), null unless verdict is REJECT. */
  rejectWith: string | null;
  path: PathStep[];
  /** Hook the packet entered at. */
  hook: Hook;
  /** After the routing decision: delivered to the node itself or forwarded. */
  delivery: "local" | "forward";
  /** What filter decided for a translated packet (DNAT verdicts keep the filter answer here). */
  filterVerdict: "ACCEPT" | "DROP" | "REJECT";
  /** The packet's mark when it left (or was dropped). */
  mark: number;
  /** Assumptions this outcome rests on (unknown interface, unknown `recent` state, …). */
  assumed: string[];
  /** True when an unmodelled match or target lies on this outcome's path. */
  unmodelled: boolean;
}

export interface SimResult {
  outcomes: Outcome[];
  /** Every unmodelled match or target the packet met, once each. */
  unmodelled: UnmodelledItem[];
}
