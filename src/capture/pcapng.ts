import { InputError } from "../util/errors.js";
import type { StreamParser } from "./pcap.js";
import type { CaptureRecord, RecordSink } from "./types.js";

/**
 * pcapng: several sections (each with its own byte order), several interfaces per section, EPB,
 * SPB and the obsolete PB; every other block type is skipped by its length.
 */

export const BT_SHB = 0x0a0d0d0a;
export const BT_IDB = 0x00000001;
export const BT_PB = 0x00000002;
export const BT_SPB = 0x00000003;
export const BT_EPB = 0x00000006;
const BOM = 0x1a2b3c4d;

/** Wireshark refuses blocks above 16 MiB; anything past this is corrupt, not big. */
const MAX_BLOCK = 64 * 1024 * 1024;

const OPT_ENDOFOPT = 0;
const OPT_IF_NAME = 2;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
const OPT_EPB_FLAGS = 2;

interface SectionInterface {
  globalId: number;
  linkType: number;
  snapLen: number;
  /** Timestamp units per second. */
  unitsPerSec: number;
  tsOffset: number;
}

export function isPcapngMagic(head: Uint8Array): boolean {
  return (
    head.length >= 4 && head[0] === 0x0a && head[1] === 0x0d && head[2] === 0x0d && head[3] === 0x0a
  );
}

const textDecoder = new TextDecoder("utf-8", { fatal: false });

export class PcapngParser implements StreamParser {
  needed = 12;
  records = 0;
  linkTypes = new Set<number>();
  sections = 0;
  private le = true;
  private ifaces: SectionInterface[] = [];
  private nextGlobalId = 0;
  // Scratch results of tsToSecNs, so the hot path returns two numbers without an object.
  private outSec = 0;
  private outNs = 0;

  constructor(
    private readonly file: string,
    private readonly sink: RecordSink,
    private readonly rec: CaptureRecord,
  ) {}

  parse(buf: Uint8Array, dv: DataView, start: number, end: number, base: number): number {
    let pos = start;
    while (true) {
      if (end - pos < 12) {
        this.needed = 12;
        return pos;
      }
      let type = dv.getUint32(pos, this.le);
      if (this.sections === 0 || dv.getUint32(pos, true) === BT_SHB) {
        // A section header fixes the byte order of everything up to the next one.
        if (dv.getUint32(pos, true) !== BT_SHB) {
          throw new InputError("not a pcapng file (first block is not a section header)", {
            file: this.file,
            offset: base + pos,
          });
        }
        const bomLE = dv.getUint32(pos + 8, true);
        if (bomLE === BOM) this.le = true;
        else if (dv.getUint32(pos + 8, false) === BOM) this.le = false;
        else {
          throw new InputError("pcapng section header with a bad byte-order magic", {
            file: this.file,
            offset: base + pos + 8,
          });
        }
        type = BT_SHB;
      }
      const len = dv.getUint32(pos + 4, this.le);
      if (len < 12 || len % 4 !== 0 || len > MAX_BLOCK || (type === BT_SHB && len < 28)) {
        throw new InputError(`impossible pcapng block length ${len} (block type 0x${hex(type)})`, {
          file: this.file,
          offset: base + pos,
        });
      }
      if (end - pos < len) {
        this.needed = len;
        return pos;
      }
      const trailer = dv.getUint32(pos + len - 4, this.le);
      if (trailer !== len) {
        throw new InputError(
          `pcapng block length ${len} does not match its trailing copy ${trailer} (block type 0x${hex(type)})`,
          { file: this.file, offset: base + pos },
        );
      }
      switch (type) {
        case BT_SHB:
          this.sections++;
          this.ifaces = [];
          break;
        case BT_IDB:
          this.readIdb(buf, dv, pos, len, base);
          break;
        case BT_EPB:
          this.readEpb(buf, dv, pos, len, base);
          break;
        case BT_SPB:
          this.readSpb(buf, dv, pos, len, base);
          break;
        case BT_PB:
          this.readPb(buf, dv, pos, len, base);
          break;
        default:
          break;
      }
      pos += len;
    }
  }

  private readIdb(buf: Uint8Array, dv: DataView, pos: number, len: number, base: number): void {
    if (len < 20) this.tooShort("interface description", pos, len, base);
    const linkType = dv.getUint16(pos + 8, this.le);
    const snapLen = dv.getUint32(pos + 12, this.le);
    let name: string | null = null;
    let unitsPerSec = 1e6;
    let tsOffset = 0;
    let o = pos + 16;
    const optEnd = pos + len - 4;
    while (o + 4 <= optEnd) {
      const code = dv.getUint16(o, this.le);
      const olen = dv.getUint16(o + 2, this.le);
      if (code === OPT_ENDOFOPT) break;
      const v = o + 4;
      if (v + olen > optEnd) break;
      if (code === OPT_IF_NAME) {
        let n = olen;
        while (n > 0 && buf[v + n - 1] === 0) n--;
        name = textDecoder.decode(buf.subarray(v, v + n));
      } else if (code === OPT_IF_TSRESOL && olen >= 1) {
        const r = buf[v]!;
        unitsPerSec = r & 0x80 ? 2 ** (r & 0x7f) : 10 ** r;
      } else if (code === OPT_IF_TSOFFSET && olen >= 8) {
        const hi = this.le ? dv.getInt32(v + 4, true) : dv.getInt32(v, false);
        const lo = this.le ? dv.getUint32(v, true) : dv.getUint32(v + 4, false);
        tsOffset = hi * 4294967296 + lo;
      }
      o = v + ((olen + 3) & ~3);
    }
    const globalId = this.nextGlobalId++;
    this.ifaces.push({ globalId, linkType, snapLen, unitsPerSec, tsOffset });
    this.linkTypes.add(linkType);
    this.sink.interface({ id: globalId, name, linkType, snapLen });
  }

