import { describe, expect, it } from "vitest";
import { deriveExpected, type LoadedTimeline, verdictFor } from "../../src/lab/expected.js";
import { parseScenario } from "../../src/lab/scenario.js";
import { type ClusterState, initialState } from "../../src/lab/state.js";
import type { TruthConnection, TruthFile } from "../../src/lab/truth.js";

const scn = parseScenario(`name: x
nodes: [{ name: n1 }, { name: n2 }]
pods:
  - { name: a, node: n1, labels: { app: a } }
  - { name: b, node: n2, labels: { app: a } }
  - { name: c, node: n2, labels: { app: a } }
clients: [{ name: ca, node: n1 }, { name: cb, node: n2 }]
services: [{ name: s, selector: { app: a }, ports: [{ name: dns, protocol: UDP, port: 53 }] }]
faults: { staleRulesNode: n2, keepUdpConntrack: true, probabilities: one-over-n, nodes: [n1] }
steps: [{ wait: 1s }]
`);

function conn(over: Partial<TruthConnection>): TruthConnection {
  return {
    id: 1,
    step: 1,
    proto: "udp",
    client: "10.244.1.13:40000",
    clientName: "ca",
    vip: "10.96.0.10:53",
    via: "clusterIP",
    service: "default/s:dns",
    node: "n1",
    endpoint: "10.244.2.10:53",
    endpointPod: "b",
    snat: null,
    start: 100,
    end: 101,
    requests: 1,
    answers: 1,
    answered: true,
    error: null,
    conntrack: null,
    sharedTuple: false,
    expectedVerdict: "consistent",
    ...over,
  };
}

describe("expected findings and verdicts", () => {
  const full = initialState(scn);
  const without: ClusterState = { services: new Map(), resourceVersion: 2 };
  const noB: ClusterState = {
    services: new Map([["default/s", ["a", "c"]]]),
    resourceVersion: 3,
  };
  // n1 applied the removal of b at t=200; n2 (stuck) never did.
  const loaded: LoadedTimeline = new Map([
    [
      "n1",
      [
        { since: 0, state: full },
        { since: 200, state: noB },
      ],
    ],
    ["n2", [{ since: 0, state: full }]],
  ]);

  it("judges a connection against the rules loaded on its node at its start", () => {
    expect(verdictFor(conn({}), scn, loaded)).toBe("consistent");
    expect(verdictFor(conn({ start: 250 }), scn, loaded)).toBe("unexpected-endpoint");
    expect(verdictFor(conn({ node: "n2", start: 250 }), scn, loaded)).toBe("consistent");
    expect(verdictFor(conn({ answered: false, error: "ETIMEDOUT" }), scn, loaded)).toBe(
      "blackholed",
    );
    expect(verdictFor(conn({ answered: false, error: "ECONNREFUSED" }), scn, loaded)).toBe(
      "refused",
    );
    const gone: LoadedTimeline = new Map([["n1", [{ since: 0, state: without }]]]);
    expect(verdictFor(conn({}), scn, gone)).toBe("untranslated");
    const empty: LoadedTimeline = new Map([
      ["n1", [{ since: 0, state: { services: new Map([["default/s", []]]), resourceVersion: 1 } }]],
    ]);
    expect(verdictFor(conn({ answered: false }), scn, empty)).toBe("rejected");
  });

  it("drops external traffic on a node without local endpoints under policy Local", () => {
    const local = parseScenario(`name: z
nodes: [{ name: n1 }, { name: n2 }]
pods: [{ name: e, node: n1, labels: { app: e } }]
clients: [{ name: ext }, { name: cb, node: n2 }]
services:
  - { name: s, type: NodePort, externalTrafficPolicy: Local, selector: { app: e }, ports: [{ port: 443 }] }
steps: [{ wait: 1s }]
`);
    const timeline: LoadedTimeline = new Map([
      ["n1", [{ since: 0, state: initialState(local) }]],
      ["n2", [{ since: 0, state: initialState(local) }]],
    ]);
    const base = {
      service: "default/s:443",
      via: "nodePort" as const,
      endpoint: "10.244.1.10:443",
    };
    expect(verdictFor(conn({ ...base, clientName: "ext", node: "n1" }), local, timeline)).toBe(
      "consistent",
    );
    expect(
      verdictFor(
        conn({ ...base, clientName: "ext", node: "n2", answered: false }),
        local,
        timeline,
      ),
    ).toBe("dropped");
    // Pod clients are exempt: their NodePort traffic goes to any endpoint.
    expect(verdictFor(conn({ ...base, clientName: "cb", node: "n2" }), local, timeline)).toBe(
      "consistent",
    );
  });

  it("derives the findings the injected faults must produce", () => {
    const truth: TruthFile = {
      scenario: "x",
      generatedBy: "test",
      events: [
        {
          kind: "removeEndpoint",
          service: "default/s",
          pod: "b",
          time: 200,
          appliedOn: ["n1"],
          notAppliedOn: ["n2"],
        },
      ],
      connections: [
        // n1: a UDP flow to b that outlives b's removal (conntrack not cleaned).
        conn({ id: 1, start: 150, end: 260 }),
        // n2: a new connection to b after the removal, translated by the stale rules.
        conn({ id: 2, node: "n2", clientName: "cb", start: 240, end: 241 }),
        // n1: a connection to a after the removal: nothing wrong.
        conn({ id: 3, endpoint: "10.244.1.10:53", endpointPod: "a", start: 240, end: 241 }),
      ],
    };
    const expected = deriveExpected(scn, truth, loaded);
    expect(expected.findings.map((f) => `${f.check} ${f.service} ${f.node} ${f.severity}`)).toEqual(
      [
        "stale-rules default/s:dns n2 error",
        "post-removal-traffic default/s:dns n2 error",
        "stale-conntrack default/s:dns n1 error",
        "fairness default/s:dns n1 error",
      ],
    );
  });

  it("expects nothing of a clean run", () => {
    const clean = parseScenario(`name: y
nodes: [{ name: n1 }]
steps: [{ wait: 1s }]
`);
    const expected = deriveExpected(
      clean,
      { scenario: "y", generatedBy: "test", events: [], connections: [] },
      new Map(),
    );
    expect(expected.findings).toEqual([]);
    expect(expected.notes.join(" ")).toMatch(/clean/);
  });
});
