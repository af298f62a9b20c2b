import { A, type Packet, u16 } from "./packet.js";

export function decodeUdp(p: Packet, off: number, end: number): boolean {
  const d = p.data;
  if (end - off < 8) {
    p.fail(A.truncated_udp_header);
    return false;
  }
  p.hasPorts = true;
  p.srcPort = u16(d, off);
  p.dstPort = u16(d, off + 2);
  const len = u16(d, off + 4);
  p.payloadOff = off + 8;
  // A zero length is legal for IPv6 jumbograms; trust the IP length then.
  const wire = len >= 8 ? len - 8 : Math.max(0, p.ipLen - (off - p.ipOff) - 8);
  p.wirePayloadLen = wire;
  p.payloadLen = Math.min(wire, end - off - 8);
  return true;
}
