import { createRequire } from "node:module";
import type dnsPacket from "dns-packet";

// Loaded on the first DNS message (synchronously: dns-packet is CommonJS), not at start-up:
// it costs ~0.1 s of CPU to load, which a capture without DNS should not pay.
let dnsPacketModule: typeof dnsPacket | null = null;
function dnsPacketLib(): typeof dnsPacket {
  dnsPacketModule ??= createRequire(import.meta.url)("dns-packet") as typeof dnsPacket;
  return dnsPacketModule;
}

/**
 * DNS messages over UDP or TCP port 53, parsed with dns-packet. This allocates, which is fine:
 * DNS is a small share of packets, and only packets on port 53 get here.
 */

export const DNS_PORT = 53;

export interface DnsMessage {
  id: number;
  isResponse: boolean;
  qname: string;
  qtype: string;
  rcode: string | null;
  answers: { name: string; type: string; ttl: number; data: string }[];
}

/** Parse a DNS message from a transport payload; null when it is not one (or is cut). */
export function parseDns(payload: Uint8Array, overTcp: boolean): DnsMessage | null {
  let bytes = payload;
  if (overTcp) {
    // TCP carries a 2-byte length prefix; only whole messages in one segment are parsed.
    if (bytes.length < 2) return null;
    const len = (bytes[0]! << 8) | bytes[1]!;
    if (len + 2 > bytes.length || len < 12) return null;
    bytes = bytes.subarray(2, 2 + len);
  }
  if (bytes.length < 12) return null;
  let msg: dnsPacket.Packet;
  try {
    msg = dnsPacketLib().decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch {
    return null;
  }
  const q = msg.questions?.[0];
  const isResponse = msg.type === "response";
  const answers: DnsMessage["answers"] = [];
  for (const a of msg.answers ?? []) {
    answers.push({
      name: a.name,
      type: a.type,
      ttl: "ttl" in a && typeof a.ttl === "number" ? a.ttl : 0,
      data: answerData(a),
    });
  }
  return {
    id: msg.id ?? 0,
    isResponse,
    qname: q?.name ?? "",
    qtype: q?.type ?? "",
    rcode: isResponse ? ((msg as { rcode?: string }).rcode ?? "NOERROR") : null,
    answers,
  };
}

function answerData(a: dnsPacket.Answer): string {
  const data = (a as { data?: unknown }).data;
  if (typeof data === "string") return data;
  if (a.type === "SRV" && data !== null && typeof data === "object") {
    const s = data as { priority?: number; weight?: number; port?: number; target?: string };
    return `${s.priority ?? 0} ${s.weight ?? 0} ${s.port ?? 0} ${s.target ?? ""}`;
  }
  if (Buffer.isBuffer(data)) return data.toString("hex");
  if (Array.isArray(data))
    return data.map((x) => (Buffer.isBuffer(x) ? x.toString() : String(x))).join(" ");
  if (data !== null && typeof data === "object") return JSON.stringify(data);
  return String(data ?? "");
}
