import { readFileSync } from "node:fs";
import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { InputError } from "../util/errors.js";
import { formatIPv4, parseCidr, parseIPv4 } from "../util/ip.js";

/*
 * A lab scenario: a tiny cluster (nodes, pods, clients, Services) and a list of steps (traffic,
 * Service and endpoint changes, conntrack flushes, dumps, waits) with optional injected faults.
 * Parsed from YAML, validated with zod, then resolved: every address, port and name that the
 * file left out is filled in here so the runner never guesses.
 */

const dns1123 = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const ipv4 = z.string().refine((s) => safeIPv4(s) !== null, { message: "not an IPv4 address" });
const name = z.string().regex(dns1123, "must be a lower-case DNS label (a-z, 0-9, -)");
const nodeName = z.string().regex(/^[a-z][a-z0-9]{0,7}$/, "node names: a-z then a-z/0-9, ≤ 8");
const port = z.number().int().min(1).max(65535);

/** "500ms", "2s", "1m" or a number of seconds. */
const duration = z.union([
  z.number().nonnegative(),
  z.string().regex(/^\d+(\.\d+)?(ms|s|m)$/, "a duration such as 500ms, 2s or 1m"),
]);

const nodeSchema = z.strictObject({
  name: nodeName,
  ip: ipv4.optional(),
  podCIDR: z
    .string()
    .refine((s) => parseCidr(s)?.family === 4, { message: "not an IPv4 CIDR" })
    .optional(),
});

const podSchema = z.strictObject({
  name,
  namespace: name.default("default"),
  node: nodeName,
  ip: ipv4.optional(),
  labels: z.record(z.string(), z.string()).default({}),
  /** false: no server runs in the pod, so connections to it are refused (RST / port unreachable). */
  server: z.boolean().default(true),
  /** true: the pod's interface is down, so whatever is sent to it vanishes (a blackhole). */
  unreachable: z.boolean().default(false),
});

const clientSchema = z.strictObject({
  name,
  /** A pod client on this node; without it the client is external, on the nodes' segment. */
  node: nodeName.optional(),
  ip: ipv4.optional(),
  /** Runs in the node's own namespace with the node's address (DNAT happens in OUTPUT). */
  hostNetwork: z.boolean().default(false),
});

const servicePortSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9-]{0,15}$/, "port names: a-z, 0-9, -")
    .default(""),
  protocol: z.enum(["TCP", "UDP"]).default("TCP"),
  port,
  targetPort: port.optional(),
  nodePort: z.number().int().min(1).max(65535).optional(),
});

const serviceSchema = z.strictObject({
  name,
  namespace: name.default("default"),
  type: z.enum(["ClusterIP", "NodePort", "LoadBalancer"]).default("ClusterIP"),
  clusterIP: ipv4.optional(),
  selector: z.record(z.string(), z.string()),
  ports: z.array(servicePortSchema).min(1),
  sessionAffinity: z.enum(["None", "ClientIP"]).default("None"),
  sessionAffinityTimeout: z.number().int().min(1).max(86400).default(10800),
  externalTrafficPolicy: z.enum(["Cluster", "Local"]).default("Cluster"),
  internalTrafficPolicy: z.enum(["Cluster", "Local"]).default("Cluster"),
  externalIPs: z.array(ipv4).default([]),
  loadBalancerIP: ipv4.optional(),
  loadBalancerSourceRanges: z.array(z.string()).default([]),
  /** Not there when the scenario starts; a createService step creates it. */
  absent: z.boolean().default(false),
});

const wrongAddressSchema = z.strictObject({ service: z.string().min(1), ip: ipv4 });

/** Cluster DNS: a DNS server pod behind the kube-system/kube-dns Service (UDP 53). */
const dnsSchema = z.strictObject({
  /** The node the DNS pod runs on (default: the first node). */
  node: nodeName.optional(),
  /** The kube-dns Service's ClusterIP (default 10.96.0.250). */
  clusterIP: ipv4.optional(),
  /** The DNS pod's address. */
  ip: ipv4.optional(),
  /** TTL of the answers, seconds. */
  ttl: z.number().int().min(0).max(86400).default(5),
});

