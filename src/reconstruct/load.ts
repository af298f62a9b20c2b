import type { Outcome } from "../netfilter/index.js";
import { Simulator as NetfilterSimulator } from "../netfilter/index.js";
import { applyRestore, parseIptablesSave } from "../rules/iptables-save.js";
import type { RuleSet } from "../rules/model.js";
import { parsePodEnv } from "../rules/pod-env.js";
import type { Db } from "../store/index.js";
import {
  listCaptures,
  listConntrack,
  listDns,
  listDocuments,
  listEndpoints,
  listInventorySnapshots,
  listNodes,
  listRuleSets,
  listServices,
  loadRuleSetText,
} from "../store/index.js";
import { normalizeIP } from "../util/ip.js";
import { readEvents } from "./events.js";
import { chainRuleLines, extractKubeModel } from "./kube-rules.js";
import type {
  ConntrackView,
  DnsView,
  EndpointView,
  Hook,
  InventorySnapshot,
  LegView,
  NodeInfo,
  PodEnvView,
  Proto,
  RuleSetView,
  ServicePortView,
  SimPacket,
  SimResult,
  Simulator,
  TranslationView,
} from "./types.js";

/** Everything reconstruction and the checks read, loaded from one database. */
export interface AnalysisData {
  nodes: NodeInfo[];
  rulesets: RuleSetView[];
  inventory: InventorySnapshot[];
  conntrack: ConntrackView[];
  dns: DnsView[];
  podEnvs: PodEnvView[];
  simulator: Simulator;
  /** Legs and translations in time order, streamed (from a reader thread when possible). */
  events(): Iterable<LegView | TranslationView>;
  range: { from: number; to: number } | null;
  /** Rule sets that could not be parsed, with the reason. */
  warnings: string[];
}

/**
 * The one place that knows the store's schema. The simulator runs on the parsed rule sets with
 * each node's addresses as its local addresses.
 */
export function loadAnalysis(db: Db): AnalysisData {
  const warnings: string[] = [];
  const nodes = loadNodes(db);
  const addrs = new Map(nodes.map((n) => [n.name, n.addresses]));

  const parsed = new Map<number, RuleSet>();
  const rulesets: RuleSetView[] = [];
  // The last full dump per node and family: a partial restore applies to its own family's.
  const lastFull = new Map<string, RuleSet>();
  for (const stored of listRuleSets(db)) {
    if (stored.node === null) continue;
    if (stored.family !== "ipv4" && stored.family !== "ipv6") continue;
    const base = lastFull.get(`${stored.family}|${stored.node}`);
    const text = loadRuleSetText(db, stored.id);
    if (text === undefined) continue;
    let rs: RuleSet;
    try {
      rs =
        stored.kind === "iptables-restore" && base !== undefined
          ? applyRestore(base, text, { source: stored.source, takenAt: stored.takenAt })
          : parseIptablesSave(text, {
              source: stored.source,
              takenAt: stored.takenAt,
              family: stored.family,
            });
    } catch (error) {
      warnings.push(`${stored.source}: ${(error as Error).message}`);
      continue;
    }
    lastFull.set(`${stored.family}|${stored.node}`, rs);
    parsed.set(stored.id, rs);
    rulesets.push(ruleSetView(stored.id, stored.node, stored.takenAt ?? rs.takenAt ?? 0, rs));
  }

  const simulator = netfilterSimulator(parsed, rulesets, addrs);

  const conntrack: ConntrackView[] = [];
  for (const c of listConntrack(db)) {
    if (c.node === null || c.origSport === null || c.origDport === null) continue;
    if (c.replySport === null || c.replyDport === null) continue;
    conntrack.push({
      id: c.id,
      node: c.node,
      takenAt: c.takenAt ?? 0,
      proto: c.proto,
      orig: {
        proto: c.proto,
        srcIp: c.origSrc,
        srcPort: c.origSport,
        dstIp: c.origDst,
        dstPort: c.origDport,
      },
      reply: {
        proto: c.proto,
        srcIp: c.replySrc,
        srcPort: c.replySport,
        dstIp: c.replyDst,
        dstPort: c.replyDport,
      },
      state: c.state,
      timeout: c.timeout,
    });
  }

  const dns: DnsView[] = listDns(db).map((d) => ({
    id: d.rowId,
    node: d.node ?? "",
    ts: d.ts,
    clientIp: d.clientIp,
    serverIp: d.serverIp,
    isResponse: d.isResponse,
    qname: d.qname,
    qtype: d.qtype,
    rcode: d.rcode,
    answers: d.answers.map((a) => ({ name: a.name, type: a.type, data: a.data })),
  }));

  const podEnvs: PodEnvView[] = [];
  for (const doc of listDocuments(db, "pod-env")) {
    try {
      const env = parsePodEnv(doc.text, doc.source);
      podEnvs.push({
        pod: env.pod ?? doc.node ?? doc.source,
        startedAt: env.startedAt ?? doc.takenAt,
        vars: env.vars,
        source: doc.source,
      });
    } catch (error) {
      warnings.push(`${doc.source}: ${(error as Error).message}`);
    }
  }

  let range: { from: number; to: number } | null = null;
  for (const c of listCaptures(db)) {
    if (c.firstTs === null || c.lastTs === null) continue;
    range =
      range === null
        ? { from: c.firstTs, to: c.lastTs }
        : { from: Math.min(range.from, c.firstTs), to: Math.max(range.to, c.lastTs) };
  }

  return {
    nodes,
    rulesets,
    inventory: loadInventory(db),
    conntrack,
    dns,
    podEnvs,
    simulator,
    range,
    warnings,
    events: () => readEvents(db),
  };
}

