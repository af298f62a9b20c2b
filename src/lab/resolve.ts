import { createSocket } from "node:dgram";
import { createRequire } from "node:module";
import type dnsPacket from "dns-packet";

/*
 * The client side of a `resolve` step, run inside the client's namespace: `count` DNS queries
 * for one name at a fixed rate, each from a new UDP socket (a new client port), as glibc's stub
 * resolver does, to the kube-dns ClusterIP. Records, for each, the client port, the query id and
 * what came back.
 */

let lib: typeof dnsPacket | null = null;
function dnsLib(): typeof dnsPacket {
  lib ??= createRequire(import.meta.url)("dns-packet") as typeof dnsPacket;
  return lib;
}

export interface ResolveOptions {
  server: string;
  port: number;
  name: string;
  qtype: "A" | "AAAA";
  count: number;
  rate: number;
  /** The client's own address to bind. */
  bind: string | null;
  timeoutMs: number;
  onStart?: () => void;
}

/** One query as the client saw it. Times are epoch seconds. */
export interface ResolveRecord {
  seq: number;
  /** Client "ip:port" (before any SNAT). */
  client: string;
  target: string;
  /** The query's DNS id. */
  id: number;
  name: string;
  qtype: string;
  start: number;
  end: number;
  answered: boolean;
  /** NOERROR, NXDOMAIN, …; null when unanswered. */
  rcode: string | null;
  /** Answer records as "TYPE data" (e.g. "A 10.96.0.10", "CNAME example.com"). */
  answers: string[];
  error: string | null;
}

function now(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function queryOnce(opts: ResolveOptions, seq: number): Promise<ResolveRecord> {
  const dns = dnsLib();
  // Ids differ per query and are never 0, so a capture tells them apart.
  const id = 1 + ((seq * 7919 + Math.floor(Math.random() * 65_000)) % 65_535);
  const message = dns.encode({
    type: "query",
    id,
    flags: dns.RECURSION_DESIRED,
    questions: [{ type: opts.qtype, name: opts.name, class: "IN" }],
  });
  return new Promise((resolve) => {
    const socket = createSocket("udp4");
    let client = "";
    let start = now();
    let settled = false;
    const finish = (
      answer: { rcode: string; answers: string[] } | null,
      error: string | null,
    ): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.close();
      resolve({
        seq,
        client,
        target: `${opts.server}:${opts.port}`,
        id,
        name: opts.name,
        qtype: opts.qtype,
        start,
        end: now(),
        answered: answer !== null,
        rcode: answer?.rcode ?? null,
        answers: answer?.answers ?? [],
        error: answer !== null ? null : error,
      });
    };
    const timer = setTimeout(() => finish(null, "ETIMEDOUT"), opts.timeoutMs);
    socket.on("error", (error: NodeJS.ErrnoException) => finish(null, error.code ?? error.message));
    socket.on("message", (msg) => {
      let reply: dnsPacket.Packet;
      try {
        reply = dns.decode(msg);
      } catch {
        return;
      }
      if (reply.id !== id || reply.type !== "response") return;
      const rcode = (reply as { rcode?: string }).rcode ?? "NOERROR";
      const answers = (reply.answers ?? []).map(
        (a) => `${a.type} ${String((a as { data?: unknown }).data)}`,
      );
      finish({ rcode, answers }, null);
    });
    socket.bind({ port: 0, ...(opts.bind !== null ? { address: opts.bind } : {}) }, () => {
      socket.connect(opts.port, opts.server, () => {
        const local = socket.address();
        client = `${local.address}:${local.port}`;
        start = now();
        socket.send(message);
      });
    });
  });
}

export async function resolveNames(opts: ResolveOptions): Promise<ResolveRecord[]> {
  const interval = 1000 / opts.rate;
  const t0 = performance.now();
  const pending: Promise<ResolveRecord>[] = [];
  for (let seq = 0; seq < opts.count; seq++) {
    await sleep(t0 + seq * interval - performance.now());
    pending.push(queryOnce(opts, seq));
    if (seq === 0) opts.onStart?.();
  }
  return Promise.all(pending);
}