const faultsSchema = z.strictObject({
  /** Every endpoint rule gets probability 1/n instead of 1/n, 1/(n-1), … (a skewed split). */
  probabilities: z.literal("one-over-n").optional(),
  /** No KUBE-MARK-MASQ where kube-proxy would add it. */
  noMasquerade: z.boolean().default(false),
  /** Nodes the rule faults above apply to (default: all nodes). */
  nodes: z.array(nodeName).optional(),
  /** This node's kube-proxy is stuck: its rules are never reloaded after the start. */
  staleRulesNode: nodeName.optional(),
  /** Do not delete UDP conntrack entries of removed endpoints or Services. */
  keepUdpConntrack: z.boolean().default(false),
  /** Cluster DNS faults (the scenario must enable `dns`). */
  dns: z
    .strictObject({
      /** A deleted Service's name keeps resolving to its old ClusterIP. */
      staleAnswers: z.boolean().default(false),
      /** These existing Services' names are answered NXDOMAIN. */
      nxdomain: z.array(z.string().min(1)).default([]),
      /** These Services' names are answered with another address. */
      wrongAddress: z
        .union([wrongAddressSchema, z.array(wrongAddressSchema)])
        .transform((v) => (Array.isArray(v) ? v : [v]))
        .default([]),
    })
    .optional(),
});

const trafficSchema = z.strictObject({
  from: name,
  /** "name:port", "ns/name:port" (port by name or number), or a Service name with one port. */
  to: z.string().min(1),
  via: z.enum(["clusterIP", "nodePort", "loadBalancer", "externalIP"]).default("clusterIP"),
  /** Which node to aim at for nodePort/loadBalancer/externalIP traffic. */
  node: nodeName.optional(),
  count: z.number().int().min(1).max(100000),
  /** New connections (or datagrams) per second. */
  rate: z.number().positive().max(10000).default(20),
  /** "random" (the kernel picks per connection) or a fixed client port. */
  sport: z.union([z.literal("random"), port]).default("random"),
  /** Run alongside the following steps; the run waits for it before stopping captures. */
  background: z.boolean().default(false),
  /** How long to wait for an answer before calling a connection unanswered. */
  timeout: duration.default("1s"),
});

const endpointRef = z.strictObject({ service: z.string().min(1), pod: name });

/** A DNS name as a resolver would send it: labels of a-z, 0-9, -, _ (any case), ≤ 253. */
const dnsName = z
  .string()
  .max(253)
  .regex(
    /^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/,
    "a DNS name such as api.default.svc.cluster.local",
  );

const resolveSchema = z.strictObject({
  /** A pod client or a hostNetwork client (external clients cannot reach the kube-dns ClusterIP). */
  from: name,
  name: dnsName,
  /** Query type. */
  type: z.enum(["A", "AAAA"]).default("A"),
  count: z.number().int().min(1).max(100000).default(1),
  /** Queries per second; each from a new socket (a new client port), like glibc's resolver. */
  rate: z.number().positive().max(10000).default(5),
  background: z.boolean().default(false),
  timeout: duration.default("1s"),
});

const stepSchema = z.union([
  z.strictObject({ traffic: trafficSchema }),
  z.strictObject({ resolve: resolveSchema }),
  z.strictObject({ wait: duration }),
  z.strictObject({ createService: z.string().min(1) }),
  z.strictObject({ deleteService: z.string().min(1) }),
  z.strictObject({ removeEndpoint: endpointRef }),
  z.strictObject({ addEndpoint: endpointRef }),
  z.strictObject({ flushConntrack: z.union([nodeName, z.literal("all")]) }),
  z.strictObject({ dump: z.union([z.literal(true), z.string()]) }),
]);

const expectedFindingSchema = z.strictObject({
  check: z.string().min(1),
  service: z.string().nullable().default(null),
  node: z.string().nullable().default(null),
  severity: z.enum(["error", "warning", "info"]),
  why: z.string().optional(),
});

const scenarioSchema = z.strictObject({
  name,
  description: z.string().default(""),
  nodes: z.array(nodeSchema).min(1).max(8),
  pods: z.array(podSchema).default([]),
  clients: z.array(clientSchema).default([]),
  services: z.array(serviceSchema).default([]),
  /** Cluster DNS: `true` or its options; without it there is no DNS server. */
  dns: z.union([z.literal(true), dnsSchema]).optional(),
  faults: faultsSchema.default({ noMasquerade: false, keepUdpConntrack: false }),
  steps: z.array(stepSchema).min(1),
  /** Findings the author expects beyond the ones the lab derives from the faults. */
  expect: z
    .strictObject({
      findings: z.array(expectedFindingSchema).default([]),
    })
    .default({ findings: [] }),
});

