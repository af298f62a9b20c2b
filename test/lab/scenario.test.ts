import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadScenario, parseScenario } from "../../src/lab/scenario.js";
import { errorOf } from "./helpers.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "lab");
const traces = join(import.meta.dirname, "..", "..", "traces");

describe("scenario", () => {
  it("fills in addresses, ports and names the file left out", () => {
    const scn = loadScenario(join(fixtures, "stale-rules.yaml"));
    expect(scn.nodes.map((n) => [n.name, n.ip, n.podCIDR, n.gateway])).toEqual([
      ["n1", "172.30.0.11", "10.244.1.0/24", "10.244.1.1"],
      ["n2", "172.30.0.12", "10.244.2.0/24", "10.244.2.1"],
    ]);
    const pods = Object.fromEntries(scn.pods.map((p) => [p.name, p]));
    expect(pods["api-1"]?.ip).toBe("10.244.1.10");
    expect(pods["api-1"]?.tcpPorts).toEqual([8080]);
    expect(pods["ca"]?.ip).toBe("10.244.1.11");
    expect(pods["ca"]?.isClient).toBe(true);
    expect(scn.services[0]?.clusterIP).toBe("10.96.0.10");
    // Interface names must fit IFNAMSIZ.
    for (const p of scn.pods) expect(p.hostIf.length).toBeLessThanOrEqual(15);
    const traffic = scn.steps[0];
    expect(traffic).toMatchObject({
      kind: "traffic",
      vip: "10.96.0.10",
      vipPort: 80,
      node: "n1",
      protocol: "TCP",
      sport: "random",
    });
    expect(scn.faults.staleRulesNode).toBe("n2");
  });

  it("aims NodePort traffic at the node's address and NodePort", () => {
    const scn = loadScenario(join(fixtures, "nodeport.yaml"));
    expect(scn.clients[0]).toEqual({
      name: "ext",
      node: null,
      ip: "172.30.0.101",
      hostNetwork: false,
    });
    expect(scn.steps[0]).toMatchObject({ vip: "172.30.0.11", vipPort: 30080, node: "n1" });
  });

  it("names the file and line of an unknown reference", () => {
    const error = errorOf(() => loadScenario(join(fixtures, "bad-unknown-node.yaml")));
    expect(error.file).toContain("bad-unknown-node.yaml");
    expect(error.line).toBe(5);
    expect(error.message).toMatch(/no node n9/);
  });

  it("names the file and line of a misspelt field", () => {
    const error = errorOf(() => loadScenario(join(fixtures, "bad-field.yaml")));
    expect(error.line).toBe(8);
    expect(error.message).toMatch(/protocl/);
  });

  it("reports YAML syntax errors with a line", () => {
    const error = errorOf(() => parseScenario("name: x\nnodes: [\n  - a\n", "x.yaml"));
    expect(error.file).toBe("x.yaml");
    expect(error.line).toBeGreaterThan(0);
  });

  it("refuses ClusterIP traffic from an external client and duplicate addresses", () => {
    const base = `name: x
nodes: [{ name: n1 }]
pods: [{ name: a, node: n1, labels: { app: a } }]
clients: [{ name: ext }]
services: [{ name: s, selector: { app: a }, ports: [{ port: 80 }] }]
`;
    expect(() =>
      parseScenario(`${base}steps: [{ traffic: { from: ext, to: s, count: 1 } }]\n`),
    ).toThrow(/external client cannot reach a ClusterIP/);
    expect(() =>
      parseScenario(`name: x
nodes: [{ name: n1 }, { name: n2, ip: 172.30.0.11 }]
steps: [{ wait: 1s }]
`),
    ).toThrow(/172\.30\.0\.11 is already used by node n1/);
  });

  it("parses every sample bundle's scenario", () => {
    for (const name of [
      "01-clusterip-two-nodes",
      "02-nodeport-external-masquerade",
      "03-stale-rules-service-removed",
      "04-udp-stale-conntrack",
      "05-session-affinity",
      "06-skewed-probabilities",
      "07-no-endpoints-blackholed",
      "08-loadbalancer-externalip",
      "09-external-traffic-policy-local",
      "10-node-local-client",
    ]) {
      const scn = loadScenario(join(traces, name, "scenario.yaml"));
      expect(scn.steps.length, name).toBeGreaterThan(0);
    }
  });
});
