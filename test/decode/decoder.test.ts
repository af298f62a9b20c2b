import { describe, expect, it } from "vitest";
import { decodePacket } from "../../src/decode/decoder.js";
import { parseDns } from "../../src/decode/dns.js";
import {
  ANOMALY_NAMES,
  DIR_IN,
  DIR_OUT,
  FRAG_FIRST,
  FRAG_LATER,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
  Packet,
  TCP_ACK,
  TCP_SYN,
  TUNNEL_GENEVE,
  TUNNEL_IPIP,
  TUNNEL_NONE,
  TUNNEL_VXLAN,
} from "../../src/decode/packet.js";
import { formatIPv4, formatIPv6 } from "../../src/util/ip.js";
import { bytes, eth, ip4, ipv4, ipv6, tcp, u16, u32, udp } from "./build.js";

const p = new Packet();
const anomaly = () => ANOMALY_NAMES[p.anomaly];
const src = () => (p.ipVersion === 4 ? formatIPv4(p.src4) : formatIPv6(p.data, p.src6));
const dst = () => (p.ipVersion === 4 ? formatIPv4(p.dst4) : formatIPv6(p.data, p.dst6));

const tcpSyn = () => bytes(ipv4(6, "10.0.0.1", "10.96.0.1", 20), tcp(40000, 80, TCP_SYN, 7, 0));

describe("link layers", () => {
  it("Ethernet II", () => {
    decodePacket(p, bytes(eth(0x0800), tcpSyn()), LINKTYPE_ETHERNET);
    expect([src(), p.srcPort, dst(), p.dstPort, p.proto, p.tcpFlags, p.seq]).toEqual([
      "10.0.0.1",
      40000,
      "10.96.0.1",
      80,
      6,
      TCP_SYN,
      7,
    ]);
    expect(p.anomaly).toBe(0);
  });

  it("802.1Q and QinQ tags", () => {
    decodePacket(p, bytes(eth(0x0800, [0x8100, 42]), tcpSyn()), LINKTYPE_ETHERNET);
    expect([p.vlan, p.dstPort]).toEqual([42, 80]);
    decodePacket(p, bytes(eth(0x0800, [0x88a8, 100], [0x8100, 7]), tcpSyn()), LINKTYPE_ETHERNET);
    expect([p.vlan, p.dstPort]).toEqual([7, 80]);
  });

  it("Ethernet padding is not payload", () => {
    const frame = bytes(
      eth(0x0800),
      ipv4(17, "1.1.1.1", "2.2.2.2", 9),
      udp(1, 2, 1),
      [0x41],
      new Uint8Array(17),
    );
    decodePacket(p, frame, LINKTYPE_ETHERNET);
    expect([p.payloadLen, p.wirePayloadLen]).toEqual([1, 1]);
  });

  it("Linux SLL: packet type gives the direction", () => {
    const sll = (type: number) => [
      ...u16(type),
      ...u16(1),
      ...u16(6),
      1,
      2,
      3,
      4,
      5,
      6,
      0,
      0,
      ...u16(0x0800),
    ];
    decodePacket(p, bytes(sll(0), tcpSyn()), LINKTYPE_LINUX_SLL);
    expect([p.direction, p.pktType, p.dstPort]).toEqual([DIR_IN, 0, 80]);
    decodePacket(p, bytes(sll(4), tcpSyn()), LINKTYPE_LINUX_SLL);
    expect(p.direction).toBe(DIR_OUT);
  });

  it("Linux SLL2: interface index and packet type", () => {
    const sll2 = [...u16(0x0800), 0, 0, ...u32(7), ...u16(1), 4, 6, 1, 2, 3, 4, 5, 6, 0, 0];
    decodePacket(p, bytes(sll2, tcpSyn()), LINKTYPE_LINUX_SLL2);
    expect([p.ifindex, p.pktType, p.direction, p.dstPort]).toEqual([7, 4, DIR_OUT, 80]);
  });

  it("BSD null (host order either way) and loop (network order)", () => {
    decodePacket(p, bytes([2, 0, 0, 0], tcpSyn()), LINKTYPE_NULL);
    expect(p.dstPort).toBe(80);
    decodePacket(p, bytes([0, 0, 0, 2], tcpSyn()), LINKTYPE_NULL);
    expect(p.dstPort).toBe(80);
    decodePacket(p, bytes([0, 0, 0, 30], ipv6(6, 20), tcp(1, 2, TCP_SYN)), LINKTYPE_LOOP);
    expect([p.ipVersion, p.dstPort]).toEqual([6, 2]);
    decodePacket(p, bytes([30, 0, 0, 0], ipv6(6, 20), tcp(1, 2, TCP_SYN)), LINKTYPE_NULL);
    expect([p.ipVersion, p.dstPort]).toEqual([6, 2]);
  });

  it("raw IP by version nibble", () => {
    decodePacket(p, tcpSyn(), LINKTYPE_RAW);
    expect(p.dstPort).toBe(80);
    decodePacket(p, tcpSyn(), LINKTYPE_IPV4);
    expect(p.dstPort).toBe(80);
    decodePacket(p, bytes(ipv6(17, 9), udp(5, 53, 1), [0]), LINKTYPE_RAW);
    expect([p.ipVersion, src(), dst(), p.dstPort]).toEqual([6, "fd00::1", "fd00::2", 53]);
  });

  it("unknown link types and cut link headers are anomalies, not exceptions", () => {
    decodePacket(p, tcpSyn(), 9999);
    expect(anomaly()).toBe("unknown_link_type");
    decodePacket(p, new Uint8Array(10), LINKTYPE_ETHERNET);
    expect(anomaly()).toBe("truncated_link_header");
    decodePacket(p, bytes(eth(0x0800, [0x8100, 1])).subarray(0, 16), LINKTYPE_ETHERNET);
    expect(anomaly()).toBe("truncated_vlan_header");
    decodePacket(p, new Uint8Array(19), LINKTYPE_LINUX_SLL2);
    expect(anomaly()).toBe("truncated_link_header");
  });
});

