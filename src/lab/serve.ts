import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server } from "node:net";

/*
 * The pod's server. It answers every TCP connection and every UDP datagram with one JSON line
 * naming the pod and the peer address it saw: the answer is the ground truth of which endpoint
 * the kernel picked and which source address (after any SNAT) reached the pod.
 */

export interface ServeOptions {
  name: string;
  tcp: number[];
  udp: number[];
  /** Address to bind; all addresses by default. */
  host?: string;
}

/** What the server sends back, one JSON object per line. */
export interface ServerAnswer {
  pod: string;
  /** Peer "ip:port" as the pod saw it. */
  peer: string;
  /** Local "ip:port" the request arrived at (the endpoint address). */
  local: string;
  /** Echo of the request's sequence number (UDP), so replies can be matched. */
  seq?: number;
}

export interface RunningServer {
  close(): Promise<void>;
}

function listenTcp(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function bindUdp(socket: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const host = options.host ?? "0.0.0.0";
  const tcpServers: Server[] = [];
  const udpSockets: UdpSocket[] = [];
  for (const port of options.tcp) {
    const server = createServer((socket) => {
      socket.on("error", () => socket.destroy());
      const answer: ServerAnswer = {
        pod: options.name,
        peer: `${socket.remoteAddress}:${socket.remotePort}`,
        local: `${socket.localAddress}:${socket.localPort}`,
      };
      // The server closes first so the client's port never sits in TIME_WAIT: scenarios with
      // a fixed client port can reconnect from it at once.
      socket.end(`${JSON.stringify(answer)}\n`);
    });
    await listenTcp(server, port, host);
    tcpServers.push(server);
  }
  for (const port of options.udp) {
    const socket = createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
      let seq: number | undefined;
      try {
        const parsed = JSON.parse(msg.toString("utf8")) as { seq?: unknown };
        if (typeof parsed.seq === "number") seq = parsed.seq;
      } catch {
        // Not ours: answer anyway, without a sequence number.
      }
      const answer: ServerAnswer = {
        pod: options.name,
        peer: `${rinfo.address}:${rinfo.port}`,
        local: `${host === "0.0.0.0" ? "" : host}:${port}`,
        ...(seq !== undefined ? { seq } : {}),
      };
      socket.send(`${JSON.stringify(answer)}\n`, rinfo.port, rinfo.address);
    });
    await bindUdp(socket, port, host);
    udpSockets.push(socket);
  }
  return {
    async close() {
      await Promise.all(
        tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      for (const s of udpSockets) s.close();
    },
  };
}
