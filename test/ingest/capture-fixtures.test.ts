import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ingestPaths } from "../../src/ingest/ingest.js";
import { type Db, openDb } from "../../src/store/db.js";
import { listCaptures, listLegs } from "../../src/store/queries.js";

// The capture engineer's real fixtures (test/fixtures/captures/README.md): tcpdump SLL2 and SLL,
// dumpcap pcapng, nanosecond pcap, gzip. capinfos (Wireshark) is the independent packet count.
const captures = join(import.meta.dirname, "..", "fixtures", "captures");
const haveCapinfos = spawnSync("sh", ["-c", "command -v capinfos"]).status === 0;

let dir: string;
let db: Db;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-fixtures-"));
  db = openDb(join(dir, "f.db"));
});
afterAll(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("ingesting the capture fixtures directory", () => {
  it.skipIf(!haveCapinfos)(
    "stores every capture with the packet count capinfos gives",
    async () => {
      const s = await ingestPaths(db, [captures]);
      expect(s.failed).toBe(0);
      const stored = listCaptures(db);
      expect(stored.length).toBeGreaterThanOrEqual(4);
      for (const c of stored) {
        const out = execFileSync("capinfos", ["-c", "-M", "-T", "-r", c.path], {
          encoding: "utf8",
        });
        const expected = Number(out.trim().split("\t")[1]);
        expect(c.packets, basename(c.path)).toBe(expected);
        expect(listLegs(db, { captureId: c.id }).length, basename(c.path)).toBe(c.legs);
      }
      expect(s.packets).toBe(stored.reduce((n, c) => n + c.packets, 0));
    },
  );
});
