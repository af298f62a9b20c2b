/*
 * The files a lab run writes besides the raw material: bundle.json (what the bundle holds),
 * truth.json (what really happened to each connection) and expected.json (what an analysis must
 * report). Their shapes are a contract with the ingest and analysis code and their tests.
 */

/** One connection as the client and the answering pod saw it. Times: epoch seconds. */
export interface TruthConnection {
  id: number;
  /** 1-based index of the scenario step that sent it. */
  step: number;
  proto: "tcp" | "udp";
  /** "ip:port" the client used (before any SNAT). */
  client: string;
  clientName: string;
  /** "ip:port" aimed at: ClusterIP, node IP + NodePort, LoadBalancer or external IP. */
  vip: string;
  via: "clusterIP" | "nodePort" | "loadBalancer" | "externalIP";
  /** "ns/name:port" (port name, or number for an unnamed port). */
  service: string;
  /** The node whose rules translated it. */
  node: string;
  /** Endpoint "ip:port" that answered (from the server's answer); null when unanswered. */
  endpoint: string | null;
  endpointPod: string | null;
  /** Source "ip:port" the pod saw when it differs from the client's: the SNAT. */
  snat: string | null;
  start: number;
  end: number;
  /**
   * Requests in this connection: 1 for TCP; for UDP from a fixed port, consecutive datagrams
   * answered by the same pod are one connection (one conntrack entry), like a resolver's socket.
   */
  requests: number;
  answers: number;
  answered: boolean;
  /** Client-side error (ECONNREFUSED, ETIMEDOUT…) when unanswered. */
  error: string | null;
  /** The same connection in the node's conntrack table at the end of the run, if still there. */
  conntrack: { endpoint: string; snat: string | null } | null;
  /**
   * Another connection of this trace used the same client ip:port to the same VIP (the kernel
   * reuses ephemeral ports): tell them apart by time. Only the last has `conntrack`.
   */
  sharedTuple: boolean;
  /** The verdict an analysis should give, judged against the rules loaded on the node. */
  expectedVerdict: string;
}

export interface LabEvent {
  kind: "createService" | "deleteService" | "removeEndpoint" | "addEndpoint" | "flushConntrack";
  service: string | null;
  pod: string | null;
  /** When the API server state changed (epoch seconds). */
  time: number;
  /** Nodes that reloaded their rules (or flushed conntrack) for it. */
  appliedOn: string[];
  /** Nodes that did not (a stuck kube-proxy: the stale-rules fault). */
  notAppliedOn: string[];
}

/**
 * One DNS lookup of a `resolve` step, as the client saw it. Its UDP exchange with the kube-dns
 * ClusterIP is also a connection (`connection` is its id in `connections`).
 */
export interface TruthLookup {
  connection: number | null;
  step: number;
  clientName: string;
  node: string;
  /** The name asked for, as sent. */
  name: string;
  qtype: string;
  /** The query's DNS id. */
  id: number;
  start: number;
  end: number;
  answered: boolean;
  /** NOERROR, NXDOMAIN, …; null when unanswered. */
  rcode: string | null;
  /** Answer records as "TYPE data", e.g. "A 10.96.0.10". */
  answers: string[];
  /** The DNS pod that answered (from its own log), null when unknown. */
  answeredBy: string | null;
}

export interface TruthFile {
  scenario: string;
  generatedBy: string;
  events: LabEvent[];
  connections: TruthConnection[];
  /** DNS lookups (scenarios with cluster DNS and `resolve` steps). */
  lookups?: TruthLookup[];
}

export interface ExpectedFinding {
  check: string;
  /** The least severity an analysis must give it. */
  severity: "error" | "warning" | "info";
  service: string | null;
  node: string | null;
  why: string;
}

export interface ExpectedFile {
  scenario: string;
  /** Every finding listed must be reported; clean scenarios list none and allow no warnings. */
  findings: ExpectedFinding[];
  /** Connections by expected verdict. */
  verdicts: Record<string, number>;
  connections: number;
  notes: string[];
}

export interface BundleManifest {
  format: "svctrace-bundle";
  version: 1;
  name: string;
  description: string;
  created: string;
  timeZone: string;
  clusterCIDR: string;
  serviceCIDR: string;
  nodes: { name: string; addresses: string[]; podCIDR: string; podGateway: string }[];
  clients: { name: string; address: string; node: string | null; hostNetwork: boolean }[];
  pods: { name: string; namespace: string; node: string; ip: string }[];
  captures: { observer: string; file: string; packets: number; dropped: number }[];
  snapshots: {
    time: number;
    kind: "inventory" | "iptables" | "conntrack";
    node: string | null;
    file: string;
  }[];
  lab?: { scenario: string; prefix: string; command: string; faults: unknown };
}
