import { describe, expect, it } from "vitest";
import { extractKubeModel } from "../../src/reconstruct/kube-rules.js";
import { conntrackEntry, leg, NODES, rulesFor, run, translation } from "./helpers.js";

describe("kube model from generated kube-proxy rules", () => {
  it("reads VIPs, NodePort, endpoints with probabilities and reject rules", () => {
    const model = extractKubeModel(rulesFor(NODES[0]!));
    const web = model.services.find((s) => s.key === "default/web:http");
    expect(web).toMatchObject({
      clusterIPs: ["10.96.0.10"],
      port: 80,
      nodePort: 30080,
      masquerades: true,
      rejects: false,
    });
    expect(web?.endpoints.map((e) => [`${e.ip}:${e.port}`, e.probability])).toEqual([
      ["10.244.1.5:8080", 0.5],
      ["10.244.2.5:8080", expect.closeTo(0.5, 6)],
    ]);
    expect(model.services.find((s) => s.key === "default/empty:http")).toMatchObject({
      rejects: true,
      clusterIPs: ["10.96.0.20"],
    });
    expect(model.orphanChains).toEqual([]);
  });
});

describe("reconstruct", () => {
  it("joins the pre-NAT leg, the post-NAT leg and the remote node's leg into one connection", () => {
    const pre = "10.244.1.10:40000>10.96.0.10:80";
    const post = "10.244.1.10:40000>10.244.2.5:8080";
    const conns = run({
      legs: [
        leg("n1", pre, 10.0),
        leg("n1", post, 10.0001, { direction: "out" }),
        leg("n2", post, 9.4), // n2's clock is 0.6 s behind
        leg("n2", post, 9.4002, { direction: "out" }), // veth to the pod
      ],
      translations: [translation("n1", pre, post, 10.0001)],
    });
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({
      node: "n1",
      hook: "prerouting",
      service: "default/web:http",
      endpoint: { ip: "10.244.2.5", port: 8080 },
      snat: null,
      verdict: "consistent",
      vipFrom: "translation",
    });
    expect(conns[0]?.legIds).toHaveLength(4);
    expect(conns[0]?.candidates.map((c) => c.endpoint).sort()).toEqual([
      "10.244.1.5:8080",
      "10.244.2.5:8080",
    ]);
    expect(conns[0]?.path[0]).toBe("KUBE-SERVICES");
  });

  it("counts port reuse after the tolerance as a second connection", () => {
    const pre = "10.244.1.10:40000>10.96.0.10:80";
    const post = "10.244.1.10:40000>10.244.1.5:8080";
    const conns = run({
      legs: [
        leg("n1", pre, 10),
        leg("n1", post, 10.001, { direction: "out" }),
        leg("n1", pre, 30),
        leg("n1", post, 30.001, { direction: "out" }),
      ],
      translations: [translation("n1", pre, post, 10.001), translation("n1", pre, post, 30.001)],
    });
    expect(conns).toHaveLength(2);
    expect(conns.every((c) => c.legIds.length === 2)).toBe(true);
  });

  it("joins a translation first seen after the tolerance to the pre-NAT leg still going", () => {
    // The first SYNs waited on the node (neighbour discovery for the pod): the pre-NAT leg
    // starts 2.03 s before anything left the node translated. Seen on a real IPv6 capture.
    const pre = "10.244.1.10:40000>10.96.0.10:80";
    const post = "10.244.1.10:40000>10.244.2.5:8080";
    const conns = run({
      legs: [
        leg("n1", pre, 10, { lastTs: 12.04 }),
        leg("n1", post, 12.03, { direction: "out", lastTs: 12.04 }),
      ],
      translations: [translation("n1", pre, post, 12.03)],
    });
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({
      verdict: "consistent",
      node: "n1",
      vipFrom: "translation",
      endpoint: { ip: "10.244.2.5", port: 8080 },
      start: 10,
    });
    expect(conns[0]?.legIds).toHaveLength(2);
    // Delayed by less than the tolerance: the translation claims the leg that is still going.
    const soon = run({
      legs: [
        leg("n1", pre, 10, { lastTs: 11.05 }),
        leg("n1", post, 11.01, { direction: "out", lastTs: 11.05 }),
      ],
      translations: [translation("n1", pre, post, 11.01)],
    });
    expect(soon.map((c) => [c.verdict, c.legIds.length])).toEqual([["consistent", 2]]);
    // A leg that had ended before the translation is another conversation.
    const apart = run({
      legs: [
        leg("n1", pre, 10, { lastTs: 10.5 }),
        leg("n1", post, 12.03, { direction: "out", lastTs: 12.04 }),
      ],
      translations: [translation("n1", pre, post, 12.03)],
    });
    expect(apart.map((c) => c.verdict).sort()).toEqual(["consistent", "predicted"]);
  });

  it("flags an endpoint the rules cannot choose, a blackholed one, and a NodePort with SNAT", () => {
    const conns = run({
      legs: [
        leg("n1", "10.244.1.10:1>10.96.0.10:80", 1),
        leg("n1", "10.244.1.10:1>10.244.9.9:8080", 1.001, { direction: "out" }),
        leg("n1", "10.244.1.10:2>10.96.0.10:80", 2, { respPackets: 0, connState: "S0" }),
        leg("n1", "10.244.1.10:2>10.244.2.5:8080", 2.001, {
          direction: "out",
          respPackets: 0,
          connState: "S0",
        }),
        leg("n1", "192.168.9.9:3>172.18.0.2:30080", 3),
        leg("n1", "172.18.0.2:61000>10.244.2.5:8080", 3.001, { direction: "out" }),
      ],
      translations: [
        translation("n1", "10.244.1.10:1>10.96.0.10:80", "10.244.1.10:1>10.244.9.9:8080", 1.001),
        translation("n1", "10.244.1.10:2>10.96.0.10:80", "10.244.1.10:2>10.244.2.5:8080", 2.001),
        translation(
          "n1",
          "192.168.9.9:3>172.18.0.2:30080",
          "172.18.0.2:61000>10.244.2.5:8080",
          3.001,
        ),
      ],
    });
    expect(conns.map((c) => c.verdict)).toEqual([
      "unexpected-endpoint",
      "blackholed",
      "consistent",
    ]);
    expect(conns[2]).toMatchObject({
      snat: { ip: "172.18.0.2", port: 61000 },
      service: "default/web:http",
    });
  });

  it("judges pre-NAT legs without a translation: rejected, untranslated, predicted", () => {
    const conns = run({
      legs: [
        leg("n1", "10.244.1.10:1>10.96.0.20:80", 1, {
          respPackets: 0,
          connState: "S0",
          icmpErrors: { "3/3": 1 },
        }),
        leg("n1", "10.244.1.10:2>10.96.0.10:80", 2),
        leg("n1", "10.244.1.10:2>10.96.0.10:80", 2.001, { direction: "out" }),
        leg("n1", "10.244.1.10:3>10.96.0.10:80", 3),
      ],
    });
    expect(conns.map((c) => [c.verdict, c.service])).toEqual([
      ["rejected", "default/empty:http"],
      ["untranslated", "default/web:http"],
      ["predicted", "default/web:http"],
    ]);
    expect(conns[0]?.refusal).toBe("icmp");
    expect(conns[2]?.candidates).toHaveLength(2);
  });

  it("finds the VIP of a node-local client in conntrack (DNAT in OUTPUT is never on the wire)", () => {
    const conns = run({
      legs: [
        leg("n1", "172.18.0.2:50000>10.244.2.5:8080", 5, { direction: "out" }),
        leg("n2", "172.18.0.2:50000>10.244.2.5:8080", 5.1),
      ],
      conntrack: [
        conntrackEntry("n1", "172.18.0.2:50000>10.96.0.10:80", "10.244.2.5:8080>172.18.0.2:50000"),
      ],
    });
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({
      hook: "output",
      node: "n1",
      vip: { ip: "10.96.0.10", port: 80 },
      endpoint: { ip: "10.244.2.5", port: 8080 },
      verdict: "consistent",
      vipFrom: "conntrack",
    });
    expect(conns[0]?.legIds).toHaveLength(2);
  });

  it("ignores traffic that never touched a Service", () => {
    const conns = run({
      legs: [
        leg("n1", "172.18.0.2:50000>10.244.2.5:8080", 5),
        leg("n1", "10.244.1.10:1>8.8.8.8:53", 6),
      ],
    });
    expect(conns).toEqual([]);
  });
});
