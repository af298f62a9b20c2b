import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { createPcapngFile } from "../../src/capture/pcapng-writer.js";
import { readCaptureFile, readHead, sniffFormat } from "../../src/capture/reader.js";
import type { CaptureInterface } from "../../src/capture/types.js";
import { InputError } from "../../src/util/errors.js";

const repoRoot = resolve(import.meta.dirname, "..", "..");
const fixtures = join(repoRoot, "test", "fixtures", "captures");
const conformance = join(resolve(repoRoot, "..", "shared"), "reference", "pcapng-conformance");
const tmp = mkdtempSync(join(tmpdir(), "svt-cap-reader-"));
afterAll(() => execFileSync("rm", ["-rf", tmp]));

interface Rec {
  tsSec: number;
  tsNsec: number;
  data: Buffer;
  origLen: number;
  interfaceId: number;
  linkType: number;
  flags: number;
  offset: number;
}

async function readAll(path: string, chunkSize?: number) {
  const records: Rec[] = [];
  const interfaces: CaptureInterface[] = [];
  const summary = await readCaptureFile(
    path,
    {
      interface: (i) => interfaces.push(i),
      // The record and its data are reused: copy what we keep.
      record: (r) =>
        records.push({
          tsSec: r.tsSec,
          tsNsec: r.tsNsec,
          data: Buffer.from(r.data),
          origLen: r.origLen,
          interfaceId: r.interfaceId,
          linkType: r.linkType,
          flags: r.flags,
          offset: r.offset,
        }),
    },
    chunkSize === undefined ? {} : { chunkSize },
  );
  return { records, interfaces, summary };
}

