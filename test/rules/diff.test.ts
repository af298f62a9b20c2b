import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { canonicalRule, diffChains, diffRuleSets } from "../../src/rules/diff.js";
import { applyRestore, parseIptablesSave } from "../../src/rules/iptables-save.js";
import type { RuleSet } from "../../src/rules/model.js";
import { readReference } from "./reference.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const read = (name: string) => readFileSync(join(fixtures, name), "utf8");

function steps(): RuleSet[] {
  let rs = parseIptablesSave(read("kube-04-step1.restore"), { source: "s1" });
  const out = [rs];
  for (const p of readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")
    .split(/^(?=# ---- step )/m)
    .slice(1)) {
    rs = applyRestore(rs, p, { source: "step" });
    out.push(rs);
  }
  return out;
}

describe("canonical rules", () => {
  it("kube-proxy's form and iptables-save's form of every rule are equal", () => {
    const written = parseIptablesSave(read("kube-02-no-nfacct.restore"), { source: "w" });
    const saved = parseIptablesSave(read("iptables-save-nft-1.8.9.txt"), { source: "s" });
    for (const t of ["nat", "filter"] as const) {
      for (const [name, chain] of written.tables.get(t)!.chains) {
        const other = saved.tables.get(t)!.chains.get(name)!;
        expect(other.rules.map(canonicalRule), `${t} ${name}`).toEqual(
          chain.rules.map(canonicalRule),
        );
      }
    }
    const raw = diffChains(written, saved).filter((c) => c.change === "changed");
    expect(raw).toEqual([]);
  });

  it("distinguishes what matters", () => {
    const r = (line: string) =>
      parseIptablesSave(`*nat\n:X - [0:0]\n${line}\nCOMMIT\n`, { source: "t" })
        .tables.get("nat")!
        .chains.get("X")!.rules[0]!;
    expect(canonicalRule(r("-A X -s 10.0.0.1 -j ACCEPT"))).toBe(
      canonicalRule(r("-A X --source 10.0.0.1/32 -j ACCEPT")),
    );
    expect(canonicalRule(r("-A X -s 10.0.0.1 -j ACCEPT"))).not.toBe(
      canonicalRule(r("-A X ! -s 10.0.0.1 -j ACCEPT")),
    );
    expect(
      canonicalRule(r("-A X -m statistic --mode random --probability 0.3333333333 -j A")),
    ).toBe(canonicalRule(r("-A X -m statistic --mode random --probability 0.33333333349 -j A")));
    expect(canonicalRule(r("-A X -m statistic --mode random --probability 0.33 -j A"))).not.toBe(
      canonicalRule(r("-A X -m statistic --mode random --probability 0.3333333333 -j A")),
    );
    expect(canonicalRule(r("-A X -j MARK --or-mark 0x4000"))).toBe(
      canonicalRule(r("-A X -j MARK --set-xmark 0x4000/0x4000")),
    );
    expect(canonicalRule(r("-A X -j MARK --xor-mark 0x4000"))).toBe(
      canonicalRule(r("-A X -j MARK --set-xmark 0x4000/0x0")),
    );
  });
});

describe("diff of kube-proxy's successive states (reference 04)", () => {
  const s = steps();

  it("step 1 → 2: svc3 added", () => {
    const d = diffRuleSets(s[0]!, s[1]!);
    expect(d.servicePorts.map((p) => [p.name, p.change, p.endpointsAdded])).toEqual([
      ["ns3/svc3:p80", "added", ["10.0.3.1:80"]],
    ]);
    expect(d.leakedChains).toEqual([]);
    expect(
      d.chains.map(
        (c) =>
          `${c.table} ${c.chain} ${c.change} +${c.rulesAdded.length} -${c.rulesRemoved.length}`,
      ),
    ).toEqual([
      // Step 1 comes from an older upstream commit than steps 2-9, which count INVALID drops with nfacct.
      "filter KUBE-FORWARD changed +1 -1",
      "nat KUBE-SERVICES changed +1 -0",
      "nat KUBE-SEP-BSWRHOQ77KEXZLNL added +2 -0",
      "nat KUBE-SVC-X27LE4BHSL4DOUIK added +2 -0",
    ]);
  });

  it("step 2 → 3: svc2 removed with its chains", () => {
    const d = diffRuleSets(s[1]!, s[2]!);
    expect(d.servicePorts.map((p) => [p.name, p.change, p.endpointsRemoved])).toEqual([
      ["ns2/svc2:p8080", "removed", ["10.0.2.1:8080"]],
    ]);
    expect(d.chains.filter((c) => c.change === "removed").map((c) => c.chain)).toEqual([
      "KUBE-SEP-UHEGFW77JX3KXTOV",
      "KUBE-SVC-2VJB64SDSIJUP5T6",
    ]);
  });

  it("step 3 → 4 → 5: a service without endpoints, then with one", () => {
    const d4 = diffRuleSets(s[2]!, s[3]!);
    expect(d4.servicePorts).toEqual([
      expect.objectContaining({ name: "ns4/svc4:p80", change: "added", endpointsAdded: [] }),
    ]);
    const d5 = diffRuleSets(s[3]!, s[4]!);
    expect(d5.servicePorts).toEqual([
      expect.objectContaining({
        name: "ns4/svc4:p80",
        change: "changed",
        endpointsAdded: ["10.0.4.1:80"],
        fieldChanges: expect.arrayContaining([
          { field: "noEndpoints", old: ["REJECT internal 172.30.0.44:80"], new: [] },
        ]),
      }),
    ]);
  });

  it("step 5 → 6 → 7: an endpoint moves, then a second one halves the probabilities", () => {
    const d6 = diffRuleSets(s[4]!, s[5]!);
    expect(d6.servicePorts.map((p) => [p.name, p.endpointsAdded, p.endpointsRemoved])).toEqual([
      ["ns3/svc3:p80", ["10.0.3.2:80"], ["10.0.3.1:80"]],
    ]);
    const d7 = diffRuleSets(s[5]!, s[6]!);
    expect(d7.servicePorts).toEqual([
      expect.objectContaining({
        name: "ns3/svc3:p80",
        endpointsAdded: ["10.0.3.3:80"],
        probabilityChanges: [{ endpoint: "10.0.3.2:80", old: 1, new: 0.5 }],
      }),
    ]);
  });

  it("leaked chains: a partial restore that forgets -X leaves chains nothing jumps to", () => {
    // Step 3 without its -X lines: svc2's chains are flushed but left behind.
    const step3 = readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")
      .split(/^(?=# ---- step )/m)[2]!
      .replace(/^-X .*\n/gm, "");
    const leaky = applyRestore(s[1]!, step3, { source: "leaky" });
    const d = diffRuleSets(s[1]!, leaky);
    expect(d.leakedChains).toEqual(["KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"]);
    expect(d.newlyLeakedChains).toEqual(d.leakedChains);
    expect(d.servicePorts.map((p) => [p.name, p.change])).toEqual([["ns2/svc2:p8080", "removed"]]);
  });

  it("masquerade and policy changes are reported", () => {
    const a = parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), { source: "a" });
    const text = readReference("02-TestOverallIPTablesRules.txt").replace(
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
      '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ',
    );
    const d = diffRuleSets(a, parseIptablesSave(text, { source: "b" }));
    expect(d.servicePorts).toEqual([
      expect.objectContaining({
        name: "ns1/svc1:p80",
        fieldChanges: [
          { field: "clusterIPMasquerade", old: "off-cluster", new: "all" },
          { field: "localDetector", old: "! -s 10.0.0.0/8", new: null },
        ],
      }),
    ]);
    expect(diffRuleSets(a, a).servicePorts).toEqual([]);
    expect(diffRuleSets(a, a).chains).toEqual([]);
  });
});