export type ScenarioInput = z.infer<typeof scenarioSchema>;
export type TrafficStepInput = z.infer<typeof trafficSchema>;
export type ResolveStepInput = z.infer<typeof resolveSchema>;
export type StepInput = z.infer<typeof stepSchema>;
export type ExpectedFindingInput = z.infer<typeof expectedFindingSchema>;

// ---- resolved model ------------------------------------------------------------------------

export interface LabNode {
  name: string;
  index: number;
  ip: string;
  podCIDR: string;
  /** The address on every pod-facing veth (the pods' gateway). */
  gateway: string;
}

export interface LabPod {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  labels: Record<string, string>;
  /** Ports the pod's server listens on (every targetPort of a Service that may pick it). */
  tcpPorts: number[];
  udpPorts: number[];
  /** Node-side veth name (≤ 15 characters). */
  hostIf: string;
  isClient: boolean;
  server: boolean;
  unreachable: boolean;
  /** The cluster DNS pod: runs the lab's DNS server instead of `lab serve`. */
  dnsServer?: boolean;
}

export interface LabClient {
  name: string;
  /** Null for an external client on the nodes' segment. */
  node: string | null;
  ip: string;
  /** A process in the node's own namespace, not a pod. */
  hostNetwork: boolean;
}

export interface LabServicePort {
  name: string;
  protocol: "TCP" | "UDP";
  port: number;
  targetPort: number;
  nodePort: number | null;
}

export interface LabService {
  name: string;
  namespace: string;
  type: "ClusterIP" | "NodePort" | "LoadBalancer";
  clusterIP: string;
  selector: Record<string, string>;
  ports: LabServicePort[];
  sessionAffinity: "None" | "ClientIP";
  sessionAffinityTimeout: number;
  externalTrafficPolicy: "Cluster" | "Local";
  internalTrafficPolicy: "Cluster" | "Local";
  externalIPs: string[];
  loadBalancerIP: string | null;
  loadBalancerSourceRanges: string[];
  absent: boolean;
  /** Stable uid for the inventory objects. */
  uid: string;
}

export interface TrafficStep {
  kind: "traffic";
  from: string;
  service: string;
  portName: string;
  protocol: "TCP" | "UDP";
  /** Address and port the client aims at. */
  vip: string;
  vipPort: number;
  via: "clusterIP" | "nodePort" | "loadBalancer" | "externalIP";
  /** The node whose rules translate this traffic. */
  node: string;
  count: number;
  rate: number;
  sport: number | "random";
  background: boolean;
  timeoutMs: number;
}

/** DNS lookups from a client through the kube-dns ClusterIP. */
export interface ResolveStep {
  kind: "resolve";
  from: string;
  name: string;
  qtype: "A" | "AAAA";
  count: number;
  rate: number;
  background: boolean;
  timeoutMs: number;
  /** The client's node (its rules translate the queries). */
  node: string;
}

export type Step =
  | TrafficStep
  | ResolveStep
  | { kind: "wait"; ms: number }
  | { kind: "createService"; service: string }
  | { kind: "deleteService"; service: string }
  | { kind: "removeEndpoint"; service: string; pod: string }
  | { kind: "addEndpoint"; service: string; pod: string }
  | { kind: "flushConntrack"; node: string | "all" }
  | { kind: "dump"; label: string };

export interface DnsFaults {
  staleAnswers: boolean;
  /** Service keys ("ns/name") answered NXDOMAIN. */
  nxdomain: string[];
  /** Service key → the address answered instead of its ClusterIP. */
  wrongAddress: { service: string; ip: string }[];
}

export interface Faults {
  probabilities: "one-over-n" | null;
  noMasquerade: boolean;
  nodes: string[];
  staleRulesNode: string | null;
  keepUdpConntrack: boolean;
  /** Null when the scenario injects no DNS fault. */
  dns: DnsFaults | null;
}

/** The cluster DNS of a scenario: the pod and the Service in front of it. */
export interface ClusterDns {
  /** The DNS pod's name (also in `pods`, with `dnsServer: true`). */
  pod: string;
  /** The Service's key (also in `services`). */
  service: string;
  clusterIP: string;
  domain: string;
  ttl: number;
}

