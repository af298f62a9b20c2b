/**
 * Rule-set benchmarks: a kube-proxy dump of 10,000 Services (3 endpoints each, every tenth a
 * NodePort), generated deterministically with the lab's kube-proxy generator. Times our
 * iptables-save parser against `iptables-restore --test` in a namespace (when root), the
 * simulator's compile step, and tracing packets through the compiled set.
 *
 * Environment: BENCH_SERVICES (default 10000), BENCH_LOOKUPS (default 100000).
 */
import { spawnSync } from "node:child_process";
import { type GenServicePort, generateIptablesRestore } from "../src/lab/kubeproxy-gen.js";
import { compileRuleSet, Simulator } from "../src/netfilter/index.js";
import { parseIptablesSave } from "../src/rules/iptables-save.js";
import type { BenchResult } from "./run.js";

function ipOf(base: number, i: number): string {
  const v = base + i;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** 10.96.0.0/12 ClusterIPs, 10.128.0.0/9 endpoints, NodePorts from 30000. */
export function generateLargeDump(services: number): {
  text: string;
  vips: string[];
  nodePorts: number[];
} {
  const ports: GenServicePort[] = [];
  const vips: string[] = [];
  const nodePorts: number[] = [];
  const vipBase = (10 << 24) | (96 << 16);
  const epBase = (10 << 24) | (128 << 16);
  for (let i = 0; i < services; i++) {
    const vip = ipOf(vipBase, i + 1);
    vips.push(vip);
    const nodePort = i % 10 === 0 ? 30000 + ((i / 10) % 2768) : null;
    if (nodePort !== null) nodePorts.push(nodePort);
    ports.push({
      namespace: `ns${i % 100}`,
      name: `svc${i}`,
      portName: "http",
      protocol: "TCP",
      clusterIP: vip,
      port: 80,
      nodePort,
      externalIPs: [],
      loadBalancerIPs: [],
      loadBalancerSourceRanges: [],
      sessionAffinityTimeout: null,
      externalTrafficPolicy: "Cluster",
      internalTrafficPolicy: "Cluster",
      endpoints: [0, 1, 2].map((k) => ({
        ip: ipOf(epBase, i * 3 + k + 1),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        nodeName: k === 0 ? "bench-node" : "other",
      })),
    });
  }
  const text = generateIptablesRestore(
    ports,
    { name: "bench-node", nodeIPs: ["192.168.0.2"], clusterCIDR: "10.128.0.0/9" },
    {},
    { jumpRules: true },
  );
  return { text, vips, nodePorts };
}

function seconds(start: number): number {
  return (performance.now() - start) / 1000;
}

function iptablesRestoreTest(text: string): { seconds: number } | { skipped: string } {
  if (process.getuid?.() !== 0) return { skipped: "not root" };
  if (spawnSync("iptables-restore", ["--version"]).status !== 0)
    return { skipped: "no iptables-restore" };
  const ns = `svt-nf-bench${process.pid % 100000}`;
  spawnSync("ip", ["netns", "del", ns]);
  if (spawnSync("ip", ["netns", "add", ns]).status !== 0)
    return { skipped: "cannot create a namespace" };
  try {
    const start = performance.now();
    const r = spawnSync("ip", ["netns", "exec", ns, "iptables-restore", "--test"], {
      input: text,
      maxBuffer: 1 << 26,
    });
    const s = seconds(start);
    if (r.status !== 0)
      return { skipped: `iptables-restore --test failed: ${String(r.stderr).slice(0, 200)}` };
    return { seconds: s };
  } finally {
    spawnSync("ip", ["netns", "del", ns]);
  }
}

export async function benchRules(): Promise<BenchResult[]> {
  const services = Number(process.env.BENCH_SERVICES ?? 10_000);
  const lookups = Number(process.env.BENCH_LOOKUPS ?? 100_000);
  const results: BenchResult[] = [];
  const { text, vips, nodePorts } = generateLargeDump(services);
  const mb = (text.length / 1e6).toFixed(1);

  let start = performance.now();
  const rs = parseIptablesSave(text, { source: "bench" });
  const parseSeconds = seconds(start);
  let ruleCount = 0;
  for (const t of rs.tables.values())
    for (const c of t.chains.values()) ruleCount += c.rules.length;
  results.push({
    name: "rules: parse iptables-save (ours)",
    unit: "rules",
    ops: ruleCount,
    seconds: parseSeconds,
    peakRss: null,
    note: `${services} services, ${ruleCount} rules, ${mb} MB`,
  });

  const kernel = iptablesRestoreTest(text);
  if ("seconds" in kernel) {
    results.push({
      name: "rules: iptables-restore --test",
      unit: "rules",
      ops: ruleCount,
      seconds: kernel.seconds,
      peakRss: null,
      note: `ours is ${(kernel.seconds / parseSeconds).toFixed(1)}× faster`,
    });
  } else {
    results.push({
      name: "rules: iptables-restore --test",
      unit: "rules",
      ops: 0,
      seconds: 1,
      peakRss: null,
      note: `skipped: ${kernel.skipped}`,
    });
  }

  start = performance.now();
  const compiled = compileRuleSet(rs);
  results.push({
    name: "rules: compile for simulation",
    unit: "rules",
    ops: ruleCount,
    seconds: seconds(start),
    peakRss: null,
  });

  const sim = new Simulator(compiled, { localAddresses: ["192.168.0.2"] });
  // Deterministic mix: 90% ClusterIP from a pod, 10% NodePort from outside.
  let seed = 12345;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  const packetAt = (r: number) =>
    r % 10 === 0
      ? {
          proto: "tcp" as const,
          src: "203.0.113.7",
          dst: "192.168.0.2",
          dport: nodePorts[r % nodePorts.length]!,
        }
      : { proto: "tcp" as const, src: "10.128.200.9", dst: vips[r % vips.length]!, dport: 80 };
  // CPU time, not wall time: the bench machine is shared.
  const timeTraces = (s: Simulator, n: number): { seconds: number; outcomes: number } => {
    let outcomes = 0;
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) outcomes += s.trace(packetAt(next())).outcomes.length;
    const c = process.cpuUsage(c0);
    return { seconds: (c.user + c.system) / 1e6, outcomes };
  };
  const indexed = timeTraces(sim, lookups);
  results.push({
    name: "rules: trace packets (simulator)",
    unit: "lookups",
    ops: lookups,
    seconds: indexed.seconds,
    peakRss: null,
    note: `${((indexed.seconds / lookups) * 1e6).toFixed(1)} µs/packet CPU, ${(indexed.outcomes / lookups).toFixed(2)} outcomes each, ${ruleCount} rules`,
  });
  const slow = new Simulator(compileRuleSet(rs, { dispatchIndex: false }), {
    localAddresses: ["192.168.0.2"],
  });
  const few = Math.max(1, Math.floor(lookups / 100));
  const unindexed = timeTraces(slow, few);
  results.push({
    name: "rules: trace packets, no dispatch index",
    unit: "lookups",
    ops: few,
    seconds: unindexed.seconds,
    peakRss: null,
    note: `${((unindexed.seconds / few) * 1e6).toFixed(1)} µs/packet CPU: the index makes tracing ${(unindexed.seconds / few / (indexed.seconds / lookups)).toFixed(0)}× faster`,
  });
  return results;
}
