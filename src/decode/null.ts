import { A, ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_LOOP, type Packet, u32 } from "./packet.js";

/**
 * BSD loopback: a 4-byte address family. LINKTYPE_NULL (0) stores it in the capturing host's
 * byte order, LINKTYPE_LOOP (108) in network order. AF_INET is 2 everywhere; AF_INET6 is 10
 * (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
 */
export function decodeNull(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 4) {
    p.fail(A.truncated_link_header);
    return -1;
  }
  let af = u32(d, off);
  // A host-order value written on a little-endian machine shows up byte-swapped.
  if (p.linkType !== LINKTYPE_LOOP && (af & 0xffff) === 0) af = af >>> 24;
  if (af === 2) p.etherType = ETHERTYPE_IPV4;
  else if (af === 10 || af === 24 || af === 28 || af === 30) p.etherType = ETHERTYPE_IPV6;
  else p.etherType = -1;
  return off + 4;
}

/** Raw IP (LINKTYPE_RAW 101 and the BSD 12/14, IPv4 228, IPv6 229): the version nibble decides. */
export function decodeRawIp(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 1) {
    p.fail(A.truncated_link_header);
    return -1;
  }
  const v = d[off]! >> 4;
  p.etherType = v === 4 ? ETHERTYPE_IPV4 : v === 6 ? ETHERTYPE_IPV6 : -1;
  return off;
}
