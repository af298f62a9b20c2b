import { base64, sha1Short } from "./sha1.js";

/**
 * Community ID v1 (corelight/community-id-spec): SHA-1 over seed, the two addresses, protocol,
 * a pad byte and the two ports (ICMP: type and "counterpart" code), ordered so that both
 * directions of a flow give the same ID. Computed once per leg, when it closes.
 */

const ICMP4_COUNTERPART: Record<number, number> = {
  8: 0,
  0: 8,
  13: 14,
  14: 13,
  15: 16,
  16: 15,
  10: 9,
  17: 18,
  18: 17,
};

const ICMP6_COUNTERPART: Record<number, number> = {
  128: 129,
  129: 128,
  133: 134,
  134: 133,
  135: 136,
  136: 135,
  130: 131,
  131: 130,
  139: 140,
  140: 139,
  144: 145,
  145: 144,
};

/**
 * The port pair an ICMP message stands for: (type, counterpart type) for request/reply pairs,
 * (type, code) for one-way messages. `oneWay` tells the hash not to reorder the pair.
 */
export function icmpPortEquivalents(
  proto: 1 | 58,
  type: number,
  code: number,
): { src: number; dst: number; oneWay: boolean } {
  const table = proto === 1 ? ICMP4_COUNTERPART : ICMP6_COUNTERPART;
  const counterpart = table[type];
  return counterpart === undefined
    ? { src: type, dst: code, oneWay: true }
    : { src: type, dst: counterpart, oneWay: false };
}

/** Does this ICMP type have a counterpart (so its legs are two-way)? */
export function icmpCounterpart(proto: number, type: number): number {
  const table = proto === 1 ? ICMP4_COUNTERPART : ICMP6_COUNTERPART;
  return table[type] ?? -1;
}

function less(a: Uint8Array, b: Uint8Array, pa: number, pb: number): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]!;
  }
  return pa < pb;
}

const MSG = new Uint8Array(44);

/**
 * Community ID of a flow. Addresses are 4 or 16 bytes in network order. `ports` false for
 * protocols without ports (the spec hashes no port bytes then). For ICMP pass the port
 * equivalents and `oneWay`.
 */
export function communityId(
  proto: number,
  src: Uint8Array,
  dst: Uint8Array,
  srcPort: number,
  dstPort: number,
  options: { seed?: number; ports?: boolean; oneWay?: boolean } = {},
): string {
  const seed = options.seed ?? 0;
  const withPorts = options.ports ?? true;
  let a = src;
  let b = dst;
  let pa = srcPort;
  let pb = dstPort;
  if (!options.oneWay && !less(src, dst, srcPort, dstPort)) {
    a = dst;
    b = src;
    pa = dstPort;
    pb = srcPort;
  }
  const m = MSG;
  m[0] = seed >>> 8;
  m[1] = seed & 0xff;
  let o = 2;
  m.set(a, o);
  o += a.length;
  m.set(b, o);
  o += b.length;
  m[o++] = proto;
  m[o++] = 0;
  if (withPorts) {
    m[o++] = pa >>> 8;
    m[o++] = pa & 0xff;
    m[o++] = pb >>> 8;
    m[o++] = pb & 0xff;
  }
  return base64(sha1Short(m, o), 20, "1:");
}

export function ipv4Bytes(v: number): Uint8Array {
  return Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
}

/** Write an IPv4 uint32 into 4 bytes (network order) of `out`, and return `out`. */
export function setIPv4Bytes(out: Uint8Array, v: number): Uint8Array {
  out[0] = v >>> 24;
  out[1] = (v >>> 16) & 255;
  out[2] = (v >>> 8) & 255;
  out[3] = v & 255;
  return out;
}