/**
 * The netfilter simulator behind reconstruction's narrow `Simulator` interface: one compiled
 * simulator per rule set (made on first use), with the node's addresses as local addresses.
 */
export function netfilterSimulator(
  parsed: ReadonlyMap<number, RuleSet>,
  views: readonly RuleSetView[],
  addrs: ReadonlyMap<string, string[]>,
): Simulator {
  const sims = new Map<number, NetfilterSimulator>();
  return {
    simulate(rulesetId: number, hook: Hook, p: SimPacket): SimResult {
      let sim = sims.get(rulesetId);
      if (sim === undefined) {
        const rs = parsed.get(rulesetId);
        const view = views.find((r) => r.id === rulesetId);
        if (rs === undefined || view === undefined) return { outcomes: [], unmodelled: [] };
        sim = new NetfilterSimulator(rs, { localAddresses: addrs.get(view.node) ?? [] });
        sims.set(rulesetId, sim);
      }
      const res = sim.trace(
        { proto: p.proto, src: p.srcIp, sport: p.srcPort, dst: p.dstIp, dport: p.dstPort },
        { hook },
      );
      return {
        outcomes: res.outcomes.map((o: Outcome) => ({
          verdict: o.verdict,
          endpoint: o.endpoint,
          probability: o.probability,
          masquerade: o.masquerade,
          snat: o.snat,
          path: o.path.map((step) => ({
            table: step.table,
            chain: step.chain,
            index: step.index,
            line: step.line,
            rule: step.rule,
          })),
        })),
        unmodelled: res.unmodelled.map((u) => `${u.what} (${u.table} ${u.chain} line ${u.line})`),
      };
    },
  };
}

/** A parsed rule set as the analysis sees it. */
export function ruleSetView(id: number, node: string, takenAt: number, rs: RuleSet): RuleSetView {
  const model = extractKubeModel(rs);
  return {
    id,
    node,
    family: rs.family === "ipv6" ? 6 : 4,
    takenAt,
    services: model.services,
    orphanChains: model.orphanChains,
    chainRules: (chain) => chainRuleLines(rs, chain),
  };
}

interface BundleJson {
  nodes?: { name?: unknown; addresses?: unknown; podGateway?: unknown }[];
}

interface IpAddrJson {
  ifname?: string;
  addr_info?: { local?: string }[];
}

