/**
 * kube-proxy's iptables mode, re-implemented as a pure function: Services and endpoints in,
 * the `iptables-restore` input kube-proxy would write for one node out.
 *
 * It follows upstream `pkg/proxy/iptables/proxier.go` (syncProxyRules, full sync) and
 * `pkg/proxy/topology.go` (CategorizeEndpoints) rule for rule, so that lab traces carry the
 * same chains, hashes, comments and probabilities as a real node. Differences from upstream
 * are options, not accidents (see GenOptions), and the faults reproduce known bugs on purpose.
 * Topology hints are not modelled: every ready endpoint is eligible on every node.
 */

import { endpointChainName, portProtoHash } from "../rules/kube-names.js";
import { InputError } from "../util/errors.js";
import {
  cidrContains,
  type Family,
  formatAddrPort,
  formatCidr,
  ipFamily,
  normalizeIP,
  parseCidr,
} from "../util/ip.js";

export interface GenEndpoint {
  ip: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName: string | null;
}

export interface GenServicePort {
  namespace: string;
  name: string;
  /** The port's name in the Service ("" for an unnamed single port). */
  portName: string;
  protocol: "TCP" | "UDP" | "SCTP";
  /** null for headless / ExternalName Services: kube-proxy writes nothing for them. */
  clusterIP: string | null;
  port: number;
  nodePort: number | null;
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  /** ClientIP session affinity timeout in seconds; null when sessionAffinity is None. */
  sessionAffinityTimeout: number | null;
  externalTrafficPolicy: "Cluster" | "Local";
  internalTrafficPolicy: "Cluster" | "Local";
  endpoints: GenEndpoint[];
  /** spec.healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local). */
  healthCheckNodePort?: number | null;
}

export interface GenNode {
  name: string;
  /** The node's addresses; the first of the rule set's family is its primary node IP. */
  nodeIPs: string[];
  /** The pod CIDR of the whole cluster (kube-proxy's --cluster-cidr local-traffic detector). */
  clusterCIDR: string;
}

export interface GenFaults {
  /** Write 1/n on every endpoint rule instead of 1/n, 1/(n−1), …: the first endpoints get too little. */
  probabilities?: "one-over-n";
  /** Leave out every jump to KUBE-MARK-MASQ: nothing is masqueraded. */
  noMasquerade?: boolean;
}

export interface GenOptions {
  /**
   * Also write the jump rules kube-proxy installs outside iptables-restore (`EnsureRule`,
   * PREROUTING → KUBE-SERVICES and friends) with the built-in chains, so that a plain
   * (flushing) `iptables-restore` of the output gives a working node, plus the empty
   * KUBE-PROXY-CANARY chains (in mangle, filter, nat) a running kube-proxy keeps. Default true. With
   * false the output is exactly what kube-proxy feeds `iptables-restore --noflush`.
   */
  jumpRules?: boolean;
  /** `MASQUERADE --random-fully` (kube-proxy adds it when iptables supports it). Default true. */
  randomFully?: boolean;
  /** --iptables-localhost-nodeports (IPv4 only). Default true, as upstream. */
  localhostNodePorts?: boolean;
  /**
   * --nodeport-addresses: CIDRs of the node addresses NodePorts answer on (other-family ones are
   * ignored). Default: all local addresses (`-m addrtype --dst-type LOCAL`). The node's addresses
   * are GenNode.nodeIPs plus loopback.
   */
  nodePortAddresses?: string[];
  /**
   * Write `-m nfacct` matches as kube-proxy does when its nfacct counters exist. Default false:
   * the match needs the `xt_nfacct` module and counters created beforehand (`nfacct add`).
   */
  nfacct?: boolean;
  /** --masquerade-bit. Default 14 (mark 0x00004000). */
  masqueradeBit?: number;
  /** The mark's text, overriding masqueradeBit (upstream's unit tests use "0x4000"). */
  masqueradeMark?: string;
  /**
   * Tell pod traffic by the cluster CIDR (kube-proxy's --cluster-cidr detector). Default true.
   * false is kube-proxy without a local-traffic detector: no off-cluster masquerade on ClusterIPs
   * and no pod short-circuit for Local external policy (the CIDR then only picks the family).
   */
  localDetector?: boolean;
  /** --masquerade-all: masquerade every ClusterIP connection. Default false. */
  masqueradeAll?: boolean;
  /** net.netfilter.nf_conntrack_tcp_be_liberal=1 on the node: no INVALID drop rule. Default false. */
  conntrackTCPLiberal?: boolean;
}

