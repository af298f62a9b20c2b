import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConntrackList } from "../../src/lab/conntrack.js";
import { labAvailable, listNamespaces } from "../../src/lab/exec.js";
import { generateIptablesRestore } from "../../src/lab/kubeproxy-gen.js";
import { type LabRunResult, runLab } from "../../src/lab/run.js";
import { loadScenario } from "../../src/lab/scenario.js";
import { teardown } from "../../src/lab/topology.js";
import type { BundleManifest, ExpectedFile, TruthFile } from "../../src/lab/truth.js";

// These tests build real network namespaces, load real rules with iptables-restore and send real
// traffic; they need root (CI has it). Every prefix is unique to this file so parallel test
// files never collide, and afterAll checks that nothing with the prefix is left.
const canRun = labAvailable();
const skipReason = "lab tests need root, network namespaces, iptables, conntrack and tcpdump";
const root = join(import.meta.dirname, "..", "..");
const fixtures = join(import.meta.dirname, "..", "fixtures", "lab");
const cli = join(root, "dist", "src", "cli", "main.js");
const prefixes = [
  "svt-lt1-",
  "svt-lt2-",
  "svt-lt3-",
  "svt-lt4-",
  "svt-lt5-",
  "svt-lt6-",
  "svt-lt7-",
  "svt-lt8-",
  "svt-lt9-",
];
const work = mkdtempSync(join(tmpdir(), "svctrace-lab-"));

afterAll(async () => {
  for (const prefix of prefixes) if (canRun) await teardown(prefix);
  rmSync(work, { recursive: true, force: true });
});

function leftovers(prefix: string): string[] {
  return listNamespaces().filter((ns) => ns.startsWith(prefix));
}

function readJson<T>(dir: string, file: string): T {
  return JSON.parse(readFileSync(join(dir, file), "utf8")) as T;
}

/** The last file of a kind in a node's directory (names sort by time). */
function lastDump(dir: string, node: string, kind: "iptables" | "conntrack"): string {
  const files = readdirSync(join(dir, "nodes", node))
    .filter((f) => f.startsWith(`${kind}-`))
    .sort();
  return readFileSync(join(dir, "nodes", node, files[files.length - 1] ?? ""), "utf8");
}

function firstDump(dir: string, node: string, kind: "iptables" | "conntrack"): string {
  const files = readdirSync(join(dir, "nodes", node))
    .filter((f) => f.startsWith(`${kind}-`))
    .sort();
  return readFileSync(join(dir, "nodes", node, files[0] ?? ""), "utf8");
}

async function run(
  fixture: string,
  prefix: string,
): Promise<{ dir: string; result: LabRunResult }> {
  const dir = join(work, fixture.replace(/\.yaml$/, ""));
  const result = await runLab({
    scenario: loadScenario(join(fixtures, fixture)),
    out: dir,
    prefix,
  });
  expect(
    leftovers(prefix).filter((ns) => ns !== `${prefix}other`),
    "teardown leaves no namespace",
  ).toEqual([]);
  return { dir, result };
}

