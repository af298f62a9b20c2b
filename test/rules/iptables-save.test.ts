import { describe, expect, it } from "vitest";
import { applyRestore, parseIptablesSave, printRuleSet } from "../../src/rules/iptables-save.js";
import type { Rule, RuleSet } from "../../src/rules/model.js";
import {
  applyMark,
  findOption,
  kernelProbability,
  markTargetOperation,
  optionValue,
  parseMark,
  parsePortRange,
  parseProbability,
  sameProbability,
} from "../../src/rules/rule-helpers.js";
import { InputError } from "../../src/util/errors.js";
import { readReference } from "./reference.js";

function rule(
  rs: RuleSet,
  table: "nat" | "filter" | "mangle" | "raw",
  chain: string,
  index: number,
): Rule {
  const r = rs.tables.get(table)?.chains.get(chain)?.rules[index - 1];
  if (r === undefined) throw new Error(`no rule ${table}/${chain}#${index}`);
  return r;
}

function one(line: string, table = "nat"): Rule {
  const rs = parseIptablesSave(`*${table}\n:X - [0:0]\n${line}\nCOMMIT\n`, { source: "t" });
  return rule(rs, table as "nat", "X", 1);
}

describe("reference dumps", () => {
  for (const name of [
    "01-TestTracePacket.txt",
    "02-TestOverallIPTablesRules.txt",
    "05-TestBadIPs-LB-sourceRanges.txt",
  ]) {
    it(`${name} parses and prints back identically`, () => {
      const text = readReference(name);
      const rs = parseIptablesSave(text, { source: name });
      expect(printRuleSet(rs)).toBe(text);
      // Without the # SOURCE: comment too (it is kept as a comment, not as data).
      const body = text
        .split("\n")
        .filter((l) => !l.startsWith("# SOURCE:"))
        .join("\n");
      expect(printRuleSet(parseIptablesSave(body, { source: name }))).toBe(body);
      for (const t of rs.tables.values()) {
        for (const c of t.chains.values()) {
          c.rules.forEach((r, i) => {
            expect(r.index).toBe(i + 1);
            expect(r.chain).toBe(c.name);
            expect(r.table).toBe(t.name);
            expect(text.split("\n")[r.line - 1]).toBe(r.raw);
          });
        }
      }
    });
  }

  it("02: rules carry their modules, options and targets", () => {
    const rs = parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), {
      source: "02",
    });
    expect([...rs.tables.keys()]).toEqual(["filter", "nat"]);
    expect(rs.tables.get("nat")?.chains.size).toBe(20);
    const masq = rule(rs, "nat", "KUBE-SVC-4SW47YFZTEDKD3PK", 1);
    expect(masq.comment).toBe("ns4/svc4:p80 cluster IP");
    expect(masq.matches.map((m) => m.module)).toEqual(["comment", "tcp", ""]);
    expect(findOption(masq, "", "-s")).toEqual({
      name: "-s",
      values: ["10.0.0.0/8"],
      negated: true,
    });
    expect(optionValue(masq, "", "-d")).toBe("172.30.0.44");
    expect(optionValue(masq, "tcp", "--dport")).toBe("80");
    expect(masq.target).toEqual({ kind: "jump", name: "KUBE-MARK-MASQ", options: [] });
    const stat = rule(rs, "nat", "KUBE-SVC-4SW47YFZTEDKD3PK", 2);
    expect(parseProbability(optionValue(stat, "statistic", "--probability") ?? "")).toBe(0.5);
    const aff = rule(rs, "nat", "KUBE-SVC-NUKIZ6OKUXPJNT4C", 2);
    expect(findOption(aff, "recent", "--rcheck")).toEqual({
      name: "--rcheck",
      values: [],
      negated: false,
    });
    expect(optionValue(aff, "recent", "--seconds")).toBe("10800");
    const dnat = rule(rs, "nat", "KUBE-SEP-C6EBXVWJJZMIWKLZ", 2);
    expect(dnat.target?.name).toBe("DNAT");
    expect(dnat.target?.options).toEqual([
      { name: "--to-destination", values: ["10.180.0.5:80"], negated: false },
    ]);
    const post = rule(rs, "nat", "KUBE-POSTROUTING", 1);
    expect(findOption(post, "mark", "--mark")?.negated).toBe(true);
    const nfacct = rule(rs, "filter", "KUBE-FORWARD", 1);
    expect(optionValue(nfacct, "nfacct", "--nfacct-name")).toBe("ct_state_invalid_dropped_pkts");
    const fw = rule(rs, "nat", "KUBE-FW-NUKIZ6OKUXPJNT4C", 2);
    expect(fw.target).toBeNull();
    for (const t of rs.tables.values())
      for (const c of t.chains.values()) for (const r of c.rules) expect(r.unknown).toEqual([]);
  });

  it("01: an unquoted comment with spaces stays one comment", () => {
    const rs = parseIptablesSave(readReference("01-TestTracePacket.txt"), { source: "01" });
    const r = rule(rs, "filter", "INPUT", 1);
    expect(r.comment).toBe("kubernetes health check service ports");
    expect(r.target?.name).toBe("KUBE-NODEPORTS");
    expect(rs.tables.get("filter")?.chains.get("INPUT")?.policy).toBeNull();
  });
});

