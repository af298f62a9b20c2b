import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyRestore, parseIptablesSave, printRuleSet } from "../../src/rules/iptables-save.js";
import type { RuleSet } from "../../src/rules/model.js";
import { InputError } from "../../src/util/errors.js";
import { readReference } from "./reference.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const step1 = readFileSync(join(fixtures, "kube-04-step1.restore"), "utf8");

/** The reference file's restores, split at its `# ---- step N` comments. */
function steps(): { step: number; text: string }[] {
  const out: { step: number; text: string }[] = [];
  for (const part of readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt").split(
    /^(?=# ---- step )/m,
  )) {
    const m = /^# ---- step (\d+)/.exec(part);
    if (m !== null) out.push({ step: Number(m[1]), text: part });
  }
  return out;
}

function chains(rs: RuleSet, table: "nat" | "filter"): string[] {
  return [...(rs.tables.get(table)?.chains.keys() ?? [])].sort();
}

function rulesOf(rs: RuleSet, table: "nat" | "filter", chain: string): string[] {
  return (
    rs.tables
      .get(table)
      ?.chains.get(chain)
      ?.rules.map((r) => r.raw) ?? []
  );
}

function targets(rs: RuleSet, table: "nat" | "filter", chain: string): (string | undefined)[] {
  return (
    rs.tables
      .get(table)
      ?.chains.get(chain)
      ?.rules.map((r) => r.target?.name) ?? []
  );
}

const base = ["KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES"];

