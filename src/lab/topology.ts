import { EnvironmentError } from "../util/errors.js";
import { inNs, listNamespaces, must, run } from "./exec.js";
import { LAB_NET, type LabNode, type Scenario } from "./scenario.js";

/*
 * The lab's network: one namespace per node, pod and external client, and one more holding the
 * bridge that joins the nodes (never the root namespace, which the lab does not touch).
 *
 *   <prefix>br          br0 (172.30.0.1, the nodes' default route, which forwards nothing),
 *                       with one port per node (bn<i>) and per external client (bc<j>)
 *   <prefix>n-<node>    eth0 = node IP on the segment; vp<k> = veth to pod k, with the pod
 *                       CIDR's first address (/32) as the pods' gateway; routes to other nodes'
 *                       pod CIDRs via their node IP; default route via 172.30.0.1
 *   <prefix>p-<pod>     eth0 = pod IP/32, default route via the node's gateway address
 *   <prefix>c-<client>  eth0 = client IP on the segment (external clients)
 *
 * Pods are point-to-point (like kindnet or Calico) so a pod reaching itself through a Service
 * needs no hairpin mode on a bridge.
 */

export interface Topology {
  prefix: string;
  bridge: string;
  nodeNs: Map<string, string>;
  podNs: Map<string, string>;
  clientNs: Map<string, string>;
}

export function namespaceNames(scn: Scenario, prefix: string): Topology {
  const nodeNs = new Map(scn.nodes.map((n) => [n.name, `${prefix}n-${n.name}`]));
  const podNs = new Map(scn.pods.map((p) => [p.name, `${prefix}p-${p.name}`]));
  const clientNs = new Map<string, string>();
  for (const c of scn.clients) {
    const ns = c.hostNetwork
      ? `${prefix}n-${c.node}`
      : c.node === null
        ? `${prefix}c-${c.name}`
        : `${prefix}p-${c.name}`;
    clientNs.set(c.name, ns);
  }
  return { prefix, bridge: `${prefix}br`, nodeNs, podNs, clientNs };
}

/** Every namespace of the topology, bridge first. */
export function allNamespaces(topo: Topology): string[] {
  const external = [...topo.clientNs.values()].filter((ns) => ns.startsWith(`${topo.prefix}c-`));
  return [topo.bridge, ...topo.nodeNs.values(), ...topo.podNs.values(), ...external];
}

async function sysctl(ns: string, key: string, value: string, optional = false): Promise<void> {
  const result = await run(inNs(ns, ["sysctl", "-q", "-w", `${key}=${value}`]));
  if (result.code !== 0 && !optional) {
    throw new Error(`sysctl ${key}=${value} in ${ns} failed: ${result.stderr.trim()}`);
  }
}

/** Run `ip` commands in one namespace through one process (ip -batch). */
async function ipBatch(ns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await must(["ip", "-n", ns, "-batch", "-"], `${lines.join("\n")}\n`);
}

/**
 * Refuse to start when a namespace of this run already exists (another run with the same
 * prefix, or leftovers): called before anything is built, so the failure tears nothing down.
 */
export function assertNamespacesFree(scn: Scenario, prefix: string): void {
  const existing = new Set(listNamespaces());
  const clash = allNamespaces(namespaceNames(scn, prefix)).filter((ns) => existing.has(ns));
  if (clash.length > 0) {
    throw new EnvironmentError(
      `namespaces ${clash.slice(0, 3).join(", ")} already exist (another lab run with prefix ${prefix}, or leftovers: svctrace lab down --prefix ${prefix})`,
    );
  }
}

