import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseIptablesSave, printRuleSet } from "../../src/rules/iptables-save.js";
import type { Rule, RuleSet } from "../../src/rules/model.js";
import {
  markTargetOperation,
  optionValue,
  parseProbability,
  sameProbability,
} from "../../src/rules/rule-helpers.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const restoreInput = readFileSync(join(fixtures, "kube-02-no-nfacct.restore"), "utf8");
const isRoot = process.getuid?.() === 0;
const hasIptables = spawnSync("iptables-save", ["--version"]).status === 0;

function allRules(rs: RuleSet): Rule[] {
  const out: Rule[] = [];
  for (const t of rs.tables.values()) for (const c of t.chains.values()) out.push(...c.rules);
  return out;
}

/** What the written and the normalized form must agree on, compared as numbers where numeric. */
function meaning(r: Rule) {
  const prob = optionValue(r, "statistic", "--probability");
  const mark = r.target?.name === "MARK" ? markTargetOperation(r.target) : null;
  const addr = (o: string | undefined) =>
    o === undefined ? undefined : o.includes("/") ? o : `${o}/32`;
  return {
    where: `${r.table}/${r.chain}#${r.index}`,
    comment: r.comment,
    target: r.target?.name ?? null,
    s: addr(optionValue(r, "", "-s")),
    d: addr(optionValue(r, "", "-d")),
    dport: optionValue(r, "tcp", "--dport") ?? optionValue(r, "udp", "--dport"),
    prob: prob === undefined ? null : parseProbability(prob),
    mark,
    dnat: r.target?.options.find((o) => o.name === "--to-destination")?.values[0],
  };
}

function expectSameMeaning(written: RuleSet, saved: RuleSet) {
  const a = allRules(written).map(meaning);
  const byWhere = new Map(
    allRules(saved).map((r) => [`${r.table}/${r.chain}#${r.index}`, meaning(r)]),
  );
  expect(byWhere.size).toBe(a.length);
  for (const m of a) {
    const s = byWhere.get(m.where);
    expect(s, m.where).toBeDefined();
    if (s === undefined) continue;
    if (m.prob !== null && s.prob !== null) {
      expect(sameProbability(m.prob, s.prob), m.where).toBe(true);
    }
    expect({ ...s, prob: null }, m.where).toEqual({ ...m, prob: null });
  }
}

describe("dumps written by the real iptables-save (stored fixtures)", () => {
  for (const name of ["iptables-save-nft-1.8.9.txt", "iptables-save-legacy-1.8.9.txt"]) {
    it(`${name} parses, round-trips and means what was restored`, () => {
      const text = readFileSync(join(fixtures, name), "utf8");
      const saved = parseIptablesSave(text, { source: name });
      expect(printRuleSet(saved)).toBe(text);
      expect(saved.takenAt).not.toBeNull();
      expect(saved.flavour).toBe(name.includes("nft") ? "nf_tables" : null);
      for (const r of allRules(saved)) expect(r.unknown, r.raw).toEqual([]);
      expectSameMeaning(parseIptablesSave(restoreInput, { source: "restore" }), saved);
    });
  }
});

describe.skipIf(!isRoot || !hasIptables)("a live iptables-save from a network namespace", () => {
  const ns = `svt-ru-save-${process.pid}`;
  afterAll(() => {
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("parses and round-trips what the kernel tools print now", () => {
    execFileSync("ip", ["netns", "add", ns]);
    execFileSync("ip", ["netns", "exec", ns, "iptables-restore"], { input: restoreInput });
    const text = execFileSync("ip", ["netns", "exec", ns, "iptables-save"], { encoding: "utf8" });
    const saved = parseIptablesSave(text, { source: "live" });
    expect(printRuleSet(saved)).toBe(text);
    expect(saved.generator).toMatch(/^iptables-save v/);
    const three = saved.tables.get("nat")?.chains.get("KUBE-SVC-THREE")?.rules[0];
    expect(optionValue(three!, "statistic", "--probability")).toBe("0.33333333349");
    expectSameMeaning(parseIptablesSave(restoreInput, { source: "restore" }), saved);
  });
});
