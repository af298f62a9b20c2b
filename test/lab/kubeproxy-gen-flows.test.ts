import { describe, expect, it } from "vitest";
import {
  type GenEndpoint,
  type GenNode,
  type GenServicePort,
  generateIptablesRestore,
} from "../../src/lab/kubeproxy-gen.js";
import { cidrContains, normalizeIP, parseCidr } from "../../src/util/ip.js";

/*
 * Upstream kube-proxy's packet-flow tests (pkg/proxy/iptables/proxier_test.go @531be812:
 * TestNoEndpointsReject, TestClusterIPGeneral, TestLoadBalancer, TestNodePorts (all seven cases),
 * TestExternalTrafficPolicyLocal, TestExternalTrafficPolicyCluster, TestInternalExternalMasquerade,
 * TestSyncProxyRulesLargeClusterMode, TestInternalTrafficPolicy, TestTerminatingEndpointsTrafficPolicy
 * Local and Cluster), run against our
 * generator's output with a port of upstream's own test tracer (tracePacket): every
 * --probability branch is followed, rules testing affinity, marks or conntrack state never
 * match, nat PREROUTING first, then the filter chains KUBE-SERVICES, KUBE-EXTERNAL-SERVICES,
 * KUBE-NODEPORTS and KUBE-PROXY-FIREWALL. Same services, same packets, same expected outputs.
 */

interface Rule {
  raw: string;
  src: { value: string; negated: boolean } | null;
  dst: { value: string; negated: boolean } | null;
  srcType: string | null;
  dstType: string | null;
  proto: string | null;
  dport: string | null;
  stateful: boolean;
  probability: string | null;
  jump: string | null;
  dnat: string | null;
}

function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) out.push(m[1] ?? m[2] ?? "");
  return out;
}

type Tables = Map<string, Map<string, Rule[]>>;

function parse(text: string): Tables {
  const tables: Tables = new Map();
  let chains = new Map<string, Rule[]>();
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      chains = new Map();
      tables.set(line.slice(1), chains);
    } else if (line.startsWith(":")) {
      chains.set(line.slice(1).split(" ")[0] ?? "", []);
    } else if (line.startsWith("-A ")) {
      const t = tokenize(line);
      const rule: Rule = {
        raw: line,
        src: null,
        dst: null,
        srcType: null,
        dstType: null,
        proto: null,
        dport: null,
        stateful: false,
        probability: null,
        jump: null,
        dnat: null,
      };
      let negate = false;
      for (let i = 2; i < t.length; i++) {
        const tok = t[i];
        const next = t[i + 1] ?? "";
        if (tok === "!") {
          negate = true;
          continue;
        }
        if (tok === "-s") rule.src = { value: next, negated: negate };
        else if (tok === "-d") rule.dst = { value: next, negated: negate };
        else if (tok === "-p") rule.proto = next;
        else if (tok === "--dport") rule.dport = next;
        else if (tok === "--src-type") rule.srcType = next;
        else if (tok === "--dst-type") rule.dstType = next;
        else if (
          tok === "--rcheck" ||
          tok === "--ctstate" ||
          (tok === "--mark" && t[i - 1] !== "MARK")
        ) {
          rule.stateful = true;
        } else if (tok === "--probability") rule.probability = next;
        else if (tok === "-j") rule.jump = next;
        else if (tok === "--to-destination") rule.dnat = next;
        negate = false;
      }
      chains.get(t[1] ?? "")?.push(rule);
    }
  }
  return tables;
}

function addressMatches(a: { value: string; negated: boolean }, ip: string): boolean {
  let matches: boolean;
  if (a.value.includes("/")) {
    const c = parseCidr(a.value);
    matches = c !== null && cidrContains(c, ip);
  } else {
    matches = normalizeIP(a.value) === normalizeIP(ip);
  }
  return a.negated ? !matches : matches;
}

const testNodeIP = "192.168.0.2";
const testNodeIPAlt = "192.168.1.2";
const testNodeIPv6 = "2001:db8::1";
const testNodeIPv6Alt = "2001:db8:1::2";
const testNodeIPs = [testNodeIP, testNodeIPAlt, "192.168.99.11", testNodeIPv6, testNodeIPv6Alt];
const testExternalClient = "203.0.113.2";
const testExternalClientBlocked = "203.0.113.130";

interface Trace {
  outputs: string[];
  masq: boolean;
  matches: string[];
}