function hasTool(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

describe("pcapng conformance suite (Wireshark's test captures)", () => {
  const cases: { file: string; expected: number }[] = [];
  for (const order of ["output_le", "output_be"]) {
    for (const group of ["basic", "advanced", "difficult"]) {
      const dir = join(conformance, order, group);
      for (const name of readdirSync(dir)
        .filter((n) => n.endsWith(".pcapng"))
        .sort()) {
        const txt = readFileSync(join(dir, name.replace(/\.pcapng$/, ".txt")), "utf8");
        let expected = 0;
        for (const m of txt.matchAll(/^\s*(EPB|SPB|PB):\s*(\d+)/gm)) expected += Number(m[2]);
        cases.push({ file: join(order, group, name), expected });
      }
    }
  }

  it("has both byte orders of every test", () => {
    expect(cases.length).toBe(48);
  });

  it.each(cases)("$file holds $expected packets", async ({ file, expected }) => {
    const { records, summary } = await readAll(join(conformance, file));
    expect(summary.format).toBe("pcapng");
    expect(records.length).toBe(expected);
    expect(summary.warnings).toEqual([]);
  });

  it("big- and little-endian files give the same records", async () => {
    for (const c of cases.filter((x) => x.file.startsWith("output_le"))) {
      const le = await readAll(join(conformance, c.file));
      const be = await readAll(join(conformance, c.file.replace("output_le", "output_be")));
      expect(be.records.map((r) => [r.tsSec, r.tsNsec, r.interfaceId, r.data.length])).toEqual(
        le.records.map((r) => [r.tsSec, r.tsNsec, r.interfaceId, r.data.length]),
      );
    }
  });

  it("numbers interfaces across sections and keeps their names", async () => {
    const { interfaces } = await readAll(join(conformance, "output_le/difficult/test202.pcapng"));
    expect(interfaces.map((i) => i.id)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe("classic pcap against pcap-parser", () => {
  const require = createRequire(import.meta.url);
  const pcapParser = require("pcap-parser") as {
    parse(path: string): NodeJS.EventEmitter;
  };
  function oracle(
    path: string,
  ): Promise<{ sec: number; usec: number; data: Buffer; orig: number }[]> {
    return new Promise((done, fail) => {
      const out: { sec: number; usec: number; data: Buffer; orig: number }[] = [];
      const p = pcapParser.parse(path);
      p.on("packet", (pkt: { header: Record<string, number>; data: Buffer }) =>
        out.push({
          sec: pkt.header["timestampSeconds"]!,
          usec: pkt.header["timestampMicroseconds"]!,
          data: Buffer.from(pkt.data),
          orig: pkt.header["originalLength"]!,
        }),
      );
      p.on("end", () => done(out));
      p.on("error", fail);
    });
  }

  for (const name of ["node-any.pcap", "node-any-sll.pcap", "node-eth0-nano.pcap"]) {
    it(`${name}: same records, same timestamps`, async () => {
      const path = join(fixtures, name);
      // pcap-parser knows only the µs magic: give it a copy relabelled µs, whose "microseconds"
      // are then our nanoseconds.
      const nano = name.includes("nano");
      let oraclePath = path;
      if (nano) {
        const copy = Buffer.from(readFileSync(path));
        copy.writeUInt32LE(0xa1b2c3d4, 0);
        oraclePath = join(tmp, `us-${name}`);
        writeFileSync(oraclePath, copy);
      }
      const want = await oracle(oraclePath);
      const { records } = await readAll(path);
      expect(records.length).toBe(want.length);
      expect(records.length).toBeGreaterThan(50);
      records.forEach((r, i) => {
        const w = want[i]!;
        expect(r.tsSec).toBe(w.sec);
        expect(r.tsNsec).toBe(nano ? w.usec : w.usec * 1000);
        expect(r.origLen).toBe(w.orig);
        expect(r.data.equals(w.data)).toBe(true);
      });
    });
  }
});

describe("capture files", () => {
  it("reads nanosecond timestamps exactly (as tshark prints them)", async () => {
    if (!hasTool("tshark")) return;
    const path = join(fixtures, "node-eth0-nano.pcap");
    const want = execFileSync("tshark", ["-r", path, "-T", "fields", "-e", "frame.time_epoch"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    })
      .trim()
      .split("\n");
    const { records } = await readAll(path);
    expect(records.map((r) => `${r.tsSec}.${String(r.tsNsec).padStart(9, "0")}`)).toEqual(want);
    expect(records.some((r) => r.tsNsec % 1000 !== 0)).toBe(true);
  });

  it("reads gzip captures by content, with the same records", async () => {
    const plain = await readAll(join(fixtures, "node-eth0-nano.pcap"));
    const gz = await readAll(join(fixtures, "node-eth0-nano.pcap.gz"));
    expect(gz.summary.compressed).toBe(true);
    expect(gz.records).toEqual(plain.records);
  });

  it("gives the same records whatever the read chunk size", async () => {
    for (const name of ["node-any.pcap", "node-dumpcap.pcapng", "node-eth0-nano.pcap.gz"]) {
      const big = await readAll(join(fixtures, name));
      const small = await readAll(join(fixtures, name), 7);
      expect(small.records).toEqual(big.records);
    }
  });

  it("reads big-endian classic pcap", async () => {
    const le = readFileSync(join(fixtures, "node-any.pcap"));
    const be = Buffer.from(le);
    for (const o of [0]) be.writeUInt32BE(le.readUInt32LE(o), o);
    be.writeUInt16BE(le.readUInt16LE(4), 4);
    be.writeUInt16BE(le.readUInt16LE(6), 6);
    for (const o of [8, 12, 16, 20]) be.writeUInt32BE(le.readUInt32LE(o), o);
    for (let o = 24; o < le.length; ) {
      const incl = le.readUInt32LE(o + 8);
      for (let k = 0; k < 16; k += 4) be.writeUInt32BE(le.readUInt32LE(o + k), o + k);
      o += 16 + incl;
    }
    const path = join(tmp, "be.pcap");
    writeFileSync(path, be);
    const a = await readAll(join(fixtures, "node-any.pcap"));
    const b = await readAll(path);
    expect(b.records.map((r) => ({ ...r, offset: 0 }))).toEqual(
      a.records.map((r) => ({ ...r, offset: 0 })),
    );
  });

  it("sniffs formats from the first bytes, through gzip", () => {
    expect(sniffFormat(readHead(join(fixtures, "node-any.pcap")))).toBe("pcap");
    expect(sniffFormat(readHead(join(fixtures, "node-dumpcap.pcapng")))).toBe("pcapng");
    expect(sniffFormat(readHead(join(fixtures, "node-eth0-nano.pcap.gz")))).toBe("pcap");
    expect(sniffFormat(new TextEncoder().encode("*filter\n"))).toBeNull();
  });
});

describe("bad input", () => {
  async function error(bytes: Uint8Array): Promise<InputError> {
    const path = join(tmp, `bad-${Math.random().toString(36).slice(2)}`);
    writeFileSync(path, bytes);
    try {
      await readAll(path);
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      return e as InputError;
    }
    throw new Error("expected an InputError");
  }

  it("rejects a file that is not a capture, showing its first bytes", async () => {
    const e = await error(new TextEncoder().encode("# Generated by iptables-save"));
    expect(e.message).toContain("not a pcap or pcapng capture");
    expect(e.message).toContain("23 20 47 65");
    expect(e.offset).toBe(0);
  });

  it("rejects an empty file", async () => {
    const e = await error(new Uint8Array(0));
    expect(e.message).toContain("empty file");
  });

  it("names the byte offset of an impossible pcap record length", async () => {
    const good = readFileSync(join(fixtures, "node-any.pcap"));
    const bad = Buffer.from(good);
    const second = 24 + 16 + good.readUInt32LE(24 + 8);
    bad.writeUInt32LE(0x7fffffff, second + 8);
    const e = await error(bad);
    expect(e.offset).toBe(second);
    expect(e.message).toMatch(/impossible pcap record length/);
  });

  it("names the byte offset of an impossible pcapng block length", async () => {
    const good = readFileSync(join(fixtures, "node-dumpcap.pcapng"));
    const bad = Buffer.from(good);
    const shbLen = good.readUInt32LE(4);
    bad.writeUInt32LE(13, shbLen + 4); // not a multiple of 4
    const e = await error(bad);
    expect(e.offset).toBe(shbLen);
    expect(e.message).toMatch(/impossible pcapng block length 13/);
  });

  it("a pcapng block whose trailing length disagrees is an error at that block", async () => {
    const good = readFileSync(join(fixtures, "node-dumpcap.pcapng"));
    const bad = Buffer.from(good);
    const shbLen = good.readUInt32LE(4);
    const len = good.readUInt32LE(shbLen + 4);
    bad.writeUInt32LE(len + 4, shbLen + len - 4);
    const e = await error(bad);
    expect(e.offset).toBe(shbLen);
  });

  it("a file cut short keeps every record before the cut and warns", async () => {
    for (const name of ["node-any.pcap", "node-dumpcap.pcapng"]) {
      const good = readFileSync(join(fixtures, name));
      const full = await readAll(join(fixtures, name));
      for (const cut of [good.length - 1, Math.floor(good.length / 2), 30]) {
        const path = join(tmp, `cut-${cut}-${name}`);
        writeFileSync(path, good.subarray(0, cut));
        const part = await readAll(path);
        const whole = full.records.filter((r) => r.offset + 16 + r.data.length <= cut);
        expect(part.records.length).toBeGreaterThanOrEqual(whole.length - 1);
        expect(part.records).toEqual(full.records.slice(0, part.records.length));
        expect(part.summary.warnings.join()).toMatch(/cut short at byte offset \d+/);
      }
    }
  });

  it("a gzip file cut short keeps what decompressed and warns", async () => {
    const gz = gzipSync(readFileSync(join(fixtures, "node-any.pcap")));
    const path = join(tmp, "cut.pcap.gz");
    writeFileSync(path, gz.subarray(0, Math.floor(gz.length * 0.6)));
    const part = await readAll(path);
    expect(part.records.length).toBeGreaterThan(10);
    expect(part.summary.warnings.join()).toMatch(/gzip stream cut short|cut short/);
  });
});

describe("pcapng writer", () => {
  it("writes what our reader and tshark read back: names, ns timestamps, directions", async () => {
    const path = join(tmp, "written.pcapng");
    const w = createPcapngFile(path);
    const eth = w.addInterface({ name: "eth0", linkType: 1 });
    const lo = w.addInterface({ name: "lo", linkType: 1 });
    const frame = new Uint8Array(60).map((_, i) => i);
    w.writePacket(eth, 1764000000, 123456789, frame, 60, "in");
    w.writePacket(lo, 1764000001, 1, frame.subarray(0, 13), 100, "out");
    w.writePacket(eth, 1764000002, 999999999, frame);
    w.close();
    const { records, interfaces } = await readAll(path);
    expect(interfaces.map((i) => i.name)).toEqual(["eth0", "lo"]);
    expect(
      records.map((r) => [r.interfaceId, r.tsSec, r.tsNsec, r.data.length, r.origLen, r.flags]),
    ).toEqual([
      [0, 1764000000, 123456789, 60, 60, 1],
      [1, 1764000001, 1, 13, 100, 2],
      [0, 1764000002, 999999999, 60, 60, -1],
    ]);
    if (!hasTool("tshark")) return;
    const out = execFileSync(
      "tshark",
      ["-r", path, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    );
    expect(out.trim().split("\n")).toEqual([
      "eth0\t1764000000.123456789",
      "lo\t1764000001.000000001",
      "eth0\t1764000002.999999999",
    ]);
  });
});

describe("pcapng details the conformance suite does not cover", () => {
  /** One block in the given byte order: type, body, padded, with both length fields. */
  function block(le: boolean, type: number, body: number[]): number[] {
    const padded = [...body];
    while (padded.length % 4) padded.push(0);
    const len = padded.length + 12;
    const dv = new DataView(new ArrayBuffer(len));
    dv.setUint32(0, type, le);
    dv.setUint32(4, len, le);
    new Uint8Array(dv.buffer).set(padded, 8);
    dv.setUint32(len - 4, len, le);
    return [...new Uint8Array(dv.buffer)];
  }
  const u16 = (le: boolean, v: number) => (le ? [v & 255, v >> 8] : [v >> 8, v & 255]);
  const u32 = (le: boolean, v: number) => {
    const b = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
    return le ? b.reverse() : b;
  };
  const option = (le: boolean, code: number, value: number[]) => {
    const out = [...u16(le, code), ...u16(le, value.length), ...value];
    while (out.length % 4) out.push(0);
    return out;
  };

  it.each([true, false])(
    "obsolete PB, binary if_tsresol and if_tsoffset (little-endian %s)",
    async (le) => {
      const shb = block(le, 0x0a0d0d0a, [
        ...u32(le, 0x1a2b3c4d),
        ...u16(le, 1),
        ...u16(le, 0),
        ...u32(le, 0xffffffff),
        ...u32(le, 0xffffffff),
      ]);
      const idb = block(le, 1, [
        ...u16(le, 101),
        0,
        0,
        ...u32(le, 65535),
        ...option(le, 2, [...Buffer.from("veth0")]),
        ...option(le, 9, [0x83]), // 2^-3 s units
        ...option(le, 14, le ? [100, 0, 0, 0, 0, 0, 0, 0] : [0, 0, 0, 0, 0, 0, 0, 100]),
        0,
        0,
        0,
        0,
      ]);
      const frame = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
      // PB: interface 0, drops 0, timestamp 8 * 1000 + 5 units (1000.625 s), caplen, len, data, pack_flags outbound.
      const pb = block(le, 2, [
        ...u16(le, 0),
        ...u16(le, 0),
        ...u32(le, 0),
        ...u32(le, 8005),
        ...u32(le, 20),
        ...u32(le, 20),
        ...frame,
        ...option(le, 2, u32(le, 2)),
        0,
        0,
        0,
        0,
      ]);
      const unknown = block(le, 0x40000bad, [1, 2, 3]);
      const path = join(tmp, `pb-${le}.pcapng`);
      writeFileSync(path, Buffer.from([...shb, ...idb, ...unknown, ...pb]));
      const { records, interfaces } = await readAll(path);
      expect(interfaces).toEqual([{ id: 0, name: "veth0", linkType: 101, snapLen: 65535 }]);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ tsSec: 1100, tsNsec: 625_000_000, flags: 2, origLen: 20 });
      expect([...records[0]!.data]).toEqual(frame);
    },
  );

  it("a packet for an interface the section never described is an error at its block", async () => {
    const le = true;
    const shb = block(le, 0x0a0d0d0a, [
      ...u32(le, 0x1a2b3c4d),
      ...u16(le, 1),
      ...u16(le, 0),
      ...u32(le, 0xffffffff),
      ...u32(le, 0xffffffff),
    ]);
    const epb = block(le, 6, [
      ...u32(le, 3),
      ...u32(le, 0),
      ...u32(le, 0),
      ...u32(le, 0),
      ...u32(le, 0),
    ]);
    const path = join(tmp, "no-idb.pcapng");
    writeFileSync(path, Buffer.from([...shb, ...epb]));
    await expect(readAll(path)).rejects.toThrow(/interface 3, which this section never described/);
    await expect(readAll(path)).rejects.toMatchObject({ offset: shb.length });
  });
});