describe.skipIf(!canRun)(`lab in network namespaces (${skipReason})`, () => {
  it("leaves a deleted Service's rules on the stuck node and nowhere else", async () => {
    const { dir, result } = await run("stale-rules.yaml", "svt-lt1-");
    const truth = readJson<TruthFile>(dir, "truth.json");
    expect(result.connections).toBe(34);
    expect(truth.connections).toHaveLength(34);

    // Before the deletion every connection was answered by one of the two endpoints.
    const [deletion] = truth.events;
    expect(deletion).toMatchObject({
      kind: "deleteService",
      appliedOn: ["n1"],
      notAppliedOn: ["n2"],
    });
    const before = truth.connections.filter((c) => c.step <= 2);
    expect(before).toHaveLength(24);
    expect(before.every((c) => c.answered && c.snat === null)).toBe(true);
    expect(new Set(before.map((c) => c.endpointPod))).toEqual(new Set(["api-1", "api-2"]));
    // After it, n1 (reloaded) no longer translates; n2 (stuck) still does.
    const n1After = truth.connections.filter((c) => c.step === 4);
    const n2After = truth.connections.filter((c) => c.step === 5);
    expect(n1After.map((c) => c.answered)).toEqual([false, false, false, false]);
    expect(n1After.every((c) => c.expectedVerdict === "untranslated")).toBe(true);
    expect(n2After).toHaveLength(6);
    expect(n2After.every((c) => c.answered && c.expectedVerdict === "consistent")).toBe(true);

    // The kernel agrees with the pods' answers: each answered connection's conntrack entry on
    // its node replies from the endpoint that answered.
    for (const node of ["n1", "n2"]) {
      const entries = parseConntrackList(lastDump(dir, node, "conntrack"));
      const mine = truth.connections.filter((c) => c.node === node && c.answered && !c.sharedTuple);
      expect(mine.length).toBeGreaterThan(0);
      for (const c of mine) {
        const entry = entries.find(
          (e) =>
            `${e.orig.src}:${e.orig.sport}` === c.client &&
            `${e.orig.dst}:${e.orig.dport}` === c.vip,
        );
        expect(entry, `conntrack entry for ${c.client}`).toBeDefined();
        expect(`${entry?.reply.src}:${entry?.reply.sport}`).toBe(c.endpoint);
      }
    }

    // Stale rules really are in n2's last dump, and gone from n1's.
    expect(firstDump(dir, "n1", "iptables")).toContain('"default/api:http cluster IP"');
    expect(lastDump(dir, "n1", "iptables")).not.toContain("default/api:http");
    expect(lastDump(dir, "n2", "iptables")).toContain('"default/api:http cluster IP"');

    const expected = readJson<ExpectedFile>(dir, "expected.json");
    expect(expected.findings.map((f) => `${f.check} ${f.service} ${f.node}`).sort()).toEqual([
      "post-removal-traffic default/api:http n2",
      "stale-rules default/api:http n2",
    ]);
    expect(expected.verdicts).toEqual({ consistent: 30, untranslated: 4 });

    const manifest = readJson<BundleManifest>(dir, "bundle.json");
    expect(manifest.captures.map((c) => c.observer)).toEqual(["n1", "n2"]);
    for (const cap of manifest.captures) {
      expect(cap.packets).toBeGreaterThan(100);
      // A lossy capture must be reported, never silently kept.
      if (cap.dropped > 0) expect(result.warnings.join("\n")).toContain(cap.file);
    }
    expect(manifest.snapshots.filter((s) => s.kind === "inventory")).toHaveLength(2);
  });

  it("moves a UDP flow to the new endpoint when conntrack is cleaned as kube-proxy does", async () => {
    const { dir } = await run("udp-cleanup.yaml", "svt-lt2-");
    const truth = readJson<TruthFile>(dir, "truth.json");
    const flow = truth.connections.filter((c) => c.clientName === "ca");
    // One 5-tuple, but two conntrack lifetimes: dns-1 until the removal, then dns-2.
    expect(new Set(flow.map((c) => c.client))).toEqual(new Set([flow[0]?.client]));
    // (A datagram in flight while its entry is deleted loses its answer: skip unanswered ones.)
    expect(flow.filter((c) => c.answered).map((c) => c.endpointPod)).toEqual(["dns-1", "dns-2"]);
    expect(flow.reduce((n, c) => n + c.requests, 0)).toBe(30);
    const removal = truth.events.find((e) => e.kind === "removeEndpoint");
    const moved = flow.filter((c) => c.answered)[1];
    expect(moved?.start).toBeGreaterThan(removal?.time ?? Number.POSITIVE_INFINITY);
    expect(moved?.conntrack?.endpoint).toBe("10.244.1.11:5353");
    const expected = readJson<ExpectedFile>(dir, "expected.json");
    expect(expected.findings).toEqual([]);
  });

  it("masquerades NodePort traffic to the node IP or the pod gateway", async () => {
    // Someone else's namespace that merely shares the prefix must survive the run's teardown.
    spawnSync("ip", ["netns", "add", "svt-lt3-other"]);
    const { dir } = await run("nodeport.yaml", "svt-lt3-");
    expect(leftovers("svt-lt3-")).toEqual(["svt-lt3-other"]);
    await teardown("svt-lt3-");
    const truth = readJson<TruthFile>(dir, "truth.json");
    expect(truth.connections).toHaveLength(16);
    for (const c of truth.connections) {
      expect(c.answered).toBe(true);
      expect(c.vip).toBe("172.30.0.11:30080");
      const snatIp = c.snat?.split(":")[0];
      expect(snatIp).toBe(c.endpointPod === "web-1" ? "10.244.1.1" : "172.30.0.11");
      if (c.conntrack) expect(c.conntrack.snat).toBe(c.snat);
    }
    expect(existsSync(join(dir, "clients", "ext", "ext.pcap"))).toBe(true);
  });

  it("loads another implementation's rules: without masquerade, remote endpoints' replies get lost", async () => {
    const dir = join(work, "no-masq");
    await runLab({
      scenario: loadScenario(join(fixtures, "nodeport.yaml")),
      out: dir,
      prefix: "svt-lt8-",
      rules: (ports, node, faults) =>
        generateIptablesRestore(ports, node, { ...faults, noMasquerade: true }),
    });
    expect(leftovers("svt-lt8-")).toEqual([]);
    expect(lastDump(dir, "n1", "iptables")).not.toMatch(/-j KUBE-MARK-MASQ/);
    const truth = readJson<TruthFile>(dir, "truth.json");
    // The local endpoint sees the client's own address; the remote one answers straight to the
    // client from its pod IP (n2 has no conntrack entry to undo the DNAT), which the client
    // does not recognise: those connections are never answered.
    const answered = truth.connections.filter((c) => c.answered);
    expect(answered.length).toBeGreaterThan(0);
    for (const c of answered) {
      expect(c.endpointPod).toBe("web-1");
      expect(c.snat).toBeNull();
    }
    const lost = truth.connections.filter((c) => !c.answered);
    expect(lost.length).toBeGreaterThan(0);
    for (const c of lost)
      expect(c.conntrack?.endpoint ?? "10.244.2.10:8080").toBe("10.244.2.10:8080");
  });

  it("sees REJECT for no endpoints, refusals from a pod without server, and a blackhole", async () => {
    const { dir } = await run("refusals.yaml", "svt-lt7-");
    const truth = readJson<TruthFile>(dir, "truth.json");
    const empty = truth.connections.filter((c) => c.service === "default/empty:http");
    expect(empty.map((c) => c.error)).toEqual(Array(5).fill("ECONNREFUSED"));
    expect(empty.every((c) => c.expectedVerdict === "rejected")).toBe(true);
    const f = truth.connections.filter((c) => c.service === "default/f:http");
    expect(f).toHaveLength(24);
    const answered = f.filter((c) => c.answered);
    expect(new Set(answered.map((c) => c.endpointPod))).toEqual(new Set(["ok-1"]));
    // The unreachable pod's connections stay in SYN_SENT: conntrack names it as the endpoint.
    const lost = f.filter((c) => c.error === "ETIMEDOUT");
    expect(lost.length).toBeGreaterThan(0);
    for (const c of lost) expect(c.conntrack?.endpoint).toBe("10.244.1.12:8080");
    expect(f.some((c) => c.error === "ECONNREFUSED")).toBe(true);
    const expected = readJson<ExpectedFile>(dir, "expected.json");
    expect(expected.findings.map((x) => `${x.check} ${x.service}`).sort()).toEqual([
      "blackholed-endpoints default/f:http",
      "no-endpoints default/empty:http",
    ]);
    // The capture is a pcap with Linux cooked v2 headers (interface index per packet).
    const header = readFileSync(join(dir, "nodes", "n1", "n1.pcap")).subarray(0, 24);
    expect(header.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(header.readUInt32LE(20)).toBe(276);
  });

  it("tears everything down when interrupted", async () => {
    const out = join(work, "interrupted");
    const child = spawn(process.execPath, [
      cli,
      "lab",
      "run",
      join(fixtures, "stale-rules.yaml"),
      "--out",
      out,
      "--prefix",
      "svt-lt4-",
    ]);
    let stderr = "";
    child.stderr.setEncoding("utf8");
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on("data", (chunk: string) => {
        stderr += chunk;
        if (stderr.includes("step 1:") && !child.killed) child.kill("SIGINT");
      });
      child.once("exit", (c) => resolve(c));
    });
    expect(stderr).toContain("interrupted");
    expect(code).toBe(130);
    expect(leftovers("svt-lt4-")).toEqual([]);
  });

  it("refuses to start over another run's namespaces, and leaves them alone", async () => {
    spawnSync("ip", ["netns", "add", "svt-lt9-br"]);
    await expect(
      runLab({
        scenario: loadScenario(join(fixtures, "nodeport.yaml")),
        out: join(work, "clash"),
        prefix: "svt-lt9-",
      }),
    ).rejects.toThrow(/svt-lt9-br already exist/);
    expect(leftovers("svt-lt9-")).toEqual(["svt-lt9-br"]);
    await teardown("svt-lt9-");
  });

  it("lab down removes leftovers with the prefix only", async () => {
    spawnSync("ip", ["netns", "add", "svt-lt5-left"]);
    spawnSync("ip", ["netns", "add", "svt-lt6-other"]);
    const down = spawnSync(process.execPath, [cli, "lab", "down", "--prefix", "svt-lt5-"], {
      encoding: "utf8",
    });
    expect(down.status).toBe(0);
    expect(down.stdout).toContain("svt-lt5-left");
    expect(leftovers("svt-lt5-")).toEqual([]);
    expect(leftovers("svt-lt6-")).toEqual(["svt-lt6-other"]);
    await teardown("svt-lt6-");
  });
});

describe("lab without root", () => {
  it.skipIf(!canRun)(
    "stops with a clear message and exit code 2 (run as root to drop to nobody)",
    () => {
      const result = spawnSync(
        "setpriv",
        [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          process.execPath,
          cli,
          "lab",
          "run",
          join(fixtures, "nodeport.yaml"),
          "--out",
          join(work, "nobody"),
        ],
        { encoding: "utf8" },
      );
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(/needs root/);
    },
  );
});
