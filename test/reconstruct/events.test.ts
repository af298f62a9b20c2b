import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ingestPaths } from "../../src/ingest/ingest.js";
import { decodeEvents, encodeEvents, readEvents } from "../../src/reconstruct/events.js";
import { mergeByTime } from "../../src/reconstruct/reconstruct.js";
import type { LegView, TranslationView } from "../../src/reconstruct/types.js";
import type { Db } from "../../src/store/db.js";
import { openDb } from "../../src/store/db.js";
import { iterateLegs, listInterfaces, listTranslations } from "../../src/store/queries.js";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "svctrace-events-"));
let db: Db;
beforeAll(async () => {
  db = openDb(join(dir, "bundle.db"));
  await ingestPaths(db, [join(root, "traces", "02-nodeport-external-masquerade")]);
});
afterAll(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The same stream built the plain way: every leg and translation from the store's readers. */
function expectedEvents(): (LegView | TranslationView)[] {
  const names = new Map(listInterfaces(db).map((i) => [`${i.captureId}/${i.idx}`, i.name]));
  const legs: LegView[] = [...iterateLegs(db)].map((l) => ({
    kind: "leg",
    id: l.id,
    node: l.node ?? `capture-${l.captureId}`,
    iface: names.get(`${l.captureId}/${l.interfaceId}`) ?? null,
    proto: l.proto,
    origIp: l.origIp,
    origPort: l.origPort,
    respIp: l.respIp,
    respPort: l.respPort,
    firstTs: l.firstTs,
    lastTs: l.lastTs,
    origPackets: l.origPackets,
    respPackets: l.respPackets,
    connState: l.connState,
    history: l.history,
    direction: l.direction,
    icmpErrors: l.icmpErrors,
  }));
  const translations: TranslationView[] = listTranslations(db).map((t) => ({
    kind: "translation",
    id: t.id,
    node: t.node ?? `capture-${t.captureId}`,
    pre: t.pre,
    post: t.post,
    firstTs: t.firstTs,
    lastTs: t.lastTs,
    packets: t.packets,
  }));
  const byTime = <T extends { firstTs: number; id: number }>(a: T, b: T) =>
    a.firstTs - b.firstTs || a.id - b.id;
  return [...mergeByTime(legs.sort(byTime), translations.sort(byTime))];
}

describe("leg and translation events", () => {
  it("decode to every leg and translation of the store, in time order", () => {
    const events = [...readEvents(db, { thread: false })];
    expect(events.length).toBeGreaterThan(100);
    expect(events.some((e) => e.kind === "translation")).toBe(true);
    expect(events).toEqual(expectedEvents());
  });

  it("survive the dictionary starting afresh", () => {
    const batches = [...encodeEvents(db, { batch: 16, maxDictionary: 5 })];
    expect(batches.filter((b) => b.reset).length).toBeGreaterThan(0);
    expect([...decodeEvents(batches)]).toEqual(expectedEvents());
  });

  it("come out of the reader thread exactly as out of this one", async () => {
    // The worker runs compiled JavaScript: the build's copy of the module (global setup builds).
    const built = (await import(join(root, "dist", "src", "reconstruct", "events.js"))) as {
      readEvents: typeof readEvents;
      readerThreadAvailable: (db: Db) => boolean;
    };
    expect(built.readerThreadAvailable(db)).toBe(true);
    expect([...built.readEvents(db, { thread: true })]).toEqual(expectedEvents());
  });

  it("report a reader thread that cannot open the database", async () => {
    const built = (await import(join(root, "dist", "src", "reconstruct", "events.js"))) as {
      readEvents: typeof readEvents;
    };
    const gone = { name: join(dir, "missing.db"), memory: false } as Db;
    expect(() => [...built.readEvents(gone, { thread: true })]).toThrow(/missing\.db/);
  });
});
