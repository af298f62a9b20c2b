import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyRestore, parseIptablesSave } from "../../src/rules/iptables-save.js";
import {
  buildKubeModel,
  type KubeModel,
  type KubeServicePort,
} from "../../src/rules/kube-model.js";
import { endpointChainName, serviceChainName } from "../../src/rules/kube-names.js";
import { parseKubernetes } from "../../src/rules/kubernetes.js";
import { readReference } from "./reference.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const read = (name: string) => readFileSync(join(fixtures, name), "utf8");

function port(m: KubeModel, name: string): KubeServicePort {
  const p = m.servicePorts.find((s) => s.name === name);
  if (p === undefined)
    throw new Error(`no service port ${name} in ${m.servicePorts.map((s) => s.name).join(", ")}`);
  return p;
}

/** What a person reading the dump writes down: compact, one line per fact. */
function summary(p: KubeServicePort) {
  return {
    clusterIP: p.clusterIP === null ? null : `${p.clusterIP}:${p.port}`,
    nodePorts: p.nodePorts,
    externalIPs: p.externalIPs.map((x) => `${x.ip}:${x.port}`),
    loadBalancerIPs: p.loadBalancerIPs.map((x) => `${x.ip}:${x.port}`),
    sourceRanges: p.loadBalancerSourceRanges,
    affinity: p.affinitySeconds,
    iTP: p.internalTrafficPolicy,
    eTP: p.externalTrafficPolicy,
    masq: `${p.clusterIPMasquerade}/${p.externalMasquerade}`,
    endpoints: p.endpoints.map((e) => `${e.endpoint} p=${e.probability}`),
    local: p.localEndpoints.map((e) => `${e.endpoint} p=${e.probability}`),
    noEndpoints: p.noEndpoints.map((n) => `${n.verdict} ${n.scope} ${n.destination}`),
    hc: p.healthCheckNodePort,
  };
}

const base = {
  nodePorts: [],
  externalIPs: [],
  loadBalancerIPs: [],
  sourceRanges: [],
  affinity: null,
  iTP: "Cluster",
  eTP: null,
  masq: "off-cluster/null",
  local: [],
  noEndpoints: [],
  hc: null,
};