/** Above this many endpoints kube-proxy drops per-endpoint comments (largeClusterMode). */
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

const LOCALHOST_NODEPORTS_COUNTER = "localhost_nps_accepted_pkts";
const INVALID_DROPPED_COUNTER = "ct_state_invalid_dropped_pkts";

/** "ns/name:port", or "ns/name" for an unnamed port (proxy.ServicePortName.String()). */
export function servicePortNameString(namespace: string, name: string, portName: string): string {
  return portName === "" ? `${namespace}/${name}` : `${namespace}/${name}:${portName}`;
}

// The chain names come from the rules module, so generator and parser can never disagree.
export { endpointChainName, portProtoHash };

/** `%0.10f` of 1/n, as kube-proxy's computeProbability. */
export function computeProbability(n: number): string {
  // Both Go and toFixed round the exact binary value; they differ only on an exact tie, where Go
  // rounds half to even and toFixed up. 1/n is an exact tie at 10 decimals only for n = 2^11.
  if (n === 2048) return "0.0004882812";
  return (1 / n).toFixed(10);
}

interface Ep {
  text: string;
  ip: string;
  chain: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  local: boolean;
}

interface Categorized {
  cluster: Ep[];
  local: Ep[];
  allReachable: Ep[];
  hasAny: boolean;
}

/** CategorizeEndpoints without topology hints. */
function categorize(eps: Ep[], usesCluster: boolean, usesLocal: boolean): Categorized {
  let cluster: Ep[] = [];
  let local: Ep[] = [];
  let hasAny = false;
  let servingTerminating = false;
  if (usesCluster) {
    cluster = eps.filter((e) => e.ready);
    // No ready endpoint anywhere: fall back to serving+terminating ones rather than drop.
    if (cluster.length === 0) cluster = eps.filter((e) => e.serving && e.terminating);
    if (cluster.length > 0) hasAny = true;
  }
  if (!usesLocal) return { cluster, local, allReachable: cluster, hasAny };
  let localReady = false;
  let localServingTerminating = false;
  for (const e of eps) {
    if (e.ready) {
      hasAny = true;
      if (e.local) localReady = true;
    } else if (e.serving && e.terminating) {
      hasAny = true;
      if (e.local) localServingTerminating = true;
    }
  }
  if (localReady) local = eps.filter((e) => e.local && e.ready);
  else if (localServingTerminating) {
    servingTerminating = true;
    local = eps.filter((e) => e.local && e.serving && e.terminating);
  }
  if (!usesCluster) return { cluster, local, allReachable: local, hasAny };
  if (!servingTerminating) return { cluster, local, allReachable: cluster, hasAny };
  // Upstream merges through a map (random order); sorted here so output is deterministic.
  const merged = new Map<string, Ep>();
  for (const e of cluster) merged.set(e.text, e);
  for (const e of local) merged.set(e.text, e);
  const allReachable = [...merged.values()].sort((a, b) =>
    a.text < b.text ? -1 : a.text > b.text ? 1 : 0,
  );
  return { cluster, local, allReachable, hasAny };
}

/** Quote an argument the way kube-proxy does for comments: always double quotes when it has spaces. */
function q(text: string): string {
  return `"${text}"`;
}

interface JumpChain {
  table: "filter" | "nat";
  dst: string;
  src: string;
  comment: string;
  extra: string;
}

// proxier.go iptablesJumpChains + iptablesKubeletJumpChains, in that order.
const JUMP_CHAINS: JumpChain[] = [
  {
    table: "filter",
    dst: "KUBE-EXTERNAL-SERVICES",
    src: "INPUT",
    comment: "kubernetes externally-visible service portals",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-EXTERNAL-SERVICES",
    src: "FORWARD",
    comment: "kubernetes externally-visible service portals",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-NODEPORTS",
    src: "INPUT",
    comment: "kubernetes health check service ports",
    extra: "",
  },
  {
    table: "filter",
    dst: "KUBE-SERVICES",
    src: "FORWARD",
    comment: "kubernetes service portals",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-SERVICES",
    src: "OUTPUT",
    comment: "kubernetes service portals",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-FORWARD",
    src: "FORWARD",
    comment: "kubernetes forwarding rules",
    extra: "",
  },
  {
    table: "filter",
    dst: "KUBE-PROXY-FIREWALL",
    src: "INPUT",
    comment: "kubernetes load balancer firewall",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-PROXY-FIREWALL",
    src: "OUTPUT",
    comment: "kubernetes load balancer firewall",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "filter",
    dst: "KUBE-PROXY-FIREWALL",
    src: "FORWARD",
    comment: "kubernetes load balancer firewall",
    extra: "-m conntrack --ctstate NEW",
  },
  {
    table: "nat",
    dst: "KUBE-SERVICES",
    src: "OUTPUT",
    comment: "kubernetes service portals",
    extra: "",
  },
  {
    table: "nat",
    dst: "KUBE-SERVICES",
    src: "PREROUTING",
    comment: "kubernetes service portals",
    extra: "",
  },
  {
    table: "nat",
    dst: "KUBE-POSTROUTING",
    src: "POSTROUTING",
    comment: "kubernetes postrouting rules",
    extra: "",
  },
  { table: "filter", dst: "KUBE-FIREWALL", src: "INPUT", comment: "", extra: "" },
  { table: "filter", dst: "KUBE-FIREWALL", src: "OUTPUT", comment: "", extra: "" },
];

