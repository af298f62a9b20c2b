import type {
  InventoryTimeline,
  RuleSetTimeline,
  ServiceIndex,
} from "../reconstruct/index-services.js";
import type {
  Connection,
  ConntrackView,
  DnsView,
  NodeInfo,
  PodEnvView,
} from "../reconstruct/types.js";

export type Severity = "error" | "warning" | "info";
export const SEVERITIES: readonly Severity[] = ["error", "warning", "info"];

interface FindingBase {
  severity: Severity;
  /** "ns/name:port", or "ns/name" when the port does not matter; null when no one Service. */
  service: string | null;
  node: string | null;
  /** Time range the finding covers (epoch seconds); null when it is timeless (static rules). */
  from: number | null;
  to: number | null;
  /** One sentence a person can act on. */
  summary: string;
}

type Evidence = Record<string, unknown>;

/** Every finding kind, keyed by check id, with the evidence it carries. */
export type Finding =
  | (FindingBase & {
      check: "fairness";
      evidence: {
        kind: "traffic" | "rules";
        counts?: Record<string, number>;
        expected: Record<string, number>;
        samples?: number;
        chiSquare?: number;
        pValue?: number;
        maxRelativeDeviation: number;
        jainIndex?: number;
        rules?: string[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "affinity";
      evidence: {
        clients: number;
        violations: number;
        timeout: number;
        examples: { client: string; from: string; to: string; connections: number[] }[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "stale-rules";
      evidence: {
        kind:
          | "removed-service"
          | "removed-endpoint"
          | "orphan-chain"
          | "unlisted-endpoint"
          | "node-disagreement";
        removedAt?: number;
        chains?: string[];
        endpoints?: string[];
        rules?: string[];
        rulesetIds?: number[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "post-removal-traffic";
      evidence: {
        removed: "service" | "endpoint";
        endpoint?: string;
        removedAt: number;
        connections: number;
        lastTranslation: number;
        latencySeconds: number;
        connectionIds: number[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "stale-conntrack";
      evidence: {
        endpoint: string;
        removedAt: number | null;
        connectionIds?: number[];
        conntrack?: string[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "no-endpoints";
      evidence: {
        connections: number;
        answered: number;
        verdicts: Record<string, number>;
        connectionIds: number[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "blackholed-endpoints";
      evidence: {
        endpoint: string;
        connections: number;
        unanswered: number;
        refused: number;
        connectionIds: number[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "dns";
      evidence: {
        kind: "wrong-address" | "wrong-cname" | "nxdomain-for-existing" | "answer-for-deleted";
        qname: string;
        answers: string[];
        expected: string[];
        dnsIds: number[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "env-discovery";
      evidence: {
        pod: string;
        kind: "wrong-address" | "deleted-service" | "created-after-start";
        variable?: string;
        value?: string;
        expected?: string[];
      } & Evidence;
    })
  | (FindingBase & {
      check: "nodeport-range";
      evidence: { nodePort: number; range: [number, number] } & Evidence;
    })
  | (FindingBase & {
      check: "sanity";
      evidence: {
        kind: "duplicate-vip" | "missing-masquerade";
        vip?: string;
        services?: string[];
        connectionIds?: number[];
      } & Evidence;
    });

export type CheckId = Finding["check"];

/** What each finding kind means: a new kind does not compile until it is described here. */
export const CHECK_METADATA: Record<CheckId, { title: string; description: string }> = {
  fairness: {
    title: "Load-balancing fairness",
    description:
      "New connections per endpoint against the probabilities the rules give (chi-square, largest relative deviation, Jain's index), and rules whose probabilities do not split evenly.",
  },
  affinity: {
    title: "Session affinity",
    description:
      "ClientIP-affinity Services where one client reached two endpoints within the affinity timeout.",
  },
  "stale-rules": {
    title: "Stale rules",
    description:
      "Rules for removed Services still on a node after the grace period, chains nothing jumps to, endpoints no EndpointSlice lists, nodes that disagree.",
  },
  "post-removal-traffic": {
    title: "Traffic after removal",
    description:
      "Connections translated by a removed Service's rules or to a removed endpoint, and how long after removal the last one happened (programming latency seen from the wire).",
  },
  "stale-conntrack": {
    title: "Stale conntrack",
    description:
      "Flows that keep going to a removed endpoint because the conntrack entry outlived it; conntrack records whose reply source is no current endpoint of the VIP.",
  },
  "no-endpoints": {
    title: "Traffic to Services without endpoints",
    description:
      "Connections the rules reject or drop, and whether clients saw the RST/ICMP the rules imply.",
  },
  "blackholed-endpoints": {
    title: "Blackholed endpoints",
    description:
      "Endpoints whose translated connections go unanswered (Zeek S0) or are refused with RST/ICMP unreachable.",
  },
  dns: {
    title: "DNS disagreement",
    description:
      "Answers for Service names that disagree with the Service's ClusterIP or ExternalName, NXDOMAIN for existing Services, answers for deleted ones.",
  },
  "env-discovery": {
    title: "Environment-variable discovery",
    description:
      "Pod <SVC>_SERVICE_HOST variables that point at an address that is not (or no longer) the Service's ClusterIP, and Services a pod cannot discover this way.",
  },
  "nodeport-range": {
    title: "NodePort range",
    description: "NodePorts outside the configured service-node-port-range.",
  },
  sanity: {
    title: "Static sanity",
    description:
      "Duplicate VIPs across Services; masquerade missing where kube-proxy always adds it.",
  },
};

export interface CheckOptions {
  /** Fewest connections in a group before fairness judges it. */
  minSamples: number;
  /** Fewest expected connections per endpoint (chi-square's rule of thumb). */
  minExpected: number;
  /** Significance level for fairness. */
  alpha: number;
  /** Smallest largest-relative-deviation worth reporting. */
  minDeviation: number;
  /** Seconds a change may take to reach every node's rules (kube-proxy sync period + slack). */
  graceSeconds: number;
  nodePortRange: [number, number];
  clusterDomain: string;
}

export const DEFAULT_CHECK_OPTIONS: CheckOptions = {
  minSamples: 30,
  minExpected: 5,
  alpha: 0.001,
  minDeviation: 0.2,
  graceSeconds: 5,
  nodePortRange: [30000, 32767],
  clusterDomain: "cluster.local",
};

export interface CheckContext {
  nodes: readonly NodeInfo[];
  services: ServiceIndex;
  rulesets: RuleSetTimeline;
  inventory: InventoryTimeline;
  /**
   * Connections ordered by start (only those with one of `verdicts` when given); may be called
   * several times. Each call may read millions of rows: checks that can be a `ConnectionPass`
   * are one, and the others call it only when they must (affinity needs start order).
   */
  connections(verdicts?: readonly Connection["verdict"][]): Iterable<Connection>;
  conntrack: readonly ConntrackView[];
  dns: readonly DnsView[];
  podEnvs: readonly PodEnvView[];
  /** Time span of the data (captures); null when unknown. */
  range: { from: number; to: number } | null;
  options: CheckOptions;
}

/**
 * A check that looks at every connection once, in no particular order: `analyze` feeds each
 * connection to every pass as reconstruction finishes it (no second read of millions of rows);
 * `runChecks` feeds one read of the stored connections. A pass must not depend on the order:
 * time ranges are min/max, examples the smallest ids (`keepSmallest`).
 */
export interface ConnectionPass<F extends Finding = Finding> {
  /** Only connections with one of these verdicts (none when empty); all when undefined. */
  verdicts?: readonly Connection["verdict"][];
  visit(connection: Connection): void;
  /** The check's findings once every connection was visited. */
  finish(): F[];
}

export interface Check<K extends CheckId = CheckId> {
  id: K;
  title: string;
  description: string;
  run(context: CheckContext): Extract<Finding, { check: K }>[];
  /** When present, `run` is `runPass(context, pass(context))`. */
  pass?(context: CheckContext): ConnectionPass<Extract<Finding, { check: K }>>;
}

/** Run one pass on its own. */
export function runPass<F extends Finding>(ctx: CheckContext, pass: ConnectionPass<F>): F[] {
  for (const c of ctx.connections(pass.verdicts)) pass.visit(c);
  return pass.finish();
}

export function defineCheck<K extends CheckId>(check: Check<K>): Check<K> {
  return check;
}

/** A short "ns/name" from "ns/name:port". */
export function serviceName(key: string): string {
  const colon = key.indexOf(":");
  return colon < 0 ? key : key.slice(0, colon);
}
