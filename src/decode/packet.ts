/**
 * The decoded view of one frame, filled in place by the decoders (gopacket's DecodingLayerParser
 * idea): the caller owns one `Packet` and reuses it for every frame, so decoding allocates
 * nothing. IPv4 addresses are uint32; IPv6 addresses are offsets of their 16 bytes in `data`.
 * Problems never throw: `anomaly` names the first one and `truncated` says the headers were cut.
 */

export const DIR_UNKNOWN = 0;
/** Received: to this host, or arriving to be forwarded. */
export const DIR_IN = 1;
/** Sent: from this host, or leaving after forwarding. */
export const DIR_OUT = 2;

export const TUNNEL_NONE = 0;
export const TUNNEL_VXLAN = 1;
export const TUNNEL_GENEVE = 2;
export const TUNNEL_IPIP = 3;

export const FRAG_NONE = 0;
/** First fragment (offset 0, more fragments): headers present, decoded. */
export const FRAG_FIRST = 1;
/** A later fragment: no transport header; counted, not decoded. */
export const FRAG_LATER = 2;

/** Anomaly names (Zeek "weird" style), indexed by the numbers the decoders set. */
export const ANOMALY_NAMES = [
  "none",
  "truncated_link_header",
  "unknown_link_type",
  "truncated_vlan_header",
  "truncated_ipv4_header",
  "bad_ipv4_header_length",
  "bad_ip_version",
  "truncated_ipv6_header",
  "truncated_ipv6_extension_header",
  "truncated_tcp_header",
  "bad_tcp_header_length",
  "truncated_udp_header",
  "truncated_sctp_header",
  "truncated_icmp_header",
  "truncated_icmp_quoted_header",
  "truncated_vxlan_header",
  "truncated_geneve_header",
  "nested_tunnel",
  "ip_length_exceeds_frame",
  "ipv4_later_fragment",
  "ipv6_later_fragment",
] as const;
export type AnomalyName = (typeof ANOMALY_NAMES)[number];
export const A = Object.fromEntries(ANOMALY_NAMES.map((n, i) => [n, i])) as Record<
  AnomalyName,
  number
>;

export class Packet {
  /**
   * The buffer holding the frame at [start, end); every offset below indexes `data` directly, so
   * a reader's buffer can be decoded in place without a view per packet.
   */
  data: Uint8Array = new Uint8Array(0);
  start = 0;
  end = 0;
  linkType = 0;
  direction = DIR_UNKNOWN;
  /** SLL2 interface index, or -1. */
  ifindex = -1;
  /** SLL/SLL2 packet type (0 host … 4 outgoing), or -1. */
  pktType = -1;
  /** Innermost ethertype seen (0x0800, 0x86dd, 0x0806 …), or -1 when the link has none. */
  etherType = -1;
  vlan = -1;

  /** 0 when no IP layer was decoded. */
  ipVersion = 0;
  ipOff = 0;
  /** IP packet length from its header (IPv4 total length, IPv6 40 + payload length). */
  ipLen = 0;
  src4 = 0;
  dst4 = 0;
  /** Offsets of IPv6 addresses in data, -1 for IPv4. */
  src6 = -1;
  dst6 = -1;
  ipId = 0;
  ttl = 0;
  /** Transport protocol number (after IPv6 extension headers), -1 when none. */
  proto = -1;
  fragment = FRAG_NONE;

  /** true when srcPort/dstPort are meaningful (TCP, UDP, SCTP). */
  hasPorts = false;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
  seq = 0;
  ack = 0;
  /** Transport payload (bytes actually captured from payloadOff). */
  payloadOff = 0;
  payloadLen = 0;
  /** Payload length according to the headers (the snap length may have cut the capture). */
  wirePayloadLen = 0;

  icmpType = -1;
  icmpCode = -1;
  /** ICMP echo identifier / sequence, -1 when not an echo. */
  icmpId = -1;

  /** An ICMP error quoting an earlier packet's headers: the quoted tuple. */
  quoted = false;
  qVersion = 0;
  qProto = -1;
  qSrc4 = 0;
  qDst4 = 0;
  qSrc6 = -1;
  qDst6 = -1;
  qSrcPort = 0;
  qDstPort = 0;

  /** Tunnel the IP layer was found in; outer addresses kept as context. */
  tunnel = TUNNEL_NONE;
  outerVersion = 0;
  outerSrc4 = 0;
  outerDst4 = 0;
  outerSrc6 = -1;
  outerDst6 = -1;
  vni = -1;

  anomaly = 0;
  truncated = false;

  reset(data: Uint8Array, linkType: number, start = 0, end = data.length): void {
    this.data = data;
    this.start = start;
    this.end = end;
    this.linkType = linkType;
    this.direction = DIR_UNKNOWN;
    this.ifindex = -1;
    this.pktType = -1;
    this.etherType = -1;
    this.vlan = -1;
    this.resetNetwork();
    this.tunnel = TUNNEL_NONE;
    this.outerVersion = 0;
    this.outerSrc4 = 0;
    this.outerDst4 = 0;
    this.outerSrc6 = -1;
    this.outerDst6 = -1;
    this.vni = -1;
    this.anomaly = 0;
    this.truncated = false;
  }

  resetNetwork(): void {
    this.ipVersion = 0;
    this.ipOff = 0;
    this.ipLen = 0;
    this.src4 = 0;
    this.dst4 = 0;
    this.src6 = -1;
    this.dst6 = -1;
    this.ipId = 0;
    this.ttl = 0;
    this.proto = -1;
    this.fragment = FRAG_NONE;
    this.hasPorts = false;
    this.srcPort = 0;
    this.dstPort = 0;
    this.tcpFlags = 0;
    this.seq = 0;
    this.ack = 0;
    this.payloadOff = 0;
    this.payloadLen = 0;
    this.wirePayloadLen = 0;
    this.icmpType = -1;
    this.icmpCode = -1;
    this.icmpId = -1;
    this.quoted = false;
    this.qVersion = 0;
    this.qProto = -1;
    this.qSrc4 = 0;
    this.qDst4 = 0;
    this.qSrc6 = -1;
    this.qDst6 = -1;
    this.qSrcPort = 0;
    this.qDstPort = 0;
  }

  /** Record the first problem; later ones are consequences. */
  fail(anomaly: number, truncated = true): void {
    if (this.anomaly === 0) this.anomaly = anomaly;
    if (truncated) this.truncated = true;
  }
}

/** Big-endian reads on a Uint8Array without a DataView (bounds are the caller's job). */
export function u16(d: Uint8Array, o: number): number {
  return (d[o]! << 8) | d[o + 1]!;
}

export function u32(d: Uint8Array, o: number): number {
  return ((d[o]! << 24) | (d[o + 1]! << 16) | (d[o + 2]! << 8) | d[o + 3]!) >>> 0;
}

/** Link types (LINKTYPE_* numbers as pcap files carry them). */
export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW_BSD = 12;
export const LINKTYPE_RAW_BSD14 = 14;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_QINQ_OLD = 0x9100;
export const ETHERTYPE_TEB = 0x6558;

export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_SCTP = 132;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
