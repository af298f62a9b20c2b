/**
 * What the flow layer hands to the store: one record per leg, per observed translation, per DNS
 * message. These are produced when a leg closes (not per packet), so strings are fine here.
 * Times are epoch seconds as floats (ns precision is kept in the *Ns fields where it matters).
 */

/** IP protocol numbers we track. */
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;

export interface Endpoint4 {
  ip: string;
  port: number;
}

export interface Tuple {
  proto: number;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

/**
 * One conversation (both directions) at one observation point: capture × interface × 5-tuple.
 * `orig` is the originator (SYN sender for TCP, else the first sender).
 */
export interface LegRecord {
  /** Capture-local interface index (pcapng IDB order across sections, or SLL2 ifindex-derived). */
  interfaceId: number;
  proto: number;
  origIp: string;
  origPort: number;
  respIp: string;
  respPort: number;
  firstTs: number;
  lastTs: number;
  origPackets: number;
  origBytes: number;
  respPackets: number;
  respBytes: number;
  /** Zeek conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH. */
  connState: string;
  /** Zeek history letters (ShADadFfRr…), orig upper case, resp lower case. */
  history: string;
  /** Community ID v1 ("1:…base64…"), seed 0. */
  communityId: string;
  /**
   * Packet direction at the capture point for the originator's first packet, from SLL/SLL2 packet
   * type or pcapng EPB flags: "in" (to this host, or forwarded in), "out" (sent/forwarded out),
   * or "unknown".
   */
  direction: "in" | "out" | "unknown";
  /** Fingerprint of the originator's first packet (IPv4 ID / TCP seq / payload hash), hex. */
  fingerprint: string;
  /** Outer addresses when the leg was seen inside a tunnel (VXLAN, Geneve, IP-in-IP); else null. */
  tunnel: {
    kind: "vxlan" | "geneve" | "ipip";
    outerSrc: string;
    outerDst: string;
    vni: number | null;
  } | null;
  /** ICMP errors that quoted a packet of this leg (port unreachable, …), counted by type/code "3/3". */
  icmpErrors: Record<string, number>;
}

/**
 * The same packet seen twice in one capture with a different tuple: a NAT translation.
 * `pre` is the tuple of the earlier (ingress / pre-NAT) copy, `post` of the later copy, both in
 * the originator's direction.
 */
export interface TranslationRecord {
  interfaceIn: number;
  interfaceOut: number;
  pre: Tuple;
  post: Tuple;
  kind: "dnat" | "snat" | "both";
  packets: number;
  firstTs: number;
  lastTs: number;
}

export interface DnsAnswer {
  name: string;
  /** "A", "AAAA", "CNAME", "SRV", … */
  type: string;
  ttl: number;
  /** Address, target name, or "priority weight port target" for SRV. */
  data: string;
}

export interface DnsRecord {
  ts: number;
  interfaceId: number;
  proto: number;
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
  id: number;
  isResponse: boolean;
  qname: string;
  qtype: string;
  /** "NOERROR", "NXDOMAIN", … (responses only; null for queries). */
  rcode: string | null;
  answers: DnsAnswer[];
}
