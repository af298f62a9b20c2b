import { spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCaptureFile } from "../../src/capture/reader.js";
import {
  interfaceIndexMap,
  type LiveInterface,
  linkTypeFromCap,
  liveCapture,
  liveCaptureToFile,
  loadCap,
} from "../../src/lab/live-capture.js";
import { UsageError } from "../../src/util/errors.js";

const isRoot = process.getuid?.() === 0;
const hasCap = await loadCap().then(
  () => true,
  () => false,
);

describe("live capture helpers", () => {
  it("maps cap's link-type names to LINKTYPE numbers", () => {
    expect(linkTypeFromCap("ETHERNET")).toBe(1);
    expect(linkTypeFromCap("LINKTYPE_LINUX_SLL")).toBe(113);
    expect(linkTypeFromCap("RAW")).toBe(101);
    expect(linkTypeFromCap("Unknown linktype 276")).toBe(276);
    expect(() => linkTypeFromCap("something else")).toThrow(/unusable link type/);
  });

  it("reads the ifindex → name map from /sys/class/net", () => {
    const map = interfaceIndexMap();
    expect(Object.values(map)).toContain("lo");
    expect(interfaceIndexMap("/nonexistent")).toEqual({});
  });
});

/** Send `n` UDP datagrams to 127.0.0.1:port, one every 10 ms (loopback only). */
function sendDatagrams(port: number, n: number, tag: string): Promise<void> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    let i = 0;
    const timer = setInterval(() => {
      s.send(`${tag}-${i}`, port, "127.0.0.1");
      if (++i >= n) {
        clearInterval(timer);
        setTimeout(() => {
          s.close();
          resolve();
        }, 20);
      }
    }, 10);
  });
}

describe.skipIf(!isRoot || !hasCap)(
  "live capture through cap (needs root and the cap package)",
  () => {
    // A port nothing else uses, and a filter on it, so other loopback traffic stays out.
    const port = 40000 + (process.pid % 20000);

    it("captures the datagrams sent on loopback, with interface name and link type", async () => {
      const interfaces: LiveInterface[] = [];
      const payloads: string[] = [];
      const stats = await liveCapture(
        {
          iface: "lo",
          filter: `udp and dst port ${port}`,
          count: 5,
          onReady: () => {
            void sendDatagrams(port, 5, "svt-live");
          },
        },
        {
          interface: (i) => interfaces.push(i),
          packet: (id, sec, nsec, data, origLen) => {
            expect(id).toBe(0);
            expect(origLen).toBe(data.length);
            expect(nsec).toBeLessThan(1e9);
            expect(Math.abs(sec - Date.now() / 1000)).toBeLessThan(3600);
            // Copy: the buffer is reused for the next packet.
            payloads.push(Buffer.from(data).toString("latin1"));
          },
        },
      );
      expect(stats.packets).toBe(5);
      expect(interfaces).toEqual([{ id: 0, name: "lo", linkType: 1, snapLen: 65535 }]);
      expect(payloads.map((p) => /svt-live-\d/.exec(p)?.[0])).toEqual(
        [0, 1, 2, 3, 4].map((i) => `svt-live-${i}`),
      );
    });

    it("opens 'any' as Linux cooked capture and stops when aborted", async () => {
      const controller = new AbortController();
      const stats = await liveCapture(
        {
          iface: "any",
          filter: `udp and dst port ${port + 1}`,
          signal: controller.signal,
          onReady: () => controller.abort(),
        },
        { interface: () => {}, packet: () => {} },
      );
      expect(stats.interfaces[0]?.linkType).toBe(113);
    });

    it("rejects a filter libpcap cannot compile as a usage error", async () => {
      await expect(
        liveCapture(
          { iface: "lo", filter: "this is not bpf", count: 1 },
          { interface: () => {}, packet: () => {} },
        ),
      ).rejects.toBeInstanceOf(UsageError);
    });
  },
);

describe("svctrace capture command line", () => {
  const binary = join(import.meta.dirname, "..", "..", "dist", "src", "cli", "main.js");

  it("needs exactly one of --write and --db", () => {
    const none = spawnSync("node", [binary, "capture", "--count", "1"], { encoding: "utf8" });
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/exactly one of --write FILE\.pcapng or --db FILE/);
    const both = spawnSync("node", [binary, "capture", "--write", "a.pcapng", "--db", "a.db"], {
      encoding: "utf8",
    });
    expect(both.status).toBe(2);
  });

  it("rejects a bad count", () => {
    const r = spawnSync("node", [binary, "capture", "--count", "lots", "--write", "a.pcapng"], {
      encoding: "utf8",
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--count "lots"/);
  });
});

describe.skipIf(!isRoot || !hasCap)(
  "live capture into pcapng (needs root and the cap package)",
  () => {
    const port = 40000 + ((process.pid + 7) % 20000);
    let dir = "";
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "svt-gen-live-"));
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it("writes a pcapng our reader reads back: interface name, packets, payloads", async () => {
      const file = join(dir, "lo.pcapng");
      const stats = await liveCaptureToFile(file, {
        iface: "lo",
        filter: `udp and dst port ${port}`,
        count: 4,
        onReady: () => {
          void sendDatagrams(port, 4, "svt-file");
        },
      });
      expect(stats.packets).toBe(4);
      const names: (string | null)[] = [];
      const payloads: string[] = [];
      const summary = await readCaptureFile(file, {
        interface: (i) => names.push(i.name),
        record: (rec) => payloads.push(Buffer.from(rec.data).toString("latin1")),
      });
      expect(summary.format).toBe("pcapng");
      expect(summary.linkTypes).toEqual([1]);
      expect(names).toEqual(["lo"]);
      expect(payloads.map((p) => /svt-file-\d/.exec(p)?.[0])).toEqual([
        "svt-file-0",
        "svt-file-1",
        "svt-file-2",
        "svt-file-3",
      ]);
    });

    it("leaves no file behind when the capture cannot start", async () => {
      const file = join(dir, "bad.pcapng");
      await expect(
        liveCaptureToFile(file, { iface: "lo", filter: "not bpf at all", count: 1 }),
      ).rejects.toBeInstanceOf(UsageError);
      expect(existsSync(file)).toBe(false);
    });
  },
);
