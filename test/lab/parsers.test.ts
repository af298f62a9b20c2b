import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ctTranslation, parseConntrackList } from "../../src/lab/conntrack.js";
import { loadScenario } from "../../src/lab/scenario.js";
import { genServicePorts, initialState, inventoryJson } from "../../src/lab/state.js";
import { parseTcpdumpStats } from "../../src/lab/tcpdump.js";

describe("conntrack -L lines", () => {
  it("reads original and reply tuples, endpoint and SNAT", () => {
    // Real lines from the lab: traces/02 n1 (NodePort, DNAT + masquerade to the node IP) and
    // traces/04 n1 (UDP ClusterIP, DNAT only).
    const text = [
      "tcp      6 117 TIME_WAIT src=172.30.0.101 dst=172.30.0.11 sport=41365 dport=30080 src=10.244.2.10 dst=172.30.0.11 sport=8080 dport=54220 [ASSURED] mark=0 use=1",
      "udp      17 29 src=10.244.1.11 dst=10.96.0.10 sport=40053 dport=53 src=10.244.2.10 dst=10.244.1.11 sport=5353 dport=40053 mark=0 use=1",
      "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.",
    ].join("\n");
    const entries = parseConntrackList(text);
    expect(entries).toHaveLength(2);
    expect(entries[0]?.state).toBe("TIME_WAIT");
    expect(ctTranslation(entries[0]!)).toEqual({
      endpoint: "10.244.2.10:8080",
      snat: "172.30.0.11:54220",
    });
    expect(ctTranslation(entries[1]!)).toEqual({ endpoint: "10.244.2.10:5353", snat: null });
  });
});

describe("tcpdump statistics", () => {
  it("reads the drop counter tcpdump prints on exit", () => {
    const stderr =
      "tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 1500 bytes\n" +
      "1396 packets captured\n1397 packets received by filter\n3 packets dropped by kernel\n";
    expect(parseTcpdumpStats(stderr)).toEqual({ captured: 1396, received: 1397, dropped: 3 });
    expect(parseTcpdumpStats("tcpdump: any: You don't have permission")).toBeNull();
  });
});

describe("inventory", () => {
  it("renders Services and EndpointSlices as kubectl does", () => {
    const scn = loadScenario(join(import.meta.dirname, "..", "fixtures", "lab", "nodeport.yaml"));
    const state = initialState(scn);
    const list = inventoryJson(scn, state, new Map()) as {
      kind: string;
      items: { kind: string; spec?: { ports: unknown[] }; endpoints?: unknown[] }[];
    };
    expect(list.kind).toBe("List");
    expect(list.items.map((i) => i.kind)).toEqual(["Service", "EndpointSlice"]);
    expect(list.items[0]?.spec?.ports).toEqual([
      { name: "http", protocol: "TCP", port: 80, targetPort: 8080, nodePort: 30080 },
    ]);
    expect(list.items[1]).toMatchObject({
      apiVersion: "discovery.k8s.io/v1",
      addressType: "IPv4",
      metadata: { labels: { "kubernetes.io/service-name": "web" } },
      endpoints: [
        { addresses: ["10.244.1.10"], nodeName: "n1", conditions: { ready: true } },
        { addresses: ["10.244.2.10"], nodeName: "n2", conditions: { ready: true } },
      ],
      ports: [{ name: "http", protocol: "TCP", port: 8080 }],
    });
    const ports = genServicePorts(scn, state);
    expect(ports).toHaveLength(1);
    expect(ports[0]).toMatchObject({ nodePort: 30080, clusterIP: "10.96.0.10" });
    expect(ports[0]?.endpoints.map((e) => `${e.ip}:${e.port}`)).toEqual([
      "10.244.1.10:8080",
      "10.244.2.10:8080",
    ]);
  });
});
