import { describe, expect, it } from "vitest";
import {
  cidrContains,
  formatIPv4,
  formatIPv6,
  normalizeIP,
  parseAddrPort,
  parseCidr,
  parseIPv4,
  parseIPv6,
} from "../../src/util/ip.js";

describe("ip", () => {
  it("parses and formats IPv4", () => {
    expect(parseIPv4("10.96.0.10")).toBe(0x0a60000a);
    expect(formatIPv4(0x0a60000a)).toBe("10.96.0.10");
    expect(parseIPv4("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "a.b.c.d", "1.2.3.4 "]) {
      expect(parseIPv4(bad), bad).toBe(-1);
    }
  });

  it("parses and formats IPv6 per RFC 5952", () => {
    expect(formatIPv6(parseIPv6("2001:db8:0:0:0:0:0:1")!)).toBe("2001:db8::1");
    expect(formatIPv6(parseIPv6("::")!)).toBe("::");
    expect(formatIPv6(parseIPv6("fd00:10:96::a")!)).toBe("fd00:10:96::a");
    expect(formatIPv6(parseIPv6("2001:db8:0:1:1:1:1:1")!)).toBe("2001:db8:0:1:1:1:1:1");
    expect(formatIPv6(parseIPv6("::ffff:10.0.0.1")!)).toBe("::ffff:10.0.0.1");
    expect(parseIPv6("1:2:3")).toBeNull();
    expect(parseIPv6("1::2::3")).toBeNull();
    expect(normalizeIP("2001:DB8::0:1")).toBe("2001:db8::1");
  });

  it("parses CIDRs, including dotted masks", () => {
    const c = parseCidr("10.0.0.0/255.0.0.0")!;
    expect(c.prefix).toBe(8);
    expect(cidrContains(c, "10.9.9.9")).toBe(true);
    expect(cidrContains(c, "11.0.0.0")).toBe(false);
    expect(cidrContains(parseCidr("0.0.0.0/0")!, "1.2.3.4")).toBe(true);
    expect(cidrContains(parseCidr("fd00::/8")!, "fd12::1")).toBe(true);
    expect(cidrContains(parseCidr("fd00::/8")!, "fe00::1")).toBe(false);
    expect(parseCidr("10.0.0.1/33")).toBeNull();
  });

  it("parses address:port in both families", () => {
    expect(parseAddrPort("10.0.0.1:80")).toEqual({ ip: "10.0.0.1", port: 80 });
    expect(parseAddrPort("[fd00::1]:443")).toEqual({ ip: "fd00::1", port: 443 });
    expect(parseAddrPort("fd00::1:443")).toBeNull();
    expect(parseAddrPort("10.0.0.1:70000")).toBeNull();
  });
});
