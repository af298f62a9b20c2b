import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseConntrack } from "../../src/rules/conntrack.js";
import { InputError } from "../../src/util/errors.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "rules");
const read = (name: string) => readFileSync(join(fixtures, name), "utf8");

describe("conntrack -L (real listings)", () => {
  it("reads tuples, state, flags, counters, mark, zone, and tells DNAT/SNAT", () => {
    const entries = parseConntrack(read("conntrack-L.txt"), { source: "ct" });
    expect(entries).toHaveLength(7);
    const tcp = entries.find((e) => e.proto === "tcp" && e.family === "ipv4")!;
    expect(tcp).toMatchObject({
      protoNumber: 6,
      timeout: 104,
      state: "TIME_WAIT",
      flags: ["ASSURED"],
      mark: 0,
      use: 1,
      zone: null,
      dnat: true,
      snat: false,
      event: null,
    });
    expect(tcp.original).toEqual({
      src: "10.99.0.1",
      dst: "10.96.0.10",
      sport: 59556,
      dport: 80,
      icmpType: null,
      icmpCode: null,
      icmpId: null,
      packets: 6,
      bytes: 322,
    });
    expect(tcp.reply).toMatchObject({
      src: "127.0.0.1",
      dst: "10.99.0.1",
      sport: 8080,
      dport: 59556,
      packets: 4,
      bytes: 218,
    });
    const icmp = entries.find((e) => e.proto === "icmp")!;
    expect(icmp.state).toBeNull();
    expect(icmp.original).toMatchObject({ icmpType: 8, icmpCode: 0, icmpId: 11587, sport: null });
    expect(icmp.reply).toMatchObject({ icmpType: 0, icmpId: 11587 });
    expect(icmp.dnat).toBe(false);
    const unreplied = entries.find((e) => e.flags.includes("UNREPLIED") && e.zone === null)!;
    expect(unreplied.original.dport).toBe(9999);
    expect(unreplied.reply.packets).toBe(0);
    const zoned = entries.find((e) => e.zone !== null)!;
    expect(zoned).toMatchObject({ zone: 3, mark: 0x4000 });
    const v6 = entries.find((e) => e.family === "ipv6" && e.proto === "tcp")!;
    expect(v6.original).toMatchObject({ src: "fd00::1", dst: "fd00::10", dport: 80 });
    expect(v6.reply).toMatchObject({ src: "::1", sport: 8083 });
    expect(v6.dnat).toBe(true);
    const icmp6 = entries.find((e) => e.proto === "icmpv6")!;
    expect(icmp6).toMatchObject({ protoNumber: 58, family: "ipv6" });
    expect(icmp6.original.icmpType).toBe(128);
  });

  it("-o extended,id gives the same entries plus ids", () => {
    const plain = parseConntrack(read("conntrack-L.txt"), { source: "a" });
    const ext = parseConntrack(read("conntrack-L-extended-id.txt"), { source: "b" });
    expect(ext).toHaveLength(plain.length);
    for (const e of ext) {
      expect(e.id).toBeGreaterThan(0);
      const p = plain.find(
        (x) =>
          x.original.sport === e.original.sport &&
          x.proto === e.proto &&
          x.original.icmpId === e.original.icmpId,
      )!;
      expect({ ...e, id: null, raw: "", line: 0 }).toEqual({ ...p, raw: "", line: 0 });
    }
  });

  it("conntrack -E -o timestamp events", () => {
    const ev = parseConntrack(read("conntrack-E.txt"), { source: "e" });
    expect(ev.map((e) => [e.event, e.state])).toEqual([
      ["NEW", "SYN_SENT"],
      ["UPDATE", "SYN_RECV"],
      ["UPDATE", "ESTABLISHED"],
      ["UPDATE", "FIN_WAIT"],
      ["UPDATE", "LAST_ACK"],
      ["UPDATE", "TIME_WAIT"],
    ]);
    expect(ev[0]?.eventTime).toBeCloseTo(1795624521.90111, 5);
    expect(ev[0]?.flags).toEqual(["UNREPLIED"]);
  });

  it("DESTROY events without a timeout, OFFLOAD flags, SNAT (masquerade)", () => {
    const [e] = parseConntrack(
      "    [DESTROY] tcp      6 src=10.244.1.5 dst=10.96.0.1 sport=40000 dport=443 src=192.168.0.10 dst=10.0.0.7 sport=6443 dport=61234 [ASSURED] [OFFLOAD] mark=16384 use=1\n",
      { source: "x" },
    );
    expect(e).toMatchObject({
      event: "DESTROY",
      timeout: null,
      state: null,
      flags: ["ASSURED", "OFFLOAD"],
      dnat: true,
      snat: true,
    });
  });

  it("skips the summary line, names the line of bad input", () => {
    const text =
      "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\ntcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 mark=0 use=1\nhello world\n";
    expect(() => parseConntrack(text, { source: "ct.txt" })).toThrow(
      /ct\.txt: line 3: not a conntrack entry/,
    );
    expect(() =>
      parseConntrack("tcp 6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=x\n", { source: "c" }),
    ).toThrow(/c: line 1: sport= is not a number/);
    expect(() =>
      parseConntrack("udp 17 10 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2\n", { source: "c" }),
    ).toThrow(/reply tuple/);
  });

  it("never throws anything but InputError", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        try {
          parseConntrack(s, { source: "p" });
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
        }
      }),
      { numRuns: 500 },
    );
  });
});
