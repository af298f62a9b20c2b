import { A, FRAG_FIRST, FRAG_LATER, type Packet, u16, u32 } from "./packet.js";

/**
 * IPv4 with options. Fills addresses, ID, TTL, protocol and the fragment state, and returns the
 * transport offset; `ipLen` bounds the transport (Ethernet padding is not payload). A later
 * fragment returns -1 with `fragment = FRAG_LATER`: it has no transport header to decode.
 */
export function decodeIPv4(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 20) {
    p.fail(A.truncated_ipv4_header);
    return -1;
  }
  const vihl = d[off]!;
  if (vihl >> 4 !== 4) {
    p.fail(A.bad_ip_version, false);
    return -1;
  }
  const ihl = (vihl & 0x0f) * 4;
  const total = u16(d, off + 2);
  if (ihl < 20 || total < ihl) {
    p.fail(A.bad_ipv4_header_length, false);
    return -1;
  }
  if (p.end - off < ihl) {
    p.fail(A.truncated_ipv4_header);
    return -1;
  }
  p.ipVersion = 4;
  p.ipOff = off;
  p.ipLen = total;
  p.ipId = u16(d, off + 4);
  p.ttl = d[off + 8]!;
  p.proto = d[off + 9]!;
  p.src4 = u32(d, off + 12);
  p.dst4 = u32(d, off + 16);
  p.src6 = -1;
  p.dst6 = -1;
  const fragField = u16(d, off + 6);
  const fragOffset = fragField & 0x1fff;
  const more = (fragField & 0x2000) !== 0;
  if (fragOffset !== 0) {
    p.fragment = FRAG_LATER;
    p.fail(A.ipv4_later_fragment, false);
    return -1;
  }
  if (more) p.fragment = FRAG_FIRST;
  return off + ihl;
}

/** End of the IP packet's bytes in the frame: the header's length, cut by the capture. */
export function ipEnd(p: Packet): number {
  return Math.min(p.end, p.ipOff + p.ipLen);
}
