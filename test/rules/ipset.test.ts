import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ipsetContains, parseIpsetSave } from "../../src/rules/ipset.js";
import { InputError } from "../../src/util/errors.js";

const text = readFileSync(
  join(import.meta.dirname, "..", "fixtures", "rules", "ipset-save.txt"),
  "utf8",
);

describe("ipset save", () => {
  const sets = parseIpsetSave(text, { source: "ipset" });

  it("reads sets, types, families, options and members", () => {
    expect([...sets.keys()]).toEqual([
      "KUBE-CLUSTER-IP",
      "KUBE-LOAD-BALANCER-SOURCE-CIDR",
      "KUBE-NODE-PORT-TCP",
      "blocked",
    ]);
    const ci = sets.get("KUBE-CLUSTER-IP")!;
    expect(ci).toMatchObject({
      type: "hash:ip,port",
      dimensions: ["ip", "port"],
      family: "inet",
      line: 1,
    });
    expect(ci.options["hashsize"]).toBe("1024");
    expect(ci.members.map((m) => [m.parts, m.options["comment"]])).toEqual([
      [["10.96.0.1", "tcp:443"], "default/kubernetes:https"],
      [["10.96.0.10", "udp:53"], "kube-system/kube-dns:dns"],
    ]);
    const blocked = sets.get("blocked")!;
    expect(blocked.family).toBe("inet6");
    expect(blocked.members[0]).toMatchObject({
      nomatch: true,
      options: { timeout: "199", nomatch: "" },
    });
  });

  it("tests membership like the kernel", () => {
    expect(ipsetContains(sets, "KUBE-CLUSTER-IP", ["10.96.0.10", "udp:53"])).toBe(true);
    expect(ipsetContains(sets, "KUBE-CLUSTER-IP", ["10.96.0.10", "tcp:53"])).toBe(false);
    expect(
      ipsetContains(sets, "KUBE-LOAD-BALANCER-SOURCE-CIDR", ["5.6.7.8", "tcp:80", "203.0.113.5"]),
    ).toBe(true);
    expect(
      ipsetContains(sets, "KUBE-LOAD-BALANCER-SOURCE-CIDR", ["5.6.7.8", "tcp:80", "203.0.113.200"]),
    ).toBe(false);
    expect(ipsetContains(sets, "KUBE-NODE-PORT-TCP", ["tcp:3001"])).toBe(true);
    expect(ipsetContains(sets, "KUBE-NODE-PORT-TCP", ["3002"])).toBe(false);
    expect(ipsetContains(sets, "blocked", ["2001:db8:2::1"])).toBe(true);
    expect(ipsetContains(sets, "blocked", ["2001:db8:1::1"])).toBe(false);
    expect(ipsetContains(sets, "nope", ["1.1.1.1"])).toBe(false);
  });

  it("errors name the line", () => {
    expect(() => parseIpsetSave("add X 1.1.1.1\n", { source: "s" })).toThrow(
      /^s: line 1: set X was not created/,
    );
    expect(() => parseIpsetSave("create X hash:ip,port\nadd X 1.1.1.1\n", { source: "s" })).toThrow(
      /line 2: member has 1 parts/,
    );
    expect(() => parseIpsetSave("flush\n", { source: "s" })).toThrow(InputError);
  });
});