const BUILTIN: Record<"filter" | "nat", string[]> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
};

/** The jump rules as they end up after kube-proxy's EnsureRule(Prepend) on a fresh node. */
function jumpRules(table: "filter" | "nat"): string[] {
  const out: string[] = [];
  for (const j of JUMP_CHAINS) {
    if (j.table !== table) continue;
    const parts = ["-A", j.src];
    if (j.extra !== "") parts.push(j.extra);
    if (j.comment !== "") parts.push("-m comment --comment", q(j.comment));
    parts.push("-j", j.dst);
    // Each is prepended in turn, so the last one ensured ends up first.
    out.unshift(parts.join(" "));
  }
  // unshift reversed the order across chains too; iptables-restore only cares within a chain.
  return out;
}

function normIP(text: string, what: string, svc: string): string {
  const n = normalizeIP(text.trim());
  if (n === null)
    throw new InputError(`${svc}: ${what} ${JSON.stringify(text)} is not an IP address`);
  return n;
}

/**
 * The `iptables-restore` input kube-proxy (iptables mode, full sync) writes on `node` for these
 * service ports: `*filter` then `*nat`, each ending in COMMIT. One IP family per call, taken
 * from the node's cluster CIDR; addresses of the other family are ignored, as kube-proxy's
 * per-family proxier does.
 */
