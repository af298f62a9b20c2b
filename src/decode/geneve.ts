import { A, type Packet, TUNNEL_GENEVE, u16 } from "./packet.js";

export const GENEVE_PORT = 6081;

/**
 * Geneve header: version, option length (4-byte words), protocol type of the inner packet
 * (0x6558 Ethernet, or an IP ethertype), VNI. Returns the inner offset and sets `etherType` to
 * the inner protocol type.
 */
export function decodeGeneve(p: Packet, off: number, end: number): number {
  const d = p.data;
  if (end - off < 8) {
    p.fail(A.truncated_geneve_header);
    return -1;
  }
  const optLen = (d[off]! & 0x3f) * 4;
  if (end - off < 8 + optLen) {
    p.fail(A.truncated_geneve_header);
    return -1;
  }
  p.tunnel = TUNNEL_GENEVE;
  p.etherType = u16(d, off + 2);
  p.vni = (d[off + 4]! << 16) | (d[off + 5]! << 8) | d[off + 6]!;
  return off + 8 + optLen;
}