/** Nodes and their addresses: from bundle.json, `ip -j addr` dumps, and every name seen. */
function loadNodes(db: Db): NodeInfo[] {
  const byName = new Map<string, Set<string>>();
  const add = (name: string, ip: unknown) => {
    let set = byName.get(name);
    if (set === undefined) byName.set(name, (set = new Set()));
    if (typeof ip !== "string") return;
    const norm = normalizeIP(ip.split("/")[0] ?? ip);
    if (norm !== null) set.add(norm);
  };
  for (const name of listNodes(db)) add(name, null);
  for (const doc of listDocuments(db, "bundle-json")) {
    try {
      const b = JSON.parse(doc.text) as BundleJson;
      for (const n of b.nodes ?? []) {
        if (typeof n.name !== "string") continue;
        add(n.name, null);
        if (Array.isArray(n.addresses)) for (const a of n.addresses) add(n.name, a);
        add(n.name, n.podGateway);
      }
    } catch {
      // A bundle.json that is not JSON was reported at ingest; nothing to learn here.
    }
  }
  for (const doc of listDocuments(db, "ip-addr-json")) {
    if (doc.node === null) continue;
    try {
      const list = JSON.parse(doc.text) as IpAddrJson[];
      for (const iface of list) {
        if (iface.ifname === "lo") continue;
        for (const a of iface.addr_info ?? []) add(doc.node, a.local);
      }
    } catch {
      // As above.
    }
  }
  return [...byName].map(([name, set]) => ({ name, addresses: [...set] }));
}

interface PortSpec {
  name?: string;
  protocol?: string;
  port?: number;
  nodePort?: number;
}

/** Inventory snapshots as Service ports with their endpoints (matched by port name). */
function loadInventory(db: Db): InventorySnapshot[] {
  const out: InventorySnapshot[] = [];
  for (const snap of listInventorySnapshots(db)) {
    const services = listServices(db, snap.id);
    const endpoints = listEndpoints(db, snap.id);
    const epsBySvc = new Map<string, typeof endpoints>();
    for (const e of endpoints) {
      const k = `${e.namespace}/${e.service ?? ""}`;
      let list = epsBySvc.get(k);
      if (list === undefined) epsBySvc.set(k, (list = []));
      list.push(e);
    }
    const ports: ServicePortView[] = [];
    const names: string[] = [];
    for (const s of services) {
      const name = `${s.namespace}/${s.name}`;
      names.push(name);
      const specs = (s.ports as PortSpec[]).filter((p) => typeof p === "object" && p !== null);
      for (const p of specs.length > 0 ? specs : s.externalName !== null ? [{}] : []) {
        const proto = (p.protocol ?? "TCP").toLowerCase() as Proto;
        const label = p.name !== undefined && p.name !== "" ? p.name : String(p.port ?? 0);
        const eps: EndpointView[] = [];
        for (const e of epsBySvc.get(name) ?? []) {
          if ((e.portName ?? "") !== (p.name ?? "")) continue;
          if (e.protocol !== null && e.protocol.toLowerCase() !== proto) continue;
          if (e.port === null || e.ready === false) continue;
          const ip = normalizeIP(e.address);
          if (ip === null) continue;
          eps.push({
            ip,
            port: e.port,
            probability: null,
            ready: true,
            node: e.nodeName,
            chain: null,
          });
        }
        ports.push({
          key: `${name}:${label}`,
          proto,
          type: s.type,
          clusterIPs: s.clusterIps.filter((ip) => ip !== "None" && ip !== ""),
          port: p.port ?? 0,
          nodePort: p.nodePort ?? null,
          externalIPs: s.externalIps,
          loadBalancerIPs: s.loadBalancerIps,
          affinityTimeout: s.sessionAffinity === "ClientIP" ? (s.affinityTimeout ?? 10800) : null,
          externalTrafficPolicy:
            s.externalTrafficPolicy === "Local" || s.externalTrafficPolicy === "Cluster"
              ? s.externalTrafficPolicy
              : null,
          endpoints: eps,
          externalName: s.externalName,
          chain: null,
          masquerades: null,
          rejects: false,
          createdAt: null,
        });
      }
    }
    out.push({ takenAt: snap.takenAt ?? 0, services: ports, serviceNames: names });
  }
  return out;
}
