import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCaptureFile } from "../../src/capture/reader.js";
import { loadCap } from "../../src/lab/live-capture.js";

const isRoot = process.getuid?.() === 0;
const hasCap = await loadCap().then(
  () => true,
  () => false,
);
const binary = join(import.meta.dirname, "..", "..", "dist", "src", "cli", "main.js");

describe.skipIf(!isRoot || !hasCap)(
  "svctrace capture and collect --capture live in a network namespace (needs root and cap)",
  () => {
    const NS = `svt-gen-x${process.pid}`;
    let dir = "";
    let sender: ChildProcess | null = null;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "svt-gen-cap-"));
      execFileSync("ip", ["netns", "add", NS]);
      execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
      // UDP datagrams on the namespace's loopback for as long as the tests run.
      sender = spawn(
        "ip",
        [
          "netns",
          "exec",
          NS,
          "node",
          "-e",
          "const s=require('dgram').createSocket('udp4');let i=0;setInterval(()=>s.send('svt-cli-'+i++,9,'127.0.0.1'),20);",
        ],
        { stdio: "ignore" },
      );
    });
    afterAll(() => {
      sender?.kill();
      spawnSync("ip", ["netns", "delete", NS]);
      rmSync(dir, { recursive: true, force: true });
    });

    const run = (args: string[]) =>
      spawnSync("ip", ["netns", "exec", NS, "node", binary, ...args], { encoding: "utf8" });

    it("--write: a pcapng with the named interface and the datagrams", async () => {
      const file = join(dir, "lo.pcapng");
      const r = run([
        "capture",
        "--iface",
        "lo",
        "--filter",
        "udp port 9",
        "--count",
        "5",
        "--write",
        file,
        "--json",
      ]);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { packets: number; interfaces: { name: string }[] };
      expect(out.packets).toBe(5);
      expect(out.interfaces.map((i) => i.name)).toEqual(["lo"]);
      const names: (string | null)[] = [];
      let datagrams = 0;
      await readCaptureFile(file, {
        interface: (i) => names.push(i.name),
        record: (rec) => {
          if (Buffer.from(rec.data).includes("svt-cli-")) datagrams++;
        },
      });
      expect(names).toEqual(["lo"]);
      expect(datagrams).toBe(5);
    });

    it("--db: the capture is ingested, legs and all", () => {
      const db = join(dir, "cap.db");
      const r = run([
        "capture",
        "--iface",
        "any",
        "--filter",
        "udp port 9",
        "--count",
        "6",
        "--db",
        db,
        "--node",
        "n1",
      ]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/captured 6 packets on any/);
      const sql = new Database(db, { readonly: true });
      try {
        const legs = sql.prepare("SELECT count(*) AS n, min(node) AS node FROM legs").get() as {
          n: number;
          node: string;
        };
        expect(legs.n).toBeGreaterThanOrEqual(1);
        expect(legs.node).toBe("n1");
        const ifaces = sql.prepare("SELECT name, link_type FROM interfaces").all() as {
          name: string;
          link_type: number;
        }[];
        expect(ifaces).toEqual([{ name: "any", link_type: 113 }]);
      } finally {
        sql.close();
      }
    });

    it("collect --capture live writes capture.pcapng when asked for svctrace's own capture", () => {
      const out = join(dir, "bundle");
      const r = run([
        "collect",
        "--node",
        "n1",
        "--duration",
        "1s",
        "--out",
        out,
        "--capture",
        "live",
        "--no-inventory",
      ]);
      expect(r.status, r.stderr).toBe(0);
      const files = readdirSync(join(out, "nodes", "n1"));
      expect(files).toContain("capture.pcapng");
      expect(r.stdout).toMatch(/capture: nodes\/n1\/capture\.pcapng by svctrace, \d+ packets/);
      expect(existsSync(join(out, "bundle.json"))).toBe(true);
    });
  },
);
