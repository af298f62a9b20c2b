import { InputError } from "../util/errors.js";
import type { CaptureRecord, RecordSink } from "./types.js";

/** Classic libpcap file: µs (a1b2c3d4) and ns (a1b23c4d) magic, both byte orders. */

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
/** Alexey Kuznetsov's patched libpcap: 8 more bytes per record header (ifindex, protocol, type). */
export const PCAP_MAGIC_KUZNETSOV = 0xa1b2cd34;

/** Records longer than this and the snap length cannot come from any real capture. */
const MAX_RECORD = 256 * 1024;
const HARD_MAX_RECORD = 64 * 1024 * 1024;

export interface StreamParser {
  /**
   * Parse every whole item in buf[start, end) and return the new start. `base` is the stream
   * offset of buf[0], for error messages. When it stops short, `needed` is the byte count of the
   * incomplete item (so the caller can grow its buffer).
   */
  parse(buf: Uint8Array, dv: DataView, start: number, end: number, base: number): number;
  needed: number;
  records: number;
  linkTypes: Set<number>;
}

export function isPcapMagic(head: Uint8Array): boolean {
  if (head.length < 4) return false;
  const be = ((head[0]! << 24) | (head[1]! << 16) | (head[2]! << 8) | head[3]!) >>> 0;
  const le = ((head[3]! << 24) | (head[2]! << 16) | (head[1]! << 8) | head[0]!) >>> 0;
  for (const m of [PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_KUZNETSOV]) {
    if (be === m || le === m) return true;
  }
  return false;
}

export class PcapParser implements StreamParser {
  needed = 24;
  records = 0;
  linkTypes = new Set<number>();
  private headerDone = false;
  private le = true;
  private nanos = false;
  private recHeader = 16;
  private linkType = 0;
  private snapLen = 0;

  constructor(
    private readonly file: string,
    private readonly sink: RecordSink,
    private readonly rec: CaptureRecord,
  ) {}

  parse(buf: Uint8Array, dv: DataView, start: number, end: number, base: number): number {
    let pos = start;
    if (!this.headerDone) {
      if (end - pos < 24) {
        this.needed = 24;
        return pos;
      }
      this.readHeader(dv, pos, base);
      pos += 24;
    }
    const le = this.le;
    const rec = this.rec;
    const hdr = this.recHeader;
    const limit = Math.min(HARD_MAX_RECORD, Math.max(MAX_RECORD, this.snapLen));
    while (true) {
      if (end - pos < hdr) {
        this.needed = hdr;
        return pos;
      }
      const inclLen = dv.getUint32(pos + 8, le);
      if (inclLen > limit) {
        throw new InputError(
          `impossible pcap record length ${inclLen} (snap length ${this.snapLen})`,
          { file: this.file, offset: base + pos },
        );
      }
      if (end - pos < hdr + inclLen) {
        this.needed = hdr + inclLen;
        return pos;
      }
      let sec = dv.getUint32(pos, le);
      let frac = dv.getUint32(pos + 4, le);
      // Some writers put a whole second in the fraction; carry it instead of rejecting the file.
      if (this.nanos) {
        if (frac >= 1e9) {
          sec += Math.floor(frac / 1e9);
          frac %= 1e9;
        }
        rec.tsNsec = frac;
      } else {
        if (frac >= 1e6) {
          sec += Math.floor(frac / 1e6);
          frac %= 1e6;
        }
        rec.tsNsec = frac * 1000;
      }
      rec.tsSec = sec;
      rec.origLen = dv.getUint32(pos + 12, le);
      rec.buf = buf;
      rec.start = pos + hdr;
      rec.end = pos + hdr + inclLen;
      rec.offset = base + pos;
      rec.interfaceId = 0;
      rec.linkType = this.linkType;
      rec.flags = -1;
      pos += hdr + inclLen;
      this.records++;
      this.sink.record(rec);
    }
  }

  private readHeader(dv: DataView, pos: number, base: number): void {
    const magicBE = dv.getUint32(pos, false);
    const magicLE = dv.getUint32(pos, true);
    if (
      magicBE === PCAP_MAGIC_US ||
      magicBE === PCAP_MAGIC_NS ||
      magicBE === PCAP_MAGIC_KUZNETSOV
    ) {
      this.le = false;
    } else if (
      magicLE === PCAP_MAGIC_US ||
      magicLE === PCAP_MAGIC_NS ||
      magicLE === PCAP_MAGIC_KUZNETSOV
    ) {
      this.le = true;
    } else {
      throw new InputError("not a pcap file (bad magic)", { file: this.file, offset: base + pos });
    }
    const magic = this.le ? magicLE : magicBE;
    this.nanos = magic === PCAP_MAGIC_NS;
    this.recHeader = magic === PCAP_MAGIC_KUZNETSOV ? 24 : 16;
    this.snapLen = dv.getUint32(pos + 16, this.le);
    // The upper bits of the link type field carry FCS information (LINKTYPE_FCS_LEN…).
    this.linkType = dv.getUint32(pos + 20, this.le) & 0x0fffffff;
    this.linkTypes.add(this.linkType);
    this.headerDone = true;
    this.sink.interface({ id: 0, name: null, linkType: this.linkType, snapLen: this.snapLen });
  }
}
