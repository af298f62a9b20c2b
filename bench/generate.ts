import { closeSync, openSync, writeSync } from "node:fs";

/**
 * A deterministic capture of TCP connections through one Service VIP, as `tcpdump -i any` on the
 * translating node writes it (SLL2): every packet twice, the ingress copy before DNAT (client →
 * VIP:80 on eth0, packet type "host") and the egress copy after it (client → pod:8080 on the pod's
 * veth, packet type "outgoing"); replies the other way round. Same IPv4 ID, sequence numbers and
 * payload in both copies, as the kernel leaves them.
 *
 * Connection i starts at slot i (SLOT_US apart: 5,000 new connections per second, a busy node);
 * its packet k is sent k × SPACING slots later, so about 30 connections are open at any time,
 * interleaved. The capture spans 40 s for 200,000 connections: longer than the flow table's
 * linger after close, so memory is measured in a steady state, not by file size.
 */

export interface GenerateOptions {
  connections: number;
  /** Epoch seconds of the first packet. */
  start?: number;
}

export interface GenerateResult {
  packets: number;
  bytes: number;
  connections: number;
}

const VIP = ip(10, 96, 0, 10);
const VIP_PORT = 80;
const POD_PORT = 8080;
const PODS = [ip(10, 244, 1, 2), ip(10, 244, 1, 3), ip(10, 244, 2, 7)];
const IF_ETH0 = 2;
const IF_VETH = 7;
const PKT_HOST = 0;
const PKT_OUTGOING = 4;
const SLOT_US = 200;
const SPACING = 5;
const REQUEST = 64;
const RESPONSE = 160;