  private iface(id: number, pos: number, base: number): SectionInterface {
    const iface = this.ifaces[id];
    if (iface === undefined) {
      throw new InputError(`packet block for interface ${id}, which this section never described`, {
        file: this.file,
        offset: base + pos,
      });
    }
    return iface;
  }

  /**
   * EPB and the obsolete PB share a layout from byte 12 on; they differ in the interface id's
   * width (the PB's upper 16 bits count drops) and in the block's name in errors.
   */
  private readEpb(buf: Uint8Array, dv: DataView, pos: number, len: number, base: number): void {
    this.readPacketBlock(buf, dv, pos, len, base, true);
  }

  private readPb(buf: Uint8Array, dv: DataView, pos: number, len: number, base: number): void {
    this.readPacketBlock(buf, dv, pos, len, base, false);
  }

  private readPacketBlock(
    buf: Uint8Array,
    dv: DataView,
    pos: number,
    len: number,
    base: number,
    enhanced: boolean,
  ): void {
    if (len < 32) this.tooShort(enhanced ? "enhanced packet" : "packet", pos, len, base);
    const le = this.le;
    const interfaceId = enhanced ? dv.getUint32(pos + 8, le) : dv.getUint16(pos + 8, le);
    const iface = this.iface(interfaceId, pos, base);
    const capLen = dv.getUint32(pos + 20, le);
    if (28 + capLen + 4 > len) this.badCapLen(capLen, pos, len, base);
    this.tsToSecNs(dv.getUint32(pos + 12, le), dv.getUint32(pos + 16, le), iface.unitsPerSec);
    const rec = this.rec;
    rec.flags = -1;
    const optStart = pos + 28 + ((capLen + 3) & ~3);
    const optEnd = pos + len - 4;
    if (optStart + 4 <= optEnd) rec.flags = this.findFlags(dv, optStart, optEnd);
    rec.tsSec = this.outSec + iface.tsOffset;
    rec.tsNsec = this.outNs;
    rec.origLen = dv.getUint32(pos + 24, le);
    rec.buf = buf;
    rec.start = pos + 28;
    rec.end = pos + 28 + capLen;
    rec.interfaceId = iface.globalId;
    rec.linkType = iface.linkType;
    rec.offset = base + pos;
    this.records++;
    this.sink.record(rec);
  }

  private readSpb(buf: Uint8Array, dv: DataView, pos: number, len: number, base: number): void {
    if (len < 16) this.tooShort("simple packet", pos, len, base);
    const iface = this.iface(0, pos, base);
    const origLen = dv.getUint32(pos + 8, this.le);
    // The SPB has no captured-length field: it is the original length cut by the snap length.
    let capLen = Math.min(origLen, len - 16);
    if (iface.snapLen > 0) capLen = Math.min(capLen, iface.snapLen);
    const rec = this.rec;
    rec.tsSec = 0;
    rec.tsNsec = 0;
    rec.flags = -1;
    rec.origLen = origLen;
    rec.buf = buf;
    rec.start = pos + 12;
    rec.end = pos + 12 + capLen;
    rec.interfaceId = iface.globalId;
    rec.linkType = iface.linkType;
    rec.offset = base + pos;
    this.records++;
    this.sink.record(rec);
  }

  private findFlags(dv: DataView, o: number, optEnd: number): number {
    while (o + 4 <= optEnd) {
      const code = dv.getUint16(o, this.le);
      const olen = dv.getUint16(o + 2, this.le);
      if (code === OPT_ENDOFOPT) break;
      if (code === OPT_EPB_FLAGS && olen === 4 && o + 8 <= optEnd)
        return dv.getUint32(o + 4, this.le);
      o += 4 + ((olen + 3) & ~3);
    }
    return -1;
  }

  /** 64-bit timestamp in `unitsPerSec` units → outSec/outNs, exact for decimal resolutions. */
  private tsToSecNs(high: number, low: number, unitsPerSec: number): void {
    let sec: number;
    let rem: number;
    if (high < 0x200000) {
      const v = high * 4294967296 + low;
      sec = Math.floor(v / unitsPerSec);
      rem = v - sec * unitsPerSec;
    } else {
      // Long division in 16-bit steps keeps every intermediate below 2^53 (ns since 1970 is not).
      const q1 = Math.floor(high / unitsPerSec);
      const r1 = high - q1 * unitsPerSec;
      const a = r1 * 65536 + (low >>> 16);
      const q2 = Math.floor(a / unitsPerSec);
      const r2 = a - q2 * unitsPerSec;
      const b = r2 * 65536 + (low & 0xffff);
      const q3 = Math.floor(b / unitsPerSec);
      rem = b - q3 * unitsPerSec;
      sec = q1 * 4294967296 + q2 * 65536 + q3;
    }
    this.outSec = sec;
    this.outNs =
      unitsPerSec === 1e9
        ? rem
        : unitsPerSec < 1e9 && 1e9 % unitsPerSec === 0
          ? rem * (1e9 / unitsPerSec)
          : Math.floor((rem * 1e9) / unitsPerSec);
  }

  private tooShort(what: string, pos: number, len: number, base: number): never {
    throw new InputError(`pcapng ${what} block too short (${len} bytes)`, {
      file: this.file,
      offset: base + pos,
    });
  }

  private badCapLen(capLen: number, pos: number, len: number, base: number): never {
    throw new InputError(`pcapng captured length ${capLen} does not fit its ${len}-byte block`, {
      file: this.file,
      offset: base + pos,
    });
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
