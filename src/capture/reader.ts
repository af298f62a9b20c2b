import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import { createGunzip, gunzipSync } from "node:zlib";
import { hexPreview, InputError } from "../util/errors.js";
import { isPcapMagic, PcapParser, type StreamParser } from "./pcap.js";
import { isPcapngMagic, PcapngParser } from "./pcapng.js";
import { type CaptureFormat, newCaptureRecord, type RecordSink } from "./types.js";

/**
 * Streaming capture reading: the file (gunzipped on the fly when it starts with the gzip magic)
 * flows through one growable buffer; the format parser consumes whole records from it and leaves
 * the incomplete tail for the next chunk. Memory is the buffer (a few MiB, or the largest record),
 * never the file.
 */

const CHUNK = 1 << 20;
const INITIAL_BUFFER = 4 << 20;

export interface ReadSummary {
  format: CaptureFormat;
  compressed: boolean;
  linkTypes: number[];
  records: number;
  /** Bytes of capture data consumed (decompressed). */
  bytes: number;
  warnings: string[];
}

export interface ReadOptions {
  onProgress?: (bytesRead: number, records: number) => void;
  /** Chunk size of file reads (tests use tiny ones to exercise record splitting). */
  chunkSize?: number;
  /**
   * Every chunk of the file as read (before gunzip), in order: lets the caller hash the file
   * without reading it a second time. The chunk is only valid during the call.
   * Not every byte is seen when the reading stops early (bad input, corrupt gzip): compare the
   * total with the file's size.
   */
  onRawChunk?: (chunk: Buffer) => void;
}

export function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

/** Which capture format these first bytes (already gunzipped) start; null when neither. */
export function sniffFormat(head: Uint8Array): CaptureFormat | null {
  if (isPcapngMagic(head)) return "pcapng";
  if (isPcapMagic(head)) return "pcap";
  return null;
}

/** Up to `n` first bytes of a file, gunzipped when it is gzip. */
export function readHead(path: string, n = 64): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const raw = Buffer.alloc(Math.max(n, 4096));
    const got = readSync(fd, raw, 0, raw.length, 0);
    const head = raw.subarray(0, got);
    if (!isGzip(head)) return head.subarray(0, n);
    try {
      // A partial gzip member: ask zlib to flush what it can rather than insist on the end.
      const out = gunzipSync(head, { finishFlush: 2 /* Z_SYNC_FLUSH */ });
      return out.subarray(0, n);
    } catch {
      return new Uint8Array(0);
    }
  } finally {
    closeSync(fd);
  }
}

/** Read a whole capture file, delivering interfaces and records to the sink as they stream. */
export async function readCaptureFile(
  path: string,
  sink: RecordSink,
  options: ReadOptions = {},
): Promise<ReadSummary> {
  const chunkSize = options.chunkSize ?? CHUNK;
  const head = readHead(path, 4096);
  const headRaw = Buffer.alloc(2);
  {
    const fd = openSync(path, "r");
    try {
      readSync(fd, headRaw, 0, 2, 0);
    } finally {
      closeSync(fd);
    }
  }
  const compressed = isGzip(headRaw);
  const format = sniffFormat(head);
  if (format === null) {
    throw new InputError(
      `not a pcap or pcapng capture${compressed ? " (after gunzip)" : ""}: first bytes ${hexPreview(head) || (compressed ? "(none: the gzip data does not decompress)" : "(empty file)")}`,
      { file: path, offset: 0 },
    );
  }
  const known: CaptureFormat = format;
  const rec = newCaptureRecord();
  const parser: StreamParser =
    format === "pcap" ? new PcapParser(path, sink, rec) : new PcapngParser(path, sink, rec);

  let buf = new Uint8Array(INITIAL_BUFFER);
  let dv = new DataView(buf.buffer);
  let start = 0;
  let end = 0;
  /** Stream offset of buf[0]. */
  let base = 0;
  const warnings: string[] = [];
  let gzipCut = false;

  if (!compressed) {
    // Plain file: read straight into the parse buffer (no stream, no 1 MiB buffer per chunk).
    const fh = await open(path, "r");
    let bytesRead = 0;
    try {
      for (;;) {
        if (end === buf.length) {
          const live = end - start;
          const want = Math.max(parser.needed, live + chunkSize);
          if (start > 0 && want <= buf.length) {
            buf.copyWithin(0, start, end);
          } else {
            const bigger = new Uint8Array(Math.max(buf.length * 2, want));
            bigger.set(buf.subarray(start, end));
            buf = bigger;
            dv = new DataView(buf.buffer);
          }
          base += start;
          end = live;
          start = 0;
        }
        const n = Math.min(chunkSize, buf.length - end);
        const got = (await fh.read(buf, end, n, null)).bytesRead;
        if (got === 0) break;
        options.onRawChunk?.(Buffer.from(buf.buffer, buf.byteOffset + end, got));
        end += got;
        bytesRead += got;
        start = parser.parse(buf, dv, start, end, base);
        options.onProgress?.(bytesRead, parser.records);
      }
    } finally {
      await fh.close();
    }
    return finish();
  }

  const raw = createReadStream(path, { highWaterMark: chunkSize });
  const source: Readable = raw.pipe(createGunzip({ chunkSize: Math.max(64, chunkSize) }));
  raw.on("error", (err) => source.destroy(err));
  const onRaw = options.onRawChunk;
  // No encoding is set on the stream: its chunks are Buffers.
  if (onRaw !== undefined) raw.on("data", (chunk) => onRaw(chunk as Buffer));
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        if (end === buf.length) {
          // Make room: drop consumed bytes, and grow when one item is larger than the buffer.
          const live = end - start;
          const want = Math.max(parser.needed, live + Math.min(chunk.length - off, CHUNK));
          if (start > 0 && want <= buf.length) {
            buf.copyWithin(0, start, end);
          } else {
            const bigger = new Uint8Array(Math.max(buf.length * 2, want));
            bigger.set(buf.subarray(start, end));
            buf = bigger;
            dv = new DataView(buf.buffer);
          }
          base += start;
          end = live;
          start = 0;
        }
        const n = Math.min(chunk.length - off, buf.length - end);
        buf.set(chunk.subarray(off, off + n), end);
        end += n;
        off += n;
        start = parser.parse(buf, dv, start, end, base);
      }
      options.onProgress?.(raw.bytesRead, parser.records);
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as { code?: string }).code;
    if (compressed && (code === "Z_BUF_ERROR" || code === "Z_DATA_ERROR")) {
      gzipCut = true;
      start = parser.parse(buf, dv, start, end, base);
    } else {
      throw err;
    }
  } finally {
    raw.destroy();
  }
  return finish();

  function finish(): ReadSummary {
    const leftover = end - start;
    if (gzipCut) {
      warnings.push(
        `gzip stream cut short or corrupt after ${base + end} decompressed bytes: ${parser.records} records read`,
      );
    } else if (leftover > 0) {
      warnings.push(
        `file cut short at byte offset ${base + start}${compressed ? " (decompressed)" : ""}: ${parser.records} records read, ${leftover} trailing bytes of an incomplete ${known === "pcap" ? "record" : "block"} ignored`,
      );
    }
    return {
      format: known,
      compressed,
      linkTypes: [...parser.linkTypes],
      records: parser.records,
      bytes: base + start,
      warnings,
    };
  }
}
