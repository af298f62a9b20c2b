import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sendTraffic } from "../../src/lab/send.js";
import { startServer } from "../../src/lab/serve.js";
import { freePort } from "./helpers.js";

// The lab's server and client over loopback: no namespaces, no root.

describe("lab serve and send", () => {
  it("answer each TCP connection and UDP datagram with the pod and the peer it saw", async () => {
    const [tcp, udp, sport] = [await freePort(), await freePort(), await freePort()];
    const server = await startServer({ name: "web-1", tcp: [tcp], udp: [udp], host: "127.0.0.1" });
    try {
      const common = { host: "127.0.0.1", rate: 200, bind: "127.0.0.1", timeoutMs: 2000 };
      // A fixed client port, reused at once: the server closes first, so no TIME_WAIT here.
      const tcpRecords = await sendTraffic({ ...common, proto: "tcp", port: tcp, count: 4, sport });
      expect(tcpRecords.map((r) => r.client)).toEqual(Array(4).fill(`127.0.0.1:${sport}`));
      for (const r of tcpRecords) {
        expect(r.answered).toBe(true);
        expect(r.answer).toMatchObject({ pod: "web-1", peer: r.client, local: `127.0.0.1:${tcp}` });
      }
      const udpRecords = await sendTraffic({
        ...common,
        proto: "udp",
        port: udp,
        count: 5,
        sport: null,
      });
      expect(udpRecords.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4]);
      for (const r of udpRecords) {
        expect(r.answer?.seq).toBe(r.seq);
        expect(r.answer?.peer).toBe(r.client);
      }
      expect(new Set(udpRecords.map((r) => r.client)).size).toBe(5);
    } finally {
      await server.close();
    }
  });

  it("reports refusals and silence as errors, not answers", async () => {
    const closed = await freePort();
    const common = { host: "127.0.0.1", rate: 100, bind: null, timeoutMs: 300, sport: null };
    const [refused] = await sendTraffic({ ...common, proto: "tcp", port: closed, count: 1 });
    expect(refused).toMatchObject({ answered: false, error: "ECONNREFUSED" });
    // A connected UDP socket learns of the ICMP port unreachable.
    const [udp] = await sendTraffic({ ...common, proto: "udp", port: closed, count: 1 });
    expect(udp).toMatchObject({ answered: false, error: "ECONNREFUSED" });
  });

  it("svctrace lab serve says ready, then serves", async () => {
    const port = await freePort();
    const cli = join(import.meta.dirname, "..", "..", "dist", "src", "cli", "main.js");
    const child = spawn(process.execPath, [
      cli,
      "lab",
      "serve",
      "--name",
      "pod-x",
      "--tcp",
      String(port),
      "--host",
      "127.0.0.1",
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.setEncoding("utf8");
        child.stdout.on("data", (chunk: string) => {
          if (chunk.includes("ready pod-x")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`lab serve exited ${code}`)));
      });
      const [r] = await sendTraffic({
        proto: "tcp",
        host: "127.0.0.1",
        port,
        count: 1,
        rate: 10,
        sport: null,
        bind: null,
        timeoutMs: 2000,
      });
      expect(r?.answer?.pod).toBe("pod-x");
    } finally {
      child.kill("SIGTERM");
    }
  });
});