/** Build every namespace, link and route of the scenario. Throws on the first failure. */
export async function buildTopology(scn: Scenario, prefix: string): Promise<Topology> {
  const topo = namespaceNames(scn, prefix);
  assertNamespacesFree(scn, prefix);
  for (const ns of allNamespaces(topo)) {
    await must(["ip", "netns", "add", ns]);
    // IPv4 only: no router solicitations and MLD reports cluttering the traces.
    await sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1", true);
    await sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1", true);
  }

  // The segment's router: an address without forwarding, so traffic that no rule translated
  // leaves the node unchanged (visible on its egress, as on a real node) and ends there.
  const bridgeLines = [
    "link set lo up",
    "link add br0 type bridge",
    `addr add ${LAB_NET.router}/${LAB_NET.nodePrefix} dev br0`,
    "link set br0 up",
  ];
  const nodeLines = new Map<string, string[]>();
  const podLines = new Map<string, string[]>();
  const nodeByName = new Map(scn.nodes.map((n) => [n.name, n]));
  const nodeNsOf = (node: string): string => topo.nodeNs.get(node) ?? "";

  for (const node of scn.nodes) {
    const ns = nodeNsOf(node.name);
    bridgeLines.push(
      `link add bn${node.index} type veth peer name eth0 netns ${ns}`,
      `link set bn${node.index} master br0 up`,
    );
    const lines = [
      "link set lo up",
      `addr add ${node.ip}/${LAB_NET.nodePrefix} dev eth0`,
      "link set eth0 up",
    ];
    for (const other of scn.nodes) {
      if (other.name !== node.name) lines.push(`route add ${other.podCIDR} via ${other.ip}`);
    }
    lines.push(`route add default via ${LAB_NET.router}`);
    nodeLines.set(node.name, lines);
  }
  for (const pod of scn.pods) {
    const node = nodeByName.get(pod.node) as LabNode;
    const pns = topo.podNs.get(pod.name) ?? "";
    nodeLines
      .get(node.name)
      ?.push(
        `link add ${pod.hostIf} type veth peer name eth0 netns ${pns}`,
        `addr add ${node.gateway}/32 dev ${pod.hostIf}`,
        `link set ${pod.hostIf} up`,
      );
    podLines.set(pod.name, [
      "link set lo up",
      `addr add ${pod.ip}/32 dev eth0`,
      "link set eth0 up",
      `route add ${node.gateway}/32 dev eth0 scope link`,
      `route add default via ${node.gateway} dev eth0`,
    ]);
  }
  let j = 0;
  const clientLines = new Map<string, string[]>();
  for (const client of scn.clients) {
    if (client.node !== null) continue;
    j++;
    const ns = topo.clientNs.get(client.name) ?? "";
    bridgeLines.push(
      `link add bc${j} type veth peer name eth0 netns ${ns}`,
      `link set bc${j} master br0 up`,
    );
    clientLines.set(ns, [
      "link set lo up",
      `addr add ${client.ip}/${LAB_NET.nodePrefix} dev eth0`,
      "link set eth0 up",
    ]);
  }

  await ipBatch(topo.bridge, bridgeLines);
  // br_netfilter, when loaded, would run bridged frames through this namespace's (empty)
  // netfilter; keep the segment a plain wire.
  await sysctl(topo.bridge, "net.bridge.bridge-nf-call-iptables", "0", true);
  for (const node of scn.nodes) {
    const ns = nodeNsOf(node.name);
    // Pod-side links must exist before the node's routes to pods point at them.
    await ipBatch(ns, nodeLines.get(node.name) ?? []);
    await sysctl(ns, "net.ipv4.ip_forward", "1");
    await sysctl(ns, "net.ipv4.conf.all.rp_filter", "0");
    await sysctl(ns, "net.ipv4.conf.default.rp_filter", "0");
    await sysctl(ns, "net.ipv4.conf.all.route_localnet", "1");
    // Every REJECT and unreachable gets its ICMP error: with the default limit (1/s per peer
    // after a small burst) a burst of rejected connections would partly look dropped.
    await sysctl(ns, "net.ipv4.icmp_ratelimit", "0");
  }
  for (const pod of scn.pods) {
    const ns = topo.podNs.get(pod.name) ?? "";
    await ipBatch(ns, podLines.get(pod.name) ?? []);
    const node = nodeByName.get(pod.node) as LabNode;
    await ipBatch(nodeNsOf(node.name), [`route add ${pod.ip}/32 dev ${pod.hostIf}`]);
  }
  for (const [ns, lines] of clientLines) await ipBatch(ns, lines);
  // An unreachable pod: its end of the veth goes down after setup, so the node still routes to
  // it (ignore_routes_with_linkdown is off) but every packet is lost on the way.
  for (const pod of scn.pods) {
    if (pod.unreachable) await ipBatch(topo.podNs.get(pod.name) ?? "", ["link set eth0 down"]);
  }
  return topo;
}

/** Point an external client's route for one address (a LoadBalancer or external IP) at a node. */
export async function routeVia(ns: string, address: string, nodeIp: string): Promise<void> {
  await must(["ip", "-n", ns, "route", "replace", `${address}/32`, "via", nodeIp]);
}

/**
 * Delete every namespace whose name starts with the prefix, ending the processes still inside
 * first (a namespace with live processes outlives `ip netns del`). Returns the names deleted.
 */
export async function teardown(prefix: string): Promise<string[]> {
  if (prefix.length === 0) throw new Error("refusing to tear down with an empty prefix");
  return deleteNamespaces(listNamespaces().filter((ns) => ns.startsWith(prefix)));
}

/**
 * Delete exactly these namespaces (those that exist), ending their processes first. A run
 * tears down its own namespaces by name, never by prefix: with the default prefix `svt-` a
 * prefix match would also take other runs' `svt-…` namespaces.
 */
export async function deleteNamespaces(names: string[]): Promise<string[]> {
  const existing = new Set(listNamespaces());
  const mine = names.filter((ns) => existing.has(ns));
  for (const ns of mine) {
    const pids = await run(["ip", "netns", "pids", ns]);
    for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
  for (const ns of mine) await run(["ip", "netns", "del", ns]);
  return mine;
}
