import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type dnsPacket from "dns-packet";

/*
 * The lab's cluster DNS, standing in for CoreDNS behind the kube-dns Service. It answers from a
 * zone file that `lab run` rewrites (atomically) whenever the cluster's Services change, re-read
 * for every query, so an answer always reflects the Services as the runner last wrote them —
 * faults included: the runner, not the server, decides what is wrong. One JSON line per query
 * on stdout (the pod, the peer it saw, the query id, the answer) is the ground truth of which
 * pod answered whom.
 *
 * This module runs inside the pod's namespace from the lab's private agent copy; dns-packet is
 * CommonJS and is loaded with require so the agent finds it through its node_modules link.
 */

let lib: typeof dnsPacket | null = null;
function dnsLib(): typeof dnsPacket {
  lib ??= createRequire(import.meta.url)("dns-packet") as typeof dnsPacket;
  return lib;
}

/** What the DNS server knows: names (lower case, no trailing dot) and their records. */
export interface DnsZone {
  /** TTL of every answer, seconds. */
  ttl: number;
  records: Record<string, DnsZoneRecord>;
}

/** One name: its addresses, or an alias (ExternalName). */
export interface DnsZoneRecord {
  a?: string[];
  cname?: string;
}

/** One answered query, as the server logs it. */
export interface DnsServerLog {
  pod: string;
  /** Peer "ip:port" as the pod saw it (after any SNAT). */
  peer: string;
  /** Local "ip:port" the query arrived at. */
  local: string;
  /** The query's DNS id. */
  id: number;
  qname: string;
  qtype: string;
  rcode: string;
  /** Answer records as "TYPE data". */
  answers: string[];
  /** Epoch seconds. */
  time: number;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;

export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

/**
 * The response to one query message, or null when the bytes are no DNS query (dropped, as
 * CoreDNS drops garbage). A known name: its A records (none for other types: NODATA), or its
 * CNAME followed by the target's A records when the zone has them. An unknown name: NXDOMAIN.
 * `zone` null means the zone could not be read: SERVFAIL.
 */
export function answerQuery(
  message: Uint8Array,
  zone: DnsZone | null,
): { response: Buffer; log: Omit<DnsServerLog, "pod" | "peer" | "local" | "time"> } | null {
  const dns = dnsLib();
  let query: dnsPacket.Packet;
  try {
    query = dns.decode(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  } catch {
    return null;
  }
  if (query.type !== "query") return null;
  const id = query.id ?? 0;
  const question = query.questions?.[0];
  const rd = (query.flags ?? 0) & dns.RECURSION_DESIRED;
  const reply = (rcode: keyof typeof RCODE, answers: dnsPacket.Answer[]) => {
    const response = dns.encode({
      type: "response",
      id,
      flags: dns.AUTHORITATIVE_ANSWER | rd | dns.RECURSION_AVAILABLE | RCODE[rcode],
      questions: question !== undefined ? [question] : [],
      answers,
    });
    return {
      response,
      log: {
        id,
        qname: question?.name ?? "",
        qtype: question?.type ?? "",
        rcode,
        answers: answers.map((a) => `${a.type} ${String((a as { data?: unknown }).data)}`),
      },
    };
  };
  if (question === undefined || (query.questions?.length ?? 0) !== 1) return reply("NOTIMP", []);
  if (zone === null) return reply("SERVFAIL", []);
  const qname = normalizeName(question.name);
  const record = zone.records[qname];
  if (record === undefined) return reply("NXDOMAIN", []);
  const answers: dnsPacket.Answer[] = [];
  let target = qname;
  let current: DnsZoneRecord | undefined = record;
  // Follow aliases inside the zone (at most a few, against loops).
  for (let hops = 0; current?.cname !== undefined && hops < 8; hops++) {
    const alias = normalizeName(current.cname);
    answers.push({ type: "CNAME", name: target, ttl: zone.ttl, class: "IN", data: alias });
    if (question.type === "CNAME") return reply("NOERROR", answers);
    target = alias;
    current = zone.records[alias];
  }
  if (question.type === "A") {
    for (const ip of current?.a ?? []) {
      answers.push({ type: "A", name: target, ttl: zone.ttl, class: "IN", data: ip });
    }
  }
  return reply("NOERROR", answers);
}

/** Read a zone file (JSON DnsZone); null when it is missing or broken. */
export function readZone(file: string): DnsZone | null {
  try {
    const zone = JSON.parse(readFileSync(file, "utf8")) as DnsZone;
    if (typeof zone.ttl !== "number" || typeof zone.records !== "object" || zone.records === null)
      return null;
    return zone;
  } catch {
    return null;
  }
}

export interface DnsServerOptions {
  /** The pod name to log with. */
  name: string;
  host: string;
  port: number;
  /** Zone file, re-read for every query. */
  zone: string;
  /** Called for every answered query. */
  onQuery?: (log: DnsServerLog) => void;
}

export interface RunningDnsServer {
  port: number;
  close(): Promise<void>;
}

export async function startDnsServer(opts: DnsServerOptions): Promise<RunningDnsServer> {
  const socket: UdpSocket = createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    const result = answerQuery(msg, readZone(opts.zone));
    if (result === null) return;
    socket.send(result.response, rinfo.port, rinfo.address);
    opts.onQuery?.({
      pod: opts.name,
      peer: `${rinfo.address}:${rinfo.port}`,
      local: `${opts.host}:${socket.address().port}`,
      time: Date.now() / 1000,
      ...result.log,
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(opts.port, opts.host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  // Late errors (none expected on a bound UDP socket) must not crash the pod's server.
  socket.on("error", () => {});
  return {
    port: socket.address().port,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
