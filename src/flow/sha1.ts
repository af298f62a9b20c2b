/**
 * SHA-1 of one short message (at most 55 bytes, so one 64-byte block), written for Community ID:
 * node:crypto's createHash costs a native object per call, and every leg needs one hash.
 */

const W = new Int32Array(80);
const BLOCK = new Uint8Array(64);
const OUT = new Uint8Array(20);

/** SHA-1 digest of msg[0, len) (len ≤ 55) into a shared 20-byte array (valid until next call). */
export function sha1Short(msg: Uint8Array, len: number): Uint8Array {
  if (len > 55) throw new RangeError("sha1Short: message longer than one block");
  BLOCK.fill(0);
  for (let i = 0; i < len; i++) BLOCK[i] = msg[i]!;
  BLOCK[len] = 0x80;
  const bits = len * 8;
  BLOCK[62] = (bits >>> 8) & 0xff;
  BLOCK[63] = bits & 0xff;
  for (let i = 0; i < 16; i++) {
    W[i] =
      (BLOCK[i * 4]! << 24) |
      (BLOCK[i * 4 + 1]! << 16) |
      (BLOCK[i * 4 + 2]! << 8) |
      BLOCK[i * 4 + 3]!;
  }
  for (let i = 16; i < 80; i++) {
    const x = W[i - 3]! ^ W[i - 8]! ^ W[i - 14]! ^ W[i - 16]!;
    W[i] = (x << 1) | (x >>> 31);
  }
  let a = 0x67452301;
  let b = 0xefcdab89 | 0;
  let c = 0x98badcfe | 0;
  let d = 0x10325476;
  let e = 0xc3d2e1f0 | 0;
  for (let i = 0; i < 80; i++) {
    let f: number;
    let k: number;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc | 0;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6 | 0;
    }
    const t = (((a << 5) | (a >>> 27)) + f + e + k + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  put32(0, (0x67452301 + a) | 0);
  put32(4, ((0xefcdab89 | 0) + b) | 0);
  put32(8, ((0x98badcfe | 0) + c) | 0);
  put32(12, (0x10325476 + d) | 0);
  put32(16, ((0xc3d2e1f0 | 0) + e) | 0);
  return OUT;
}

function put32(at: number, v: number): void {
  OUT[at] = v >>> 24;
  OUT[at + 1] = (v >>> 16) & 0xff;
  OUT[at + 2] = (v >>> 8) & 0xff;
  OUT[at + 3] = v & 0xff;
}

const B64 = new TextEncoder().encode(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
);
const EQ = 0x3d;
/** Scratch for prefix + base64 of up to 20 bytes (a SHA-1). */
const TEXT = Buffer.alloc(64);

/**
 * `prefix` (ASCII, short) followed by the standard base64 (with padding) of bytes[0, len), as
 * one flat string: written as bytes and decoded once, rather than concatenated character by
 * character (a string per step: ~700 bytes of garbage per Community ID).
 */
export function base64(bytes: Uint8Array, len: number, prefix = ""): string {
  const out =
    len <= 40 && prefix.length <= 8 ? TEXT : Buffer.alloc(prefix.length + 4 * Math.ceil(len / 3));
  let o = out.write(prefix, 0, "latin1");
  let i = 0;
  for (; i + 2 < len; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = B64[n >>> 18]!;
    out[o++] = B64[(n >>> 12) & 63]!;
    out[o++] = B64[(n >>> 6) & 63]!;
    out[o++] = B64[n & 63]!;
  }
  if (len - i === 1) {
    const n = bytes[i]! << 16;
    out[o++] = B64[n >>> 18]!;
    out[o++] = B64[(n >>> 12) & 63]!;
    out[o++] = EQ;
    out[o++] = EQ;
  } else if (len - i === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out[o++] = B64[n >>> 18]!;
    out[o++] = B64[(n >>> 12) & 63]!;
    out[o++] = B64[(n >>> 6) & 63]!;
    out[o++] = EQ;
  }
  return out.toString("latin1", 0, o);
}