describe("rule syntax", () => {
  it("quoted arguments with spaces and escaped quotes", () => {
    const r = one(
      String.raw`-A X -m comment --comment "say \"hi\" there" -j LOG --log-prefix "a b: "`,
    );
    expect(r.comment).toBe('say "hi" there');
    expect(r.target?.options[0]).toEqual({
      name: "--log-prefix",
      values: ["a b: "],
      negated: false,
    });
    expect(r.unknown).toEqual([]);
  });

  it("negation before the option and the old form after it", () => {
    const a = one("-A X ! -s 10.0.0.1 -j ACCEPT");
    const b = one("-A X -s ! 10.0.0.1 -j ACCEPT");
    expect(findOption(a, "", "-s")).toEqual({ name: "-s", values: ["10.0.0.1"], negated: true });
    expect(findOption(b, "", "-s")).toEqual(findOption(a, "", "-s"));
    const c = one("-A X -m recent ! --rcheck --name foo -j ACCEPT");
    expect(findOption(c, "recent", "--rcheck")?.negated).toBe(true);
    expect(findOption(c, "recent", "--name")?.negated).toBe(false);
  });

  it("protocol options without -m tcp go to an implicit tcp match", () => {
    const r = one("-A X -p tcp --dport 80 -j ACCEPT", "filter");
    expect(r.matches).toEqual([
      { module: "", options: [{ name: "-p", values: ["tcp"], negated: false }] },
      {
        module: "tcp",
        implicit: true,
        options: [{ name: "--dport", values: ["80"], negated: false }],
      },
    ]);
    // After another module that does not know --dport, the protocol's match takes it too.
    const s = one("-A X -p udp -m comment --comment x --dport 53 -j ACCEPT", "filter");
    expect(optionValue(s, "udp", "--dport")).toBe("53");
    expect(s.unknown).toEqual([]);
    // Long aliases are found under the short name.
    const t = one(
      "-A X --protocol tcp --destination 1.2.3.4/32 --destination-port 80 -j ACCEPT",
      "filter",
    );
    expect(optionValue(t, "", "-d")).toBe("1.2.3.4/32");
    expect(optionValue(t, "tcp", "--dport")).toBe("80");
  });

  it("iptables-save's normalized form and kube-proxy's form", () => {
    const saved = one(
      '-A X -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU',
    );
    expect(saved.comment).toBe("kube-system/kube-dns:dns cluster IP");
    expect(optionValue(saved, "udp", "--dport")).toBe("53");
    const a = one("-A X -j MARK --set-xmark 0x4000/0x4000");
    const b = one("-A X -j MARK --or-mark 0x4000");
    expect(markTargetOperation(a.target!)).toEqual(markTargetOperation(b.target!));
    const x = one("-A X -j MARK --xor-mark 0x4000");
    expect(applyMark(0x4001, markTargetOperation(x.target!)!)).toBe(1);
    expect(applyMark(0x1, markTargetOperation(b.target!)!)).toBe(0x4001);
    const g = one("-A X -g KUBE-SVC-AAA");
    expect(g.target).toEqual({ kind: "goto", name: "KUBE-SVC-AAA", options: [] });
  });

  it("counters, both forms", () => {
    const rs = parseIptablesSave(
      "*filter\n:INPUT ACCEPT [12:3456]\n[5:300] -A INPUT -j ACCEPT\n-A INPUT -c 7 8 -j DROP\nCOMMIT\n",
      { source: "t" },
    );
    const c = rs.tables.get("filter")?.chains.get("INPUT");
    expect(c?.policy).toBe("ACCEPT");
    expect(c?.counters).toEqual({ packets: 12, bytes: 3456 });
    expect(c?.rules[0]?.counters).toEqual({ packets: 5, bytes: 300 });
    expect(c?.rules[0]?.raw).toBe("-A INPUT -j ACCEPT");
    expect(c?.rules[1]?.counters).toEqual({ packets: 7, bytes: 8 });
    expect(printRuleSet(rs)).toBe(
      "*filter\n:INPUT ACCEPT [12:3456]\n[5:300] -A INPUT -j ACCEPT\n-A INPUT -c 7 8 -j DROP\nCOMMIT\n",
    );
  });

  it("unknown modules, options and targets are kept and flagged", () => {
    const r = one("-A X -m frobnicate --wibble 3 -m tcp -p tcp --dport 1 --bogus -j FOO --bar baz");
    expect(r.matches.map((m) => m.module)).toEqual(["frobnicate", "tcp", ""]);
    expect(r.unknown).toEqual([
      "match frobnicate",
      "match tcp option --bogus",
      "target FOO option --bar",
    ]);
    expect(r.target?.options).toEqual([{ name: "--bar", values: ["baz"], negated: false }]);
  });
});