describe("IPv4", () => {
  it("options are skipped", () => {
    decodePacket(
      p,
      bytes(ipv4(6, "10.0.0.1", "10.0.0.2", 20, { optionsWords: 2 }), tcp(1, 2, TCP_SYN)),
      LINKTYPE_RAW,
    );
    expect([p.proto, p.srcPort, p.dstPort]).toEqual([6, 1, 2]);
  });

  it("first fragment decoded, later fragments counted", () => {
    decodePacket(
      p,
      bytes(
        ipv4(17, "10.0.0.1", "10.0.0.2", 16, { frag: 0x2000 }),
        udp(1, 2, 100),
        new Uint8Array(8),
      ),
      LINKTYPE_RAW,
    );
    expect([p.fragment, p.srcPort, p.dstPort]).toEqual([FRAG_FIRST, 1, 2]);
    decodePacket(
      p,
      bytes(ipv4(17, "10.0.0.1", "10.0.0.2", 8, { frag: 2 }), new Uint8Array(8)),
      LINKTYPE_RAW,
    );
    expect([p.fragment, p.hasPorts, anomaly()]).toEqual([FRAG_LATER, false, "ipv4_later_fragment"]);
  });

  it("truncations and bad headers", () => {
    decodePacket(p, tcpSyn().subarray(0, 19), LINKTYPE_RAW);
    expect([anomaly(), p.truncated]).toEqual(["truncated_ipv4_header", true]);
    const bad = tcpSyn();
    bad[0] = 0x44;
    decodePacket(p, bad, LINKTYPE_RAW);
    expect(anomaly()).toBe("bad_ipv4_header_length");
    decodePacket(p, tcpSyn().subarray(0, 30), LINKTYPE_RAW);
    expect([anomaly(), p.hasPorts]).toEqual(["truncated_tcp_header", false]);
    decodePacket(
      p,
      bytes(eth(0x0800), ipv4(17, "1.1.1.1", "2.2.2.2", 8)).subarray(0, 40),
      LINKTYPE_ETHERNET,
    );
    expect(anomaly()).toBe("truncated_udp_header");
    decodePacket(p, bytes(ipv4(132, "1.1.1.1", "2.2.2.2", 12), [0, 1]), LINKTYPE_RAW);
    expect(anomaly()).toBe("truncated_sctp_header");
  });

  it("snap-length cut payloads keep the wire length", () => {
    decodePacket(
      p,
      bytes(ipv4(6, "1.1.1.1", "2.2.2.2", 20 + 1000), tcp(1, 2, TCP_ACK), new Uint8Array(100)),
      LINKTYPE_RAW,
    );
    expect([p.payloadLen, p.wirePayloadLen, p.anomaly]).toEqual([100, 1000, 0]);
  });
});