describe("kube model of upstream's TestOverallIPTablesRules (02)", () => {
  const model = buildKubeModel(
    parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), { source: "02" }),
  );

  it("has the six Services the test creates, each as its source comment says", () => {
    expect(model.servicePorts.map((p) => p.name)).toEqual([
      "ns1/svc1:p80",
      "ns2/svc2:p80",
      "ns3/svc3:p80",
      "ns4/svc4:p80",
      "ns5/svc5:p80",
      "ns6/svc6:p80",
    ]);
    expect(summary(port(model, "ns1/svc1:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.41:80",
      endpoints: ["10.180.0.1:80 p=1"],
    });
    // LoadBalancer, eTP=Local, no endpoint on this node: external traffic dropped in filter.
    expect(summary(port(model, "ns2/svc2:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.42:80",
      nodePorts: [3001],
      externalIPs: ["192.168.99.22:80"],
      loadBalancerIPs: ["1.2.3.4:80"],
      eTP: "Local",
      masq: "off-cluster/local-sources",
      endpoints: ["10.180.0.2:80 p=1"],
      noEndpoints: [
        "DROP external 192.168.99.22:80",
        "DROP external 1.2.3.4:80",
        "DROP external LOCAL:3001",
      ],
      hc: 30000,
    });
    expect(summary(port(model, "ns3/svc3:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.43:80",
      nodePorts: [3003],
      eTP: "Cluster",
      masq: "off-cluster/all",
      endpoints: ["10.180.0.3:80 p=1"],
    });
    expect(summary(port(model, "ns4/svc4:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.44:80",
      externalIPs: ["192.168.99.33:80"],
      eTP: "Cluster",
      masq: "off-cluster/all",
      endpoints: ["10.180.0.4:80 p=0.5", "10.180.0.5:80 p=0.5"],
    });
    expect(summary(port(model, "ns5/svc5:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.45:80",
      nodePorts: [3002],
      loadBalancerIPs: ["5.6.7.8:80"],
      sourceRanges: ["203.0.113.0/25"],
      affinity: 10800,
      eTP: "Cluster",
      masq: "off-cluster/all",
      endpoints: ["10.180.0.3:80 p=1"],
    });
    expect(summary(port(model, "ns6/svc6:p80"))).toEqual({
      ...base,
      clusterIP: "172.30.0.46:80",
      iTP: null,
      masq: "null/null",
      endpoints: [],
      noEndpoints: ["REJECT internal 172.30.0.46:80"],
    });
  });

  it("knows the chains, hashes, affinity and masquerade details", () => {
    const svc5 = port(model, "ns5/svc5:p80");
    expect(svc5.chains).toEqual({
      svc: "KUBE-SVC-NUKIZ6OKUXPJNT4C",
      svl: null,
      ext: "KUBE-EXT-NUKIZ6OKUXPJNT4C",
      fw: "KUBE-FW-NUKIZ6OKUXPJNT4C",
      xlb: null,
    });
    expect(svc5.endpoints[0]).toMatchObject({
      chain: "KUBE-SEP-I77PXRDZVX7PMWMN",
      affinity: true,
      hairpinMasquerade: true,
      hashVerified: true,
      broken: null,
    });
    expect(svc5.localDetector).toBe("! -s 10.0.0.0/8");
    expect(model.servicePorts.every((p) => p.nameFrom === "comment")).toBe(true);
    expect(
      model.servicePorts.filter((p) => p.chains.svc !== null).every((p) => p.hashVerified),
    ).toBe(true);
    expect(model.withoutEndpoints).toEqual(["ns6/svc6:p80"]);
    expect(model.orphanChains).toEqual([]);
    expect(model.unreachableChains).toEqual([]);
    expect(model.danglingJumps).toEqual([]);
    expect(model.unmodelled).toEqual([]);
    expect(model.masqueradeMark).toBe("0x4000");
    expect(model.masqueradeRandomFully).toBe(false);
  });

  it("is the same from the kernel's iptables-save form of the same rules", () => {
    const saved = buildKubeModel(
      parseIptablesSave(read("iptables-save-nft-1.8.9.txt"), { source: "saved" }),
    );
    const restored = buildKubeModel(
      parseIptablesSave(read("kube-02-no-nfacct.restore"), { source: "r" }),
    );
    const strip = (m: KubeModel) =>
      m.servicePorts.map((p) => ({
        ...summary(p),
        endpoints: p.endpoints.map((e) => `${e.endpoint} ${e.probability.toFixed(9)}`),
      }));
    expect(strip(saved)).toEqual(strip(restored));
    expect(strip(saved)).toEqual(strip(model).map((s) => s));
    expect(saved.masqueradeMark).toBe("0x4000");
    // KUBE-SVC-THREE is test scaffolding, not a kube-proxy chain name: listed as unmodelled rules.
    expect(saved.unmodelled.map((r) => r.chain)).toEqual([
      "KUBE-SVC-THREE",
      "KUBE-SVC-THREE",
      "KUBE-SVC-THREE",
    ]);
  });
});

describe("other reference dumps", () => {
  it("05: LoadBalancer source ranges and external IPs, normalized from bad IP text", () => {
    const m = buildKubeModel(
      parseIptablesSave(readReference("05-TestBadIPs-LB-sourceRanges.txt"), { source: "05" }),
    );
    expect(m.servicePorts.map((p) => [p.name, summary(p)])).toEqual([
      [
        "ns1/svc1:p80",
        {
          ...base,
          clusterIP: "172.30.0.41:80",
          nodePorts: [3001],
          externalIPs: ["192.168.99.22:80"],
          loadBalancerIPs: ["1.2.3.4:80"],
          sourceRanges: ["203.0.113.0/25"],
          eTP: "Cluster",
          masq: "off-cluster/all",
          endpoints: ["10.180.0.1:80 p=1"],
        },
      ],
    ]);
    expect(m.unmodelled).toEqual([]);
  });

  it("01: the trace test's rule set", () => {
    const m = buildKubeModel(
      parseIptablesSave(readReference("01-TestTracePacket.txt"), { source: "01" }),
    );
    expect(m.servicePorts.map((p) => p.name)).toEqual([
      "ns1/svc1:p80",
      "ns2/svc2:p80",
      "ns3/svc3:p80",
      "ns4/svc4:p80",
      "ns5/svc5:p80",
      "ns6/svc6:p80",
    ]);
    expect(summary(port(m, "ns4/svc4:p80")).endpoints).toEqual([
      "10.180.0.4:80 p=0.5",
      "10.180.0.5:80 p=0.5",
    ]);
    expect(m.withoutEndpoints).toEqual(["ns6/svc6:p80"]);
    expect(port(m, "ns2/svc2:p80").externalTrafficPolicy).toBe("Local");
    expect(m.unmodelled).toEqual([]);
    expect(m.danglingJumps).toEqual([]);
  });

  it("04: after the partial restores, svc2 is gone, svc3 has two endpoints, svc4 then goes", () => {
    let rs = parseIptablesSave(read("kube-04-step1.restore"), { source: "s1" });
    const parts = readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")
      .split(/^(?=# ---- step )/m)
      .slice(1);
    const models: KubeModel[] = [];
    for (const p of parts) {
      rs = applyRestore(rs, p, { source: "step" });
      models.push(buildKubeModel(rs));
    }
    const atStep = (i: number) =>
      Object.fromEntries(models[i]!.servicePorts.map((p) => [p.name, summary(p).endpoints]));
    expect(atStep(0)).toEqual({
      "ns1/svc1:p80": ["10.0.1.1:80 p=1"],
      "ns2/svc2:p8080": ["10.0.2.1:8080 p=1"],
      "ns3/svc3:p80": ["10.0.3.1:80 p=1"],
    });
    expect(atStep(1)).toEqual({
      "ns1/svc1:p80": ["10.0.1.1:80 p=1"],
      "ns3/svc3:p80": ["10.0.3.1:80 p=1"],
    });
    expect(atStep(2)).toEqual({
      "ns1/svc1:p80": ["10.0.1.1:80 p=1"],
      "ns3/svc3:p80": ["10.0.3.1:80 p=1"],
      "ns4/svc4:p80": [],
    });
    expect(models[2]!.withoutEndpoints).toEqual(["ns4/svc4:p80"]);
    expect(atStep(3)).toEqual({
      "ns1/svc1:p80": ["10.0.1.1:80 p=1"],
      "ns3/svc3:p80": ["10.0.3.1:80 p=1"],
      "ns4/svc4:p80": ["10.0.4.1:80 p=1"],
    });
    expect(atStep(4)["ns3/svc3:p80"]).toEqual(["10.0.3.2:80 p=1"]);
    expect(atStep(5)["ns3/svc3:p80"]).toEqual(["10.0.3.2:80 p=0.5", "10.0.3.3:80 p=0.5"]);
    expect(atStep(6)).toEqual({
      "ns1/svc1:p80": ["10.0.1.1:80 p=1"],
      "ns3/svc3:p80": ["10.0.3.2:80 p=0.5", "10.0.3.3:80 p=0.5"],
    });
    for (const m of models) {
      expect(m.orphanChains).toEqual([]);
      expect(m.danglingJumps).toEqual([]);
    }
  });
});

describe("without comments (kube-proxy above 1000 endpoints) and broken states", () => {
  const stripComments = (text: string) => text.replace(/ -m comment --comment ("[^"]*"|\S+)/g, "");

  it("names come from the inventory's hashes", () => {
    const bare = parseIptablesSave(
      stripComments(readReference("02-TestOverallIPTablesRules.txt")),
      { source: "bare" },
    );
    const anonymous = buildKubeModel(bare);
    expect(
      anonymous.servicePorts.filter((p) => p.nameFrom === "chain").map((p) => p.name),
    ).toContain("KUBE-SVC-NUKIZ6OKUXPJNT4C");
    const inventory = parseKubernetes(read("kube-02-inventory.json"), { source: "inv" });
    const named = buildKubeModel(bare, { inventory });
    const withComments = buildKubeModel(
      parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), { source: "02" }),
    );
    const key = (m: KubeModel) =>
      m.servicePorts
        .filter((p) => p.chains.svc !== null)
        .map((p) => ({ name: p.name, ...summary(p), noEndpoints: null }));
    expect(key(named)).toEqual(key(withComments));
    expect(
      named.servicePorts
        .filter((p) => p.chains.svc !== null)
        .every((p) => p.nameFrom === "inventory" && p.hashVerified),
    ).toBe(true);
    expect(named.servicePorts.flatMap((p) => p.endpoints).every((e) => e.hashVerified)).toBe(true);
  });

  it("finds orphan chains, dangling jumps, unreachable chains and unmodelled rules", () => {
    const name = "ns9/leak:p80";
    const svc = serviceChainName(name, "tcp");
    const sep = endpointChainName(name, "tcp", "10.9.0.1:80");
    const text = `*nat
:KUBE-SERVICES - [0:0]
:${svc} - [0:0]
:${sep} - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
-A ${svc} -m comment --comment "${name} -> 10.9.0.1:80" -j ${sep}
-A ${sep} -m comment --comment ${name} -m tcp -p tcp -j DNAT --to-destination 10.9.0.1:80
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-BBBBBBBBBBBBBBBB
-A KUBE-SERVICES -m comment --comment "something new" -j LOG
COMMIT
`;
    const m = buildKubeModel(parseIptablesSave(text, { source: "leak" }));
    expect(m.orphanChains).toEqual([svc, "KUBE-SVC-AAAAAAAAAAAAAAAA"].sort());
    expect(m.unreachableChains).toEqual([svc, sep, "KUBE-SVC-AAAAAAAAAAAAAAAA"].sort());
    expect(m.danglingJumps.map((r) => r.line)).toEqual([8]);
    expect(m.unmodelled.map((r) => r.line)).toEqual([9]);
    const leak = port(m, name);
    expect(leak.endpoints[0]).toMatchObject({
      endpoint: "10.9.0.1:80",
      hashVerified: true,
      broken: null,
    });
    const broken = port(m, "KUBE-SVC-AAAAAAAAAAAAAAAA");
    expect(broken.endpoints[0]?.broken).toBe("chain missing");
  });
});

describe("property: effective probabilities sum to 1 per service port", () => {
  it("for any number of endpoints written as kube-proxy does (and as the kernel rounds them)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.boolean(), (n, kernelForm) => {
        const name = "ns/svc:http";
        const svc = serviceChainName(name, "tcp");
        const lines = ["*nat", ":KUBE-SERVICES - [0:0]", `:${svc} - [0:0]`];
        const rules: string[] = [
          `-A KUBE-SERVICES -m comment --comment "${name} cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j ${svc}`,
        ];
        for (let i = 0; i < n; i++) {
          const ep = `10.1.${i >> 8}.${i & 255}:8080`;
          const sep = endpointChainName(name, "tcp", ep);
          lines.push(`:${sep} - [0:0]`);
          const p = 1 / (n - i);
          const prob = kernelForm ? (Math.round(p * 2 ** 31) / 2 ** 31).toFixed(11) : p.toFixed(10);
          rules.push(
            i < n - 1
              ? `-A ${svc} -m statistic --mode random --probability ${prob} -j ${sep}`
              : `-A ${svc} -j ${sep}`,
            `-A ${sep} -m tcp -p tcp -j DNAT --to-destination ${ep}`,
          );
        }
        const m = buildKubeModel(
          parseIptablesSave([...lines, ...rules, "COMMIT", ""].join("\n"), { source: "gen" }),
        );
        const eps = port(m, name).endpoints;
        expect(eps).toHaveLength(n);
        const sum = eps.reduce((a, e) => a + e.probability, 0);
        expect(Math.abs(sum - 1)).toBeLessThan(1e-9);
        for (const e of eps) expect(Math.abs(e.probability - 1 / n)).toBeLessThan(1e-8);
      }),
      { numRuns: 60 },
    );
  });
});