describe("header, family, flavour", () => {
  const dump = (gen: string) =>
    `# Generated by ${gen} on Tue Nov 25 10:00:00 2025\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n# Completed on Tue Nov 25 10:00:00 2025\n`;

  it("takes the time (UTC unless told), generator and flavour from the header", () => {
    const rs = parseIptablesSave(dump("iptables-save v1.8.9 (nf_tables)"), { source: "t" });
    expect(rs.takenAt).toBe(Date.UTC(2025, 10, 25, 10, 0, 0) / 1000);
    expect(rs.generator).toBe("iptables-save v1.8.9 (nf_tables)");
    expect(rs.flavour).toBe("nf_tables");
    expect(rs.family).toBe("ipv4");
    expect(printRuleSet(rs)).toBe(dump("iptables-save v1.8.9 (nf_tables)"));
    const legacy = parseIptablesSave(dump("ip6tables-save v1.8.7 (legacy)"), {
      source: "t",
      utcOffsetMinutes: 60,
    });
    expect(legacy.flavour).toBe("legacy");
    expect(legacy.family).toBe("ipv6");
    expect(legacy.takenAt).toBe(Date.UTC(2025, 10, 25, 9, 0, 0) / 1000);
    const told = parseIptablesSave(dump("iptables-save v1.8.9"), { source: "t", takenAt: 42 });
    expect(told.takenAt).toBe(42);
    const padded = parseIptablesSave(
      "# Generated by iptables-save v1.8.9 on Wed Nov  5 01:02:03 2025\n*nat\nCOMMIT\n",
      { source: "t" },
    );
    expect(padded.takenAt).toBe(Date.UTC(2025, 10, 5, 1, 2, 3) / 1000);
  });

  it("tells IPv6 from the addresses when there is no header", () => {
    const rs = parseIptablesSave("*nat\n:X - [0:0]\n-A X -d fd00::1/128 -j ACCEPT\nCOMMIT\n", {
      source: "t",
    });
    expect(rs.family).toBe("ipv6");
  });
});