function tracePacket(
  tables: Tables,
  src: string,
  proto: string,
  dst: string,
  dport: string,
): Trace {
  const local = new Set(["127.0.0.1", "::1", ...testNodeIPs].map((ip) => normalizeIP(ip)));
  const trace: Trace = { outputs: [], masq: false, matches: [] };
  const ruleMatches = (r: Rule, dstIP: string): boolean => {
    if (r.src && !addressMatches(r.src, src)) return false;
    if (r.srcType !== null && r.srcType !== (local.has(normalizeIP(src)) ? "LOCAL" : "not-matched"))
      return false;
    if (r.proto !== null && r.proto !== proto) return false;
    if (r.dst && !addressMatches(r.dst, dstIP)) return false;
    if (
      r.dstType !== null &&
      r.dstType !== (local.has(normalizeIP(dstIP)) ? "LOCAL" : "not-matched")
    )
      return false;
    if (r.dport !== null && r.dport !== dport) return false;
    return !r.stateful;
  };
  const runChain = (table: string, chain: string, dstIP: string): boolean => {
    for (const r of tables.get(table)?.get(chain) ?? []) {
      if (r.jump === null || !ruleMatches(r, dstIP)) continue;
      trace.matches.push(r.raw);
      if (r.jump === "KUBE-MARK-MASQ") trace.masq = true;
      else if (r.jump === "ACCEPT" || r.jump === "REJECT" || r.jump === "DROP") {
        trace.outputs.push(r.jump);
        return true;
      } else if (r.jump === "DNAT") {
        trace.outputs.push(r.dnat ?? "?");
        return true;
      } else if (runChain(table, r.jump, dstIP) && r.probability === null) return true;
    }
    return false;
  };
  runChain("nat", "PREROUTING", dst);
  const after = trace.outputs.length > 0 ? (trace.outputs[0]?.split(":")[0] ?? dst) : dst;
  for (const chain of [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
  ]) {
    runChain("filter", chain, after);
  }
  return trace;
}

interface Flow {
  name: string;
  sourceIP: string;
  protocol?: "tcp" | "udp" | "sctp";
  destIP: string;
  destPort: number;
  output: string;
  masq?: boolean;
}

function runFlows(rules: string, flows: Flow[]): void {
  const tables = parse(rules);
  for (const f of flows) {
    const t = tracePacket(tables, f.sourceIP, f.protocol ?? "tcp", f.destIP, String(f.destPort));
    const why = `${f.name}\nby matching:\n${t.matches.join("\n")}`;
    expect(t.outputs.join(", "), why).toBe(f.output);
    expect(t.masq, why).toBe(f.masq ?? false);
  }
}

// The fake network's eth0 holds every test node IP; the first of each family is the primary.
const node4: GenNode = { name: "test-node", nodeIPs: testNodeIPs, clusterCIDR: "10.0.0.0/8" };
const node6: GenNode = { name: "test-node", nodeIPs: testNodeIPs, clusterCIDR: "fd00:10::/64" };
// NewFakeProxier's settings.
const fake = { nfacct: true, masqueradeMark: "0x4000", randomFully: false };

function ep(ip: string, port: number, nodeName: string | null = null): GenEndpoint {
  return { ip, port, ready: true, serving: true, terminating: false, nodeName };
}

function svc(more: Partial<GenServicePort> & { clusterIP: string }): GenServicePort {
  return {
    namespace: "ns1",
    name: "svc1",
    portName: "p80",
    protocol: "TCP",
    port: 80,
    nodePort: null,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    sessionAffinityTimeout: null,
    externalTrafficPolicy: "Cluster",
    internalTrafficPolicy: "Cluster",
    endpoints: [],
    ...more,
  };
}

