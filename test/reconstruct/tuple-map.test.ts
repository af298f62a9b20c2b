import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sameTuple, TupleMap } from "../../src/reconstruct/tuple-map.js";
import type { TupleView } from "../../src/reconstruct/types.js";

const t = (src: string, sport: number, dst: string, dport: number, proto = 6): TupleView => ({
  proto,
  srcIp: src,
  srcPort: sport,
  dstIp: dst,
  dstPort: dport,
});

describe("TupleMap", () => {
  it("finds, replaces and deletes by every field of the tuple", () => {
    const m = new TupleMap<string>();
    m.set(t("10.244.1.10", 40000, "10.96.0.10", 80), "a");
    expect(m.get(t("10.244.1.10", 40000, "10.96.0.10", 80))).toBe("a");
    for (const other of [
      t("10.244.1.10", 40000, "10.96.0.10", 80, 17),
      t("10.244.1.11", 40000, "10.96.0.10", 80),
      t("10.244.1.10", 40001, "10.96.0.10", 80),
      t("10.244.1.10", 40000, "10.96.0.11", 80),
      t("10.244.1.10", 40000, "10.96.0.10", 81),
    ]) {
      expect(m.get(other)).toBeUndefined();
    }
    m.set(t("10.244.1.10", 40000, "10.96.0.10", 80), "b");
    expect(m.size).toBe(1);
    expect(m.get(t("10.244.1.10", 40000, "10.96.0.10", 80))).toBe("b");
    expect(m.delete(t("10.244.1.10", 40000, "10.96.0.10", 81))).toBe(false);
    expect(m.delete(t("10.244.1.10", 40000, "10.96.0.10", 80))).toBe(true);
    expect(m.size).toBe(0);
    expect(m.get(t("10.244.1.10", 40000, "10.96.0.10", 80))).toBeUndefined();
  });

  it("keeps tuples apart that share a hash (same ports, addresses alike at their end)", () => {
    const m = new TupleMap<number>();
    const alike = ["10.1.0.15", "10.2.0.15", "172.16.9.15", "fd00::15", "10.244.3.15"];
    for (const [i, ip] of alike.entries()) m.set(t(ip, 5353, "10.96.0.53", 53, 17), i);
    expect(m.size).toBe(alike.length);
    for (const [i, ip] of alike.entries()) {
      expect(m.get(t(ip, 5353, "10.96.0.53", 53, 17))).toBe(i);
    }
    expect(m.delete(t("10.2.0.15", 5353, "10.96.0.53", 53, 17))).toBe(true);
    expect(m.get(t("10.2.0.15", 5353, "10.96.0.53", 53, 17))).toBeUndefined();
    for (const ip of ["10.1.0.15", "172.16.9.15", "fd00::15", "10.244.3.15"]) {
      expect(m.get(t(ip, 5353, "10.96.0.53", 53, 17))).toBe(alike.indexOf(ip));
    }
  });

  it("behaves as a map keyed by the tuple's text (property)", () => {
    const tuple = fc.record({
      proto: fc.constantFrom(6, 17, 132),
      srcIp: fc.constantFrom("10.0.0.1", "10.0.1.1", "10.0.0.11", "", "::1", "fd00::a1"),
      srcPort: fc.integer({ min: 0, max: 65535 }),
      dstIp: fc.constantFrom("10.96.0.1", "10.96.1.1", "10.96.0.11"),
      dstPort: fc.constantFrom(53, 80, 443, 65535),
    });
    const op = fc.record({ del: fc.boolean(), tuple, value: fc.integer() });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const ours = new TupleMap<number>();
        const model = new Map<string, number>();
        const text = (x: TupleView) => `${x.proto}|${x.srcIp}|${x.srcPort}|${x.dstIp}|${x.dstPort}`;
        for (const o of ops) {
          if (o.del) expect(ours.delete(o.tuple)).toBe(model.delete(text(o.tuple)));
          else {
            ours.set(o.tuple, o.value);
            model.set(text(o.tuple), o.value);
          }
          expect(ours.size).toBe(model.size);
        }
        for (const o of ops) expect(ours.get(o.tuple)).toBe(model.get(text(o.tuple)));
      }),
    );
  });

  it("compares tuples field by field", () => {
    expect(sameTuple(t("10.0.0.1", 1, "10.0.0.2", 2), t("10.0.0.1", 1, "10.0.0.2", 2))).toBe(true);
    expect(sameTuple(t("10.0.0.1", 1, "10.0.0.2", 2), t("10.0.0.2", 2, "10.0.0.1", 1))).toBe(false);
  });
});
