import {
  A,
  ETHERTYPE_QINQ,
  ETHERTYPE_QINQ_OLD,
  ETHERTYPE_VLAN,
  type Packet,
  u16,
} from "./packet.js";

/**
 * Ethernet II with any stack of 802.1Q / 802.1ad (QinQ) tags. Sets `etherType` (and `vlan`, the
 * innermost tag) and returns the offset of the payload, or -1 when the header is cut.
 */
export function decodeEthernet(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 14) {
    p.fail(A.truncated_link_header);
    return -1;
  }
  let type = u16(d, off + 12);
  off += 14;
  while (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ || type === ETHERTYPE_QINQ_OLD) {
    if (p.end - off < 4) {
      p.fail(A.truncated_vlan_header);
      return -1;
    }
    p.vlan = u16(d, off) & 0x0fff;
    type = u16(d, off + 2);
    off += 4;
  }
  p.etherType = type;
  return off;
}
