import { decodeIcmpHeader } from "./icmp.js";
import { A, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, type Packet, u16 } from "./packet.js";

/** ICMPv6 error types (destination unreachable, packet too big, time exceeded, parameter problem). */
export function isIcmpv6Error(type: number): boolean {
  return type >= 1 && type <= 4;
}

export function decodeIcmpv6(p: Packet, off: number, end: number): boolean {
  const type = decodeIcmpHeader(p, off, end);
  if (type < 0) return false;
  if (type === 128 || type === 129) p.icmpId = u16(p.data, off + 4);
  else if (isIcmpv6Error(type)) decodeQuotedIPv6(p, off + 8, end);
  return true;
}

function decodeQuotedIPv6(p: Packet, off: number, end: number): void {
  const d = p.data;
  if (end - off < 40 || d[off]! >> 4 !== 6) {
    p.fail(A.truncated_icmp_quoted_header, false);
    return;
  }
  p.quoted = true;
  p.qVersion = 6;
  p.qSrc6 = off + 8;
  p.qDst6 = off + 24;
  // Quoted extension headers are rare; walk the common ones so the ports are found anyway.
  let next = d[off + 6]!;
  let o = off + 40;
  while ((next === 0 || next === 43 || next === 60 || next === 44) && end - o >= 8) {
    const hdrLen = next === 44 ? 8 : (d[o + 1]! + 1) * 8;
    next = d[o]!;
    o += hdrLen;
  }
  p.qProto = next;
  if (next === IPPROTO_TCP || next === IPPROTO_UDP || next === IPPROTO_SCTP) {
    if (end - o < 4) {
      p.fail(A.truncated_icmp_quoted_header, false);
      return;
    }
    p.qSrcPort = u16(d, o);
    p.qDstPort = u16(d, o + 2);
  }
}
