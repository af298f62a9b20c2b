import { A, DIR_IN, DIR_OUT, DIR_UNKNOWN, type Packet, u16 } from "./packet.js";

/** Linux "cooked" packet types (the sll_pkttype of packet(7)). */
export const PACKET_HOST = 0;
export const PACKET_BROADCAST = 1;
export const PACKET_MULTICAST = 2;
export const PACKET_OTHERHOST = 3;
export const PACKET_OUTGOING = 4;

/** Direction from a cooked packet type: everything but "outgoing" was received. */
export function directionOfPktType(t: number): number {
  if (t === PACKET_OUTGOING) return DIR_OUT;
  if (t >= PACKET_HOST && t <= PACKET_OTHERHOST) return DIR_IN;
  return DIR_UNKNOWN;
}

/**
 * Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113): 16 bytes — packet type, ARPHRD type,
 * address length, 8 address bytes, protocol.
 */
export function decodeSll(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 16) {
    p.fail(A.truncated_link_header);
    return -1;
  }
  p.pktType = u16(d, off);
  p.direction = directionOfPktType(p.pktType);
  p.etherType = u16(d, off + 14);
  return off + 16;
}