describe("IPv6", () => {
  it("walks extension headers to the transport", () => {
    const hop = [44 /* next: fragment */, 0, 0, 0, 0, 0, 0, 0];
    const frag = [6, 0, 0, 1 /* offset 0, M */, 0, 0, 0, 9];
    decodePacket(p, bytes(ipv6(0, 16 + 20), hop, frag, tcp(5, 6, TCP_SYN)), LINKTYPE_RAW);
    expect([p.proto, p.srcPort, p.dstPort, p.fragment, p.ipId]).toEqual([6, 5, 6, FRAG_FIRST, 9]);
  });

  it("later fragments are counted; cut extension headers are anomalies", () => {
    const frag = [17, 0, 0, 0x10, 0, 0, 0, 9];
    decodePacket(p, bytes(ipv6(44, 8 + 8), frag, new Uint8Array(8)), LINKTYPE_RAW);
    expect([p.fragment, anomaly()]).toEqual([FRAG_LATER, "ipv6_later_fragment"]);
    decodePacket(p, bytes(ipv6(60, 8), [6, 0, 0]), LINKTYPE_RAW);
    expect(anomaly()).toBe("truncated_ipv6_extension_header");
    decodePacket(p, bytes(ipv6(6, 20)).subarray(0, 39), LINKTYPE_RAW);
    expect(anomaly()).toBe("truncated_ipv6_header");
  });
});

describe("ICMP errors carry the quoted tuple", () => {
  it("ICMPv4 port unreachable", () => {
    const quoted = bytes(ipv4(17, "10.0.0.1", "10.96.0.10", 12), udp(40053, 53, 4));
    const icmp = bytes([3, 3, 0, 0, 0, 0, 0, 0], quoted);
    decodePacket(p, bytes(ipv4(1, "10.0.0.9", "10.0.0.1", icmp.length), icmp), LINKTYPE_RAW);
    expect([p.icmpType, p.icmpCode, p.quoted, p.qProto]).toEqual([3, 3, true, 17]);
    expect([formatIPv4(p.qSrc4), p.qSrcPort, formatIPv4(p.qDst4), p.qDstPort]).toEqual([
      "10.0.0.1",
      40053,
      "10.96.0.10",
      53,
    ]);
  });

  it("ICMPv6 destination unreachable", () => {
    const quoted = bytes(ipv6(6, 20, 1, 2), tcp(33000, 443, TCP_SYN));
    const icmp = bytes([1, 4, 0, 0, 0, 0, 0, 0], quoted);
    decodePacket(p, bytes(ipv6(58, icmp.length, 2, 1), icmp), LINKTYPE_RAW);
    expect([p.icmpType, p.quoted, p.qProto, p.qSrcPort, p.qDstPort]).toEqual([
      1,
      true,
      6,
      33000,
      443,
    ]);
    expect(formatIPv6(p.data, p.qDst6)).toBe("fd00::2");
  });

  it("echo keeps its identifier; a cut quote is an anomaly", () => {
    decodePacket(
      p,
      bytes(ipv4(1, "1.1.1.1", "2.2.2.2", 8), [8, 0, 0, 0, 0x12, 0x34, 0, 1]),
      LINKTYPE_RAW,
    );
    expect([p.icmpType, p.icmpId, p.quoted]).toEqual([8, 0x1234, false]);
    decodePacket(
      p,
      bytes(ipv4(1, "1.1.1.1", "2.2.2.2", 12), [3, 1, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 0]),
      LINKTYPE_RAW,
    );
    expect([p.quoted, anomaly()]).toEqual([false, "truncated_icmp_quoted_header"]);
  });
});

