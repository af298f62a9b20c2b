import { A, type Packet, u16 } from "./packet.js";

/** SCTP common header: ports (the verification tag and chunks are not needed for legs). */
export function decodeSctp(p: Packet, off: number, end: number): boolean {
  const d = p.data;
  if (end - off < 12) {
    p.fail(A.truncated_sctp_header);
    return false;
  }
  p.hasPorts = true;
  p.srcPort = u16(d, off);
  p.dstPort = u16(d, off + 2);
  p.payloadOff = off + 12;
  p.payloadLen = end - off - 12;
  p.wirePayloadLen = Math.max(0, p.ipLen - (off - p.ipOff) - 12);
  return true;
}
