import { normalizeIP } from "../util/ip.js";
import type { InventorySnapshot, NodeInfo, RuleSetView, ServicePortView } from "./types.js";
import { protoNumber } from "./types.js";

/** Protocol number (< 256) and port in one small integer. */
function protoPort(proto: number, port: number): number {
  return proto * 65536 + port;
}

/** Which addresses are Service VIPs, which are endpoints, which belong to which node. */
export class ServiceIndex {
  // Looked up per connection: by protocol and port in one small integer, then by address (the
  // addresses are shared strings), so no key text is built per lookup.
  private readonly vips = new Map<number, Map<string, string>>();
  private readonly endpoints = new Map<number, Map<string, Set<string>>>();
  private readonly addressesOf = new Map<string, Set<string>>();
  private readonly nodeOf = new Map<string, string>();
  private vipTotal = 0;
  readonly nodes: NodeInfo[];

  constructor(nodes: NodeInfo[], sources: readonly (readonly ServicePortView[])[]) {
    this.nodes = nodes;
    for (const node of nodes) {
      for (const addr of node.addresses) {
        const ip = normalizeIP(addr.split("/")[0] ?? addr);
        if (ip === null) continue;
        this.nodeOf.set(ip, node.name);
        let set = this.addressesOf.get(node.name);
        if (set === undefined) this.addressesOf.set(node.name, (set = new Set()));
        set.add(ip);
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
      if (norm !== null) this.setVip(proto, norm, sp.port, sp.key);
    }
    if (sp.nodePort !== null) {
      for (const node of this.nodes) {
        for (const addr of node.addresses) {
          const norm = normalizeIP(addr.split("/")[0] ?? addr);
          if (norm !== null) this.setVip(proto, norm, sp.nodePort, sp.key);
        }
      }
    }
    for (const ep of sp.endpoints) {
      let byIp = this.endpoints.get(protoPort(proto, ep.port));
      if (byIp === undefined) this.endpoints.set(protoPort(proto, ep.port), (byIp = new Map()));
      let set = byIp.get(ep.ip);
      if (set === undefined) byIp.set(ep.ip, (set = new Set()));
      set.add(sp.key);
    }
  }

  private setVip(proto: number, ip: string, port: number, key: string): void {
    let byIp = this.vips.get(protoPort(proto, port));
    if (byIp === undefined) this.vips.set(protoPort(proto, port), (byIp = new Map()));
    if (!byIp.has(ip)) this.vipTotal++;
    byIp.set(ip, key);
  }

  /** The Service port a VIP:port belongs to, or null when it is no VIP. */
  vip(proto: number, ip: string, port: number): string | null {
    return this.vips.get(protoPort(proto, port))?.get(ip) ?? null;
  }

  /** Service ports that list ip:port as an endpoint. */
  endpointOf(proto: number, ip: string, port: number): ReadonlySet<string> | null {
    return this.endpoints.get(protoPort(proto, port))?.get(ip) ?? null;
  }

  /** Is ip an address of the named node? */
  isLocal(node: string, ip: string): boolean {
    return this.addressesOf.get(node)?.has(ip) ?? false;
  }

  /** The node owning an address, or null. */
  nodeOfAddress(ip: string): string | null {
    return this.nodeOf.get(ip) ?? null;
  }

  get vipCount(): number {
    return this.vipTotal;
  }
}

/** Every node's rule sets ordered by time: "the rules in force at t". */
export class RuleSetTimeline {
  private readonly byNode = new Map<string, RuleSetView[]>();
  readonly all: RuleSetView[];

  constructor(rulesets: readonly RuleSetView[]) {
    this.all = [...rulesets].sort((a, b) => a.takenAt - b.takenAt || a.id - b.id);
    for (const rs of this.all) {
      for (const map of [this.byNode, this.byFamily[rs.family]]) {
        let list = map.get(rs.node);
        if (list === undefined) map.set(rs.node, (list = []));
        list.push(rs);
      }
    }
  }

  /** Each node's rule sets of one family. */
  private readonly byFamily = {
    4: new Map<string, RuleSetView[]>(),
    6: new Map<string, RuleSetView[]>(),
  };

  private lists(family: 4 | 6 | undefined): Map<string, RuleSetView[]> {
    return family === undefined ? this.byNode : this.byFamily[family];
  }

  /** Does the node have a rule set (of that family, when given)? */
  has(node: string, family?: 4 | 6): boolean {
    return this.lists(family).has(node);
  }

  nodes(): string[] {
    return [...this.byNode.keys()];
  }

  /**
   * The node's rule sets in time order: of one family, or of both. A sequence to compare dump
   * by dump must be of one family (an ip6tables dump lacks every IPv4-only Service).
   */
  forNode(node: string, family?: 4 | 6): readonly RuleSetView[] {
    return this.lists(family).get(node) ?? [];
  }

  /**
   * The latest dump of the family taken at or before t. A connection older than the first dump
   * is judged against the first one: a dump is usually taken after the capture started.
   */
  at(node: string, t: number, family: 4 | 6 = 4): RuleSetView | null {
    const list = this.byFamily[family].get(node);
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