describe("tokenizer edge cases", () => {
  it("a trailing backslash inside an open quote is an unterminated quote, not a hang", () => {
    expect(() =>
      parseIptablesSave('*nat\n:X - [0:0]\n-A X -m comment --comment "abc\\\nCOMMIT\n', {
        source: "t",
      }),
    ).toThrow(/line 3: unterminated quote/);
    const r = one('-A X -m comment --comment a"b c"d\\e -j ACCEPT');
    expect(r.comment).toBe("ab cd\\e");
  });
});

describe("errors name the line and quote it", () => {
  const cases: [string, number, string][] = [
    [
      '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "open\nCOMMIT\n',
      3,
      "unterminated quote",
    ],
    ["*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", 2, "chain NOPE does not exist"],
    ["*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j\nCOMMIT\n", 3, "-j needs a target"],
    ["*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s\nCOMMIT\n", 3, "-s needs a value"],
    ["*filter\nhello\nCOMMIT\n", 2, "not a chain declaration"],
    ["-A INPUT -j ACCEPT\n", 1, "outside a table"],
    ["*bogus\nCOMMIT\n", 1, "unknown table"],
    ["*filter\n:INPUT ACCEPT [0:0]\n", 1, "no COMMIT"],
    ["*filter\n:INPUT ACCEPT [0:0]\n-A INPUT ! -j ACCEPT\nCOMMIT\n", 3, "cannot negate"],
  ];
  for (const [text, line, reason] of cases) {
    it(reason, () => {
      let err: unknown;
      try {
        parseIptablesSave(text, { source: "f.txt" });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).line).toBe(line);
      expect((err as InputError).message).toContain("f.txt: line");
      expect((err as InputError).message).toContain(reason);
    });
  }
});

describe("helpers", () => {
  it("marks", () => {
    expect(parseMark("0x4000/0x4000")).toEqual({ value: 0x4000, mask: 0x4000 });
    expect(parseMark("0x4000")).toEqual({ value: 0x4000, mask: 0xffffffff });
    expect(parseMark("16384/0xffffffff")).toEqual({ value: 0x4000, mask: 0xffffffff });
    expect(parseMark("nope")).toBeNull();
  });
  it("probabilities are numbers, compared as the kernel stores them", () => {
    expect(parseProbability("0.3333333333")).toBeCloseTo(1 / 3, 9);
    expect(parseProbability("1.5")).toBeNull();
    expect(parseProbability("abc")).toBeNull();
    expect(sameProbability(0.3333333333, 0.33333333349)).toBe(true);
    expect(sameProbability(0.3333333333, 0.3333)).toBe(false);
    expect(kernelProbability(0.3333333333).toFixed(11)).toBe("0.33333333349");
  });
  it("port ranges", () => {
    expect(parsePortRange("80")).toEqual([80, 80]);
    expect(parsePortRange("1000:2000")).toEqual([1000, 2000]);
    expect(parsePortRange(":1024")).toEqual([0, 1024]);
    expect(parsePortRange("http")).toBeNull();
  });
});

describe("round trip of interleaved input", () => {
  it("rules of different chains interleaved print back as written; after an edit, grouped by chain", () => {
    const text =
      "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -j RETURN\n-A INPUT -j DROP\nCOMMIT\n";
    const rs = parseIptablesSave(text, { source: "t" });
    expect(printRuleSet(rs)).toBe(text);
    const edited = applyRestore(rs, "*filter\n-A A -j ACCEPT\nCOMMIT\n", { source: "e" });
    expect(printRuleSet(edited)).toBe(
      "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A INPUT -j DROP\n-A A -j RETURN\n-A A -j ACCEPT\nCOMMIT\n",
    );
    expect(printRuleSet(rs)).toBe(text);
  });
});