describe("tunnels: the inner packet, outer addresses as context", () => {
  const inner = () =>
    bytes(eth(0x0800), ipv4(6, "10.244.1.5", "10.244.2.7", 20), tcp(45000, 8080, TCP_SYN));

  it("VXLAN on 4789 and 8472", () => {
    for (const port of [4789, 8472]) {
      const vx = bytes([0x08, 0, 0, 0, 0, 0, 1, 0], inner());
      decodePacket(
        p,
        bytes(
          ipv4(17, "192.168.0.1", "192.168.0.2", 8 + vx.length),
          udp(5555, port, vx.length),
          vx,
        ),
        LINKTYPE_RAW,
      );
      expect([p.tunnel, p.vni, src(), dst(), p.dstPort]).toEqual([
        TUNNEL_VXLAN,
        1,
        "10.244.1.5",
        "10.244.2.7",
        8080,
      ]);
      expect([formatIPv4(p.outerSrc4), formatIPv4(p.outerDst4)]).toEqual([
        "192.168.0.1",
        "192.168.0.2",
      ]);
    }
  });

  it("Geneve with options, Ethernet payload", () => {
    const gen = bytes([0x01, 0, ...u16(0x6558), 0, 0, 5, 0], [0, 0, 0, 0], inner());
    decodePacket(
      p,
      bytes(
        ipv4(17, "192.168.0.1", "192.168.0.2", 8 + gen.length),
        udp(5555, 6081, gen.length),
        gen,
      ),
      LINKTYPE_RAW,
    );
    expect([p.tunnel, p.vni, src(), p.dstPort]).toEqual([TUNNEL_GENEVE, 5, "10.244.1.5", 8080]);
  });

  it("IP-in-IP", () => {
    const innerIp = bytes(ipv4(17, "10.244.1.5", "10.96.0.10", 9), udp(1000, 53, 1), [0]);
    decodePacket(
      p,
      bytes(ipv4(4, "192.168.0.1", "192.168.0.2", innerIp.length), innerIp),
      LINKTYPE_RAW,
    );
    expect([p.tunnel, src(), dst(), p.dstPort, formatIPv4(p.outerSrc4)]).toEqual([
      TUNNEL_IPIP,
      "10.244.1.5",
      "10.96.0.10",
      53,
      "192.168.0.1",
    ]);
  });

  it("a cut VXLAN header leaves the outer UDP packet", () => {
    decodePacket(
      p,
      bytes(ipv4(17, "192.168.0.1", "192.168.0.2", 12), udp(1, 4789, 4), [8, 0, 0, 0]),
      LINKTYPE_RAW,
    );
    expect([p.tunnel, p.dstPort, anomaly()]).toEqual([TUNNEL_NONE, 4789, "truncated_vxlan_header"]);
  });
});

describe("SCTP and DNS", () => {
  it("SCTP ports", () => {
    decodePacket(
      p,
      bytes(ipv4(132, "1.1.1.1", "2.2.2.2", 12), u16(3868), u16(3869), u32(1), u32(0)),
      LINKTYPE_RAW,
    );
    expect([p.proto, p.srcPort, p.dstPort]).toEqual([132, 3868, 3869]);
  });

  it("DNS over UDP and TCP (length-prefixed), and garbage", () => {
    const q = bytes(
      [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
      [3, ...Buffer.from("svc"), 0],
      u16(1),
      u16(1),
    );
    expect(parseDns(q, false)).toMatchObject({
      id: 0x1234,
      isResponse: false,
      qname: "svc",
      qtype: "A",
      rcode: null,
    });
    const r = bytes(
      [0x12, 0x34, 0x81, 0x83, 0, 1, 0, 1, 0, 0, 0, 0],
      [3, ...Buffer.from("svc"), 0],
      u16(1),
      u16(1),
      [0xc0, 0x0c],
      u16(1),
      u16(1),
      u32(30),
      u16(4),
      ip4("10.96.0.10"),
    );
    expect(parseDns(bytes(u16(r.length), r), true)).toMatchObject({
      isResponse: true,
      rcode: "NXDOMAIN",
      answers: [{ name: "svc", type: "A", ttl: 30, data: "10.96.0.10" }],
    });
    expect(parseDns(new Uint8Array(5), false)).toBeNull();
    expect(parseDns(bytes(u16(100), r), true)).toBeNull();
  });
});
