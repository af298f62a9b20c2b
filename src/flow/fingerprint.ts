import { IPPROTO_TCP, type Packet } from "../decode/packet.js";

/**
 * A packet's identity that NAT leaves alone: IPv4 ID, TCP sequence/ack/flags, payload length and
 * the first payload bytes. Two 31-bit hashes with different mixing: the first indexes the
 * translation window, the second guards against index collisions.
 */

const PAYLOAD_BYTES = 32;
// Sequence and ack numbers already pin a TCP segment down; a few payload bytes suffice.
const TCP_PAYLOAD_BYTES = 8;

export let fp2 = 0;

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x9e3779b1);
  return (h << 13) | (h >>> 19);
}

function mix2(h: number, v: number): number {
  h = Math.imul(h + v, 0x85ebca77);
  return h ^ (h >>> 15);
}

/** First hash (returned) and second hash (in `fp2`), both non-negative small integers. */
export function fingerprint(p: Packet): number {
  let h = 0x12345 ^ p.proto;
  let g = 0x6789a + p.proto;
  h = mix(h, p.ipVersion === 4 ? p.ipId : 0);
  g = mix2(g, p.ipVersion === 4 ? p.ipId : 0);
  h = mix(h, p.wirePayloadLen);
  g = mix2(g, p.wirePayloadLen);
  if (p.proto === IPPROTO_TCP) {
    h = mix(h, p.seq | 0);
    g = mix2(g, p.seq | 0);
    h = mix(h, p.ack | 0);
    g = mix2(g, p.ack | 0);
    h = mix(h, p.tcpFlags);
    g = mix2(g, p.tcpFlags);
  } else {
    h = mix(h, p.icmpType);
    g = mix2(g, p.icmpType);
  }
  const d = p.data;
  const cap = p.proto === IPPROTO_TCP ? TCP_PAYLOAD_BYTES : PAYLOAD_BYTES;
  const end = p.payloadOff + Math.min(p.payloadLen, cap);
  for (let i = p.payloadOff; i < end; i++) {
    h = mix(h, d[i]!);
    g = mix2(g, d[i]!);
  }
  fp2 = g & 0x3fffffff;
  return h & 0x3fffffff;
}