describe("generated rules against upstream packet-flow expectations", () => {
  it("TestNoEndpointsReject", () => {
    const rules = generateIptablesRestore(
      [
        svc({
          clusterIP: "172.30.0.41",
          nodePort: 3001,
          externalIPs: ["192.168.99.11"],
          loadBalancerIPs: ["1.2.3.4"],
        }),
      ],
      node4,
      {},
      fake,
    );
    runFlows(rules, [
      {
        name: "pod to cluster IP",
        sourceIP: "10.0.0.2",
        destIP: "172.30.0.41",
        destPort: 80,
        output: "REJECT",
      },
      {
        name: "external to external IP",
        sourceIP: testExternalClient,
        destIP: "192.168.99.11",
        destPort: 80,
        output: "REJECT",
      },
      {
        name: "pod to NodePort",
        sourceIP: "10.0.0.2",
        destIP: testNodeIP,
        destPort: 3001,
        output: "REJECT",
      },
      {
        name: "external to NodePort",
        sourceIP: testExternalClient,
        destIP: testNodeIP,
        destPort: 3001,
        output: "REJECT",
      },
      {
        name: "pod to LB IP",
        sourceIP: "10.0.0.2",
        destIP: "1.2.3.4",
        destPort: 80,
        output: "REJECT",
      },
      {
        name: "external to LB IP",
        sourceIP: testExternalClient,
        destIP: "1.2.3.4",
        destPort: 80,
        output: "REJECT",
      },
    ]);
  });

  it("TestClusterIPGeneral", () => {
    const both = (port: number) => [
      ep("10.180.0.1", port, "test-node"),
      ep("10.180.2.1", port, "node2"),
    ];
    const svc2 = (
      portName: string,
      protocol: "TCP" | "UDP" | "SCTP",
      port: number,
      target: number,
    ) =>
      svc({
        name: "svc2",
        namespace: "ns2",
        clusterIP: "172.30.0.42",
        portName,
        protocol,
        port,
        endpoints: both(target),
      });
    const rules = generateIptablesRestore(
      [
        svc({
          clusterIP: "172.30.0.41",
          portName: "http",
          endpoints: [ep("10.180.0.1", 80, "test-node")],
        }),
        svc2("http", "TCP", 80, 80),
        svc2("https", "TCP", 443, 8443),
        svc2("dns-udp", "UDP", 53, 53),
        svc2("dns-tcp", "TCP", 53, 5353),
        svc2("dns-sctp", "SCTP", 53, 53),
      ],
      node4,
      {},
      fake,
    );
    runFlows(rules, [
      {
        name: "simple clusterIP",
        sourceIP: "10.180.0.2",
        destIP: "172.30.0.41",
        destPort: 80,
        output: "10.180.0.1:80",
      },
      {
        name: "hairpin to cluster IP",
        sourceIP: "10.180.0.1",
        destIP: "172.30.0.41",
        destPort: 80,
        output: "10.180.0.1:80",
        masq: true,
      },
      {
        name: "multiple endpoints",
        sourceIP: "10.180.0.2",
        destIP: "172.30.0.42",
        destPort: 80,
        output: "10.180.0.1:80, 10.180.2.1:80",
      },
      {
        name: "TargetPort",
        sourceIP: "10.180.0.2",
        destIP: "172.30.0.42",
        destPort: 443,
        output: "10.180.0.1:8443, 10.180.2.1:8443",
      },
      {
        name: "same port (TCP)",
        sourceIP: "10.180.0.2",
        protocol: "tcp",
        destIP: "172.30.0.42",
        destPort: 53,
        output: "10.180.0.1:5353, 10.180.2.1:5353",
      },
      {
        name: "same port (UDP)",
        sourceIP: "10.180.0.2",
        protocol: "udp",
        destIP: "172.30.0.42",
        destPort: 53,
        output: "10.180.0.1:53, 10.180.2.1:53",
      },
      {
        name: "same port (SCTP)",
        sourceIP: "10.180.0.2",
        protocol: "sctp",
        destIP: "172.30.0.42",
        destPort: 53,
        output: "10.180.0.1:53, 10.180.2.1:53",
      },
      {
        name: "TCP-only port vs UDP",
        sourceIP: "10.180.0.2",
        protocol: "udp",
        destIP: "172.30.0.42",
        destPort: 80,
        output: "",
      },
      {
        name: "svc1 does not accept svc2's ports",
        sourceIP: "10.180.0.2",
        destIP: "172.30.0.41",
        destPort: 443,
        output: "",
      },
    ]);
  });

  it("TestLoadBalancer (source ranges)", () => {
    const rules = generateIptablesRestore(
      [
        svc({
          clusterIP: "172.30.0.41",
          nodePort: 3001,
          loadBalancerIPs: ["1.2.3.4", "5.6.7.8"],
          // Upstream's regression test: excess whitespace is ignored.
          loadBalancerSourceRanges: ["192.168.0.0/24", " 203.0.113.0/25"],
          endpoints: [ep("10.180.0.1", 80)],
        }),
      ],
      node4,
      {},
      fake,
    );
    const out = "10.180.0.1:80";
    runFlows(rules, [
      {
        name: "pod to cluster IP",
        sourceIP: "10.0.0.2",
        destIP: "172.30.0.41",
        destPort: 80,
        output: out,
      },
      {
        name: "external to nodePort",
        sourceIP: testExternalClient,
        destIP: testNodeIP,
        destPort: 3001,
        output: out,
        masq: true,
      },
      {
        name: "nodePort bypasses LoadBalancerSourceRanges",
        sourceIP: testExternalClientBlocked,
        destIP: testNodeIP,
        destPort: 3001,
        output: out,
        masq: true,
      },
      {
        name: "accepted external to LB1",
        sourceIP: testExternalClient,
        destIP: "1.2.3.4",
        destPort: 80,
        output: out,
        masq: true,
      },
      {
        name: "accepted external to LB2",
        sourceIP: testExternalClient,
        destIP: "5.6.7.8",
        destPort: 80,
        output: out,
        masq: true,
      },
      {
        name: "blocked external to LB1",
        sourceIP: testExternalClientBlocked,
        destIP: "1.2.3.4",
        destPort: 80,
        output: "DROP",
      },
      {
        name: "blocked external to LB2",
        sourceIP: testExternalClientBlocked,
        destIP: "5.6.7.8",
        destPort: 80,
        output: "DROP",
      },
      {
        name: "pod to LB1 (blocked)",
        sourceIP: "10.0.0.2",
        destIP: "1.2.3.4",
        destPort: 80,
        output: "DROP",
      },
      {
        name: "pod to LB2 (blocked)",
        sourceIP: "10.0.0.2",
        destIP: "5.6.7.8",
        destPort: 80,
        output: "DROP",
      },
      {
        name: "node to LB1 (allowed)",
        sourceIP: testNodeIP,
        destIP: "1.2.3.4",
        destPort: 80,
        output: out,
        masq: true,
      },
      {
        name: "node to LB2 (allowed)",
        sourceIP: testNodeIP,
        destIP: "5.6.7.8",
        destPort: 80,
        output: out,
        masq: true,
      },
      {
        name: "same node to LB1, SNATted to LB1",
        sourceIP: "1.2.3.4",
        destIP: "1.2.3.4",
        destPort: 80,
        output: out,
        masq: true,
      },
      {
        name: "same node to LB2, SNATted to LB2",
        sourceIP: "5.6.7.8",
        destIP: "5.6.7.8",
        destPort: 80,
        output: out,
        masq: true,
      },
    ]);
  });

  const nodePortCases: {
    name: string;
    family: 4 | 6;
    localhostNodePorts: boolean;
    nodePortAddresses?: string[];
    allowAltNodeIP: boolean;
    expectFirewall: boolean;
  }[] = [
    {
      name: "ipv4, localhost-nodeports enabled",
      family: 4,
      localhostNodePorts: true,
      allowAltNodeIP: true,
      expectFirewall: true,
    },
    {
      name: "ipv4, localhost-nodeports disabled",
      family: 4,
      localhostNodePorts: false,
      allowAltNodeIP: true,
      expectFirewall: false,
    },
    {
      name: "ipv4, localhost-nodeports disabled, localhost in nodeport-addresses",
      family: 4,
      localhostNodePorts: false,
      nodePortAddresses: ["192.168.0.0/24", "127.0.0.1/32"],
      allowAltNodeIP: false,
      expectFirewall: false,
    },
    {
      name: "ipv4, localhost-nodeports enabled, multiple nodeport-addresses",
      family: 4,
      localhostNodePorts: false,
      nodePortAddresses: ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
      allowAltNodeIP: true,
      expectFirewall: false,
    },
    {
      name: "ipv6, localhost-nodeports enabled",
      family: 6,
      localhostNodePorts: true,
      allowAltNodeIP: true,
      expectFirewall: false,
    },
    {
      name: "ipv6, localhost-nodeports disabled",
      family: 6,
      localhostNodePorts: false,
      allowAltNodeIP: true,
      expectFirewall: false,
    },
    {
      name: "ipv6, localhost-nodeports disabled, multiple nodeport-addresses",
      family: 6,
      localhostNodePorts: false,
      nodePortAddresses: ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
      allowAltNodeIP: false,
      expectFirewall: false,
    },
  ];
  for (const tc of nodePortCases) {
    it(`TestNodePorts: ${tc.name}`, () => {
      const v4 = tc.family === 4;
      const svcIP = v4 ? "172.30.0.41" : "fd00:172:30::41";
      const [ep1, ep2] = v4 ? ["10.180.0.1", "10.180.2.1"] : ["fd00:10:180::1", "fd00:10:180::2:1"];
      const rules = generateIptablesRestore(
        [
          svc({
            clusterIP: svcIP,
            nodePort: 3001,
            endpoints: [ep(ep1, 80), ep(ep2, 80, "test-node")],
          }),
        ],
        v4 ? node4 : node6,
        {},
        {
          ...fake,
          localhostNodePorts: tc.localhostNodePorts,
          ...(tc.nodePortAddresses ? { nodePortAddresses: tc.nodePortAddresses } : {}),
        },
      );
      const hostPort = (ip: string) => (ip.includes(":") ? `[${ip}]:80` : `${ip}:80`);
      const output = `${hostPort(ep1)}, ${hostPort(ep2)}`;
      const podIP = v4 ? "10.0.0.2" : "fd00:10::2";
      const external = v4 ? testExternalClient : "2600:5200::1";
      const nodeIP = v4 ? testNodeIP : testNodeIPv6;
      const altNodeIP = v4 ? testNodeIPAlt : testNodeIPv6Alt;
      const localhost = v4 ? "127.0.0.1" : "::1";
      runFlows(rules, [
        { name: "pod to cluster IP", sourceIP: podIP, destIP: svcIP, destPort: 80, output },
        {
          name: "external to nodePort",
          sourceIP: external,
          destIP: nodeIP,
          destPort: 3001,
          output,
          masq: true,
        },
        {
          name: "node to nodePort",
          sourceIP: nodeIP,
          destIP: nodeIP,
          destPort: 3001,
          output,
          masq: true,
        },
        v4 && tc.localhostNodePorts
          ? {
              name: "localhost to nodePort",
              sourceIP: localhost,
              destIP: localhost,
              destPort: 3001,
              output,
              masq: true,
            }
          : {
              name: "localhost to nodePort ignored",
              sourceIP: localhost,
              destIP: localhost,
              destPort: 3001,
              output: "",
            },
        tc.allowAltNodeIP
          ? {
              name: "external to nodePort on secondary IP",
              sourceIP: external,
              destIP: altNodeIP,
              destPort: 3001,
              output,
              masq: true,
            }
          : {
              name: "secondary nodeIP ignores NodePorts",
              sourceIP: external,
              destIP: altNodeIP,
              destPort: 3001,
              output: "",
            },
      ]);
      // The anti-martian rule exists exactly for IPv4 with localhost NodePorts.
      expect(rules.includes("block incoming localnet connections")).toBe(tc.expectFirewall);
    });
  }

  for (const policy of ["Local", "Cluster"] as const) {
    it(`TestExternalTrafficPolicy${policy}`, () => {
      const rules = generateIptablesRestore(
        [
          svc({
            clusterIP: "172.30.0.41",
            nodePort: 3001,
            healthCheckNodePort: policy === "Local" ? 30000 : null,
            externalIPs: ["192.168.99.11"],
            loadBalancerIPs: ["1.2.3.4"],
            externalTrafficPolicy: policy,
            endpoints: [ep("10.180.0.1", 80), ep("10.180.2.1", 80, "test-node")],
          }),
        ],
        node4,
        {},
        fake,
      );
      const both = "10.180.0.1:80, 10.180.2.1:80";
      const local = policy === "Local";
      const ext = local ? "10.180.2.1:80" : both;
      runFlows(rules, [
        {
          name: "pod to cluster IP",
          sourceIP: "10.0.0.2",
          destIP: "172.30.0.41",
          destPort: 80,
          output: both,
        },
        {
          name: "pod to external IP",
          sourceIP: "10.0.0.2",
          destIP: "192.168.99.11",
          destPort: 80,
          output: both,
          masq: !local,
        },
        {
          name: "external to external IP",
          sourceIP: testExternalClient,
          destIP: "192.168.99.11",
          destPort: 80,
          output: ext,
          masq: !local,
        },
        {
          name: "pod to LB IP",
          sourceIP: "10.0.0.2",
          destIP: "1.2.3.4",
          destPort: 80,
          output: both,
          masq: !local,
        },
        {
          name: "external to LB IP",
          sourceIP: testExternalClient,
          destIP: "1.2.3.4",
          destPort: 80,
          output: ext,
          masq: !local,
        },
        {
          name: "pod to NodePort",
          sourceIP: "10.0.0.2",
          destIP: testNodeIP,
          destPort: 3001,
          output: both,
          masq: !local,
        },
        {
          name: "external to NodePort",
          sourceIP: testExternalClient,
          destIP: testNodeIP,
          destPort: 3001,
          output: ext,
          masq: !local,
        },
      ]);
    });
  }

  // TestInternalExternalMasquerade: one flow table, four proxier configurations.
  const masqFlows: Flow[] = [
    {
      name: "pod to ClusterIP",
      sourceIP: "10.0.0.2",
      destIP: "172.30.0.41",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
    },
    {
      name: "pod to NodePort",
      sourceIP: "10.0.0.2",
      destIP: testNodeIP,
      destPort: 3001,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "pod to LB",
      sourceIP: "10.0.0.2",
      destIP: "1.2.3.4",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "node to ClusterIP",
      sourceIP: testNodeIP,
      destIP: "172.30.0.41",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "node to NodePort",
      sourceIP: testNodeIP,
      destIP: testNodeIP,
      destPort: 3001,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "localhost to NodePort",
      sourceIP: "127.0.0.1",
      destIP: "127.0.0.1",
      destPort: 3001,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "node to LB",
      sourceIP: testNodeIP,
      destIP: "1.2.3.4",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "external to ClusterIP",
      sourceIP: testExternalClient,
      destIP: "172.30.0.41",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "external to NodePort",
      sourceIP: testExternalClient,
      destIP: testNodeIP,
      destPort: 3001,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "external to LB",
      sourceIP: testExternalClient,
      destIP: "1.2.3.4",
      destPort: 80,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "pod to ClusterIP with eTP:Local",
      sourceIP: "10.0.0.2",
      destIP: "172.30.0.42",
      destPort: 80,
      output: "10.180.0.2:80, 10.180.1.2:80",
    },
    {
      name: "pod to NodePort with eTP:Local",
      sourceIP: "10.0.0.2",
      destIP: testNodeIP,
      destPort: 3002,
      output: "10.180.0.2:80, 10.180.1.2:80",
    },
    {
      name: "pod to LB with eTP:Local",
      sourceIP: "10.0.0.2",
      destIP: "5.6.7.8",
      destPort: 80,
      output: "10.180.0.2:80, 10.180.1.2:80",
    },
    {
      name: "node to ClusterIP with eTP:Local",
      sourceIP: testNodeIP,
      destIP: "172.30.0.42",
      destPort: 80,
      output: "10.180.0.2:80, 10.180.1.2:80",
      masq: true,
    },
    // Upstream's own case: port 3001 (svc1's NodePort), so the same as "node to NodePort".
    {
      name: "node to NodePort with eTP:Local",
      sourceIP: testNodeIP,
      destIP: testNodeIP,
      destPort: 3001,
      output: "10.180.0.1:80, 10.180.1.1:80",
      masq: true,
    },
    {
      name: "localhost to NodePort with eTP:Local",
      sourceIP: "127.0.0.1",
      destIP: "127.0.0.1",
      destPort: 3002,
      output: "10.180.0.2:80, 10.180.1.2:80",
      masq: true,
    },
    {
      name: "node to LB with eTP:Local",
      sourceIP: testNodeIP,
      destIP: "5.6.7.8",
      destPort: 80,
      output: "10.180.0.2:80, 10.180.1.2:80",
      masq: true,
    },
    {
      name: "external to ClusterIP with eTP:Local",
      sourceIP: testExternalClient,
      destIP: "172.30.0.42",
      destPort: 80,
      output: "10.180.0.2:80, 10.180.1.2:80",
      masq: true,
    },
    {
      name: "external to NodePort with eTP:Local",
      sourceIP: testExternalClient,
      destIP: testNodeIP,
      destPort: 3002,
      output: "10.180.0.2:80",
    },
    {
      name: "external to LB with eTP:Local",
      sourceIP: testExternalClient,
      destIP: "5.6.7.8",
      destPort: 80,
      output: "10.180.0.2:80",
    },
    {
      name: "pod to ClusterIP with iTP:Local",
      sourceIP: "10.0.0.2",
      destIP: "172.30.0.43",
      destPort: 80,
      output: "10.180.0.3:80",
    },
    {
      name: "pod to NodePort with iTP:Local",
      sourceIP: "10.0.0.2",
      destIP: testNodeIP,
      destPort: 3003,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "pod to LB with iTP:Local",
      sourceIP: "10.0.0.2",
      destIP: "9.10.11.12",
      destPort: 80,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "node to ClusterIP with iTP:Local",
      sourceIP: testNodeIP,
      destIP: "172.30.0.43",
      destPort: 80,
      output: "10.180.0.3:80",
      masq: true,
    },
    {
      name: "node to NodePort with iTP:Local",
      sourceIP: testNodeIP,
      destIP: testNodeIP,
      destPort: 3003,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "localhost to NodePort with iTP:Local",
      sourceIP: "127.0.0.1",
      destIP: "127.0.0.1",
      destPort: 3003,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "node to LB with iTP:Local",
      sourceIP: testNodeIP,
      destIP: "9.10.11.12",
      destPort: 80,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "external to ClusterIP with iTP:Local",
      sourceIP: testExternalClient,
      destIP: "172.30.0.43",
      destPort: 80,
      output: "10.180.0.3:80",
      masq: true,
    },
    {
      name: "external to NodePort with iTP:Local",
      sourceIP: testExternalClient,
      destIP: testNodeIP,
      destPort: 3003,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
    {
      name: "external to LB with iTP:Local",
      sourceIP: testExternalClient,
      destIP: "9.10.11.12",
      destPort: 80,
      output: "10.180.0.3:80, 10.180.1.3:80",
      masq: true,
    },
  ];
  const masqServices = (): GenServicePort[] => {
    const pair = (n: number) => [
      ep(`10.180.0.${n}`, 80, "test-node"),
      ep(`10.180.1.${n}`, 80, "remote"),
    ];
    return [
      svc({
        clusterIP: "172.30.0.41",
        nodePort: 3001,
        loadBalancerIPs: ["1.2.3.4"],
        endpoints: pair(1),
      }),
      svc({
        namespace: "ns2",
        name: "svc2",
        clusterIP: "172.30.0.42",
        nodePort: 3002,
        healthCheckNodePort: 30002,
        externalTrafficPolicy: "Local",
        loadBalancerIPs: ["5.6.7.8"],
        endpoints: pair(2),
      }),
      svc({
        namespace: "ns3",
        name: "svc3",
        clusterIP: "172.30.0.43",
        nodePort: 3003,
        internalTrafficPolicy: "Local",
        loadBalancerIPs: ["9.10.11.12"],
        endpoints: pair(3),
      }),
    ];
  };
  const noDetector = {
    "node to ClusterIP": { masq: false },
    "node to ClusterIP with eTP:Local": { masq: false },
    "node to ClusterIP with iTP:Local": { masq: false },
    "external to ClusterIP": { masq: false },
    "external to ClusterIP with eTP:Local": { masq: false },
    "external to ClusterIP with iTP:Local": { masq: false },
    "pod to NodePort with eTP:Local": { output: "10.180.0.2:80" },
    "pod to LB with eTP:Local": { output: "10.180.0.2:80" },
  };
  const masqAll = {
    "pod to ClusterIP": { masq: true },
    "pod to ClusterIP with eTP:Local": { masq: true },
    "pod to ClusterIP with iTP:Local": { masq: true },
  };
  const masqCases: [
    string,
    { masqueradeAll: boolean; localDetector: boolean },
    Record<string, Partial<Flow>>,
  ][] = [
    ["base", { masqueradeAll: false, localDetector: true }, {}],
    ["no LocalTrafficDetector", { masqueradeAll: false, localDetector: false }, noDetector],
    ["masqueradeAll", { masqueradeAll: true, localDetector: true }, masqAll],
    [
      "masqueradeAll, no LocalTrafficDetector",
      { masqueradeAll: true, localDetector: false },
      {
        ...masqAll,
        "pod to NodePort with eTP:Local": { output: "10.180.0.2:80" },
        "pod to LB with eTP:Local": { output: "10.180.0.2:80" },
      },
    ],
  ];
  for (const [name, opts, overrides] of masqCases) {
    it(`TestInternalExternalMasquerade: ${name}`, () => {
      const rules = generateIptablesRestore(masqServices(), node4, {}, { ...fake, ...opts });
      const flows = masqFlows.map((f) => ({ ...f, ...(overrides[f.name] ?? {}) }));
      // As upstream: every override must name a flow.
      for (const key of Object.keys(overrides))
        expect(
          masqFlows.some((f) => f.name === key),
          key,
        ).toBe(true);
      runFlows(rules, flows);
    });
  }

  it("TestSyncProxyRulesLargeClusterMode: the exact endpoint rules below and above the threshold", () => {
    const spread = (prefix: string, n: number, port: number) =>
      Array.from({ length: n }, (_, i) => ep(`${prefix}.${i % 256}.${Math.floor(i / 256)}`, port));
    const below = [
      svc({ clusterIP: "172.30.0.41", endpoints: spread("10.0", 499, 80) }),
      svc({
        namespace: "ns2",
        name: "svc2",
        portName: "p8080",
        port: 8080,
        clusterIP: "172.30.0.42",
        endpoints: spread("10.1", 499, 8080),
      }),
    ];
    const opts = { ...fake, masqueradeAll: true };
    const first = (text: string, ip: string) =>
      text
        .split("\n")
        .find((l) => l.startsWith("-A KUBE-SEP-") && l.includes("-j DNAT") && l.includes(`${ip}:`));
    const small = generateIptablesRestore(below, node4, {}, opts);
    expect(first(small, "10.0.0.0")).toBe(
      "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
    );
    const above = [
      ...below,
      svc({
        namespace: "ns3",
        name: "svc3",
        portName: "p8081",
        port: 8081,
        clusterIP: "172.30.0.43",
        endpoints: ["203.0.113.4", "203.0.113.8", "203.0.113.12"].map((ip) => ep(ip, 8081)),
      }),
    ];
    const large = generateIptablesRestore(above, node4, {}, opts);
    expect(first(large, "10.0.0.0")).toBe(
      "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
    );
    expect(first(large, "203.0.113.4")).toBe(
      "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081",
    );
  });

  // TestInternalTrafficPolicy: an unnamed port, iTP Cluster/Local, local endpoints or not.
  const itpCases: [string, "Cluster" | "Local", [string, string][], string][] = [
    [
      "cluster",
      "Cluster",
      [
        ["10.0.1.1", "test-node"],
        ["10.0.1.2", "node1"],
        ["10.0.1.3", "node2"],
      ],
      "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80",
    ],
    [
      "local, one local endpoint",
      "Local",
      [
        ["10.0.1.1", "test-node"],
        ["10.0.1.2", "node1"],
        ["10.0.1.3", "node2"],
      ],
      "10.0.1.1:80",
    ],
    [
      "local, several local endpoints",
      "Local",
      [
        ["10.0.1.1", "test-node"],
        ["10.0.1.2", "test-node"],
        ["10.0.1.3", "node2"],
      ],
      "10.0.1.1:80, 10.0.1.2:80",
    ],
    [
      "local, no local endpoints",
      "Local",
      [
        ["10.0.1.1", "node0"],
        ["10.0.1.2", "node1"],
        ["10.0.1.3", "node2"],
      ],
      "DROP",
    ],
  ];
  for (const [name, policy, eps, output] of itpCases) {
    it(`TestInternalTrafficPolicy: ${name}`, () => {
      const base = { portName: "", clusterIP: "172.30.1.1", internalTrafficPolicy: policy };
      const rules = generateIptablesRestore(
        [svc({ ...base, endpoints: eps.map(([ip, n]) => ep(ip, 80, n)) })],
        node4,
        {},
        fake,
      );
      runFlows(rules, [
        {
          name: "pod to ClusterIP",
          sourceIP: "10.0.0.2",
          destIP: "172.30.1.1",
          destPort: 80,
          output,
        },
      ]);
      // Then the endpoints are deleted.
      runFlows(generateIptablesRestore([svc(base)], node4, {}, fake), [
        {
          name: "endpoints deleted",
          sourceIP: "10.0.0.2",
          destIP: "172.30.1.1",
          destPort: 80,
          output: "REJECT",
        },
      ]);
    });
  }

  // TestTerminatingEndpointsTrafficPolicyLocal / …Cluster: ready, serving and terminating
  // conditions on local and remote endpoints.
  const cond = (
    ip: string,
    ready: boolean,
    serving: boolean,
    terminating: boolean,
    nodeName: string,
  ): GenEndpoint => ({
    ip,
    port: 80,
    ready,
    serving,
    terminating,
    nodeName,
  });
  const me = "test-node";
  const termCases: [
    string,
    GenEndpoint[],
    { local: [string, string]; cluster: [string, string] },
  ][] = [
    [
      "ready endpoints exist",
      [
        cond("10.0.1.1", true, true, false, me),
        cond("10.0.1.2", true, true, false, me),
        cond("10.0.1.3", false, true, true, me),
        cond("10.0.1.4", false, false, true, me),
        cond("10.0.1.5", true, true, false, "node-1"),
      ],
      {
        local: ["10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80"],
        cluster: ["10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"],
      },
    ],
    [
      "only terminating endpoints exist (locally)",
      [
        cond("10.0.1.2", false, true, true, me),
        cond("10.0.1.3", false, true, true, me),
        cond("10.0.1.4", false, false, true, me),
        cond("10.0.1.5", true, true, false, "node-1"),
      ],
      {
        local: ["10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80"],
        cluster: ["10.0.1.5:80", "10.0.1.5:80"],
      },
    ],
    [
      "terminating endpoints on remote node",
      [cond("10.0.1.5", false, true, true, "node-1")],
      { local: ["10.0.1.5:80", "DROP"], cluster: ["10.0.1.5:80", "10.0.1.5:80"] },
    ],
    [
      "no usable endpoints on any node",
      [cond("10.0.1.5", false, false, true, me), cond("10.0.1.5", false, false, true, "node-1")],
      { local: ["REJECT", "REJECT"], cluster: ["REJECT", "REJECT"] },
    ],
  ];
  // The Cluster variant's own "only terminating endpoints exist" has no ready endpoint at all.
  const clusterOnlyTerminating: GenEndpoint[] = [
    cond("10.0.1.2", false, true, true, me),
    cond("10.0.1.3", false, true, true, me),
    cond("10.0.1.4", false, false, true, "another-node"),
    cond("10.0.1.5", false, true, true, "another-node"),
  ];
  for (const policy of ["Local", "Cluster"] as const) {
    for (const [name, eps, want] of termCases) {
      it(`TestTerminatingEndpointsTrafficPolicy${policy}: ${name}`, () => {
        const key = policy === "Local" ? "local" : "cluster";
        let endpoints = eps;
        let [toCluster, toLB] = want[key];
        if (policy === "Cluster" && name.startsWith("only terminating")) {
          endpoints = clusterOnlyTerminating;
          toCluster = "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80";
          toLB = toCluster;
        }
        const base = {
          portName: "",
          clusterIP: "172.30.1.1",
          loadBalancerIPs: ["1.2.3.4"],
          healthCheckNodePort: 30000,
          externalTrafficPolicy: policy,
        };
        const masq = policy === "Cluster" && toLB !== "REJECT" && toLB !== "DROP";
        runFlows(generateIptablesRestore([svc({ ...base, endpoints })], node4, {}, fake), [
          {
            name: "pod to clusterIP",
            sourceIP: "10.0.0.2",
            destIP: "172.30.1.1",
            destPort: 80,
            output: toCluster,
          },
          {
            name: "external to LB",
            sourceIP: testExternalClient,
            destIP: "1.2.3.4",
            destPort: 80,
            output: toLB,
            masq,
          },
        ]);
        runFlows(generateIptablesRestore([svc(base)], node4, {}, fake), [
          {
            name: "pod after deletion",
            sourceIP: "10.0.0.2",
            destIP: "172.30.1.1",
            destPort: 80,
            output: "REJECT",
          },
          {
            name: "external after deletion",
            sourceIP: testExternalClient,
            destIP: "1.2.3.4",
            destPort: 80,
            output: "REJECT",
          },
        ]);
      });
    }
  }

  it("the tracer can fail: a missing masquerade is caught", () => {
    const rules = generateIptablesRestore(
      [svc({ clusterIP: "172.30.0.41", nodePort: 3001, endpoints: [ep("10.180.0.1", 80)] })],
      node4,
      { noMasquerade: true },
      fake,
    );
    const t = tracePacket(parse(rules), testExternalClient, "tcp", testNodeIP, "3001");
    expect(t.outputs).toEqual(["10.180.0.1:80"]);
    expect(t.masq).toBe(false);
  });
});
