import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sniffTextInput } from "../../src/rules/sniff.js";
import { readReference } from "./reference.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const read = (name: string) => readFileSync(join(fixtures, name), "utf8");

describe("sniffTextInput", () => {
  it("tells each kind from its first bytes", () => {
    expect(sniffTextInput(read("iptables-save-nft-1.8.9.txt"))).toBe("iptables-save");
    expect(sniffTextInput(read("iptables-save-legacy-1.8.9.txt"))).toBe("iptables-save");
    expect(
      sniffTextInput(read("iptables-save-nft-1.8.9.txt").split("\n").slice(1).join("\n")),
    ).toBe("iptables-save");
    expect(sniffTextInput(readReference("02-TestOverallIPTablesRules.txt"))).toBe(
      "iptables-restore",
    );
    expect(
      sniffTextInput(readReference("04-TestSyncProxyRulesRepeated-partial-restores.txt")),
    ).toBe("iptables-restore");
    expect(sniffTextInput(read("conntrack-L.txt"))).toBe("conntrack");
    expect(sniffTextInput(read("conntrack-L-extended-id.txt"))).toBe("conntrack");
    expect(sniffTextInput(read("conntrack-E.txt"))).toBe("conntrack");
    expect(sniffTextInput('{\n  "apiVersion": "v1",\n  "items": [')).toBe("kubernetes");
    expect(sniffTextInput("apiVersion: v1\nitems: []\nkind: List\n")).toBe("kubernetes");
    expect(
      sniffTextInput(
        "create KUBE-X hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-X 10.0.0.1,tcp:80\n",
      ),
    ).toBe("ipset");
  });

  it("works on a head cut mid-line", () => {
    const text = read("iptables-save-nft-1.8.9.txt");
    expect(sniffTextInput(text.slice(0, 300))).toBe("iptables-save");
    const ct = read("conntrack-L.txt");
    expect(sniffTextInput(ct.slice(0, 250))).toBe("conntrack");
  });

  it("says null for anything else", () => {
    expect(sniffTextInput("")).toBeNull();
    expect(sniffTextInput("hello world\n")).toBeNull();
    expect(sniffTextInput('{"foo": 1}')).toBeNull();
    expect(sniffTextInput("\u00d4\u00c3\u00b2\u00a1binary")).toBeNull();
    expect(sniffTextInput("table ip kube-proxy {\n")).toBeNull();
  });
});