export interface Scenario {
  name: string;
  description: string;
  /** The YAML text as given, copied into the bundle. */
  source: string;
  nodes: LabNode[];
  pods: LabPod[];
  clients: LabClient[];
  services: LabService[];
  /** Null when the scenario has no cluster DNS. */
  dns: ClusterDns | null;
  faults: Faults;
  steps: Step[];
  expectFindings: ExpectedFindingInput[];
}

/** Addresses the lab gives out when the scenario does not say (all inside its namespaces). */
export const LAB_NET = {
  nodeSubnet: "172.30.0.0/24",
  nodePrefix: 24,
  /** The bridge namespace's address: the nodes' default gateway, forwarding nothing. */
  router: "172.30.0.1",
  clusterCIDR: "10.244.0.0/16",
  serviceCIDR: "10.96.0.0/16",
  /** The kube-dns Service's ClusterIP unless the scenario gives one. */
  dnsClusterIP: "10.96.0.250",
  clusterDomain: "cluster.local",
} as const;

/** The cluster DNS pod and Service the lab adds when a scenario enables `dns`. */
export const CLUSTER_DNS = {
  pod: "coredns",
  namespace: "kube-system",
  service: "kube-dns",
  labels: { "k8s-app": "kube-dns" },
  portName: "dns",
} as const;

/** The name cluster DNS answers for a Service: <name>.<namespace>.svc.<domain>. */
export function serviceDnsName(svc: { namespace: string; name: string }): string {
  return `${svc.name}.${svc.namespace}.svc.${LAB_NET.clusterDomain}`;
}

function safeIPv4(text: string): number | null {
  try {
    return parseIPv4(text);
  } catch {
    return null;
  }
}

/** "svc", "svc:port", "ns/svc:port": the Service key "ns/name" and an optional port selector. */
export function splitServiceRef(ref: string): { key: string; port: string | null } {
  const colon = ref.lastIndexOf(":");
  const svc = colon >= 0 ? ref.slice(0, colon) : ref;
  const portSel = colon >= 0 ? ref.slice(colon + 1) : null;
  return { key: svc.includes("/") ? svc : `default/${svc}`, port: portSel };
}

export function serviceKey(svc: { namespace: string; name: string }): string {
  return `${svc.namespace}/${svc.name}`;
}

function durationMs(value: number | string): number {
  if (typeof value === "number") return value * 1000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value);
  if (!m) return 0;
  const n = Number(m[1]);
  return m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

function hashUid(text: string): string {
  // FNV-1a, spread into a UUID shape: stable across runs so inventories diff cleanly.
  let h = 0x811c9dc5;
  const parts: string[] = [];
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i) + round;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    parts.push(h.toString(16).padStart(8, "0"));
  }
  const hex = parts.join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Parse and resolve a scenario file; InputError names the file and the line of the problem. */
export function loadScenario(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new InputError(`cannot read scenario: ${(error as Error).message}`, { file: path });
  }
  return parseScenario(text, path);
}

export function parseScenario(text: string, file = "<scenario>"): Scenario {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const firstError = doc.errors[0];
  if (firstError) {
    const line = lineCounter.linePos(firstError.pos[0]).line;
    throw new InputError(`invalid YAML: ${firstError.message.split("\n")[0]}`, { file, line });
  }
  const lineOf = (path: PropertyKey[]): number | undefined => {
    // Walk down as far as the document goes; the deepest node found is where to look.
    let node: unknown = doc.contents;
    let line: number | undefined;
    const at = (n: unknown): void => {
      const range = (n as { range?: [number, number, number] } | null)?.range;
      if (range) line = lineCounter.linePos(range[0]).line;
    };
    at(node);
    for (const key of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => String((p.key as { value?: unknown })?.value ?? p.key) === String(key),
        );
        if (!pair) break;
        at(pair.key);
        node = pair.value;
        at(node);
      } else if (isSeq(node) && typeof key === "number") {
        node = node.items[key];
        at(node);
      } else break;
    }
    return line;
  };
  const parsed = scenarioSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.map(String).join(".") : "";
    const line = issue ? lineOf(issue.path) : undefined;
    throw new InputError(`${where ? `${where}: ` : ""}${issue?.message ?? "invalid scenario"}`, {
      file,
      ...(line !== undefined ? { line } : {}),
    });
  }
  const fail = (path: PropertyKey[], reason: string): never => {
    const line = lineOf(path);
    throw new InputError(`${path.map(String).join(".")}: ${reason}`, {
      file,
      ...(line !== undefined ? { line } : {}),
    });
  };
  return resolve(parsed.data, text, fail);
}

