/**
 * Differential test against the real kernel: a kube-proxy rule set is loaded with
 * iptables-restore into a node namespace, a client namespace opens real connections to the
 * Service through it, servers in endpoint namespaces answer with their name and the source
 * address they saw, and the endpoints reached are compared with the simulator's outcomes: the
 * same set, frequencies that fit the probabilities (chi-square), masquerade where predicted,
 * REJECT as a refused connection.
 */

import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import jstat from "jstat";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type GenEndpoint,
  type GenServicePort,
  generateIptablesRestore,
} from "../../src/lab/kubeproxy-gen.js";
import { type SimResult, Simulator } from "../../src/netfilter/index.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";

const isRoot = process.getuid?.() === 0;
const hasTools =
  spawnSync("iptables-restore", ["--version"]).status === 0 && spawnSync("ip", ["-V"]).status === 0;
const skipReason = !isRoot
  ? "needs root for network namespaces"
  : !hasTools
    ? "needs iptables-restore and ip"
    : "";

const P = `svt-nf-${process.pid % 100000}`;
const NODE = `${P}-node`;
const CLIENT = `${P}-cli`;
const EPS = [1, 2, 3].map((i) => ({
  ns: `${P}-ep${i}`,
  ip: `10.180.${i}.1`,
  gw: `10.180.${i}.254`,
}));
const NODE_IP = "10.99.0.1";
const CLIENT_IP = "10.99.0.2";
const VIP = "172.30.0.10";
const EMPTY_VIP = "172.30.0.11";
const STICKY_VIP = "172.30.0.12";
const NODE_PORT = 30080;
const CONNECTIONS = 300;

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), {
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  });
}

function inNs(ns: string, argv: string[]): string {
  return sh(["ip", "netns", "exec", ns, ...argv]);
}

function ep(ip: string): GenEndpoint {
  return { ip, port: 80, ready: true, serving: true, terminating: false, nodeName: null };
}

const services: GenServicePort[] = [
  {
    namespace: "ns1",
    name: "web",
    portName: "http",
    protocol: "TCP",
    clusterIP: VIP,
    port: 80,
    nodePort: NODE_PORT,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: null,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: EPS.map((e) => ep(e.ip)),
  },
  {
    namespace: "ns1",
    name: "empty",
    portName: "http",
    protocol: "TCP",
    clusterIP: EMPTY_VIP,
    port: 80,
    nodePort: null,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: null,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: [],
  },
  {
    namespace: "ns1",
    name: "sticky",
    portName: "http",
    protocol: "TCP",
    clusterIP: STICKY_VIP,
    port: 80,
    nodePort: null,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: 10800,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: EPS.map((e) => ep(e.ip)),
  },
];

/** The node's `-m recent` lists as the kernel holds them (/proc/net/xt_recent). */
function kernelAffinity(): Map<string, Set<string>> {
  const lists = new Map<string, Set<string>>();
  const names = inNs(NODE, ["ls", "/proc/net/xt_recent"])
    .split(/\s+/)
    .filter((n) => n !== "");
  for (const name of names) {
    const text = inNs(NODE, ["cat", `/proc/net/xt_recent/${name}`]);
    lists.set(name, new Set([...text.matchAll(/src=(\S+)/g)].map((m) => m[1]!)));
  }
  return lists;
}

// Each server answers "its-address seen-source-address" and closes.
const SERVER = `const n=process.argv[1];require("net").createServer(s=>{s.end(n+" "+s.remoteAddress.replace(/^::ffff:/,"")+"\\n")}).listen(80,"0.0.0.0",()=>process.stdout.write("up\\n"))`;

// Opens `count` connections, a few at a time, and prints {answers:[...], refused, errors}.
const CLIENT_SCRIPT = `
const [host, port, count] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const net = require("net");
const answers = [], codes = []; let refused = 0, errors = 0, started = 0, done = 0;
function one() {
  if (started >= count) return;
  started++;
  const s = net.connect({ host, port, timeout: 3000 });
  let data = "";
  s.on("data", (d) => (data += d));
  s.on("timeout", () => s.destroy(new Error("timeout")));
  s.on("error", (e) => { if (e.code === "ECONNREFUSED") refused++; else { errors++; codes.push(e.code || e.message); } });
  s.on("close", () => { if (data) answers.push(data.trim()); done++; if (done === count) process.stdout.write(JSON.stringify({ answers, refused, errors, codes })); else one(); });
}
for (let i = 0; i < 8; i++) one();
`;

