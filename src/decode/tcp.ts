import { A, type Packet, u16, u32 } from "./packet.js";

/** TCP: ports, flags, sequence and acknowledgement numbers, payload bounds. */
export function decodeTcp(p: Packet, off: number, end: number): boolean {
  const d = p.data;
  if (end - off < 20) {
    p.fail(A.truncated_tcp_header);
    return false;
  }
  const hl = (d[off + 12]! >> 4) * 4;
  if (hl < 20) {
    p.fail(A.bad_tcp_header_length, false);
    return false;
  }
  p.hasPorts = true;
  p.srcPort = u16(d, off);
  p.dstPort = u16(d, off + 2);
  p.seq = u32(d, off + 4);
  p.ack = u32(d, off + 8);
  p.tcpFlags = d[off + 13]!;
  if (end - off < hl) {
    p.fail(A.truncated_tcp_header);
    p.payloadOff = end;
    p.payloadLen = 0;
    p.wirePayloadLen = 0;
    return true;
  }
  p.payloadOff = off + hl;
  p.payloadLen = end - off - hl;
  p.wirePayloadLen = Math.max(0, p.ipLen - (off - p.ipOff) - hl);
  return true;
}