function resolve(
  input: ScenarioInput,
  source: string,
  fail: (path: PropertyKey[], reason: string) => never,
): Scenario {
  const used = new Map<string, string>();
  const claimName = (n: string, what: string, path: PropertyKey[]): void => {
    const prior = used.get(n);
    if (prior) fail(path, `name ${JSON.stringify(n)} is already used by ${prior}`);
    used.set(n, what);
  };
  const addrs = new Map<string, string>([[LAB_NET.router, "the segment's router"]]);
  const claimAddr = (ip: string, what: string, path: PropertyKey[]): void => {
    const prior = addrs.get(ip);
    if (prior) fail(path, `address ${ip} is already used by ${prior}`);
    addrs.set(ip, what);
  };

  const nodes: LabNode[] = input.nodes.map((n, i) => {
    claimName(n.name, `node ${n.name}`, ["nodes", i, "name"]);
    const index = i + 1;
    const podCIDR = n.podCIDR ?? `10.244.${index}.0/24`;
    const cidr = parseCidr(podCIDR);
    if (!cidr || cidr.prefix > 28) fail(["nodes", i, "podCIDR"], "pod CIDR must be /28 or larger");
    const ip = n.ip ?? `172.30.0.${10 + index}`;
    claimAddr(ip, `node ${n.name}`, ["nodes", i, "ip"]);
    return { name: n.name, index, ip, podCIDR, gateway: formatIPv4((cidr?.v4 ?? 0) + 1) };
  });
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  const nextHost = new Map<string, number>(nodes.map((n) => [n.name, 10]));
  const podAddr = (node: LabNode): string => {
    const cidr = parseCidr(node.podCIDR);
    const k = nextHost.get(node.name) ?? 10;
    nextHost.set(node.name, k + 1);
    return formatIPv4(((cidr?.v4 ?? 0) + k) >>> 0);
  };

  const pods: LabPod[] = [];
  input.pods.forEach((p, i) => {
    claimName(p.name, `pod ${p.name}`, ["pods", i, "name"]);
    const node = nodeByName.get(p.node) ?? fail(["pods", i, "node"], `no node ${p.node}`);
    const ip = p.ip ?? podAddr(node);
    claimAddr(ip, `pod ${p.name}`, ["pods", i, "ip"]);
    pods.push({
      name: p.name,
      namespace: p.namespace,
      node: p.node,
      ip,
      labels: p.labels,
      tcpPorts: [],
      udpPorts: [],
      hostIf: `vp${pods.length + 1}`,
      isClient: false,
      server: p.server,
      unreachable: p.unreachable,
    });
  });

  let externalCount = 0;
  const clients: LabClient[] = input.clients.map((c, i) => {
    claimName(c.name, `client ${c.name}`, ["clients", i, "name"]);
    if (c.hostNetwork) {
      const node =
        nodeByName.get(c.node ?? "") ?? fail(["clients", i, "node"], "hostNetwork needs a node");
      if (c.ip !== undefined)
        fail(["clients", i, "ip"], "a hostNetwork client has the node's address");
      return { name: c.name, node: node.name, ip: node.ip, hostNetwork: true };
    }
    if (c.node !== undefined) {
      const node = nodeByName.get(c.node) ?? fail(["clients", i, "node"], `no node ${c.node}`);
      const ip = c.ip ?? podAddr(node);
      claimAddr(ip, `client ${c.name}`, ["clients", i, "ip"]);
      pods.push({
        name: c.name,
        namespace: "default",
        node: c.node,
        ip,
        labels: {},
        tcpPorts: [],
        udpPorts: [],
        hostIf: `vp${pods.length + 1}`,
        isClient: true,
        server: false,
        unreachable: false,
      });
      return { name: c.name, node: c.node, ip, hostNetwork: false };
    }
    externalCount++;
    const ip = c.ip ?? `172.30.0.${100 + externalCount}`;
    claimAddr(ip, `client ${c.name}`, ["clients", i, "ip"]);
    return { name: c.name, node: null, ip, hostNetwork: false };
  });

  // Cluster DNS: its pod comes after every other pod so enabling it moves no address.
  const dnsInput = input.dns === true ? { ttl: 5 } : input.dns;
  let dnsPod: LabPod | null = null;
  if (dnsInput !== undefined) {
    const path = ["dns"];
    claimName(CLUSTER_DNS.pod, "the cluster DNS pod", [...path]);
    const node = nodeByName.get(dnsInput.node ?? nodes[0]?.name ?? "");
    if (node === undefined) return fail([...path, "node"], `no node ${dnsInput.node}`);
    const ip = dnsInput.ip ?? podAddr(node);
    claimAddr(ip, "the cluster DNS pod", [...path, "ip"]);
    dnsPod = {
      name: CLUSTER_DNS.pod,
      namespace: CLUSTER_DNS.namespace,
      node: node.name,
      ip,
      labels: { ...CLUSTER_DNS.labels },
      tcpPorts: [],
      udpPorts: [],
      hostIf: `vp${pods.length + 1}`,
      isClient: false,
      server: true,
      unreachable: false,
      dnsServer: true,
    };
    pods.push(dnsPod);
  }

  const services: LabService[] = [];
  const svcKeys = new Set<string>();
  let nodePortNext = 30080;
  const nodePortsUsed = new Set<number>();
  input.services.forEach((s, i) => {
    const key = serviceKey(s);
    if (svcKeys.has(key)) fail(["services", i, "name"], `Service ${key} is defined twice`);
    svcKeys.add(key);
    const clusterIP = s.clusterIP ?? `10.96.0.${10 + i}`;
    claimAddr(clusterIP, `Service ${key}`, ["services", i, "clusterIP"]);
    const names = new Set<string>();
    const ports: LabServicePort[] = s.ports.map((p, j) => {
      if (names.has(p.name)) fail(["services", i, "ports", j, "name"], "duplicate port name");
      names.add(p.name);
      if (s.ports.length > 1 && p.name === "")
        fail(["services", i, "ports", j], "a Service with several ports must name each port");
      let nodePort: number | null = null;
      if (s.type !== "ClusterIP") {
        if (p.nodePort !== undefined) nodePort = p.nodePort;
        else {
          while (nodePortsUsed.has(nodePortNext)) nodePortNext++;
          nodePort = nodePortNext++;
        }
        if (nodePortsUsed.has(nodePort))
          fail(["services", i, "ports", j, "nodePort"], `NodePort ${nodePort} is used twice`);
        nodePortsUsed.add(nodePort);
      } else if (p.nodePort !== undefined) {
        fail(["services", i, "ports", j, "nodePort"], "a ClusterIP Service has no NodePort");
      }
      return {
        name: p.name,
        protocol: p.protocol,
        port: p.port,
        targetPort: p.targetPort ?? p.port,
        nodePort,
      };
    });
    let loadBalancerIP: string | null = null;
    if (s.type === "LoadBalancer") {
      loadBalancerIP = s.loadBalancerIP ?? `10.250.0.${10 + i}`;
      claimAddr(loadBalancerIP, `Service ${key} load balancer`, ["services", i, "loadBalancerIP"]);
    }
    services.push({
      name: s.name,
      namespace: s.namespace,
      type: s.type,
      clusterIP,
      selector: s.selector,
      ports,
      sessionAffinity: s.sessionAffinity,
      sessionAffinityTimeout: s.sessionAffinityTimeout,
      externalTrafficPolicy: s.externalTrafficPolicy,
      internalTrafficPolicy: s.internalTrafficPolicy,
      externalIPs: s.externalIPs,
      loadBalancerIP,
      loadBalancerSourceRanges: s.loadBalancerSourceRanges,
      absent: s.absent,
      uid: hashUid(`svc/${key}`),
    });
  });
  let dns: ClusterDns | null = null;
  if (dnsInput !== undefined && dnsPod !== null) {
    const key = `${CLUSTER_DNS.namespace}/${CLUSTER_DNS.service}`;
    if (svcKeys.has(key)) fail(["dns"], `Service ${key} is the cluster DNS; do not define it`);
    svcKeys.add(key);
    const clusterIP = dnsInput.clusterIP ?? LAB_NET.dnsClusterIP;
    claimAddr(clusterIP, `Service ${key}`, ["dns", "clusterIP"]);
    services.push({
      name: CLUSTER_DNS.service,
      namespace: CLUSTER_DNS.namespace,
      type: "ClusterIP",
      clusterIP,
      selector: { ...CLUSTER_DNS.labels },
      ports: [
        { name: CLUSTER_DNS.portName, protocol: "UDP", port: 53, targetPort: 53, nodePort: null },
      ],
      sessionAffinity: "None",
      sessionAffinityTimeout: 10800,
      externalTrafficPolicy: "Cluster",
      internalTrafficPolicy: "Cluster",
      externalIPs: [],
      loadBalancerIP: null,
      loadBalancerSourceRanges: [],
      absent: false,
      uid: hashUid(`svc/${key}`),
    });
    dns = {
      pod: dnsPod.name,
      service: key,
      clusterIP,
      domain: LAB_NET.clusterDomain,
      ttl: dnsInput.ttl,
    };
  }
  const svcByKey = new Map(services.map((s) => [serviceKey(s), s]));
  const findService = (ref: string, path: PropertyKey[]): LabService => {
    const { key } = splitServiceRef(ref.includes(":") ? ref : `${ref}:`);
    return svcByKey.get(key) ?? fail(path, `no Service ${key}`);
  };
  const podByName = new Map(pods.map((p) => [p.name, p]));

  // Servers listen on every targetPort of every Service that selects (or is given) the pod.
  const serve = (pod: LabPod, svc: LabService): void => {
    for (const p of svc.ports) {
      const list = p.protocol === "TCP" ? pod.tcpPorts : pod.udpPorts;
      if (!list.includes(p.targetPort)) list.push(p.targetPort);
    }
  };
  for (const svc of services) {
    for (const pod of pods) if (selects(svc, pod)) serve(pod, svc);
  }

  const faultNodes = input.faults.nodes ?? nodes.map((n) => n.name);
  for (const [i, n] of faultNodes.entries()) {
    if (!nodeByName.has(n)) fail(["faults", "nodes", i], `no node ${n}`);
  }
  if (input.faults.staleRulesNode !== undefined && !nodeByName.has(input.faults.staleRulesNode)) {
    fail(["faults", "staleRulesNode"], `no node ${input.faults.staleRulesNode}`);
  }

  let dnsFaults: DnsFaults | null = null;
  const df = input.faults.dns;
  if (df !== undefined) {
    if (dns === null) fail(["faults", "dns"], "DNS faults need cluster DNS: add `dns: true`");
    const nxdomain = df.nxdomain.map((ref, j) =>
      serviceKey(findService(ref, ["faults", "dns", "nxdomain", j])),
    );
    const wrongAddress = df.wrongAddress.map((w, j) => {
      const path = [
        "faults",
        "dns",
        "wrongAddress",
        ...(Array.isArray(input.faults.dns?.wrongAddress) ? [j] : []),
      ];
      const svc = findService(w.service, [...path, "service"]);
      if (w.ip === svc.clusterIP) fail([...path, "ip"], `${w.ip} is the Service's own ClusterIP`);
      return { service: serviceKey(svc), ip: w.ip };
    });
    dnsFaults = { staleAnswers: df.staleAnswers, nxdomain, wrongAddress };
  }

  const clientByName = new Map(clients.map((c) => [c.name, c]));
  const steps: Step[] = input.steps.map((step, i): Step => {
    if ("resolve" in step) {
      const r = step.resolve;
      const path = ["steps", i, "resolve"];
      if (dns === null) fail(path, "resolve needs cluster DNS: add `dns: true`");
      const client = clientByName.get(r.from) ?? fail([...path, "from"], `no client ${r.from}`);
      if (client.node === null)
        fail([...path, "from"], "an external client cannot reach the kube-dns ClusterIP");
      return {
        kind: "resolve",
        from: client.name,
        name: r.name,
        qtype: r.type,
        count: r.count,
        rate: r.rate,
        background: r.background,
        timeoutMs: durationMs(r.timeout),
        node: client.node ?? "",
      };
    }
    if ("traffic" in step) {
      const t = step.traffic;
      const path = ["steps", i, "traffic"];
      const client = clientByName.get(t.from) ?? fail([...path, "from"], `no client ${t.from}`);
      const ref = splitServiceRef(t.to);
      const svc = svcByKey.get(ref.key) ?? fail([...path, "to"], `no Service ${ref.key}`);
      let sp: LabServicePort | undefined;
      if (ref.port === null || ref.port === "") {
        if (svc.ports.length !== 1) fail([...path, "to"], "name the port: the Service has several");
        sp = svc.ports[0];
      } else {
        sp = svc.ports.find((p) => p.name === ref.port || String(p.port) === ref.port);
      }
      if (!sp) return fail([...path, "to"], `Service ${ref.key} has no port ${ref.port}`);
      let vip: string;
      let vipPort = sp.port;
      let node: string;
      if (t.via === "clusterIP") {
        if (client.node === null)
          fail([...path, "via"], "an external client cannot reach a ClusterIP; use nodePort");
        vip = svc.clusterIP;
        node = client.node ?? "";
      } else {
        const target = t.node ?? fail([...path, "node"], `via ${t.via} needs the node to aim at`);
        const tn = nodeByName.get(target) ?? fail([...path, "node"], `no node ${target}`);
        node = tn.name;
        if (t.via === "nodePort") {
          if (sp.nodePort === null) fail([...path, "via"], `Service ${ref.key} has no NodePort`);
          vip = tn.ip;
          vipPort = sp.nodePort ?? 0;
        } else if (t.via === "loadBalancer") {
          vip = svc.loadBalancerIP ?? fail([...path, "via"], `${ref.key} is no LoadBalancer`);
        } else {
          vip = svc.externalIPs[0] ?? fail([...path, "via"], `${ref.key} has no externalIPs`);
        }
        if (client.node !== null && client.node !== node && t.via !== "nodePort") {
          fail([...path, "node"], "a pod client's traffic is translated by its own node");
        }
      }
      return {
        kind: "traffic",
        from: client.name,
        service: ref.key,
        portName: sp.name,
        protocol: sp.protocol,
        vip,
        vipPort,
        via: t.via,
        node,
        count: t.count,
        rate: t.rate,
        sport: t.sport,
        background: t.background,
        timeoutMs: durationMs(t.timeout),
      };
    }
    if ("wait" in step) return { kind: "wait", ms: durationMs(step.wait) };
    if ("createService" in step) {
      return {
        kind: "createService",
        service: serviceKey(findService(step.createService, ["steps", i, "createService"])),
      };
    }
    if ("deleteService" in step) {
      return {
        kind: "deleteService",
        service: serviceKey(findService(step.deleteService, ["steps", i, "deleteService"])),
      };
    }
    if ("removeEndpoint" in step || "addEndpoint" in step) {
      const kind = "removeEndpoint" in step ? "removeEndpoint" : "addEndpoint";
      const ref = "removeEndpoint" in step ? step.removeEndpoint : step.addEndpoint;
      const svc = findService(ref.service, ["steps", i, kind, "service"]);
      const pod = podByName.get(ref.pod) ?? fail(["steps", i, kind, "pod"], `no pod ${ref.pod}`);
      if (kind === "addEndpoint") serve(pod, svc);
      return { kind, service: serviceKey(svc), pod: pod.name };
    }
    if ("flushConntrack" in step) {
      if (step.flushConntrack !== "all" && !nodeByName.has(step.flushConntrack))
        fail(["steps", i, "flushConntrack"], `no node ${step.flushConntrack}`);
      return { kind: "flushConntrack", node: step.flushConntrack };
    }
    return { kind: "dump", label: step.dump === true ? `step${i + 1}` : step.dump };
  });

  return {
    name: input.name,
    description: input.description,
    source,
    nodes,
    pods,
    clients,
    services,
    dns,
    faults: {
      probabilities: input.faults.probabilities ?? null,
      noMasquerade: input.faults.noMasquerade,
      nodes: faultNodes,
      staleRulesNode: input.faults.staleRulesNode ?? null,
      keepUdpConntrack: input.faults.keepUdpConntrack,
      dns: dnsFaults,
    },
    steps,
    expectFindings: input.expect.findings,
  };
}

export function selects(svc: LabService, pod: LabPod): boolean {
  if (pod.isClient || pod.namespace !== svc.namespace) return false;
  const entries = Object.entries(svc.selector);
  return entries.length > 0 && entries.every(([k, v]) => pod.labels[k] === v);
}
