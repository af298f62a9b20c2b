import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nodeFromPath, timeFromFileName } from "../../src/ingest/naming.js";

describe("nodeFromPath", () => {
  it("takes the node from a bundle's nodes/<node>/ folder", () => {
    expect(nodeFromPath(join("b", "nodes", "worker-1", "any.pcap"))).toBe("worker-1");
    expect(nodeFromPath(join("/x", "nodes", "ip-10-0-1-5.ec2.internal", "iptables-1.save"))).toBe(
      "ip-10-0-1-5.ec2.internal",
    );
  });

  it("takes a lab client's name from clients/<client>/", () => {
    expect(nodeFromPath(join("b", "clients", "ext", "ext.pcap"))).toBe("ext");
  });

  it("else the file name up to its first dot", () => {
    expect(nodeFromPath("node1.pcap.gz")).toBe("node1");
    expect(nodeFromPath(join("/tmp", "worker-2.iptables"))).toBe("worker-2");
    expect(nodeFromPath("captures/n3")).toBe("n3");
    // A folder called nodes with the file directly in it names no node.
    expect(nodeFromPath(join("nodes", "n4.pcap"))).toBe("n4");
  });
});

describe("timeFromFileName", () => {
  it("reads ISO times, with colons or dashes, and compact ones, as UTC by default", () => {
    expect(timeFromFileName("iptables-2026-11-25T16-31-59Z.save")).toBe(
      Date.UTC(2026, 10, 25, 16, 31, 59) / 1000,
    );
    expect(timeFromFileName("inventory/2026-11-25T16:31:59.5Z.json")).toBe(
      Date.UTC(2026, 10, 25, 16, 31, 59, 500) / 1000,
    );
    expect(timeFromFileName("conntrack-20261125T163159Z.txt")).toBe(
      Date.UTC(2026, 10, 25, 16, 31, 59) / 1000,
    );
    expect(timeFromFileName("x-2026-11-25T17-31-59+01:00.save")).toBe(
      Date.UTC(2026, 10, 25, 16, 31, 59) / 1000,
    );
  });

  it("reads epoch seconds, and finds nothing in other names", () => {
    expect(timeFromFileName("1764088319.json")).toBe(1764088319);
    expect(timeFromFileName("iptables-1764088319.5.save")).toBe(1764088319.5);
    expect(timeFromFileName("node1.iptables")).toBeNull();
    expect(timeFromFileName("any.pcap")).toBeNull();
  });
});