describe("older kube-proxy chains (KUBE-XLB, KUBE-MARK-DROP, `ns/name:` names)", () => {
  it("reads an eTP=Local NodePort of kube-proxy ≤1.23 as a person would", () => {
    // Composed in the shape older kube-proxy wrote (public iptables-save excerpts of v1.2x);
    // chain names are recomputed from the `ns/name:` service port string those versions hashed.
    const name = "default/redis-nodeport-local:";
    const svc = serviceChainName(name, "tcp");
    const xlb = svc.replace("KUBE-SVC-", "KUBE-XLB-");
    const sep = endpointChainName(name, "tcp", "10.244.1.7:6379");
    const text = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-DROP - [0:0]
:KUBE-MARK-MASQ - [0:0]
:${svc} - [0:0]
:${xlb} - [0:0]
:${sep} - [0:0]
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.0.178.235/32 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 6379 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.0.178.235/32 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 6379 -j ${svc}
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -s 127.0.0.0/8 -p tcp -m comment --comment "${name}" -m tcp --dport 30002 -j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p tcp -m comment --comment "${name}" -m tcp --dport 30002 -j ${xlb}
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A ${xlb} -s 10.244.0.0/16 -m comment --comment "Redirect pods trying to reach external loadbalancer VIP to clusterIP" -j ${svc}
-A ${xlb} -m comment --comment "${name} has no local endpoints" -j KUBE-MARK-DROP
-A ${svc} -j ${sep}
-A ${sep} -s 10.244.1.7/32 -j KUBE-MARK-MASQ
-A ${sep} -p tcp -m tcp -j DNAT --to-destination 10.244.1.7:6379
COMMIT
`;
    const m = buildKubeModel(parseIptablesSave(text, { source: "old" }));
    const p = port(m, name);
    expect(summary(p)).toEqual({
      ...base,
      clusterIP: "10.0.178.235:6379",
      nodePorts: [30002],
      eTP: "Local",
      masq: "none/local-sources",
      endpoints: ["10.244.1.7:6379 p=1"],
      noEndpoints: ["DROP external KUBE-XLB"],
    });
    expect(p).toMatchObject({ portName: "", hashVerified: true, chains: { svc, xlb } });
    expect(p.endpoints[0]?.hashVerified).toBe(true);
    expect(m.unmodelled).toEqual([]);
    expect(m.masqueradeMark).toBe("0x4000");
  });
});

describe("IPv6 (ip6tables-save)", () => {
  it("bracketed DNAT targets, /128 addresses and hashes of `[ip]:port` endpoints", () => {
    const name = "ns1/svc1:p80";
    const svc = serviceChainName(name, "tcp");
    const eps = ["fd00:10:180::1", "fd00:10:180::2"];
    const seps = eps.map((ip) => endpointChainName(name, "tcp", `[${ip}]:80`));
    const text = `# Generated by ip6tables-save v1.8.9 (nf_tables) on Wed Nov 25 10:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:${svc} - [0:0]
${seps.map((s) => `:${s} - [0:0]`).join("\n")}
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d fd00:172:30::41/128 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 80 -j ${svc}
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A ${svc} ! -s fd00:10::/64 -d fd00:172:30::41/128 -p tcp -m comment --comment "${name} cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A ${svc} -m comment --comment "${name} -> [${eps[0]}]:80" -m statistic --mode random --probability 0.50000000000 -j ${seps[0]}
-A ${svc} -m comment --comment "${name} -> [${eps[1]}]:80" -j ${seps[1]}
${seps.map((s, i) => `-A ${s} -s ${eps[i]}/128 -m comment --comment ${name} -j KUBE-MARK-MASQ\n-A ${s} -p tcp -m comment --comment ${name} -m tcp -j DNAT --to-destination [${eps[i]}]:80`).join("\n")}
COMMIT
`;
    const rs = parseIptablesSave(text, { source: "v6" });
    expect(rs.family).toBe("ipv6");
    const m = buildKubeModel(rs);
    expect(summary(port(m, name))).toEqual({
      ...base,
      clusterIP: "fd00:172:30::41:80",
      endpoints: ["[fd00:10:180::1]:80 p=0.5", "[fd00:10:180::2]:80 p=0.5"],
    });
    expect(port(m, name).localDetector).toBe("! -s fd00:10::/64");
    expect(port(m, name).endpoints.every((e) => e.hashVerified && e.hairpinMasquerade)).toBe(true);
    expect(m.unmodelled).toEqual([]);
  });
});