function connect(
  host: string,
  port: number,
  count: number,
): { answers: string[]; refused: number; errors: number } {
  return JSON.parse(inNs(CLIENT, ["node", "-e", CLIENT_SCRIPT, host, String(port), String(count)]));
}

const servers: ChildProcess[] = [];
let sim: Simulator;

function cleanup(): void {
  for (const s of servers) s.kill();
  for (const ns of [NODE, CLIENT, ...EPS.map((e) => e.ns)]) {
    spawnSync("ip", ["netns", "del", ns]);
  }
}

function chiSquareP(observed: number[], expected: number[]): number {
  let stat = 0;
  for (let i = 0; i < observed.length; i++) {
    const e = expected[i]!;
    stat += (observed[i]! - e) ** 2 / e;
  }
  return 1 - jstat.jStat.chisquare.cdf(stat, observed.length - 1);
}

describe.skipIf(skipReason !== "")(`simulator vs kernel (${skipReason || "netns"})`, () => {
  beforeAll(async () => {
    cleanup();
    sh(["ip", "netns", "add", NODE]);
    sh(["ip", "netns", "add", CLIENT]);
    inNs(NODE, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    inNs(NODE, ["ip", "link", "set", "lo", "up"]);
    // A node has a default route; without one, a VIP nobody DNATs fails routing (ENETUNREACH)
    // before the filter table's REJECT can answer. The uplink is a veth pair that goes nowhere.
    inNs(NODE, ["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"]);
    inNs(NODE, ["ip", "link", "set", "uplink0", "up"]);
    inNs(NODE, ["ip", "link", "set", "uplink1", "up"]);
    inNs(NODE, ["ip", "route", "add", "default", "dev", "uplink0"]);
    sh([
      "ip",
      "link",
      "add",
      `${P}-c0`,
      "netns",
      NODE,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      CLIENT,
    ]);
    inNs(NODE, ["ip", "addr", "add", `${NODE_IP}/24`, "dev", `${P}-c0`]);
    inNs(NODE, ["ip", "link", "set", `${P}-c0`, "up"]);
    inNs(CLIENT, ["ip", "addr", "add", `${CLIENT_IP}/24`, "dev", "eth0"]);
    inNs(CLIENT, ["ip", "link", "set", "eth0", "up"]);
    inNs(CLIENT, ["ip", "link", "set", "lo", "up"]);
    inNs(CLIENT, ["ip", "route", "add", "default", "via", NODE_IP]);
    EPS.forEach((e, i) => {
      sh(["ip", "netns", "add", e.ns]);
      sh([
        "ip",
        "link",
        "add",
        `${P}-e${i}`,
        "netns",
        NODE,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        e.ns,
      ]);
      inNs(NODE, ["ip", "addr", "add", `${e.gw}/24`, "dev", `${P}-e${i}`]);
      inNs(NODE, ["ip", "link", "set", `${P}-e${i}`, "up"]);
      inNs(e.ns, ["ip", "addr", "add", `${e.ip}/24`, "dev", "eth0"]);
      inNs(e.ns, ["ip", "link", "set", "eth0", "up"]);
      inNs(e.ns, ["ip", "link", "set", "lo", "up"]);
      inNs(e.ns, ["ip", "route", "add", "default", "via", e.gw]);
    });
    const text = generateIptablesRestore(
      services,
      { name: "node", nodeIPs: [NODE_IP], clusterCIDR: "10.0.0.0/8" },
      {},
      { jumpRules: true },
    );
    execFileSync("ip", ["netns", "exec", NODE, "iptables-restore"], { input: text });
    // Simulate what the kernel holds: read it back with iptables-save.
    const saved = inNs(NODE, ["iptables-save"]);
    sim = new Simulator(parseIptablesSave(saved, { source: `${NODE} iptables-save` }), {
      localAddresses: [NODE_IP, ...EPS.map((e) => e.gw)],
    });
    await Promise.all(
      EPS.map(
        (e) =>
          new Promise<void>((resolve, reject) => {
            const child = spawn("ip", ["netns", "exec", e.ns, "node", "-e", SERVER, e.ip]);
            servers.push(child);
            child.stdout.once("data", () => resolve());
            child.once("exit", (code) => reject(new Error(`server in ${e.ns} exited ${code}`)));
          }),
      ),
    );
  });

  afterAll(() => cleanup());

  function compare(result: SimResult, answers: string[]): void {
    const predicted = new Map(result.outcomes.map((o) => [o.endpoint?.split(":")[0], o]));
    const counts = new Map<string, number>();
    for (const a of answers) {
      const [ip = "", seen] = a.split(" ");
      counts.set(ip, (counts.get(ip) ?? 0) + 1);
      const o = predicted.get(ip);
      // Masquerade predicted ⇔ the server saw the node's address instead of the client's.
      if (o !== undefined) expect(seen === CLIENT_IP, `${a}`).toBe(!o.masquerade);
    }
    expect(new Set(counts.keys())).toEqual(new Set(predicted.keys()));
    const keys = [...predicted.keys()] as string[];
    const observed = keys.map((k) => counts.get(k) ?? 0);
    const expected = keys.map((k) => predicted.get(k)!.probability * answers.length);
    // Seed-free tolerance: a correct simulator fails this one run in a thousand.
    expect(chiSquareP(observed, expected)).toBeGreaterThan(0.001);
  }

  it("ClusterIP: endpoints and their frequencies match the simulator", () => {
    const result = sim.trace({ proto: "tcp", src: CLIENT_IP, dst: VIP, dport: 80 });
    expect(result.outcomes.map((o) => o.endpoint).sort()).toEqual(EPS.map((e) => `${e.ip}:80`));
    const r = connect(VIP, 80, CONNECTIONS);
    expect(r.errors + r.refused).toBe(0);
    expect(r.answers).toHaveLength(CONNECTIONS);
    compare(result, r.answers);
  });

  it("NodePort: endpoints, frequencies and masquerade match the simulator", () => {
    const result = sim.trace({ proto: "tcp", src: CLIENT_IP, dst: NODE_IP, dport: NODE_PORT });
    expect(result.outcomes.every((o) => o.verdict === "DNAT" && o.masquerade)).toBe(true);
    const r = connect(NODE_IP, NODE_PORT, CONNECTIONS);
    expect(r.errors + r.refused).toBe(0);
    compare(result, r.answers);
  });

  it("session affinity: the kernel's recent lists make the simulator's answer certain", () => {
    const rules = sim.compiled;
    const before = new Simulator(rules, { localAddresses: [NODE_IP], affinity: kernelAffinity() });
    const first = before.trace({ proto: "tcp", src: CLIENT_IP, dst: STICKY_VIP, dport: 80 });
    // Nobody is listed yet: every endpoint is possible, and no outcome rests on an assumption.
    expect(first.outcomes.map((o) => o.endpoint).sort()).toEqual(EPS.map((e) => `${e.ip}:80`));
    expect(first.outcomes.every((o) => o.assumed.length === 0)).toBe(true);
    const one = connect(STICKY_VIP, 80, 1);
    expect(one.answers).toHaveLength(1);
    const chosen = one.answers[0]!.split(" ")[0];
    const after = new Simulator(rules, { localAddresses: [NODE_IP], affinity: kernelAffinity() });
    const predicted = after.trace({ proto: "tcp", src: CLIENT_IP, dst: STICKY_VIP, dport: 80 });
    expect(predicted.outcomes.map((o) => [o.endpoint, o.probability])).toEqual([
      [`${chosen}:80`, 1],
    ]);
    const rest = connect(STICKY_VIP, 80, 30);
    expect(new Set(rest.answers.map((a) => a.split(" ")[0]))).toEqual(new Set([chosen]));
    // Without the kernel's lists the simulator keeps every branch and says so.
    const blind = sim.trace({ proto: "tcp", src: CLIENT_IP, dst: STICKY_VIP, dport: 80 });
    expect(blind.outcomes.some((o) => o.assumed.some((a) => a.startsWith("recent")))).toBe(true);
  });

  it("a Service without endpoints: REJECT in the simulator, refused by the kernel", () => {
    const result = sim.trace({ proto: "tcp", src: CLIENT_IP, dst: EMPTY_VIP, dport: 80 });
    expect(result.outcomes).toHaveLength(1);
    expect(result.outcomes[0]).toMatchObject({ verdict: "REJECT", decidedBy: "rule" });
    const r = connect(EMPTY_VIP, 80, 5);
    expect(r, JSON.stringify(r)).toMatchObject({ refused: 5 });
  });
});