describe("kube-proxy partial restores (reference 04) applied in order", () => {
  it("give the state upstream's TestSyncProxyRulesRepeated describes after each step", () => {
    let rs = parseIptablesSave(step1, { source: "step1" });
    const byStep = new Map<number, RuleSet>();
    for (const { step, text } of steps()) {
      const before = printRuleSet(rs);
      const next = applyRestore(rs, text, { source: `step${step}` });
      // The earlier state is untouched (restores return a new RuleSet).
      expect(printRuleSet(rs)).toBe(before);
      byStep.set(step, next);
      rs = next;
    }
    expect([...byStep.keys()]).toEqual([2, 3, 4, 5, 6, 7, 9]);

    // step 2: svc3 added; svc1 and svc2 chains (not re-declared) survive untouched.
    const s2 = byStep.get(2)!;
    expect(chains(s2, "nat")).toEqual(
      [
        ...base,
        "KUBE-SEP-BSWRHOQ77KEXZLNL",
        "KUBE-SEP-SNQ3ZNILQDEJNDQO",
        "KUBE-SEP-UHEGFW77JX3KXTOV",
        "KUBE-SVC-2VJB64SDSIJUP5T6",
        "KUBE-SVC-X27LE4BHSL4DOUIK",
        "KUBE-SVC-XPGD46QRK7WJZT7O",
      ].sort(),
    );
    expect(targets(s2, "nat", "KUBE-SERVICES")).toEqual([
      "KUBE-SVC-XPGD46QRK7WJZT7O",
      "KUBE-SVC-2VJB64SDSIJUP5T6",
      "KUBE-SVC-X27LE4BHSL4DOUIK",
      "KUBE-NODEPORTS",
    ]);
    expect(rulesOf(s2, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O")).toEqual(
      rulesOf(parseIptablesSave(step1, { source: "s1" }), "nat", "KUBE-SVC-XPGD46QRK7WJZT7O"),
    );

    // step 3: svc2 deleted: its jump is gone and its chains deleted with -X.
    const s3 = byStep.get(3)!;
    expect(chains(s3, "nat")).not.toContain("KUBE-SVC-2VJB64SDSIJUP5T6");
    expect(chains(s3, "nat")).not.toContain("KUBE-SEP-UHEGFW77JX3KXTOV");
    expect(targets(s3, "nat", "KUBE-SERVICES")).toEqual([
      "KUBE-SVC-XPGD46QRK7WJZT7O",
      "KUBE-SVC-X27LE4BHSL4DOUIK",
      "KUBE-NODEPORTS",
    ]);

    // step 4: svc4 without endpoints: only a filter REJECT.
    const s4 = byStep.get(4)!;
    expect(rulesOf(s4, "filter", "KUBE-SERVICES")).toEqual([
      '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT',
    ]);
    expect(chains(s4, "nat")).toEqual(chains(s3, "nat"));

    // step 5: endpoints appear: REJECT gone (filter KUBE-SERVICES re-declared = flushed).
    const s5 = byStep.get(5)!;
    expect(rulesOf(s5, "filter", "KUBE-SERVICES")).toEqual([]);
    expect(targets(s5, "nat", "KUBE-SVC-4SW47YFZTEDKD3PK")).toEqual([
      "KUBE-MARK-MASQ",
      "KUBE-SEP-AYCN5HPXMIRJNJXU",
    ]);

    // step 6: svc3's endpoint moves to 10.0.3.2: new SEP, old one deleted.
    const s6 = byStep.get(6)!;
    expect(chains(s6, "nat")).not.toContain("KUBE-SEP-BSWRHOQ77KEXZLNL");
    expect(targets(s6, "nat", "KUBE-SVC-X27LE4BHSL4DOUIK")).toEqual([
      "KUBE-MARK-MASQ",
      "KUBE-SEP-DKCFIS26GWF2WLWC",
    ]);
    // The filter table was not in this restore: it is step 5's.
    expect(s6.tables.get("filter")).toBe(s5.tables.get("filter"));

    // step 7: a second endpoint: a 50/50 split.
    const s7 = byStep.get(7)!;
    expect(targets(s7, "nat", "KUBE-SVC-X27LE4BHSL4DOUIK")).toEqual([
      "KUBE-MARK-MASQ",
      "KUBE-SEP-DKCFIS26GWF2WLWC",
      "KUBE-SEP-JVVZVJ7BSEPPRNBS",
    ]);

    // Rules a restore wrote name it; the base dump's rules do not.
    const sep = s7.tables.get("nat")?.chains.get("KUBE-SEP-JVVZVJ7BSEPPRNBS")?.rules[0];
    expect(sep?.source).toBe("step7");
    expect(
      parseIptablesSave(step1, { source: "s1" }).tables.get("nat")?.chains.get("KUBE-SERVICES")
        ?.rules[0]?.source,
    ).toBeUndefined();

    // step 9 (the full resync after the failed step 8): svc4 chains gone, svc1 rewritten.
    const s9 = byStep.get(9)!;
    expect(chains(s9, "nat")).toEqual(
      [
        ...base,
        "KUBE-SEP-DKCFIS26GWF2WLWC",
        "KUBE-SEP-JVVZVJ7BSEPPRNBS",
        "KUBE-SEP-SNQ3ZNILQDEJNDQO",
        "KUBE-SVC-X27LE4BHSL4DOUIK",
        "KUBE-SVC-XPGD46QRK7WJZT7O",
      ].sort(),
    );
    expect(targets(s9, "nat", "KUBE-SERVICES")).toEqual([
      "KUBE-SVC-XPGD46QRK7WJZT7O",
      "KUBE-SVC-X27LE4BHSL4DOUIK",
      "KUBE-NODEPORTS",
    ]);
    for (const [i, r] of (
      s9.tables.get("nat")?.chains.get("KUBE-SERVICES")?.rules ?? []
    ).entries()) {
      expect(r.index).toBe(i + 1);
    }
  });

  it("step 8: a partial restore deleting a chain that a dangling jump still uses fails, state unchanged", () => {
    let rs = parseIptablesSave(step1, { source: "step1" });
    for (const { step, text } of steps())
      if (step <= 7) rs = applyRestore(rs, text, { source: `s${step}` });
    // Upstream injects this jump behind kube-proxy's back.
    rs = applyRestore(
      rs,
      "*nat\n-A KUBE-SVC-X27LE4BHSL4DOUIK -j KUBE-SEP-AYCN5HPXMIRJNJXU\nCOMMIT\n",
      {
        source: "inject",
      },
    );
    const before = printRuleSet(rs);
    const deleteSvc4 =
      "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-AYCN5HPXMIRJNJXU - [0:0]\n:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]\n-X KUBE-SEP-AYCN5HPXMIRJNJXU\n-X KUBE-SVC-4SW47YFZTEDKD3PK\nCOMMIT\n";
    expect(() => applyRestore(rs, deleteSvc4, { source: "step8" })).toThrow(
      /step8: line 5: chain KUBE-SEP-AYCN5HPXMIRJNJXU is still referenced by KUBE-SVC-X27LE4BHSL4DOUIK rule 4/,
    );
    expect(printRuleSet(rs)).toBe(before);
  });
});

describe("restore commands", () => {
  const dump =
    "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -j X\n-A X -s 1.1.1.1 -j DROP\n-A X -s 2.2.2.2 -j DROP\nCOMMIT\n";

  it("-I, -D by number and by spec, -R, -F, -N, -E, -P", () => {
    const rs = parseIptablesSave(dump, { source: "d" });
    const a = applyRestore(
      rs,
      "*filter\n-I X 2 -s 9.9.9.9 -j ACCEPT\n-D X -s 1.1.1.1 -j DROP\nCOMMIT\n",
      { source: "a" },
    );
    expect(
      a.tables
        .get("filter")
        ?.chains.get("X")
        ?.rules.map((r) => [r.index, r.raw]),
    ).toEqual([
      [1, "-A X -s 9.9.9.9 -j ACCEPT"],
      [2, "-A X -s 2.2.2.2 -j DROP"],
    ]);
    const b = applyRestore(
      a,
      "*filter\n-R X 1 -s 8.8.8.8 -j ACCEPT\n-D X 2\n-N Y\n-P INPUT DROP\n-E Y Z\nCOMMIT\n",
      { source: "b" },
    );
    expect(rulesOfAny(b, "X")).toEqual(["-A X -s 8.8.8.8 -j ACCEPT"]);
    expect(b.tables.get("filter")?.chains.get("INPUT")?.policy).toBe("DROP");
    expect([...(b.tables.get("filter")?.chains.keys() ?? [])]).toEqual(["INPUT", "X", "Z"]);
    const c = applyRestore(b, "*filter\n-F\nCOMMIT\n", { source: "c" });
    expect(rulesOfAny(c, "X")).toEqual([]);
    expect(rulesOfAny(c, "INPUT")).toEqual([]);
    expect(rulesOfAny(rs, "X")).toHaveLength(2);
  });

  it("without --noflush a table in the input replaces the old one (built-in policies kept)", () => {
    const rs = parseIptablesSave(dump.replace(":INPUT ACCEPT", ":INPUT DROP"), { source: "d" });
    const full = applyRestore(rs, "*filter\n:Y - [0:0]\n-A INPUT -j Y\nCOMMIT\n", {
      source: "f",
      noflush: false,
    });
    expect([...(full.tables.get("filter")?.chains.keys() ?? [])]).toEqual(["INPUT", "Y"]);
    expect(full.tables.get("filter")?.chains.get("INPUT")?.policy).toBe("DROP");
  });

  it("refuses what iptables-restore refuses, naming the line", () => {
    const rs = parseIptablesSave(dump, { source: "d" });
    for (const [text, re] of [
      ["*filter\n-X X\nCOMMIT\n", /r: line 2: chain X is not empty/],
      ["*filter\n-D X 9\nCOMMIT\n", /r: line 2: no rule 9 in chain X/],
      ["*filter\n-D X -s 7.7.7.7 -j DROP\nCOMMIT\n", /r: line 2: no such rule/],
      ["*filter\n-A NOPE -j DROP\nCOMMIT\n", /r: line 2: chain NOPE does not exist/],
      ["*filter\n-X INPUT\nCOMMIT\n", /r: line 2: cannot delete built-in chain INPUT/],
      ["*filter\n-N X\nCOMMIT\n", /r: line 2: chain X already exists/],
    ] as const) {
      expect(() => applyRestore(rs, text, { source: "r" })).toThrow(InputError);
      expect(() => applyRestore(rs, text, { source: "r" })).toThrow(re);
    }
  });
});

function rulesOfAny(rs: RuleSet, chain: string): string[] {
  return (
    rs.tables
      .get("filter")
      ?.chains.get(chain)
      ?.rules.map((r) => r.raw) ?? []
  );
}

const isRoot = process.getuid?.() === 0;
const hasIptables = spawnSync("iptables-save", ["--version"]).status === 0;

describe.skipIf(!isRoot || !hasIptables)("the same restores through the kernel", () => {
  const ns = `svt-ru-rst-${process.pid}`;
  afterAll(() => {
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("iptables-restore --noflush in a namespace ends with the chains and jumps we compute", () => {
    execFileSync("ip", ["netns", "add", ns]);
    // nfacct objects do not exist in a fresh namespace; the rule is not what this test is about.
    const strip = (t: string) => t.replace(/ -m nfacct --nfacct-name \S+/g, "");
    const run = (text: string, noflush: boolean) =>
      execFileSync(
        "ip",
        ["netns", "exec", ns, "iptables-restore", ...(noflush ? ["--noflush"] : [])],
        {
          input: strip(text),
        },
      );
    run(step1, false);
    let rs = parseIptablesSave(strip(step1), { source: "s1" });
    for (const { step, text } of steps()) {
      run(text, true);
      rs = applyRestore(rs, strip(text), { source: `s${step}` });
      const saved = parseIptablesSave(
        execFileSync("ip", ["netns", "exec", ns, "iptables-save"], { encoding: "utf8" }),
        { source: `saved${step}` },
      );
      for (const table of ["nat", "filter"] as const) {
        const ours = rs.tables.get(table)!;
        const kernel = saved.tables.get(table)!;
        for (const [name, chain] of kernel.chains) {
          if (chain.policy !== null) continue; // built-ins: implicit in our restore-only state
          expect(ours.chains.has(name), `step ${step} ${table} ${name}`).toBe(true);
          expect(targets(rs, table, name), `step ${step} ${table} ${name}`).toEqual(
            chain.rules.map((r) => r.target?.name),
          );
        }
        const userChains = [...ours.chains.values()].filter((c) => c.policy === null).length;
        expect(userChains, `step ${step} ${table}`).toBe(
          [...kernel.chains.values()].filter((c) => c.policy === null).length,
        );
      }
    }
  });
});