export function generateIptablesRestore(
  ports: GenServicePort[],
  node: GenNode,
  faults: GenFaults = {},
  options: GenOptions = {},
): string {
  const jumps = options.jumpRules ?? true;
  const randomFully = options.randomFully ?? true;
  const nfacct = options.nfacct ?? false;
  const masqueradeAll = options.masqueradeAll ?? false;
  const localDetector = options.localDetector ?? true;
  const conntrackTCPLiberal = options.conntrackTCPLiberal ?? false;
  const masqueradeBit = options.masqueradeBit ?? 14;
  if (!Number.isInteger(masqueradeBit) || masqueradeBit < 0 || masqueradeBit > 31) {
    throw new InputError(`masquerade bit ${masqueradeBit} is not in 0..31`);
  }
  const clusterCidr = parseCidr(node.clusterCIDR);
  if (clusterCidr === null) {
    throw new InputError(
      `node ${node.name}: cluster CIDR ${JSON.stringify(node.clusterCIDR)} is not a CIDR`,
    );
  }
  const family: Family = clusterCidr.family;
  const isIPv6 = family === 6;
  const localhostNodePorts = !isIPv6 && (options.localhostNodePorts ?? true);
  const clusterCidrText = formatCidr(clusterCidr);
  const nodeIPs = node.nodeIPs
    .map((ip) => normIP(ip, "node IP", `node ${node.name}`))
    .filter((ip) => ipFamily(ip) === family);
  // --nodeport-addresses of this family; null when NodePorts answer on every local address.
  let nodePortCidrs: NonNullable<ReturnType<typeof parseCidr>>[] | null = null;
  if (options.nodePortAddresses !== undefined) {
    const cidrs = options.nodePortAddresses.map((text) => {
      const c = parseCidr(text.trim());
      if (c === null)
        throw new InputError(`node port address ${JSON.stringify(text)} is not a CIDR`);
      return c;
    });
    const mine = cidrs.filter((c) => c.family === family);
    if (mine.length > 0 && !mine.some((c) => c.prefix === 0)) nodePortCidrs = mine;
  }
  // Go's %#08x pads the digits, not the whole field, to 8: kube-proxy writes "0x00004000".
  const mark = options.masqueradeMark ?? `0x${(2 ** masqueradeBit).toString(16).padStart(8, "0")}`;
  const skipMasq = faults.noMasquerade === true;

  const filterChains: string[] = [];
  const filterRules: string[] = [];
  const natChains: string[] = [];
  const natRules: string[] = [];
  const chainLine = (name: string) => `:${name} - [0:0]`;

  for (const c of [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FORWARD",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
  ]) {
    filterChains.push(chainLine(c));
  }
  for (const c of ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]) {
    natChains.push(chainLine(c));
  }

  natRules.push(`-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`);
  // Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
  natRules.push(`-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`);
  natRules.push(
    `-A KUBE-POSTROUTING -m comment --comment ${q("kubernetes service traffic requiring SNAT")} -j MASQUERADE${randomFully ? " --random-fully" : ""}`,
  );
  natRules.push(`-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`);

  let firewallChainWritten = false;
  if (!isIPv6 && localhostNodePorts) {
    // route_localnet opens 127.0.0.0/8 to the network (issue 90259); this closes it again.
    filterChains.push(chainLine("KUBE-FIREWALL"));
    firewallChainWritten = true;
    filterRules.push(
      `-A KUBE-FIREWALL -m comment --comment ${q("block incoming localnet connections")} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    );
  }

  const masqJump = (prefix: string): void => {
    if (!skipMasq) natRules.push(`${prefix} -j KUBE-MARK-MASQ`);
  };

  // Resolve every service port first: largeClusterMode depends on the total endpoint count.
  interface Svc {
    p: GenServicePort;
    name: string;
    proto: string;
    clusterIP: string;
    externalIPs: string[];
    lbIPs: string[];
    sourceRanges: string[];
    eps: Ep[];
  }
  const svcs: Svc[] = [];
  let totalEndpoints = 0;
  for (const p of ports) {
    const name = servicePortNameString(p.namespace, p.name, p.portName);
    if (p.clusterIP === null || p.clusterIP === "" || p.clusterIP === "None") continue;
    const clusterIP = normIP(p.clusterIP, "cluster IP", name);
    if (ipFamily(clusterIP) !== family) continue;
    const proto = p.protocol.toLowerCase();
    const ofFamily = (list: string[], what: string) =>
      list.map((ip) => normIP(ip, what, name)).filter((ip) => ipFamily(ip) === family);
    const sourceRanges: string[] = [];
    for (const r of p.loadBalancerSourceRanges) {
      const c = parseCidr(r.trim());
      if (c === null)
        throw new InputError(
          `${name}: load balancer source range ${JSON.stringify(r)} is not a CIDR`,
        );
      if (c.family === family) sourceRanges.push(formatCidr(c));
    }
    // One entry per "ip:port", as upstream's endpoint-slice cache keeps them (two slices can
    // list the same address); a ready copy wins. Two copies would also mean two chains of one name.
    const byText = new Map<string, Ep>();
    for (const e of p.endpoints) {
      const ip = normIP(e.ip, "endpoint", name);
      if (ipFamily(ip) !== family) continue;
      const text = formatAddrPort(ip, e.port);
      const seen = byText.get(text);
      if (seen !== undefined && (seen.ready || !e.ready)) continue;
      byText.set(text, {
        text,
        ip,
        chain: endpointChainName(name, proto, text),
        ready: e.ready,
        serving: e.serving,
        terminating: e.terminating,
        local: e.nodeName !== null && e.nodeName === node.name,
      });
    }
    const eps = [...byText.values()];
    // Upstream keeps each service's endpoints sorted by "ip:port" text.
    eps.sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
    totalEndpoints += eps.length;
    svcs.push({
      p,
      name,
      proto,
      clusterIP,
      externalIPs: ofFamily(p.externalIPs, "external IP"),
      lbIPs: ofFamily(p.loadBalancerIPs, "load balancer IP"),
      sourceRanges,
      eps,
    });
  }
  const largeCluster = totalEndpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
  const svcComment = (text: string) => (largeCluster ? "" : ` -m comment --comment ${text}`);

  for (const s of svcs) {
    const { p, name, proto, clusterIP } = s;
    const hash = portProtoHash(name, proto);
    const clusterPolicyChain = `KUBE-SVC-${hash}`;
    const localPolicyChain = `KUBE-SVL-${hash}`;
    const fwChain = `KUBE-FW-${hash}`;
    const extChain = `KUBE-EXT-${hash}`;
    const port = String(p.port);
    const protoMatch = `-m ${proto} -p ${proto}`;

    const externallyAccessible =
      p.nodePort !== null || s.externalIPs.length > 0 || s.lbIPs.length > 0;
    const internalPolicyLocal = p.internalTrafficPolicy === "Local";
    const externalPolicyLocal = externallyAccessible && p.externalTrafficPolicy === "Local";
    const usesClusterEndpoints =
      !internalPolicyLocal || (externallyAccessible && !externalPolicyLocal);
    const usesLocalEndpoints = internalPolicyLocal || externalPolicyLocal;
    const cat = categorize(s.eps, usesClusterEndpoints, usesLocalEndpoints);
    const hasEndpoints = cat.hasAny;

    const usesClusterPolicyChain = cat.cluster.length > 0 && usesClusterEndpoints;
    const usesLocalPolicyChain = cat.local.length > 0 && usesLocalEndpoints;

    let internalTrafficChain = clusterPolicyChain;
    let hasInternalEndpoints = hasEndpoints;
    if (internalPolicyLocal) {
      internalTrafficChain = localPolicyChain;
      if (cat.local.length === 0) hasInternalEndpoints = false;
    }
    let externalPolicyChain = clusterPolicyChain;
    let hasExternalEndpoints = hasEndpoints;
    if (externalPolicyLocal) {
      externalPolicyChain = localPolicyChain;
      if (cat.local.length === 0) hasExternalEndpoints = false;
    }
    // Needed even without external endpoints: it holds the short-circuit for local traffic.
    const usesExternalTrafficChain = hasEndpoints && externallyAccessible;
    const usesFWChain = hasEndpoints && s.lbIPs.length > 0 && s.sourceRanges.length > 0;
    const loadBalancerTrafficChain = usesFWChain ? fwChain : extChain;

    let internalFilterTarget = "";
    let internalFilterComment = "";
    let externalFilterTarget = "";
    let externalFilterComment = "";
    if (!hasEndpoints) {
      internalFilterTarget = "REJECT";
      internalFilterComment = q(`${name} has no endpoints`);
      externalFilterTarget = "REJECT";
      externalFilterComment = internalFilterComment;
    } else {
      if (!hasInternalEndpoints) {
        internalFilterTarget = "DROP";
        internalFilterComment = q(`${name} has no local endpoints`);
      }
      if (!hasExternalEndpoints) {
        externalFilterTarget = "DROP";
        externalFilterComment = q(`${name} has no local endpoints`);
      }
    }

    // Capture the cluster IP.
    if (hasInternalEndpoints) {
      natRules.push(
        `-A KUBE-SERVICES -m comment --comment ${q(`${name} cluster IP`)} ${protoMatch} -d ${clusterIP} --dport ${port} -j ${internalTrafficChain}`,
      );
    } else {
      filterRules.push(
        `-A KUBE-SERVICES -m comment --comment ${internalFilterComment} ${protoMatch} -d ${clusterIP} --dport ${port} -j ${internalFilterTarget}`,
      );
    }

    for (const ip of s.externalIPs) {
      if (hasEndpoints) {
        natRules.push(
          `-A KUBE-SERVICES -m comment --comment ${q(`${name} external IP`)} ${protoMatch} -d ${ip} --dport ${port} -j ${extChain}`,
        );
      }
      if (!hasExternalEndpoints) {
        filterRules.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalFilterComment} ${protoMatch} -d ${ip} --dport ${port} -j ${externalFilterTarget}`,
        );
      }
    }

    for (const ip of s.lbIPs) {
      if (hasEndpoints) {
        natRules.push(
          `-A KUBE-SERVICES -m comment --comment ${q(`${name} loadbalancer IP`)} ${protoMatch} -d ${ip} --dport ${port} -j ${loadBalancerTrafficChain}`,
        );
      }
      if (usesFWChain) {
        filterRules.push(
          `-A KUBE-PROXY-FIREWALL -m comment --comment ${q(`${name} traffic not accepted by ${fwChain}`)} ${protoMatch} -d ${ip} --dport ${port} -j DROP`,
        );
      }
    }
    if (!hasExternalEndpoints) {
      for (const ip of s.lbIPs) {
        filterRules.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalFilterComment} ${protoMatch} -d ${ip} --dport ${port} -j ${externalFilterTarget}`,
        );
      }
    }

    if (p.nodePort !== null && p.nodePort !== 0) {
      const np = String(p.nodePort);
      if (hasEndpoints) {
        // NodePorts ignore loadBalancerSourceRanges, upstream too.
        if (localhostNodePorts && nfacct) {
          natRules.push(
            `-A KUBE-NODEPORTS -m comment --comment ${name} ${protoMatch} -d 127.0.0.0/8 --dport ${np} -m nfacct --nfacct-name ${LOCALHOST_NODEPORTS_COUNTER} -j ${extChain}`,
          );
        }
        natRules.push(
          `-A KUBE-NODEPORTS -m comment --comment ${name} ${protoMatch} --dport ${np} -j ${extChain}`,
        );
      }
      if (!hasExternalEndpoints) {
        filterRules.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalFilterComment} -m addrtype --dst-type LOCAL ${protoMatch} --dport ${np} -j ${externalFilterTarget}`,
        );
      }
    }

    const hcnp = p.healthCheckNodePort ?? 0;
    if (hcnp !== 0) {
      filterRules.push(
        `-A KUBE-NODEPORTS -m comment --comment ${q(`${name} health check node port`)} -m tcp -p tcp --dport ${hcnp} -j ACCEPT`,
      );
    }

    // Internal traffic: masquerade what comes from outside the pod network.
    if (hasInternalEndpoints) {
      const args = `-m comment --comment ${q(`${name} cluster IP`)} ${protoMatch} -d ${clusterIP} --dport ${port}`;
      if (masqueradeAll) masqJump(`-A ${internalTrafficChain} ${args}`);
      else if (localDetector)
        masqJump(`-A ${internalTrafficChain} ${args} ! -s ${clusterCidrText}`);
    }

    if (usesExternalTrafficChain) {
      natChains.push(chainLine(extChain));
      if (!externalPolicyLocal) {
        // Endpoints may be on another node: masquerade so replies come back through us.
        masqJump(
          `-A ${extChain} -m comment --comment ${q(`masquerade traffic for ${name} external destinations`)}`,
        );
      } else {
        // Pods reaching an external IP of a Local service behave as if they went out to the
        // load balancer and back: Cluster policy, source kept.
        if (localDetector) {
          natRules.push(
            `-A ${extChain} -m comment --comment ${q(`pod traffic for ${name} external destinations`)} -s ${clusterCidrText} -j ${clusterPolicyChain}`,
          );
        }
        // The node's own traffic has the VIP-side address as source: it must be masqueraded.
        masqJump(
          `-A ${extChain} -m comment --comment ${q(`masquerade LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL`,
        );
        natRules.push(
          `-A ${extChain} -m comment --comment ${q(`route LOCAL traffic for ${name} external destinations`)} -m addrtype --src-type LOCAL -j ${clusterPolicyChain}`,
        );
      }
      if (hasExternalEndpoints) natRules.push(`-A ${extChain} -j ${externalPolicyChain}`);
    }

    if (usesFWChain) {
      natChains.push(chainLine(fwChain));
      const args = `-A ${fwChain} -m comment --comment ${q(`${name} loadbalancer IP`)}`;
      let allowFromNode = false;
      for (const r of s.sourceRanges) {
        natRules.push(`${args} -s ${r} -j ${extChain}`);
        const c = parseCidr(r);
        // Upstream checks its one primary node IP; ours is the first of the family.
        if (c !== null && nodeIPs[0] !== undefined && cidrContains(c, nodeIPs[0]))
          allowFromNode = true;
      }
      // A VIP-like LB address is often local: the node's own requests loop back with it as source.
      if (allowFromNode) {
        for (const ip of s.lbIPs) natRules.push(`${args} -s ${ip} -j ${extChain}`);
      }
      // Not DNATed here, so KUBE-PROXY-FIREWALL in filter drops it.
      natRules.push(
        `-A ${fwChain} -m comment --comment ${q(`other traffic to ${name} will be dropped by KUBE-PROXY-FIREWALL`)}`,
      );
    }

    const affinity = p.sessionAffinityTimeout !== null;
    const writeServiceToEndpointRules = (svcChain: string, eps: Ep[]) => {
      if (affinity) {
        for (const e of eps) {
          natRules.push(
            `-A ${svcChain}${svcComment(q(`${name} -> ${e.text}`))} -m recent --name ${e.chain} --rcheck --seconds ${p.sessionAffinityTimeout} --reap -j ${e.chain}`,
          );
        }
      }
      const n = eps.length;
      eps.forEach((e, i) => {
        let rule = `-A ${svcChain}${svcComment(q(`${name} -> ${e.text}`))}`;
        if (i < n - 1) {
          const prob =
            faults.probabilities === "one-over-n"
              ? computeProbability(n)
              : computeProbability(n - i);
          rule += ` -m statistic --mode random --probability ${prob}`;
        }
        natRules.push(`${rule} -j ${e.chain}`);
      });
    };

    if (usesClusterPolicyChain) {
      natChains.push(chainLine(clusterPolicyChain));
      writeServiceToEndpointRules(clusterPolicyChain, cat.cluster);
    }
    if (usesLocalPolicyChain) {
      natChains.push(chainLine(localPolicyChain));
      writeServiceToEndpointRules(localPolicyChain, cat.local);
    }

    for (const e of cat.allReachable) {
      natChains.push(chainLine(e.chain));
      const base = `-A ${e.chain}${svcComment(name)}`;
      // Hairpin: a pod reaching itself through the VIP needs SNAT or it answers itself directly.
      masqJump(`${base} -s ${e.ip}`);
      const recent = affinity ? ` -m recent --name ${e.chain} --set` : "";
      natRules.push(`${base}${recent} ${protoMatch} -j DNAT --to-destination ${e.text}`);
    }
  }

  // The tail call to KUBE-NODEPORTS must stay the last rule of KUBE-SERVICES.
  const nodePortsComment = `-m comment --comment ${q("kubernetes service nodeports; NOTE: this must be the last rule in this chain")}`;
  if (nodePortCidrs === null) {
    let destinations = "-m addrtype --dst-type LOCAL";
    if (isIPv6) destinations += " ! -d ::1/128";
    else if (!localhostNodePorts) destinations += " ! -d 127.0.0.0/8";
    natRules.push(`-A KUBE-SERVICES ${nodePortsComment} ${destinations} -j KUBE-NODEPORTS`);
  } else {
    // One rule per node address inside --nodeport-addresses, loopback (an interface of its
    // own, listed first like upstream's interface walk) only where localhost NodePorts work.
    const loopback = isIPv6 ? "::1" : "127.0.0.1";
    for (const ip of [loopback, ...nodeIPs]) {
      if (!nodePortCidrs.some((c) => cidrContains(c, ip))) continue;
      const isLoopback = isIPv6 ? ip === "::1" : ip.startsWith("127.");
      if (isLoopback && (isIPv6 || !localhostNodePorts)) continue;
      natRules.push(`-A KUBE-SERVICES ${nodePortsComment} -d ${ip} -j KUBE-NODEPORTS`);
    }
  }

  if (!conntrackTCPLiberal) {
    // INVALID packets would otherwise reach pods untranslated and get reset (issue 74839).
    const acct = nfacct ? ` -m nfacct --nfacct-name ${INVALID_DROPPED_COUNTER}` : "";
    filterRules.push(`-A KUBE-FORWARD -m conntrack --ctstate INVALID${acct} -j DROP`);
  }
  filterRules.push(
    `-A KUBE-FORWARD -m comment --comment ${q("kubernetes forwarding rules")} -m mark --mark ${mark}/${mark} -j ACCEPT`,
  );
  filterRules.push(
    `-A KUBE-FORWARD -m comment --comment ${q("kubernetes forwarding conntrack rule")} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  );

  const out: string[] = [];
  // Appended line by line: spreading 100,000 rules into push() overflows the call stack.
  const add = (lines: string[]) => {
    for (const line of lines) out.push(line);
  };
  // ipt.Monitor's canaries: empty chains whose disappearance tells kube-proxy that someone
  // flushed the tables. Real dumps carry them, so lab dumps do too.
  const canary = chainLine("KUBE-PROXY-CANARY");
  if (jumps) add(["*mangle", canary, "COMMIT"]);
  out.push("*filter");
  if (jumps) add(BUILTIN.filter.map((c) => `:${c} ACCEPT [0:0]`));
  add(filterChains);
  if (jumps && !firewallChainWritten) out.push(chainLine("KUBE-FIREWALL"));
  if (jumps) add([canary, ...jumpRules("filter")]);
  add(filterRules);
  add(["COMMIT", "*nat"]);
  if (jumps) add(BUILTIN.nat.map((c) => `:${c} ACCEPT [0:0]`));
  add(natChains);
  if (jumps) add([canary, ...jumpRules("nat")]);
  add(natRules);
  out.push("COMMIT");
  return `${out.join("\n")}\n`;
}

const SERVICE_CHAIN = /^KUBE-(SVC|SVL|EXT|FW|SEP)-/;

/** The per-service chains a full restore declares (KUBE-SVC-, -SVL-, -EXT-, -FW-, -SEP-). */
function declaredServiceChains(restore: string): Set<string> {
  const out = new Set<string>();
  let nat = false;
  for (const line of restore.split("\n")) {
    if (line.startsWith("*")) nat = line === "*nat";
    else if (nat && line.startsWith(":")) {
      const chain = line.slice(1, line.indexOf(" "));
      if (SERVICE_CHAIN.test(chain)) out.add(chain);
    }
  }
  return out;
}

/** Every per-service chain name one service port can own, whatever its state. */
function possibleChains(p: GenServicePort, family: Family): string[] {
  const name = servicePortNameString(p.namespace, p.name, p.portName);
  const proto = p.protocol.toLowerCase();
  const hash = portProtoHash(name, proto);
  const out = [`KUBE-SVC-${hash}`, `KUBE-SVL-${hash}`, `KUBE-EXT-${hash}`, `KUBE-FW-${hash}`];
  for (const e of p.endpoints) {
    const ip = normalizeIP(e.ip.trim());
    if (ip !== null && ipFamily(ip) === family)
      out.push(endpointChainName(name, proto, formatAddrPort(ip, e.port)));
  }
  return out;
}

export interface GenSyncOptions extends Omit<GenOptions, "jumpRules"> {
  /**
   * "partial" (kube-proxy's usual sync): per-service chains only for Services whose ports or
   * endpoints changed since `previous`; "full": everything (the first sync, the hourly resync,
   * and the retry after a failed partial restore).
   */
  mode: "full" | "partial";
}

/**
 * The `iptables-restore --noflush` input of one kube-proxy sync on a node whose rules were
 * generated from `previous` (null: a fresh node): the filter table and the top-level nat chains
 * in full, per-service chains as `mode` says, and every per-service chain that `previous` had
 * and `next` no longer has flushed and deleted (`:CHAIN` then `-X CHAIN`). Applied on top of the
 * previous rules it gives the same rules as generateIptablesRestore(next), which is how
 * upstream's TestSyncProxyRulesRepeated (../shared/reference/kube-proxy/04-…) checks it.
 * Services are compared by namespace/name, as kube-proxy's change trackers do. Unlike
 * kube-proxy in large-cluster mode, stale chains are always deleted at once.
 */
export function generateIptablesSync(
  next: GenServicePort[],
  previous: GenServicePort[] | null,
  node: GenNode,
  faults: GenFaults = {},
  options: GenSyncOptions = { mode: "partial" },
): string {
  const { mode, ...rest } = options;
  const full = generateIptablesRestore(next, node, faults, { ...rest, jumpRules: false });
  const family = parseCidr(node.clusterCIDR)?.family ?? 4;
  const active = declaredServiceChains(full);
  const existing =
    previous === null
      ? new Set<string>()
      : declaredServiceChains(
          generateIptablesRestore(previous, node, faults, { ...rest, jumpRules: false }),
        );
  // Chains of Services whose inputs did not change are left as they are in the kernel.
  const skip = new Set<string>();
  if (mode === "partial" && previous !== null) {
    const key = (p: GenServicePort) => `${p.namespace}/${p.name}`;
    const group = (ports: GenServicePort[]) => {
      const m = new Map<string, GenServicePort[]>();
      for (const p of ports) m.set(key(p), [...(m.get(key(p)) ?? []), p]);
      return m;
    };
    const before = group(previous);
    for (const [svc, ports] of group(next)) {
      if (JSON.stringify(before.get(svc) ?? null) !== JSON.stringify(ports)) continue;
      for (const p of ports) for (const c of possibleChains(p, family)) skip.add(c);
    }
  }
  const stale = [...existing].filter((c) => !active.has(c)).sort();
  const out: string[] = [];
  let nat = false;
  let inserted = false;
  const deletions = () => {
    for (const c of stale) out.push(`-X ${c}`);
    inserted = true;
  };
  for (const line of full.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("*")) nat = line === "*nat";
    if (!nat) {
      out.push(line);
      continue;
    }
    if (line.startsWith(":")) {
      if (!skip.has(line.slice(1, line.indexOf(" ")))) out.push(line);
      continue;
    }
    if (line.startsWith("-A ")) {
      const chain = line.slice(3, line.indexOf(" ", 3));
      if (skip.has(chain)) continue;
      // Upstream writes the deletions just before KUBE-SERVICES' tail call to KUBE-NODEPORTS.
      if (!inserted && chain === "KUBE-SERVICES" && line.includes('"kubernetes service nodeports;'))
        deletions();
      out.push(line);
      continue;
    }
    if (line === "COMMIT") {
      if (!inserted) deletions();
      out.push(line);
      continue;
    }
    out.push(line);
  }
  // A flushed chain must be declared before it can be deleted: add the stale chain lines after
  // the nat table's other declarations.
  const natStart = out.indexOf("*nat");
  let lastDecl = natStart;
  for (let i = natStart + 1; i < out.length && (out[i] ?? "").startsWith(":"); i++) lastDecl = i;
  out.splice(lastDecl + 1, 0, ...stale.map((c) => `:${c} - [0:0]`));
  return `${out.join("\n")}\n`;
}
