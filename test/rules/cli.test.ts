import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyRestore, parseIptablesSave, printRuleSet } from "../../src/rules/iptables-save.js";
import { readReference, referenceDir } from "./reference.js";

// The thin CLI layer over src/rules, run as users run it (the built binary; global setup builds).
const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const fixtures = join(root, "test", "fixtures", "rules");
const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });
const ref02 = join(referenceDir, "02-TestOverallIPTablesRules.txt");
const step1 = join(fixtures, "kube-04-step1.restore");

let dir: string;
const steps: string[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-rules-cli-"));
  const parts = readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")
    .split(/^(?=# ---- step )/m)
    .slice(1);
  parts.forEach((p, i) => {
    const f = join(dir, `step${i + 2}.restore`);
    writeFileSync(f, p);
    steps.push(f);
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("svctrace rules", () => {
  it("prints the kube model as a table", () => {
    const r = run("rules", ref02);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^SERVICE PORT\s+PROTO\s+CLUSTER-IP/m);
    expect(r.stdout).toMatch(
      /^ns4\/svc4:p80\s+tcp\s+172\.30\.0\.44:80\s+-\s+ext 192\.168\.99\.33\s+Cluster\/Cluster.*10\.180\.0\.4:80 50%, 10\.180\.0\.5:80 50%$/m,
    );
    expect(r.stdout).toMatch(/^ns5\/svc5:p80 .*ClientIP 10800s/m);
    expect(r.stdout).toMatch(/^ns6\/svc6:p80 .*<none> \(REJECT\)$/m);
    expect(r.stdout).toContain("Source ranges ns5/svc5:p80: 203.0.113.0/25");
    expect(r.stdout).toContain("Unmodelled rules: none");
  });

  it("--json gives one object with the model; restores are applied in order; gzip is read", () => {
    const gz = join(dir, "step1.gz");
    writeFileSync(gz, gzipSync(readReference("02-TestOverallIPTablesRules.txt")));
    const g = run("rules", "--json", gz);
    expect(g.status, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout).servicePorts).toHaveLength(6);
    const r = run("rules", "--json", step1, ...steps);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.files).toHaveLength(8);
    expect(out.servicePorts.map((p: { name: string }) => p.name)).toEqual([
      "ns1/svc1:p80",
      "ns3/svc3:p80",
    ]);
    expect(
      out.servicePorts[1].endpoints.map((e: { endpoint: string; probability: number }) => [
        e.endpoint,
        e.probability,
      ]),
    ).toEqual([
      ["10.0.3.2:80", 0.5],
      ["10.0.3.3:80", 0.5],
    ]);
    expect(out.orphanChains).toEqual([]);
  });

  it("bad input exits 2 with the file and line", () => {
    const bad = join(dir, "bad.txt");
    writeFileSync(bad, '*nat\n:X - [0:0]\n-A X -m comment --comment "oops\nCOMMIT\n');
    const r = run("rules", bad);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      `svctrace: ${bad}: line 3: unterminated quote: "-A X -m comment --comment \\"oops"\n`,
    );
  });
});

describe("svctrace diff", () => {
  it("reports what changed per service and the raw chains", () => {
    // The node's state after step 6, as a dump; step 7 applied on it adds a second endpoint.
    let rs = parseIptablesSave(readFileSync(step1, "utf8"), { source: "s1" });
    for (const f of steps.slice(0, 5))
      rs = applyRestore(rs, readFileSync(f, "utf8"), { source: f });
    const state6 = join(dir, "state6.txt");
    writeFileSync(state6, printRuleSet(rs));
    const r = run("diff", "--apply", state6, steps[5]!);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      [
        "ns3/svc3:p80  changed",
        "  + endpoint 10.0.3.3:80",
        "  ~ 10.0.3.2:80 probability 100% -> 50%",
      ].join("\n"),
    );
    expect(r.stdout).toContain("  nat KUBE-SEP-JVVZVJ7BSEPPRNBS added +2 -0");
    const j = run("diff", "--json", "--apply", step1, steps[0]!);
    expect(j.status, j.stderr).toBe(0);
    const d = JSON.parse(j.stdout);
    expect(d.servicePorts.map((p: { name: string; change: string }) => [p.name, p.change])).toEqual(
      [["ns3/svc3:p80", "added"]],
    );
  });

  it("--fail-on leaks exits 3 when NEW leaves chains behind", () => {
    const leaky = join(dir, "leaky.restore");
    writeFileSync(
      leaky,
      readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")
        .split(/^(?=# ---- step )/m)[2]!
        .replace(/^-X .*\n/gm, ""),
    );
    const r2 = run("diff", "--apply", "--fail-on", "leaks", step1, leaky);
    expect(r2.status).toBe(3);
    expect(r2.stdout).toContain(
      "Leaked chains (in NEW, nothing jumps to them): KUBE-SEP-UHEGFW77JX3KXTOV KUBE-SVC-2VJB64SDSIJUP5T6",
    );
    expect(r2.stdout).toMatch(/^ns2\/svc2:p8080 {2}removed$/m);
    const ok = run("diff", "--fail-on", "leaks", ref02, ref02);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("No service port changed.");
    const usage = run("diff", "--fail-on", "everything", ref02, ref02);
    expect(usage.status).toBe(2);
  });
});
