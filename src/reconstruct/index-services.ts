import { normalizeIP } from "../util/ip.js";
import type { InventorySnapshot, NodeInfo, RuleSetView, ServicePortView } from "./types.js";
import { protoNumber } from "./types.js";

/** Which addresses are Service VIPs, which are endpoints, which belong to which node. */
export class ServiceIndex {
  private readonly vips = new Map<string, string>();
  private readonly endpoints = new Map<string, Set<string>>();
  private readonly nodeOf = new Map<string, string>();
  readonly nodes: NodeInfo[];

  constructor(nodes: NodeInfo[], sources: readonly (readonly ServicePortView[])[]) {
    this.nodes = nodes;
    for (const node of nodes) {
      for (const addr of node.addresses) {
        const ip = normalizeIP(addr.split("/")[0] ?? addr);
        if (ip !== null) this.nodeOf.set(`${node.name}|${ip}`, node.name).set(ip, node.name);
      }
    }
    for (const services of sources) {
      for (const sp of services) this.add(sp);
    }
  }

  private add(sp: ServicePortView): void {
    const proto = protoNumber(sp.proto);
    for (const ip of [...sp.clusterIPs, ...sp.externalIPs, ...sp.loadBalancerIPs]) {
      const norm = normalizeIP(ip);
      if (norm !== null) this.vips.set(`${proto}|${norm}|${sp.port}`, sp.key);
    }
    if (sp.nodePort !== null) {
      for (const node of this.nodes) {
        for (const addr of node.addresses) {
          const norm = normalizeIP(addr.split("/")[0] ?? addr);
          if (norm !== null) this.vips.set(`${proto}|${norm}|${sp.nodePort}`, sp.key);
        }
      }
    }
    for (const ep of sp.endpoints) {
      const key = `${proto}|${ep.ip}|${ep.port}`;
      let set = this.endpoints.get(key);
      if (set === undefined) this.endpoints.set(key, (set = new Set()));
      set.add(sp.key);
    }
  }

  /** The Service port a VIP:port belongs to, or null when it is no VIP. */
  vip(proto: number, ip: string, port: number): string | null {
    return this.vips.get(`${proto}|${ip}|${port}`) ?? null;
  }

  /** Service ports that list ip:port as an endpoint. */
  endpointOf(proto: number, ip: string, port: number): ReadonlySet<string> | null {
    return this.endpoints.get(`${proto}|${ip}|${port}`) ?? null;
  }

  /** Is ip an address of the named node? */
  isLocal(node: string, ip: string): boolean {
    return this.nodeOf.has(`${node}|${ip}`);
  }

  /** The node owning an address, or null. */
  nodeOfAddress(ip: string): string | null {
    return this.nodeOf.get(ip) ?? null;
  }

  get vipCount(): number {
    return this.vips.size;
  }
}

/** Every node's rule sets ordered by time: "the rules in force at t". */
export class RuleSetTimeline {
  private readonly byNode = new Map<string, RuleSetView[]>();
  readonly all: RuleSetView[];

  constructor(rulesets: readonly RuleSetView[]) {
    this.all = [...rulesets].sort((a, b) => a.takenAt - b.takenAt || a.id - b.id);
    for (const rs of this.all) {
      let list = this.byNode.get(rs.node);
      if (list === undefined) this.byNode.set(rs.node, (list = []));
      list.push(rs);
    }
  }

  has(node: string): boolean {
    return this.byNode.has(node);
  }

  nodes(): string[] {
    return [...this.byNode.keys()];
  }

  forNode(node: string): readonly RuleSetView[] {
    return this.byNode.get(node) ?? [];
  }

  /**
   * The latest dump taken at or before t. A connection older than the first dump is judged
   * against the first one: a dump is usually taken after the capture started.
   */
  at(node: string, t: number): RuleSetView | null {
    const list = this.byNode.get(node);
    if (list === undefined || list.length === 0) return null;
    let lo = 0;
    let hi = list.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((list[mid]?.takenAt ?? 0) <= t) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return list[Math.max(best, 0)] ?? null;
  }
}

/** The inventory snapshots ordered by time. */
export class InventoryTimeline {
  readonly snapshots: InventorySnapshot[];

  constructor(snapshots: readonly InventorySnapshot[]) {
    this.snapshots = [...snapshots].sort((a, b) => a.takenAt - b.takenAt);
  }

  at(t: number): InventorySnapshot | null {
    let best: InventorySnapshot | null = null;
    for (const s of this.snapshots) {
      if (s.takenAt <= t) best = s;
      else break;
    }
    return best ?? this.snapshots[0] ?? null;
  }

  /** The first snapshot taken after `t`, or null. */
  after(t: number): InventorySnapshot | null {
    for (const s of this.snapshots) if (s.takenAt > t) return s;
    return null;
  }
}
