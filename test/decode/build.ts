/** Tiny frame builders for decoder tests: bytes written field by field, no checksums. */

export function bytes(...parts: (number[] | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) out.push(...p);
  return Uint8Array.from(out);
}

export const u16 = (v: number) => [(v >> 8) & 255, v & 255];
export const u32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
export const ip4 = (s: string) => s.split(".").map(Number);

export function eth(type: number, ...vlans: [number, number][]): number[] {
  const out = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  for (const [tpid, id] of vlans) out.push(...u16(tpid), ...u16(id));
  out.push(...u16(type));
  return out;
}

export function ipv4(
  proto: number,
  src: string,
  dst: string,
  payloadLen: number,
  opts: { id?: number; frag?: number; optionsWords?: number } = {},
): number[] {
  const ihl = 5 + (opts.optionsWords ?? 0);
  const out = [
    0x40 | ihl,
    0,
    ...u16(ihl * 4 + payloadLen),
    ...u16(opts.id ?? 0x1234),
    ...u16(opts.frag ?? 0),
    64,
    proto,
    0,
    0,
    ...ip4(src),
    ...ip4(dst),
  ];
  for (let i = 0; i < (opts.optionsWords ?? 0); i++) out.push(1, 1, 1, 1); // NOPs
  return out;
}

export function ipv6(next: number, payloadLen: number, srcLast = 1, dstLast = 2): number[] {
  const src = [0xfd, 0, ...new Array(13).fill(0), srcLast];
  const dst = [0xfd, 0, ...new Array(13).fill(0), dstLast];
  return [0x60, 0, 0, 0, ...u16(payloadLen), next, 64, ...src, ...dst];
}

export function tcp(sport: number, dport: number, flags: number, seq = 1000, ack = 0): number[] {
  return [
    ...u16(sport),
    ...u16(dport),
    ...u32(seq),
    ...u32(ack),
    0x50,
    flags,
    ...u16(65535),
    0,
    0,
    0,
    0,
  ];
}

export function udp(sport: number, dport: number, payloadLen: number): number[] {
  return [...u16(sport), ...u16(dport), ...u16(8 + payloadLen), 0, 0];
}
