import { A, type Packet, u16, u32 } from "./packet.js";
import { directionOfPktType } from "./sll.js";

/**
 * Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276), what `tcpdump -i any` writes on current
 * systems: 20 bytes — protocol, reserved, interface index, ARPHRD type, packet type, address
 * length, 8 address bytes. The interface index is what tells the legs of one packet apart.
 */
export function decodeSll2(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 20) {
    p.fail(A.truncated_link_header);
    return -1;
  }
  p.etherType = u16(d, off);
  p.ifindex = u32(d, off + 4);
  p.pktType = d[off + 10]!;
  p.direction = directionOfPktType(p.pktType);
  return off + 20;
}
