import type { ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { UsageError } from "../util/errors.js";
import { clusterDnsZone } from "./cluster-dns.js";
import { ctTranslation, parseConntrackList } from "./conntrack.js";
import type { DnsServerLog, DnsZone } from "./dns-server.js";
import {
  checkLabEnvironment,
  inNs,
  LabCommandError,
  must,
  privateAgent,
  run,
  sleep,
  spawnInNs,
} from "./exec.js";
import { deriveExpected, type LoadedTimeline, verdictFor } from "./expected.js";
import {
  type GenFaults,
  type GenNode,
  type GenServicePort,
  generateIptablesRestore,
} from "./kubeproxy-gen.js";
import type { ResolveRecord } from "./resolve.js";
import {
  LAB_NET,
  type LabPod,
  type LabService,
  type ResolveStep,
  type Scenario,
  serviceKey,
  type TrafficStep,
} from "./scenario.js";
import type { SendRecord } from "./send.js";
import {
  type ClusterState,
  cloneState,
  genServicePorts,
  initialState,
  inventoryJson,
  selectedPods,
} from "./state.js";
import { type CaptureStats, type RunningCapture, startCapture } from "./tcpdump.js";
import {
  allNamespaces,
  assertNamespacesFree,
  buildTopology,
  deleteNamespaces,
  namespaceNames,
  routeVia,
  type Topology,
} from "./topology.js";
import type { BundleManifest, LabEvent, TruthConnection, TruthFile, TruthLookup } from "./truth.js";

/*
 * `svctrace lab run`: build the namespaces, start servers and captures, load kube-proxy's rules,
 * play the steps, and write a bundle with its ground truth. Whatever happens, the namespaces are
 * deleted before it returns (also on Ctrl-C: see the signal handling in runLab).
 */

export interface LabRunOptions {
  scenario: Scenario;
  out: string;
  prefix: string;
  /** Progress lines (the CLI prints them on stderr). */
  log?: (line: string) => void;
  /** The command line to record in bundle.json, e.g. "svctrace lab run …". */
  command?: string;
  /** Replace an earlier bundle in `out` (its README.md and scenario.yaml are kept). */
  force?: boolean;
  /**
   * Where each node's rules come from: by default kube-proxy's iptables mode as
   * src/lab/kubeproxy-gen.ts writes it (with the scenario's faults). The replay harness passes
   * another implementation here to run the same scenario against it in the kernel. The text
   * is fed to a flushing `iptables-restore`, so it must hold the jumps from the built-in chains.
   */
  rules?: (ports: GenServicePort[], node: GenNode, faults: GenFaults) => string;
}

export interface LabRunResult {
  out: string;
  connections: number;
  answered: number;
  captures: { observer: string; file: string; stats: CaptureStats }[];
  warnings: string[];
  seconds: number;
}

/** Thrown when the run was interrupted by SIGINT/SIGTERM (after tearing down). */
export class LabInterrupted extends Error {
  override name = "LabInterrupted";
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}; lab namespaces removed`);
  }
}

/** Compact UTC time for file names, with milliseconds: 20261125T161500.123Z. */
export function fileTime(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/[-:]/g, "");
}

function validatePrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(prefix)) {
    throw new UsageError(
      `--prefix ${JSON.stringify(prefix)}: use 1–12 characters a-z, 0-9, - starting with a letter`,
    );
  }
}

// A bundle directory may hold its README and scenario before the run writes the rest.
const KEPT = new Set(["README.md", "scenario.yaml"]);
const WRITTEN = ["bundle.json", "truth.json", "expected.json", "inventory", "nodes", "clients"];

function prepareOut(out: string, force: boolean): void {
  if (!existsSync(out)) return;
  const extra = readdirSync(out).filter((name) => !KEPT.has(name));
  if (extra.length === 0) return;
  const unknown = extra.filter((name) => !WRITTEN.includes(name));
  if (!force || unknown.length > 0) {
    throw new UsageError(
      `--out ${out} already holds ${(unknown.length > 0 ? unknown : extra).slice(0, 3).join(", ")}` +
        (unknown.length > 0 ? "" : " (use --force to replace the bundle)"),
    );
  }
  for (const name of extra) rmSync(join(out, name), { recursive: true, force: true });
}

export async function runLab(opts: LabRunOptions): Promise<LabRunResult> {
  validatePrefix(opts.prefix);
  checkLabEnvironment();
  prepareOut(opts.out, opts.force ?? false);
  assertNamespacesFree(opts.scenario, opts.prefix);
  const runner = new LabRunner(opts);
  const onSignal = (signal: NodeJS.Signals): void => runner.interrupt(signal);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await runner.run();
  } finally {
    runner.killChildren();
    runner.agent.cleanup();
    await deleteNamespaces(allNamespaces(namespaceNames(opts.scenario, opts.prefix)));
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

interface TrafficResult {
  step: number;
  traffic: TrafficStep;
  records: SendRecord[];
}

interface ResolveResult {
  step: number;
  resolve: ResolveStep;
  records: ResolveRecord[];
}

class LabRunner {
  private readonly scn: Scenario;
  private readonly out: string;
  private readonly log: (line: string) => void;
  private topo: Topology | null = null;
  private readonly children = new Set<ChildProcess>();
  private interrupted: string | null = null;
  private desired: ClusterState;
  private readonly loaded: LoadedTimeline = new Map();
  private readonly created = new Map<string, number>();
  private readonly snapshots: BundleManifest["snapshots"] = [];
  private readonly events: LabEvent[] = [];
  private readonly traffic: TrafficResult[] = [];
  private readonly resolves: ResolveResult[] = [];
  /** The zone the cluster DNS serves now, and every query it answered. */
  private zone: DnsZone | null = null;
  private readonly dnsLog: DnsServerLog[] = [];
  private readonly background: Promise<void>[] = [];
  private readonly warnings: string[] = [];
  private lastStamp = 0;
  readonly agent = privateAgent();

  constructor(private readonly opts: LabRunOptions) {
    this.scn = opts.scenario;
    this.out = opts.out;
    this.log = opts.log ?? (() => {});
    this.desired = initialState(this.scn);
  }

  interrupt(signal: string): void {
    this.interrupted = signal;
    this.killChildren();
  }

  killChildren(): void {
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }

  private checkInterrupted(): void {
    if (this.interrupted !== null) throw new LabInterrupted(this.interrupted);
  }

  /** A unique file-name time: two snapshots never share a name. */
  private stamp(): { ms: number; text: string } {
    let ms = Date.now();
    if (ms <= this.lastStamp) ms = this.lastStamp + 1;
    this.lastStamp = ms;
    return { ms, text: fileTime(ms) };
  }

  private ns(kind: "node" | "pod" | "client", name: string): string {
    const topo = this.topo as Topology;
    const map = kind === "node" ? topo.nodeNs : kind === "pod" ? topo.podNs : topo.clientNs;
    const ns = map.get(name);
    if (ns === undefined) throw new Error(`no namespace for ${kind} ${name}`);
    return ns;
  }

  async run(): Promise<LabRunResult> {
    const t0 = Date.now();
    const scn = this.scn;
    mkdirSync(this.out, { recursive: true });
    for (const dir of ["inventory", "nodes"]) mkdirSync(join(this.out, dir), { recursive: true });
    for (const node of scn.nodes)
      mkdirSync(join(this.out, "nodes", node.name), { recursive: true });

    this.log(`building ${scn.nodes.length} nodes, ${scn.pods.length} pods`);
    this.topo = await buildTopology(scn, this.opts.prefix);
    this.checkInterrupted();
    this.writeZone();
    await this.startServers();

    const start = Date.now() / 1000;
    for (const key of this.desired.services.keys()) this.created.set(key, start - 3600);
    for (const node of scn.nodes) await this.loadRules(node.name, this.desired);
    this.writeInventory();
    for (const node of scn.nodes) {
      const addr = await must(inNs(this.ns("node", node.name), ["ip", "-j", "addr"]));
      writeFileSync(join(this.out, "nodes", node.name, "addr.json"), addr);
    }
    await this.dumpAll("start");

    const captures = await this.startCaptures();
    // tcpdump reports "listening" before its ring is mapped on every interface of "any".
    await sleep(300);
    let captureStats: LabRunResult["captures"] = [];
    try {
      for (const [i, step] of scn.steps.entries()) {
        this.checkInterrupted();
        await this.step(i, step);
      }
      await Promise.all(this.background);
      this.checkInterrupted();
      await sleep(300);
      await this.dumpAll("end");
    } finally {
      captureStats = await this.stopCaptures(captures);
    }
    this.checkInterrupted();
    const truth = this.writeResults(captureStats, t0);
    return {
      out: this.out,
      connections: truth.connections.length,
      answered: truth.connections.filter((c) => c.answered).length,
      captures: captureStats,
      warnings: this.warnings,
      seconds: (Date.now() - t0) / 1000,
    };
  }

  // ---- servers ------------------------------------------------------------------------------

  private async startServers(): Promise<void> {
    const cli = this.agent.path;
    const ready: Promise<void>[] = [];
    for (const pod of this.scn.pods) {
      if (pod.dnsServer) {
        ready.push(this.startDnsServer(pod));
        continue;
      }
      if (!pod.server || pod.unreachable) continue;
      if (pod.tcpPorts.length === 0 && pod.udpPorts.length === 0) continue;
      const argv = [process.execPath, cli, "serve", "--name", pod.name, "--host", pod.ip];
      for (const p of pod.tcpPorts) argv.push("--tcp", String(p));
      for (const p of pod.udpPorts) argv.push("--udp", String(p));
      const child = spawnInNs(this.ns("pod", pod.name), argv);
      this.children.add(child);
      ready.push(
        new Promise<void>((resolve, reject) => {
          let stdout = "";
          let stderr = "";
          child.stdout?.setEncoding("utf8");
          child.stderr?.setEncoding("utf8");
          child.stderr?.on("data", (c: string) => {
            stderr += c;
          });
          child.stdout?.on("data", (c: string) => {
            stdout += c;
            if (stdout.includes("ready")) resolve();
          });
          child.once("exit", (code) =>
            reject(new Error(`server in pod ${pod.name} exited (${code}): ${stderr.trim()}`)),
          );
        }),
      );
    }
    await Promise.all(ready);
  }

  private get zoneFile(): string {
    return join(this.agent.dir, "zone.json");
  }

  /**
   * The cluster DNS pod: the lab's DNS server answering from the zone file. Its stdout is one
   * JSON line per answered query (kept for the truth); "ready" once it listens.
   */
  private startDnsServer(pod: LabPod): Promise<void> {
    const argv = [process.execPath, this.agent.path, "dns", "--name", pod.name];
    argv.push("--host", pod.ip, "--port", "53", "--zone", this.zoneFile);
    const child = spawnInNs(this.ns("pod", pod.name), argv);
    this.children.add(child);
    return new Promise<void>((resolve, reject) => {
      let pending = "";
      let stderr = "";
      child.stdout?.setEncoding("utf8");
      child.stderr?.setEncoding("utf8");
      child.stderr?.on("data", (c: string) => {
        stderr += c;
      });
      child.stdout?.on("data", (c: string) => {
        pending += c;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          if (line.startsWith("ready")) resolve();
          else if (line.startsWith("{")) this.dnsLog.push(JSON.parse(line) as DnsServerLog);
        }
      });
      child.once("exit", (code) =>
        reject(new Error(`DNS server in pod ${pod.name} exited (${code}): ${stderr.trim()}`)),
      );
    });
  }

  /**
   * Rewrite what the cluster DNS answers from the desired state (and the DNS faults), at once:
   * the server re-reads the file for every query, and the rename makes the change atomic.
   */
  private writeZone(): void {
    if (this.scn.dns === null) return;
    this.zone = clusterDnsZone(this.scn, this.desired, this.scn.faults.dns, this.zone);
    const tmp = `${this.zoneFile}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.zone)}\n`);
    renameSync(tmp, this.zoneFile);
  }

  // ---- rules, dumps, inventory ----------------------------------------------------------------

  private faultsFor(node: string): GenFaults {
    const f = this.scn.faults;
    if (!f.nodes.includes(node)) return {};
    return {
      ...(f.probabilities !== null ? { probabilities: f.probabilities } : {}),
      ...(f.noMasquerade ? { noMasquerade: true } : {}),
    };
  }

  private async loadRules(node: string, state: ClusterState): Promise<void> {
    const n = this.scn.nodes.find((x) => x.name === node);
    if (!n) throw new Error(`no node ${node}`);
    const generate = this.opts.rules ?? generateIptablesRestore;
    const text = generate(
      genServicePorts(this.scn, state),
      { name: n.name, nodeIPs: [n.ip], clusterCIDR: LAB_NET.clusterCIDR },
      this.faultsFor(node),
    );
    await must(inNs(this.ns("node", node), ["iptables-restore", "-w"]), text);
    const timeline = this.loaded.get(node) ?? [];
    timeline.push({ since: Date.now() / 1000, state: cloneState(state) });
    this.loaded.set(node, timeline);
  }

  private writeInventory(): void {
    const { ms, text } = this.stamp();
    const file = join("inventory", `${text}.json`);
    const json = inventoryJson(this.scn, this.desired, this.created);
    writeFileSync(join(this.out, file), `${JSON.stringify(json, null, 2)}\n`);
    this.snapshots.push({ time: ms / 1000, kind: "inventory", node: null, file });
  }

  private async dumpNode(node: string): Promise<void> {
    const ns = this.ns("node", node);
    const { ms, text } = this.stamp();
    const rules = await must(inNs(ns, ["iptables-save"]));
    const rulesFile = join("nodes", node, `iptables-${text}.save`);
    writeFileSync(join(this.out, rulesFile), rules);
    this.snapshots.push({ time: ms / 1000, kind: "iptables", node, file: rulesFile });
    const ct = await run(inNs(ns, ["conntrack", "-L"]));
    if (ct.code !== 0) throw new LabCommandError(["conntrack", "-L"], ct);
    const ctFile = join("nodes", node, `conntrack-${text}.txt`);
    writeFileSync(join(this.out, ctFile), ct.stdout);
    this.snapshots.push({ time: ms / 1000, kind: "conntrack", node, file: ctFile });
  }

  private async dumpAll(label: string): Promise<void> {
    this.log(`dump rules and conntrack (${label})`);
    for (const node of this.scn.nodes) await this.dumpNode(node.name);
  }

  /** Reload every node that is not stuck, then clean conntrack as kube-proxy does. */
  private async sync(
    event: Omit<LabEvent, "time" | "appliedOn" | "notAppliedOn">,
    cleanup: { service: LabService; endpointIp: string | null } | null,
  ): Promise<void> {
    this.desired.resourceVersion++;
    const time = Date.now() / 1000;
    this.writeInventory();
    // CoreDNS watches the API server like kube-proxy does: its answers change with the state.
    this.writeZone();
    const appliedOn: string[] = [];
    const notAppliedOn: string[] = [];
    for (const node of this.scn.nodes) {
      if (node.name === this.scn.faults.staleRulesNode) {
        notAppliedOn.push(node.name);
        continue;
      }
      await this.loadRules(node.name, this.desired);
      appliedOn.push(node.name);
      if (cleanup !== null && !this.scn.faults.keepUdpConntrack) {
        await this.cleanConntrack(node.name, cleanup.service, cleanup.endpointIp);
      }
    }
    this.events.push({ ...event, time, appliedOn, notAppliedOn });
    for (const node of this.scn.nodes) await this.dumpNode(node.name);
  }

  /**
   * kube-proxy deletes UDP conntrack entries of a removed endpoint (or of a removed Service)
   * so datagrams are not sent to a dead address forever; TCP is left to time out.
   */
  private async cleanConntrack(
    node: string,
    svc: LabService,
    endpointIp: string | null,
  ): Promise<void> {
    const ns = this.ns("node", node);
    for (const port of svc.ports) {
      if (port.protocol !== "UDP") continue;
      const filters: string[][] = [
        ["--orig-dst", svc.clusterIP, "--orig-port-dst", String(port.port)],
      ];
      for (const ip of [...svc.externalIPs, ...(svc.loadBalancerIP ? [svc.loadBalancerIP] : [])]) {
        filters.push(["--orig-dst", ip, "--orig-port-dst", String(port.port)]);
      }
      if (port.nodePort !== null) filters.push(["--orig-port-dst", String(port.nodePort)]);
      for (const filter of filters) {
        const argv = ["conntrack", "-D", "-p", "udp", ...filter];
        if (endpointIp !== null) argv.push("--reply-src", endpointIp);
        // Exit 1 with "0 flow entries" is the normal nothing-to-delete case.
        const result = await run(inNs(ns, argv));
        if (result.code !== 0 && !/0 flow entries/.test(result.stderr)) {
          throw new LabCommandError(argv, result);
        }
      }
    }
  }

  // ---- steps --------------------------------------------------------------------------------

  private svc(key: string): LabService {
    const svc = this.scn.services.find((s) => serviceKey(s) === key);
    if (!svc) throw new Error(`no Service ${key}`);
    return svc;
  }

  private async step(i: number, step: Scenario["steps"][number]): Promise<void> {
    switch (step.kind) {
      case "traffic":
      case "resolve": {
        let started: () => void = () => {};
        const startedPromise = new Promise<void>((resolve) => {
          started = resolve;
        });
        const work =
          step.kind === "traffic"
            ? this.sendTraffic(i, step, started)
            : this.resolveNames(i, step, started);
        if (step.background) {
          // Handled here so a failing background step cannot crash the process (and skip the
          // teardown) while a later step runs; the final Promise.all still sees the failure.
          work.catch(() => {});
          this.background.push(work);
          // Go on only once the client really sends: a client process starting slowly on a
          // busy machine must not let the next steps overtake its traffic.
          await Promise.race([
            startedPromise,
            work.then(
              () => {},
              () => {},
            ),
          ]);
        } else await work;
        return;
      }
      case "wait":
        this.log(`wait ${step.ms} ms`);
        await sleep(step.ms);
        return;
      case "createService": {
        const svc = this.svc(step.service);
        if (this.desired.services.has(step.service)) {
          throw new UsageError(`step ${i + 1}: Service ${step.service} exists already`);
        }
        this.log(`create Service ${step.service}`);
        this.desired.services.set(step.service, selectedPods(this.scn, svc));
        this.created.set(step.service, Date.now() / 1000);
        await this.sync({ kind: "createService", service: step.service, pod: null }, null);
        return;
      }
      case "deleteService": {
        const svc = this.svc(step.service);
        if (!this.desired.services.delete(step.service)) {
          throw new UsageError(`step ${i + 1}: Service ${step.service} does not exist`);
        }
        this.log(`delete Service ${step.service}`);
        await this.sync(
          { kind: "deleteService", service: step.service, pod: null },
          { service: svc, endpointIp: null },
        );
        return;
      }
      case "removeEndpoint":
      case "addEndpoint": {
        const svc = this.svc(step.service);
        const pods = this.desired.services.get(step.service);
        if (pods === undefined) {
          throw new UsageError(`step ${i + 1}: Service ${step.service} does not exist`);
        }
        const at = pods.indexOf(step.pod);
        if (step.kind === "removeEndpoint") {
          if (at < 0) throw new UsageError(`step ${i + 1}: ${step.pod} is no endpoint`);
          pods.splice(at, 1);
        } else {
          if (at >= 0) throw new UsageError(`step ${i + 1}: ${step.pod} is an endpoint already`);
          pods.push(step.pod);
        }
        this.log(`${step.kind} ${step.pod} of ${step.service}`);
        const pod = this.scn.pods.find((p) => p.name === step.pod);
        await this.sync(
          { kind: step.kind, service: step.service, pod: step.pod },
          step.kind === "removeEndpoint" ? { service: svc, endpointIp: pod?.ip ?? null } : null,
        );
        return;
      }
      case "flushConntrack": {
        const nodes = step.node === "all" ? this.scn.nodes.map((n) => n.name) : [step.node];
        for (const node of nodes) await must(inNs(this.ns("node", node), ["conntrack", "-F"]));
        this.events.push({
          kind: "flushConntrack",
          service: null,
          pod: null,
          time: Date.now() / 1000,
          appliedOn: nodes,
          notAppliedOn: [],
        });
        return;
      }
      case "dump":
        await this.dumpAll(step.label);
        return;
    }
  }

  private async sendTraffic(i: number, t: TrafficStep, started: () => void): Promise<void> {
    const client = this.scn.clients.find((c) => c.name === t.from);
    if (!client) throw new Error(`no client ${t.from}`);
    const ns = this.ns("client", client.name);
    if (client.node === null && (t.via === "loadBalancer" || t.via === "externalIP")) {
      const node = this.scn.nodes.find((n) => n.name === t.node);
      await routeVia(ns, t.vip, node?.ip ?? "");
    }
    this.log(
      `step ${i + 1}: ${t.count} ${t.protocol} from ${t.from} to ${t.vip}:${t.vipPort} (${t.service})`,
    );
    const argv = [
      process.execPath,
      this.agent.path,
      "send",
      "--proto",
      t.protocol.toLowerCase(),
      "--to",
      `${t.vip}:${t.vipPort}`,
      "--count",
      String(t.count),
      "--rate",
      String(t.rate),
      "--sport",
      String(t.sport),
      "--bind",
      client.ip,
      "--timeout",
      String(t.timeoutMs),
    ];
    const records = await this.runAgent<SendRecord>(ns, argv, `traffic step ${i + 1}`, started);
    this.traffic.push({ step: i, traffic: t, records });
  }

  /**
   * Run the agent in a namespace and read its JSON lines; `started` fires when it says
   * "#started" (or exits). Throws with its stderr when it fails.
   */
  private async runAgent<T>(
    ns: string,
    argv: string[],
    what: string,
    started: () => void,
  ): Promise<T[]> {
    const child = spawnInNs(ns, argv);
    this.children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stdout?.on("data", (c: string) => {
      stdout += c;
      if (stdout.startsWith("#started")) started();
    });
    child.stderr?.on("data", (c: string) => {
      stderr += c;
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    started();
    this.children.delete(child);
    this.checkInterrupted();
    if (code !== 0) throw new Error(`${what} failed (${code}): ${stderr.trim()}`);
    return stdout
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"))
      .map((l) => JSON.parse(l) as T);
  }

  private async resolveNames(i: number, r: ResolveStep, started: () => void): Promise<void> {
    const client = this.scn.clients.find((c) => c.name === r.from);
    const dns = this.scn.dns;
    if (!client || dns === null) throw new Error(`no client ${r.from} or no cluster DNS`);
    this.log(`step ${i + 1}: ${r.count} DNS ${r.qtype} queries from ${r.from} for ${r.name}`);
    const argv = [process.execPath, this.agent.path, "resolve"];
    argv.push("--server", `${dns.clusterIP}:53`, "--name", r.name, "--type", r.qtype);
    argv.push("--count", String(r.count), "--rate", String(r.rate), "--bind", client.ip);
    argv.push("--timeout", String(r.timeoutMs));
    const records = await this.runAgent<ResolveRecord>(
      this.ns("client", client.name),
      argv,
      `resolve step ${i + 1}`,
      started,
    );
    this.resolves.push({ step: i, resolve: r, records });
  }

  /**
   * The lookups as connections to the kube-dns Service: which pod answered (and the peer it
   * saw) comes from the DNS server's own log, matched by query id and client address.
   */
  private lookupTraffic(): { results: TrafficResult[]; answeredBy: Map<ResolveRecord, string> } {
    const dns = this.scn.dns;
    const results: TrafficResult[] = [];
    const answeredBy = new Map<ResolveRecord, string>();
    if (dns === null) return { results, answeredBy };
    const svc = this.svc(dns.service);
    const used = new Set<DnsServerLog>();
    for (const { step, resolve: r, records } of this.resolves) {
      const traffic: TrafficStep = {
        kind: "traffic",
        from: r.from,
        service: dns.service,
        portName: svc.ports[0]?.name ?? "dns",
        protocol: "UDP",
        vip: dns.clusterIP,
        vipPort: 53,
        via: "clusterIP",
        node: r.node,
        count: r.count,
        rate: r.rate,
        sport: "random",
        background: r.background,
        timeoutMs: r.timeoutMs,
      };
      const sends: SendRecord[] = records.map((q) => {
        // The same id from the same client port (no SNAT), else the same id near that time.
        const candidates = this.dnsLog.filter(
          (l) => !used.has(l) && l.id === q.id && l.time >= q.start - 1 && l.time <= q.end + 1,
        );
        const log = candidates.find((l) => l.peer === q.client) ?? candidates[0];
        if (log !== undefined) {
          used.add(log);
          answeredBy.set(q, log.pod);
        }
        return {
          seq: q.seq,
          proto: "udp",
          client: q.client,
          target: q.target,
          start: q.start,
          end: q.end,
          answered: q.answered && log !== undefined,
          answer:
            q.answered && log !== undefined
              ? { pod: log.pod, peer: log.peer, local: log.local }
              : null,
          error: q.answered ? (log === undefined ? "ENOLOG" : null) : q.error,
        };
      });
      results.push({ step, traffic, records: sends });
    }
    return { results, answeredBy };
  }

  // ---- captures -----------------------------------------------------------------------------

  private async startCaptures(): Promise<RunningCapture[]> {
    const out: RunningCapture[] = [];
    for (const node of this.scn.nodes) {
      const file = join(this.out, "nodes", node.name, `${node.name}.pcap`);
      out.push(await startCapture(this.ns("node", node.name), file));
    }
    for (const client of this.scn.clients) {
      if (client.node !== null) continue;
      mkdirSync(join(this.out, "clients", client.name), { recursive: true });
      const file = join(this.out, "clients", client.name, `${client.name}.pcap`);
      out.push(await startCapture(this.ns("client", client.name), file));
    }
    return out;
  }

  private async stopCaptures(captures: RunningCapture[]): Promise<LabRunResult["captures"]> {
    const out: LabRunResult["captures"] = [];
    for (const cap of captures) {
      try {
        const stats = await cap.stop();
        const observer = cap.ns.slice(this.opts.prefix.length + 2);
        out.push({ observer, file: cap.file.slice(this.out.length + 1), stats });
        if (stats.dropped > 0) {
          this.warnings.push(
            `capture ${cap.file}: ${stats.dropped} packets dropped by kernel — the trace is lossy`,
          );
        }
      } catch (error) {
        this.warnings.push((error as Error).message);
      }
    }
    return out;
  }

  // ---- results ------------------------------------------------------------------------------

  private writeResults(captures: LabRunResult["captures"], t0: number): TruthFile {
    const scn = this.scn;
    // Each node's conntrack dumps, newest first: what the kernel itself says it translated.
    // The newest dump holding a connection's tuple is its witness (short-lived entries such as
    // a refused connection's CLOSE may only be in a dump taken right after the traffic).
    const ctByNode = new Map<string, ReturnType<typeof parseConntrackList>>();
    for (const node of scn.nodes) {
      const dumps = this.snapshots
        .filter((s) => s.kind === "conntrack" && s.node === node.name)
        .reverse();
      ctByNode.set(
        node.name,
        dumps.flatMap((d) => parseConntrackList(this.readOut(d.file))),
      );
    }
    const connections: TruthConnection[] = [];
    const lookups = this.lookupTraffic();
    this.traffic.push(...lookups.results);
    this.traffic.sort((a, b) => a.step - b.step);
    for (const { step, traffic: t, records } of this.traffic) {
      const client = scn.clients.find((c) => c.name === t.from);
      const groupUdp = t.protocol === "UDP" && t.sport !== "random";
      let current: TruthConnection | null = null;
      for (const r of records) {
        const endpoint = r.answer ? normalizeEndpoint(r.answer.local, r.answer.pod, scn) : null;
        const snat = r.answer && r.answer.peer !== r.client ? r.answer.peer : null;
        if (
          groupUdp &&
          current !== null &&
          current.client === r.client &&
          current.endpointPod === (r.answer?.pod ?? null)
        ) {
          current.end = r.end;
          current.requests++;
          if (r.answered) current.answers++;
          continue;
        }
        const ct = ctByNode
          .get(t.node)
          ?.find(
            (e) =>
              e.proto === t.protocol.toLowerCase() &&
              `${e.orig.src}:${e.orig.sport}` === r.client &&
              e.orig.dst === t.vip &&
              e.orig.dport === t.vipPort,
          );
        current = {
          id: connections.length + 1,
          step: step + 1,
          proto: t.protocol === "TCP" ? "tcp" : "udp",
          client: r.client,
          clientName: client?.name ?? t.from,
          vip: `${t.vip}:${t.vipPort}`,
          via: t.via,
          service: `${t.service}:${t.portName === "" ? String(this.portNumber(t)) : t.portName}`,
          node: t.node,
          endpoint,
          endpointPod: r.answer?.pod ?? null,
          snat,
          start: r.start,
          end: r.end,
          requests: 1,
          answers: r.answered ? 1 : 0,
          answered: r.answered,
          error: r.error,
          conntrack: ct ? ctTranslation(ct) : null,
          sharedTuple: false,
          expectedVerdict: "consistent",
        };
        connections.push(current);
      }
    }
    // The end-of-run conntrack dump holds only the latest use of a tuple: when the kernel gave
    // one client port to two connections to the same VIP, only the later one is its witness.
    const lastUse = new Map<string, TruthConnection>();
    const uses = new Map<string, number>();
    for (const c of connections) {
      const key = `${c.proto} ${c.client} ${c.vip} ${c.node}`;
      uses.set(key, (uses.get(key) ?? 0) + 1);
      const prior = lastUse.get(key);
      if (!prior || prior.start < c.start) lastUse.set(key, c);
    }
    for (const c of connections) {
      const key = `${c.proto} ${c.client} ${c.vip} ${c.node}`;
      c.sharedTuple = (uses.get(key) ?? 0) > 1;
      if (lastUse.get(key) !== c) c.conntrack = null;
      c.answered = c.answers > 0;
      c.expectedVerdict = verdictFor(c, scn, this.loaded);
    }
    const truth: TruthFile = {
      scenario: scn.name,
      generatedBy: "svctrace lab run",
      events: this.events,
      connections,
    };
    if (scn.dns !== null) {
      const list: TruthLookup[] = [];
      for (const { step, resolve: r, records } of [...this.resolves].sort(
        (a, b) => a.step - b.step,
      )) {
        for (const q of records) {
          const conn = connections.find(
            (c) => c.proto === "udp" && c.client === q.client && c.start === q.start,
          );
          list.push({
            connection: conn?.id ?? null,
            step: step + 1,
            clientName: r.from,
            node: r.node,
            name: q.name,
            qtype: q.qtype,
            id: q.id,
            start: q.start,
            end: q.end,
            answered: q.answered,
            rcode: q.rcode,
            answers: q.answers,
            answeredBy: lookups.answeredBy.get(q) ?? null,
          });
        }
      }
      truth.lookups = list;
    }
    writeFileSync(join(this.out, "truth.json"), `${JSON.stringify(truth, null, 2)}\n`);
    const expected = deriveExpected(scn, truth, this.loaded);
    writeFileSync(join(this.out, "expected.json"), `${JSON.stringify(expected, null, 2)}\n`);
    writeFileSync(join(this.out, "scenario.yaml"), scn.source);
    const manifest: BundleManifest = {
      format: "svctrace-bundle",
      version: 1,
      name: scn.name,
      description: scn.description,
      created: new Date(t0).toISOString(),
      timeZone: "UTC",
      clusterCIDR: LAB_NET.clusterCIDR,
      serviceCIDR: LAB_NET.serviceCIDR,
      nodes: scn.nodes.map((n) => ({
        name: n.name,
        addresses: [n.ip],
        podCIDR: n.podCIDR,
        podGateway: n.gateway,
      })),
      clients: scn.clients.map((c) => ({
        name: c.name,
        address: c.ip,
        node: c.node,
        hostNetwork: c.hostNetwork,
      })),
      pods: scn.pods
        .filter((p) => !p.isClient)
        .map((p) => ({ name: p.name, namespace: p.namespace, node: p.node, ip: p.ip })),
      captures: captures.map((c) => ({
        observer: c.observer,
        file: c.file,
        packets: c.stats.captured,
        dropped: c.stats.dropped,
      })),
      snapshots: this.snapshots,
      lab: {
        scenario: "scenario.yaml",
        prefix: this.opts.prefix,
        command: this.opts.command ?? "svctrace lab run",
        faults: scn.faults,
      },
    };
    writeFileSync(join(this.out, "bundle.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    return truth;
  }

  private portNumber(t: TrafficStep): number {
    const svc = this.svc(t.service);
    return svc.ports.find((p) => p.name === t.portName)?.port ?? t.vipPort;
  }

  private readOut(file: string): string {
    try {
      return readFileSync(join(this.out, file), "utf8");
    } catch {
      return "";
    }
  }
}

/** The endpoint "ip:port" from the server's local address (UDP servers know only the port). */
function normalizeEndpoint(local: string, pod: string, scn: Scenario): string {
  const colon = local.lastIndexOf(":");
  const ip = local.slice(0, colon);
  const port = local.slice(colon + 1);
  if (ip !== "" && ip !== "0.0.0.0") return local.replace(/^::ffff:/, "");
  const podIp = scn.pods.find((p) => p.name === pod)?.ip ?? ip;
  return `${podIp}:${port}`;
}
