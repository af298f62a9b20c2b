import { A, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, type Packet, u16, u32 } from "./packet.js";

/** ICMP types whose body quotes the offending packet's IP header and 8 bytes after it. */
export function isIcmpError(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * ICMP (v4): type, code, echo identifier, and for error messages the quoted packet's tuple, so a
 * port unreachable can be tied to the leg it answers.
 */
export function decodeIcmp(p: Packet, off: number, end: number): boolean {
  const type = decodeIcmpHeader(p, off, end);
  if (type < 0) return false;
  if (type === 0 || type === 8) p.icmpId = u16(p.data, off + 4);
  else if (isIcmpError(type)) decodeQuotedIPv4(p, off + 8, end);
  return true;
}

/**
 * The 8-byte header ICMP and ICMPv6 share: type, code, and the body as payload. Returns the
 * type, or -1 (with the anomaly counted) when the header is cut.
 */
export function decodeIcmpHeader(p: Packet, off: number, end: number): number {
  const d = p.data;
  if (end - off < 8) {
    if (end - off >= 2) {
      p.icmpType = d[off]!;
      p.icmpCode = d[off + 1]!;
    }
    p.fail(A.truncated_icmp_header);
    return -1;
  }
  const type = d[off]!;
  p.icmpType = type;
  p.icmpCode = d[off + 1]!;
  p.payloadOff = off + 8;
  p.payloadLen = end - off - 8;
  p.wirePayloadLen = Math.max(0, p.ipLen - (off - p.ipOff) - 8);
  return type;
}

function decodeQuotedIPv4(p: Packet, off: number, end: number): void {
  const d = p.data;
  if (end - off < 20 || d[off]! >> 4 !== 4) {
    p.fail(A.truncated_icmp_quoted_header, false);
    return;
  }
  const ihl = (d[off]! & 0x0f) * 4;
  p.quoted = true;
  p.qVersion = 4;
  p.qProto = d[off + 9]!;
  p.qSrc4 = u32(d, off + 12);
  p.qDst4 = u32(d, off + 16);
  const t = off + ihl;
  if (p.qProto === IPPROTO_TCP || p.qProto === IPPROTO_UDP || p.qProto === IPPROTO_SCTP) {
    if (end - t < 4) {
      p.fail(A.truncated_icmp_quoted_header, false);
      return;
    }
    p.qSrcPort = u16(d, t);
    p.qDstPort = u16(d, t + 2);
  }
}
