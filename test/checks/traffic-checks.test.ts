import { describe, expect, it } from "vitest";
import { affinity } from "../../src/checks/affinity.js";
import { blackholedEndpoints } from "../../src/checks/blackholed-endpoints.js";
import { runChecks } from "../../src/checks/index.js";
import { noEndpoints } from "../../src/checks/no-endpoints.js";
import { conn, context, ep, ruleset, snapshot, svc } from "./helpers.js";

describe("no-endpoints", () => {
  it("reports rejected traffic and whether clients saw the ICMP", () => {
    const ctx = context({
      connections: [
        conn({ verdict: "rejected", endpoint: null, refusal: "icmp", answered: false }),
        conn({ verdict: "rejected", endpoint: null, refusal: null, answered: false }),
      ],
    });
    const found = noEndpoints.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "warning", service: "default/web:http" });
    expect(found[0]?.evidence).toMatchObject({ connections: 2, answered: 1 });
  });
  it("is an error when the EndpointSlices had ready endpoints", () => {
    const ctx = context({
      inventory: [snapshot(0, [svc("default/web:http", { endpoints: [ep("10.244.2.5:8080")] })])],
      connections: [conn({ verdict: "rejected", endpoint: null, refusal: "icmp" })],
    });
    expect(noEndpoints.run(ctx)[0]?.severity).toBe("error");
  });
  it("is only info when externalTrafficPolicy Local drops on a node without local endpoints", () => {
    const local = (node: string) => ({ ...ep("10.244.2.5:8080"), node });
    const policyLocal = (node: string) =>
      context({
        inventory: [
          snapshot(0, [
            svc("default/web:http", {
              type: "NodePort",
              nodePort: 30080,
              externalTrafficPolicy: "Local",
              endpoints: [local(node)],
            }),
          ]),
        ],
        connections: [conn({ verdict: "dropped", endpoint: null, node: "n1" })],
      });
    const byDesign = noEndpoints.run(policyLocal("n2"));
    expect(byDesign[0]).toMatchObject({ severity: "info", node: "n1" });
    expect(byDesign[0]?.summary).toMatch(/by design/);
    // The endpoint runs on the dropping node itself: the rules are behind, whatever the policy.
    expect(noEndpoints.run(policyLocal("n1"))[0]?.severity).toBe("error");
  });
  it("is quiet without rejected or dropped traffic", () => {
    expect(noEndpoints.run(context({ connections: [conn()] }))).toEqual([]);
  });
});

describe("blackholed-endpoints", () => {
  it("reports an endpoint that never answers", () => {
    const dead = { ip: "10.244.3.5", port: 8080 };
    const ctx = context({
      range: { from: 0, to: 2000 },
      connections: [
        conn({ start: 1, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ start: 2, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ start: 3, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ start: 4 }),
      ],
    });
    const found = blackholedEndpoints.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "error" });
    expect(found[0]?.evidence).toMatchObject({
      endpoint: "10.244.3.5:8080",
      unanswered: 3,
      connections: 3,
    });
  });
  it("ignores a single lost answer and connections cut by the end of the capture", () => {
    const ctx = context({
      range: { from: 0, to: 100 },
      connections: [
        conn({ start: 1, verdict: "blackholed", answered: false }),
        conn({ start: 2 }),
        conn({ start: 99.5, verdict: "blackholed", answered: false }),
        conn({ start: 99.6, verdict: "blackholed", answered: false }),
      ],
    });
    expect(blackholedEndpoints.run(ctx)).toEqual([]);
  });
});

describe("affinity", () => {
  const sticky = svc("default/web:http", { affinityTimeout: 10800 });
  const a = { ip: "10.244.1.5", port: 8080 };
  const b = { ip: "10.244.2.5", port: 8080 };
  const client = (port: number) => ({ ip: "10.244.1.10", port });
  it("reports a client that switched endpoints within the timeout", () => {
    const ctx = context({
      rulesets: [ruleset(1, "n1", 0, [sticky])],
      connections: [
        conn({ start: 10, end: 11, client: client(1), endpoint: a }),
        conn({ start: 20, end: 21, client: client(2), endpoint: a }),
        conn({ start: 30, end: 31, client: client(3), endpoint: b }),
      ],
    });
    const found = affinity.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]?.evidence).toMatchObject({ violations: 1, clients: 1 });
  });
  it("allows a switch after the timeout and ignores Services without affinity", () => {
    const short = svc("default/web:http", { affinityTimeout: 5 });
    const conns = [
      conn({ start: 10, end: 11, client: client(1), endpoint: a }),
      conn({ start: 30, end: 31, client: client(2), endpoint: b }),
    ];
    expect(
      affinity.run(context({ rulesets: [ruleset(1, "n1", 0, [short])], connections: conns })),
    ).toEqual([]);
    expect(
      affinity.run(
        context({ rulesets: [ruleset(1, "n1", 0, [svc("default/web:http")])], connections: conns }),
      ),
    ).toEqual([]);
  });
});

describe("runChecks", () => {
  it("reads the connections once for every pass check and finds what each check finds alone", () => {
    const dead = { ip: "10.244.3.5", port: 8080 };
    const base = context({
      range: { from: 0, to: 2000 },
      connections: [
        conn({ id: 1, start: 1, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ id: 2, start: 2, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ id: 3, start: 3, endpoint: dead, verdict: "blackholed", answered: false }),
        conn({ id: 4, start: 4, verdict: "rejected", endpoint: null, refusal: "icmp" }),
        conn({ id: 5, start: 5 }),
      ],
    });
    let reads = 0;
    const ctx = {
      ...base,
      connections: (verdicts?: Parameters<typeof base.connections>[0]) => {
        reads++;
        return base.connections(verdicts);
      },
    };
    const only = ["fairness", "no-endpoints", "blackholed-endpoints"] as const;
    const shared = runChecks(ctx, [...only]);
    expect(reads).toBe(1);
    const alone = [...noEndpoints.run(base), ...blackholedEndpoints.run(base)];
    expect(shared).toHaveLength(2);
    expect(shared).toEqual(expect.arrayContaining(alone));
  });
});
