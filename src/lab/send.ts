import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect } from "node:net";
import type { ServerAnswer } from "./serve.js";

/*
 * The client side of a traffic step, run inside the client's namespace. Opens `count`
 * connections (TCP) or sends `count` requests (UDP) to one address at a fixed rate and
 * records, for each, the client port the kernel used and the server's answer.
 */

export interface SendOptions {
  proto: "tcp" | "udp";
  host: string;
  port: number;
  count: number;
  /** New connections or datagrams per second. */
  rate: number;
  /** A fixed client port, or null to let the kernel choose one per connection. */
  sport: number | null;
  /** The client's own address to bind (so records name it rather than 0.0.0.0). */
  bind: string | null;
  timeoutMs: number;
  /** Called once the first request is on its way (the lab waits for it before going on). */
  onStart?: () => void;
}

/** One request as the client saw it. Times are epoch seconds with sub-millisecond digits. */
export interface SendRecord {
  seq: number;
  proto: "tcp" | "udp";
  /** Client "ip:port" as the client's own socket reports it (before any SNAT). */
  client: string;
  target: string;
  start: number;
  end: number;
  answered: boolean;
  answer: ServerAnswer | null;
  /** errno code (ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT…) when not answered. */
  error: string | null;
}

function now(): number {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function parseAnswer(text: string): ServerAnswer | null {
  const line = text.split("\n")[0] ?? "";
  try {
    const v = JSON.parse(line) as Partial<ServerAnswer>;
    if (typeof v.pod === "string" && typeof v.peer === "string") return v as ServerAnswer;
  } catch {
    // fall through
  }
  return null;
}

function tcpOnce(opts: SendOptions, seq: number): Promise<SendRecord> {
  return new Promise((resolve) => {
    const start = now();
    let client = "";
    let data = "";
    let settled = false;
    const socket = connect({
      host: opts.host,
      port: opts.port,
      ...(opts.sport !== null ? { localPort: opts.sport } : {}),
      ...(opts.bind !== null ? { localAddress: opts.bind } : {}),
    });
    const finish = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const answer = parseAnswer(data);
      if (!client && socket.localPort !== undefined) {
        client = `${socket.localAddress}:${socket.localPort}`;
      }
      socket.destroy();
      resolve({
        seq,
        proto: "tcp",
        client,
        target: `${opts.host}:${opts.port}`,
        start,
        end: now(),
        answered: answer !== null,
        answer,
        error: answer !== null ? null : (error ?? "ENODATA"),
      });
    };
    const timer = setTimeout(() => finish("ETIMEDOUT"), opts.timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      client = `${socket.localAddress}:${socket.localPort}`;
    });
    socket.on("data", (chunk: string) => {
      data += chunk;
    });
    // The server closes first; answer our half only after its FIN so we never hold TIME_WAIT.
    socket.on("end", () => {
      socket.end();
      finish(null);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
  });
}

async function runTcp(opts: SendOptions): Promise<SendRecord[]> {
  const interval = 1000 / opts.rate;
  const t0 = performance.now();
  if (opts.sport !== null) {
    // One port: connections must not overlap, or the second connect() fails with EADDRINUSE.
    const out: SendRecord[] = [];
    for (let seq = 0; seq < opts.count; seq++) {
      await sleep(t0 + seq * interval - performance.now());
      const next = tcpOnce(opts, seq);
      if (seq === 0) opts.onStart?.();
      out.push(await next);
    }
    return out;
  }
  const pending: Promise<SendRecord>[] = [];
  for (let seq = 0; seq < opts.count; seq++) {
    await sleep(t0 + seq * interval - performance.now());
    pending.push(tcpOnce(opts, seq));
    if (seq === 0) opts.onStart?.();
  }
  return Promise.all(pending);
}

function bound(socket: UdpSocket, port: number, address: string | null): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind({ port, ...(address !== null ? { address } : {}) }, () => {
      socket.off("error", reject);
      resolve();
    });
  });
}

function connected(socket: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.connect(port, host, () => resolve());
    socket.once("error", reject);
  });
}

async function runUdp(opts: SendOptions): Promise<SendRecord[]> {
  const interval = 1000 / opts.rate;
  const records: SendRecord[] = [];
  const waiting = new Map<number, (answer: ServerAnswer | null, error: string | null) => void>();
  const onMessage = (msg: Buffer): void => {
    const answer = parseAnswer(msg.toString("utf8"));
    if (answer?.seq === undefined) return;
    waiting.get(answer.seq)?.(answer, null);
  };
  // Sockets are connected, so an ICMP error (port unreachable from a pod with nothing
  // listening) comes back as ECONNREFUSED; on the shared socket it belongs to the oldest
  // request still waiting.
  const onError = (error: NodeJS.ErrnoException): void => {
    const oldest = [...waiting.keys()].sort((a, b) => a - b)[0];
    if (oldest !== undefined) waiting.get(oldest)?.(null, error.code ?? error.message);
  };
  // A fixed port is one long-lived socket (a DNS resolver's habit): one conntrack entry for all.
  let shared: UdpSocket | null = null;
  if (opts.sport !== null) {
    shared = createSocket("udp4");
    shared.on("message", onMessage);
    shared.on("error", onError);
    await bound(shared, opts.sport, opts.bind);
    await connected(shared, opts.port, opts.host);
  }
  const one = async (seq: number): Promise<void> => {
    let socket = shared;
    if (socket === null) {
      socket = createSocket("udp4");
      socket.on("message", onMessage);
      // This socket carries only this request: its ICMP error is this request's.
      socket.on("error", (error: NodeJS.ErrnoException) =>
        waiting.get(seq)?.(null, error.code ?? error.message),
      );
      await bound(socket, 0, opts.bind);
      await connected(socket, opts.port, opts.host);
    }
    const start = now();
    const local = socket.address();
    const result = await new Promise<{ answer: ServerAnswer | null; error: string | null }>(
      (resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(seq);
          resolve({ answer: null, error: "ETIMEDOUT" });
        }, opts.timeoutMs);
        waiting.set(seq, (answer, error) => {
          clearTimeout(timer);
          waiting.delete(seq);
          resolve({ answer, error });
        });
        socket.send(JSON.stringify({ seq }));
      },
    );
    if (socket !== shared) socket.close();
    records.push({
      seq,
      proto: "udp",
      client: `${local.address}:${local.port}`,
      target: `${opts.host}:${opts.port}`,
      start,
      end: now(),
      answered: result.answer !== null,
      answer: result.answer,
      error: result.error,
    });
  };
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let seq = 0; seq < opts.count; seq++) {
    await sleep(t0 + seq * interval - performance.now());
    pending.push(one(seq));
    if (seq === 0) opts.onStart?.();
  }
  await Promise.all(pending);
  shared?.close();
  return records.sort((a, b) => a.seq - b.seq);
}

export function sendTraffic(opts: SendOptions): Promise<SendRecord[]> {
  return opts.proto === "tcp" ? runTcp(opts) : runUdp(opts);
}
