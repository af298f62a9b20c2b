import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  endpointsFor,
  type InventorySnapshot,
  InventoryTimeline,
  parseKubernetes,
  servicePortName,
} from "../../src/rules/kubernetes.js";
import { InputError } from "../../src/util/errors.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const inventoryText = readFileSync(join(fixtures, "kube-02-inventory.json"), "utf8");

function errorOf(f: () => unknown): InputError {
  try {
    f();
  } catch (e) {
    if (e instanceof InputError) return e;
    throw e;
  }
  throw new Error("did not throw");
}

describe("kubectl get svc,endpointslices -A -o json", () => {
  const snap = parseKubernetes(inventoryText, { source: "inv.json", takenAt: 100 });

  it("reads every Service field kube-proxy uses", () => {
    expect(snap.services.map((s) => `${s.namespace}/${s.name} ${s.type}`)).toEqual([
      "ns1/svc1 ClusterIP",
      "ns2/svc2 LoadBalancer",
      "ns3/svc3 NodePort",
      "ns4/svc4 ClusterIP",
      "ns5/svc5 LoadBalancer",
      "ns6/svc6 ClusterIP",
    ]);
    const svc2 = snap.services[1]!;
    expect(svc2).toMatchObject({
      clusterIPs: ["172.30.0.42"],
      ipFamilies: ["IPv4"],
      externalIPs: ["192.168.99.22"],
      loadBalancerIPs: ["1.2.3.4"],
      externalTrafficPolicy: "Local",
      internalTrafficPolicy: "Cluster",
      healthCheckNodePort: 30000,
      sessionAffinity: "None",
      affinityTimeoutSeconds: null,
      creationTimestamp: Date.UTC(2025, 10, 25, 9) / 1000,
    });
    expect(svc2.ports).toEqual([
      { name: "p80", protocol: "TCP", port: 80, targetPort: 80, nodePort: 3001, appProtocol: null },
    ]);
    const svc5 = snap.services[4]!;
    expect(svc5).toMatchObject({
      loadBalancerSourceRanges: ["203.0.113.0/25"],
      sessionAffinity: "ClientIP",
      affinityTimeoutSeconds: 10800,
    });
    expect(snap.takenAt).toBe(100);
    expect(snap.ignored).toEqual([]);
  });

  it("reads EndpointSlices and resolves endpoints per service port", () => {
    expect(snap.endpointSlices).toHaveLength(5);
    const svc4 = snap.services[3]!;
    const eps = endpointsFor(snap, svc4, svc4.ports[0]!);
    expect(eps.map((e) => [e.ip, e.port, e.ready, e.nodeName])).toEqual([
      ["10.180.0.4", 80, true, "node1"],
      ["10.180.0.5", 80, true, "node1"],
    ]);
    expect(snap.endpointSlices[0]?.endpoints[0]?.targetRef).toBe("Pod/ns1/svc1-pod-0");
    const svc6 = snap.services[5]!;
    expect(endpointsFor(snap, svc6, svc6.ports[0]!)).toEqual([]);
    expect(servicePortName(svc4, "p80")).toBe("ns4/svc4:p80");
    expect(servicePortName(svc4, "")).toBe("ns4/svc4");
  });

  it("the same as YAML, typed lists, single objects, v1beta1 topology, API defaults", () => {
    const yaml = `apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSliceList
items:
- metadata:
    name: s1
    namespace: web
    labels: {kubernetes.io/service-name: front}
  addressType: IPv4
  endpoints:
  - addresses: ["10.1.0.7"]
    topology: {kubernetes.io/hostname: n7, topology.kubernetes.io/zone: z1}
  - addresses: ["10.1.0.8"]
    conditions: {ready: false, terminating: true}
  ports:
  - port: 8080
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: web}
spec:
  clusterIP: 10.96.0.9
  ports: [{port: 80, targetPort: http}]
`;
    const s = parseKubernetes(yaml, { source: "y" });
    expect(s.takenAt).toBeNull();
    const e = s.endpointSlices[0]!;
    expect(e.endpoints[0]).toMatchObject({
      nodeName: "n7",
      zone: "z1",
      ready: true,
      serving: true,
      terminating: false,
    });
    expect(e.endpoints[1]).toMatchObject({ ready: false, serving: false, terminating: true });
    expect(e.ports).toEqual([{ name: "", protocol: "TCP", port: 8080, appProtocol: null }]);
    const svc = s.services[0]!;
    expect(svc).toMatchObject({
      type: "ClusterIP",
      clusterIPs: ["10.96.0.9"],
      ipFamilies: ["IPv4"],
      externalTrafficPolicy: "Cluster",
    });
    expect(svc.ports[0]).toMatchObject({ name: "", protocol: "TCP", targetPort: "http" });
    expect(endpointsFor(s, svc, svc.ports[0]!).map((x) => `${x.ip}:${x.port}`)).toEqual([
      "10.1.0.7:8080",
      "10.1.0.8:8080",
    ]);
    const one = parseKubernetes(
      '{"apiVersion":"v1","kind":"Service","metadata":{"name":"h","namespace":"x"},"spec":{"clusterIP":"None","ports":[{"port":53,"protocol":"UDP"}]}}',
      { source: "o" },
    );
    expect(one.services[0]).toMatchObject({ headless: true, clusterIPs: [] });
    const other = parseKubernetes(
      '{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"x"}}]}',
      { source: "o" },
    );
    expect(other.ignored).toEqual(["Pod x/p"]);
  });

  it("errors name the path in the document", () => {
    const doc = JSON.parse(inventoryText);
    doc.items[3].spec.ports[0].port = "eighty";
    const e = errorOf(() => parseKubernetes(JSON.stringify(doc), { source: "inv.json" }));
    expect(e.message).toBe(
      "inv.json: items[3].spec.ports[0].port: expected number, received string",
    );
    const doc2 = JSON.parse(inventoryText);
    doc2.items[1].spec.externalIPs = ["not-an-ip"];
    expect(errorOf(() => parseKubernetes(JSON.stringify(doc2), { source: "f" })).message).toBe(
      'f: items[1].spec.externalIPs[0]: not an IP address: "not-an-ip"',
    );
    const doc3 = JSON.parse(inventoryText);
    delete doc3.items[7].addressType;
    expect(errorOf(() => parseKubernetes(JSON.stringify(doc3), { source: "f" })).message).toMatch(
      /^f: items\[7\]\.addressType: /,
    );
    expect(
      errorOf(() =>
        parseKubernetes('{\n  "kind": "List",\n  "items": [,]\n}', { source: "bad.json" }),
      ).message,
    ).toMatch(/^bad\.json: line 3: not valid JSON/);
    expect(errorOf(() => parseKubernetes("kind: [\n", { source: "bad.yaml" })).message).toMatch(
      /^bad\.yaml: line \d+: not valid YAML/,
    );
    expect(errorOf(() => parseKubernetes('{"items": []}', { source: "k" })).message).toBe(
      "k: kind: missing",
    );
  });
});

