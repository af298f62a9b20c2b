import { execFileSync, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type GenNode,
  type GenServicePort,
  generateIptablesRestore,
  generateIptablesSync,
} from "../../src/lab/kubeproxy-gen.js";
import { ep, svc } from "./gen-helpers.js";

const isRoot = process.getuid?.() === 0;
const hasIptables = spawnSync("iptables-restore", ["--version"]).status === 0;
const NS = `svt-gen-r${process.pid}`;

const node: GenNode = { name: "n1", nodeIPs: ["192.168.0.2"], clusterCIDR: "10.0.0.0/8" };

// Every construct the generator can write, in one rule set.
const everything: GenServicePort[] = [
  svc("ns1", "svc1", "172.30.0.41", {
    endpoints: [ep("10.180.0.1"), ep("10.180.0.11"), ep("10.180.0.21")],
  }),
  svc("ns2", "svc2", "172.30.0.42", {
    nodePort: 3001,
    healthCheckNodePort: 30000,
    externalIPs: ["192.168.99.22"],
    loadBalancerIPs: ["1.2.3.4"],
    externalTrafficPolicy: "Local",
    endpoints: [ep("10.180.0.2"), ep("10.180.0.7", "n1")],
  }),
  svc("ns3", "svc3", "172.30.0.43", {
    nodePort: 3003,
    externalTrafficPolicy: "Local",
    endpoints: [ep("10.180.0.3", "n2")],
  }),
  svc("ns5", "svc5", "172.30.0.45", {
    nodePort: 3002,
    loadBalancerIPs: ["5.6.7.8"],
    loadBalancerSourceRanges: ["203.0.113.0/25", "192.168.0.0/24"],
    sessionAffinityTimeout: 10800,
    endpoints: [ep("10.180.0.3"), ep("10.180.0.4")],
  }),
  svc("ns6", "svc6", "172.30.0.46", {
    protocol: "UDP",
    internalTrafficPolicy: "Local",
    endpoints: [ep("10.180.0.9", "n2")],
  }),
  svc("ns7", "svc7", "172.30.0.47", { protocol: "SCTP", endpoints: [ep("10.180.0.9")] }),
  svc("ns8", "svc8", "172.30.0.48", {
    nodePort: 3008,
    externalIPs: ["192.168.99.8"],
    loadBalancerIPs: ["5.6.7.9"],
  }),
];

function inNs(cmd: string, args: string[], input?: string): string {
  return execFileSync("ip", ["netns", "exec", NS, cmd, ...args], {
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
    ...(input === undefined ? {} : { input }),
  });
}

function countRules(text: string): Record<string, number> {
  const counts: Record<string, number> = {};
  let table = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    else if (line.startsWith("-A ")) counts[table] = (counts[table] ?? 0) + 1;
  }
  return counts;
}