function ip(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** One packet of a connection: who sends, TCP flags, payload length. */
const SCRIPT: { fromClient: boolean; flags: number; payload: number }[] = [
  { fromClient: true, flags: 0x02, payload: 0 }, // SYN
  { fromClient: false, flags: 0x12, payload: 0 }, // SYN ACK
  { fromClient: true, flags: 0x18, payload: REQUEST }, // ACK PSH request
  { fromClient: false, flags: 0x18, payload: RESPONSE }, // ACK PSH response
  { fromClient: true, flags: 0x11, payload: 0 }, // FIN ACK
  { fromClient: false, flags: 0x11, payload: 0 }, // FIN ACK
  { fromClient: true, flags: 0x10, payload: 0 }, // ACK of the FIN
];
export const PACKETS_PER_CONNECTION = SCRIPT.length * 2;

/** A small deterministic PRNG (mulberry32), so the file is the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Conn {
  client: number;
  cport: number;
  pod: number;
  cseq: number;
  sseq: number;
  ipId: number;
}

export function generateCapture(path: string, options: GenerateOptions): GenerateResult {
  const n = options.connections;
  const start = options.start ?? 1_764_000_000;
  const rand = rng(42);
  const conns: Conn[] = new Array(n);
  for (let i = 0; i < n; i++) {
    conns[i] = {
      client: ip(10, 0, (i >>> 8) & 255, (i & 255) | 1),
      cport: 20000 + (i % 40000),
      pod: PODS[Math.floor(rand() * PODS.length)]!,
      cseq: Math.floor(rand() * 2 ** 32) >>> 0,
      sseq: Math.floor(rand() * 2 ** 32) >>> 0,
      ipId: Math.floor(rand() * 65536),
    };
  }
  const fd = openSync(path, "w");
  const buf = Buffer.alloc(8 << 20);
  let off = 0;
  let packets = 0;
  let bytes = 0;
  const flush = () => {
    writeSync(fd, buf, 0, off);
    bytes += off;
    off = 0;
  };
  // pcap global header: µs, little-endian, snaplen 262144, LINKTYPE_LINUX_SLL2.
  buf.writeUInt32LE(0xa1b2c3d4, 0);
  buf.writeUInt16LE(2, 4);
  buf.writeUInt16LE(4, 6);
  buf.writeUInt32LE(0, 8);
  buf.writeUInt32LE(0, 12);
  buf.writeUInt32LE(262144, 16);
  buf.writeUInt32LE(276, 20);
  off = 24;

  const write = (
    tUs: number,
    ifindex: number,
    pktType: number,
    src: number,
    dst: number,
    sport: number,
    dport: number,
    ipId: number,
    seq: number,
    ack: number,
    flags: number,
    payload: number,
  ) => {
    const ipLen = 20 + 20 + payload;
    const capLen = 20 + ipLen;
    if (off + 16 + capLen > buf.length) flush();
    const sec = start + Math.floor(tUs / 1e6);
    buf.writeUInt32LE(sec, off);
    buf.writeUInt32LE(tUs % 1e6, off + 4);
    buf.writeUInt32LE(capLen, off + 8);
    buf.writeUInt32LE(capLen, off + 12);
    let p = off + 16;
    // SLL2: protocol, reserved, ifindex, ARPHRD_ETHER, packet type, addr len, address (8).
    buf.writeUInt16BE(0x0800, p);
    buf.writeUInt16BE(0, p + 2);
    buf.writeUInt32BE(ifindex, p + 4);
    buf.writeUInt16BE(1, p + 8);
    buf[p + 10] = pktType;
    buf[p + 11] = 6;
    buf.writeUInt32BE(0x02420a00, p + 12);
    buf.writeUInt32BE(ifindex << 16, p + 16);
    p += 20;
    // IPv4, DF, TTL 64, TCP.
    buf[p] = 0x45;
    buf[p + 1] = 0;
    buf.writeUInt16BE(ipLen, p + 2);
    buf.writeUInt16BE(ipId, p + 4);
    buf.writeUInt16BE(0x4000, p + 6);
    buf[p + 8] = pktType === PKT_OUTGOING ? 63 : 64;
    buf[p + 9] = 6;
    buf.writeUInt16BE(0, p + 10);
    buf.writeUInt32BE(src, p + 12);
    buf.writeUInt32BE(dst, p + 16);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += buf.readUInt16BE(p + i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    buf.writeUInt16BE(~sum & 0xffff, p + 10);
    p += 20;
    buf.writeUInt16BE(sport, p);
    buf.writeUInt16BE(dport, p + 2);
    buf.writeUInt32BE(seq >>> 0, p + 4);
    buf.writeUInt32BE(ack >>> 0, p + 8);
    buf[p + 12] = 0x50;
    buf[p + 13] = flags;
    buf.writeUInt16BE(64240, p + 14);
    buf.writeUInt32BE(0, p + 16);
    p += 20;
    buf.fill(0x61 + (seq & 15), p, p + payload);
    off = p + payload;
    packets++;
  };

  const steps = SCRIPT.length;
  const lastSlot = n - 1 + (steps - 1) * SPACING;
  for (let slot = 0; slot <= lastSlot; slot++) {
    // Older connections' later packets first, each a few µs apart within the slot.
    for (let k = steps - 1; k >= 0; k--) {
      const i = slot - k * SPACING;
      if (i < 0 || i >= n) continue;
      const c = conns[i]!;
      const step = SCRIPT[k]!;
      const t = slot * SLOT_US + (steps - 1 - k) * 4;
      // Sequence numbers as the script advances: SYN and FIN count one, payload its length.
      const cseq = c.cseq + (k >= 2 ? 1 : 0) + (k >= 3 ? REQUEST : 0) + (k >= 5 ? 1 : 0);
      // k = 6 is the client's last ACK: its FIN (k = 4) counted one, hence k >= 5 above.
      const sseq = c.sseq + (k >= 3 ? 1 : 0) + (k >= 4 ? RESPONSE : 0);
      const ipId = (c.ipId + k) & 0xffff;
      if (step.fromClient) {
        const ack = k === 0 ? 0 : k === 2 ? c.sseq + 1 : c.sseq + 1 + RESPONSE + (k >= 6 ? 1 : 0);
        write(
          t,
          IF_ETH0,
          PKT_HOST,
          c.client,
          VIP,
          c.cport,
          VIP_PORT,
          ipId,
          cseq,
          ack,
          step.flags,
          step.payload,
        );
        write(
          t + 1,
          IF_VETH,
          PKT_OUTGOING,
          c.client,
          c.pod,
          c.cport,
          POD_PORT,
          ipId,
          cseq,
          ack,
          step.flags,
          step.payload,
        );
      } else {
        const ack = c.cseq + 1 + (k >= 3 ? REQUEST : 0) + (k >= 5 ? 1 : 0);
        write(
          t,
          IF_VETH,
          PKT_HOST,
          c.pod,
          c.client,
          POD_PORT,
          c.cport,
          ipId,
          sseq,
          ack,
          step.flags,
          step.payload,
        );
        write(
          t + 1,
          IF_ETH0,
          PKT_OUTGOING,
          VIP,
          c.client,
          VIP_PORT,
          c.cport,
          ipId,
          sseq,
          ack,
          step.flags,
          step.payload,
        );
      }
    }
  }
  flush();
  closeSync(fd);
  return { packets, bytes, connections: n };
}