describe("InventoryTimeline", () => {
  it("gives the state at a time and the removals between snapshots", () => {
    const full = parseKubernetes(inventoryText, { source: "t1", takenAt: 100 });
    const doc = JSON.parse(inventoryText);
    // At t=200 ns2/svc2 is gone and svc4 lost 10.180.0.5.
    doc.items = doc.items.filter(
      (i: { metadata: { name: string } }) => !i.metadata.name.startsWith("svc2"),
    );
    const slice4 = doc.items.find(
      (i: { metadata: { name: string } }) => i.metadata.name === "svc4-abcde",
    );
    slice4.endpoints = slice4.endpoints.slice(0, 1);
    const later: InventorySnapshot = parseKubernetes(JSON.stringify(doc), {
      source: "t2",
      takenAt: 200,
    });
    const tl = new InventoryTimeline([later, full]);
    expect(tl.at(50)).toBeNull();
    expect(tl.at(150)?.source).toBe("t1");
    expect(tl.at(200)?.source).toBe("t2");
    expect(tl.removals()).toEqual([
      { kind: "service", key: "ns2/svc2", lastSeen: 100, goneBy: 200 },
      { kind: "endpoint", key: "ns2/svc2:p80 10.180.0.2:80", lastSeen: 100, goneBy: 200 },
      { kind: "endpoint", key: "ns4/svc4:p80 10.180.0.5:80", lastSeen: 100, goneBy: 200 },
    ]);
  });
});