describe.skipIf(!isRoot || !hasIptables)(
  "generated rules in the kernel (needs root and iptables; skipped otherwise)",
  () => {
    beforeAll(() => {
      execFileSync("ip", ["netns", "add", NS]);
    });
    afterAll(() => {
      spawnSync("ip", ["netns", "delete", NS]);
    });

    for (const [label, faults] of [
      ["correct", {}],
      ["one-over-n", { probabilities: "one-over-n" as const }],
      ["noMasquerade", { noMasquerade: true }],
    ] as const) {
      it(`iptables-restore --test accepts the ${label} rule set, and loading it keeps every rule`, () => {
        const text = generateIptablesRestore(everything, node, faults);
        inNs("iptables-restore", ["--test"], text);
        inNs("iptables-restore", [], text);
        const saved = inNs("iptables-save", []);
        const want = countRules(text);
        const got = countRules(saved);
        expect(got.filter).toBe(want.filter);
        expect(got.nat).toBe(want.nat);
        // iptables-save prints the kernel's rounding of %0.10f with more digits.
        if (label === "correct") expect(saved).toMatch(/--probability 0\.333333333\d*/);
        expect(saved).toContain("--set-xmark 0x4000/0x4000");
      });
    }

    it("iptables-restore --noflush accepts the output without jump rules, as kube-proxy sends it", () => {
      const text = generateIptablesRestore(everything, node, {}, { jumpRules: false });
      inNs("iptables-restore", ["--noflush"], text);
      expect(inNs("iptables-save", ["-t", "nat"])).toContain("-j KUBE-NODEPORTS");
    });

    it("really DNATs a ClusterIP connection to the endpoints and REJECTs a Service without endpoints", () => {
      // One namespace is node, client and pods at once: endpoints are local addresses, the
      // client connects from the namespace itself (nat OUTPUT → KUBE-SERVICES).
      const sh = (args: string[]) => execFileSync("ip", ["netns", "exec", NS, ...args]);
      sh(["ip", "link", "set", "lo", "up"]);
      sh(["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
      sh(["ip", "addr", "add", "192.168.0.2/24", "dev", "v0"]);
      sh(["ip", "link", "set", "v0", "up"]);
      sh(["ip", "link", "set", "v1", "up"]);
      sh(["ip", "route", "add", "172.30.0.0/16", "dev", "v0"]);
      for (const ip of ["10.180.0.1", "10.180.0.11"])
        sh(["ip", "addr", "add", `${ip}/32`, "dev", "lo"]);
      const rules = generateIptablesRestore(
        [
          svc("ns1", "svc1", "172.30.0.41", {
            endpoints: [ep("10.180.0.1", "n1"), ep("10.180.0.11", "n1")],
          }),
          svc("ns6", "svc6", "172.30.0.46", {}),
        ],
        node,
      );
      inNs("iptables-restore", [], rules);
      const script = `
        const net = require("node:net");
        const serve = (ip) => new Promise((ok) => net.createServer((s) => s.end(ip)).listen(80, ip, ok));
        const ask = (ip) => new Promise((ok) => {
          const c = net.connect(80, ip); let got = "";
          c.on("data", (d) => (got += d)); c.on("end", () => ok(got)); c.on("error", (e) => ok(e.code));
        });
        (async () => {
          await serve("10.180.0.1"); await serve("10.180.0.11");
          const answers = [];
          for (let i = 0; i < 40; i++) answers.push(await ask("172.30.0.41"));
          const rejected = await ask("172.30.0.46");
          process.stdout.write(JSON.stringify({ answers, rejected }));
          process.exit(0);
        })();`;
      const result = JSON.parse(inNs("node", ["-e", script])) as {
        answers: string[];
        rejected: string;
      };
      // Both endpoints answer (the chance that 40 connections miss one is 2^-39).
      expect(new Set(result.answers)).toEqual(new Set(["10.180.0.1", "10.180.0.11"]));
      expect(result.rejected).toBe("ECONNREFUSED");
    });

    it("a partial sync applied with --noflush leaves the kernel with the rules of a full restore", () => {
      const before = [everything[0] as GenServicePort, everything[3] as GenServicePort];
      const after = [
        // svc1 loses an endpoint, svc5 is gone, a new Service appears.
        {
          ...(everything[0] as GenServicePort),
          endpoints: (everything[0] as GenServicePort).endpoints.slice(1),
        },
        svc("ns9", "svc9", "172.30.0.49", { endpoints: [ep("10.180.0.99")] }),
      ];
      const save = () =>
        inNs("iptables-save", [])
          .split("\n")
          .filter(
            (l) =>
              l.startsWith("-A ") || (l.startsWith(":") && !l.startsWith(":KUBE-PROXY-CANARY")),
          )
          .map((l) => l.replace(/ \[\d+:\d+\]$/, ""))
          .sort();
      inNs("iptables-restore", [], generateIptablesRestore(before, node));
      inNs(
        "iptables-restore",
        ["--noflush"],
        generateIptablesSync(after, before, node, {}, { mode: "partial" }),
      );
      const synced = save();
      inNs("iptables-restore", [], generateIptablesRestore(after, node));
      expect(synced).toEqual(save());
      expect(synced.some((l) => l.includes("10.180.0.99"))).toBe(true);
    });

    it("ip6tables-restore accepts an IPv6 rule set", () => {
      const v6: GenNode = { name: "n1", nodeIPs: ["fd00::2"], clusterCIDR: "fd00:10::/64" };
      const text = generateIptablesRestore(
        [
          svc("ns", "v6", "fd00:96::a", {
            nodePort: 30080,
            loadBalancerIPs: ["2001:db8::5"],
            loadBalancerSourceRanges: ["2001:db8:1::/48"],
            sessionAffinityTimeout: 60,
            endpoints: [ep("fd00:10::5"), ep("fd00:10::6", "n1")],
          }),
        ],
        v6,
      );
      inNs("ip6tables-restore", ["--test"], text);
      inNs("ip6tables-restore", [], text);
      expect(inNs("ip6tables-save", ["-t", "nat"])).toContain("--to-destination [fd00:10::5]:80");
    });
  },
);
