import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIpsetSave } from "../../src/rules/ipset.js";
import { applyRestore, parseIptablesSave, printRuleSet } from "../../src/rules/iptables-save.js";
import { buildKubeModel } from "../../src/rules/kube-model.js";
import { parseKubernetes } from "../../src/rules/kubernetes.js";
import { sniffTextInput } from "../../src/rules/sniff.js";
import { InputError } from "../../src/util/errors.js";
import { readReference } from "./reference.js";

/** Run f; anything thrown must be an InputError. */
function onlyInputErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
  }
}

// Words that steer the parser into its deeper paths, mixed with arbitrary text.
const word = fc.oneof(
  fc.constantFrom(
    "-A",
    "-I",
    "-D",
    "-R",
    "-N",
    "-X",
    "-F",
    "-P",
    "-E",
    "-Z",
    "-m",
    "-j",
    "-g",
    "!",
    "-s",
    "-d",
    "-p",
    "tcp",
    "udp",
    "--dport",
    "--comment",
    '"a b"',
    '"x\\"y"',
    '"',
    "comment",
    "statistic",
    "--probability",
    "0.5",
    "recent",
    "--rcheck",
    "--set",
    "MARK",
    "--or-mark",
    "0x4000",
    "DNAT",
    "--to-destination",
    "10.0.0.1:80",
    "KUBE-SVC-AAAAAAAAAAAAAAAA",
    "KUBE-SEP-BBBBBBBBBBBBBBBB",
    "X",
    "INPUT",
    "-c",
    "1",
    "2",
    "[0:0]",
    "--",
    "-",
    "COMMIT",
    "*nat",
    "*filter",
    ":X",
    "- [0:0]",
  ),
  fc.string({ maxLength: 8 }),
);
const line = fc.array(word, { maxLength: 10 }).map((ws) => ws.join(" "));
const dump = fc
  .array(
    fc.oneof(
      line,
      fc.constantFrom("*nat", "*filter", ":X - [0:0]", ":INPUT ACCEPT [1:2]", "COMMIT", "# c"),
    ),
    { maxLength: 25 },
  )
  .map((ls) => ls.join("\n"));

describe("parsers on arbitrary input", () => {
  it("iptables-save: only InputError, and whatever parses prints back and re-parses to the same text", () => {
    fc.assert(
      fc.property(fc.oneof(dump, fc.string({ maxLength: 300 })), (text) => {
        let rs: ReturnType<typeof parseIptablesSave> | null = null;
        onlyInputErrors(() => {
          rs = parseIptablesSave(text, { source: "fuzz" });
        });
        if (rs !== null) {
          const printed = printRuleSet(rs);
          expect(printRuleSet(parseIptablesSave(printed, { source: "again" }))).toBe(printed);
          onlyInputErrors(() => buildKubeModel(rs!));
        }
      }),
      { numRuns: 1500 },
    );
  });

  it("restores onto a real state: only InputError", () => {
    const base = parseIptablesSave(readReference("02-TestOverallIPTablesRules.txt"), {
      source: "02",
    });
    fc.assert(
      fc.property(dump, (text) => {
        onlyInputErrors(() => buildKubeModel(applyRestore(base, text, { source: "fuzz" })));
      }),
      { numRuns: 800 },
    );
  });

  it("kubernetes, ipset and sniffing: only InputError (or nothing)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.json({ maxDepth: 4 })), (text) => {
        onlyInputErrors(() => parseKubernetes(text, { source: "k" }));
        onlyInputErrors(() => parseIpsetSave(text, { source: "i" }));
        sniffTextInput(text);
      }),
      { numRuns: 800 },
    );
  });

  it("a long pathological line does not hang (linear tokenising)", () => {
    const long = `*nat\n:X - [0:0]\n-A X ${'-m comment --comment "a\\" b" '.repeat(20000)}-j ACCEPT\nCOMMIT\n`;
    const rs = parseIptablesSave(long, { source: "long" });
    expect(rs.tables.get("nat")?.chains.get("X")?.rules).toHaveLength(1);
    expect(() =>
      parseIptablesSave(`*nat\n:X - [0:0]\n-A X ! ! -s 1.1.1.1\nCOMMIT\n`, {
        source: "n",
      }),
    ).toThrow(InputError);
  });
});
