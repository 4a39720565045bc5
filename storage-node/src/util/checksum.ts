import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { crc32c } from '@node-rs/crc32';

/** Checksum algorithms S3 clients may send (x-amz-checksum-*). Implementation: see createHasher. */
export type ChecksumAlgorithm = 'CRC32' | 'CRC32C' | 'CRC64NVME' | 'SHA1' | 'SHA256';
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'];

export type CrcAlgorithm = 'CRC32' | 'CRC32C' | 'CRC64NVME';

/** A streaming digest: feed every byte once with update(), then digest() once. */
export interface Hasher {
  update(buf: Buffer): void;
  digest(): Buffer;
}

// node:zlib gained crc32 in Node 20.15; @types/node@20 may not declare it yet.
const zlibCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
if (typeof zlibCrc32 !== 'function') throw new Error('node:zlib crc32 is missing: Node.js >= 20.15 is required');

const DIGEST_LENGTH_BYTES: Record<ChecksumAlgorithm | 'MD5', number> = {
  CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32, MD5: 16,
};

function uint32Be(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** CRC32 / CRC32C: the native functions take the previous CRC as their starting state. */
class Crc32Hasher implements Hasher {
  private crc = 0;
  private done = false;
  constructor(private readonly fn: (data: Uint8Array, initial: number) => number) {}
  update(buf: Buffer): void {
    if (this.done) throw new Error('hasher already digested');
    if (buf.length > 0) this.crc = this.fn(buf, this.crc);
  }
  digest(): Buffer {
    this.done = true;
    return uint32Be(this.crc);
  }
}

/** Wraps a node:crypto Hash (native) in the Hasher shape. */
class CryptoHasher implements Hasher {
  private readonly h;
  constructor(alg: string) {
    this.h = createHash(alg);
  }
  update(buf: Buffer): void {
    this.h.update(buf);
  }
  digest(): Buffer {
    return this.h.digest();
  }
}

// ---------------------------------------------------------------------------------------------
// CRC-64/NVME. @aws-sdk/crc64-nvme only offers an async digest() (a Promise), which does not fit a
// synchronous stream stage, and it is JavaScript too; so this is our own slicing-by-8 table
// implementation, cross-checked against that package in the tests. The 64-bit state is kept as
// two uint32 halves because BigInt arithmetic per byte would be ~50x slower.
// ---------------------------------------------------------------------------------------------
const CRC64NVME_POLY = 0x9a6c9329ac4bc9b5n; // reflected
const SLICES = 8;
let crc64Lo: Uint32Array[] | undefined;
let crc64Hi: Uint32Array[] | undefined;

function crc64Tables(): [Uint32Array[], Uint32Array[]] {
  if (crc64Lo && crc64Hi) return [crc64Lo, crc64Hi];
  const lo: Uint32Array[] = [];
  const hi: Uint32Array[] = [];
  for (let s = 0; s < SLICES; s++) { lo.push(new Uint32Array(256)); hi.push(new Uint32Array(256)); }
  for (let b = 0; b < 256; b++) {
    let c = BigInt(b);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ CRC64NVME_POLY : c >> 1n;
    lo[0][b] = Number(c & 0xffffffffn);
    hi[0][b] = Number(c >> 32n);
  }
  // Table s: the CRC of byte b followed by s zero bytes.
  for (let s = 1; s < SLICES; s++) {
    for (let b = 0; b < 256; b++) {
      const pl = lo[s - 1][b];
      const ph = hi[s - 1][b];
      const i = pl & 0xff;
      lo[s][b] = (((pl >>> 8) | (ph << 24)) ^ lo[0][i]) >>> 0;
      hi[s][b] = ((ph >>> 8) ^ hi[0][i]) >>> 0;
    }
  }
  crc64Lo = lo;
  crc64Hi = hi;
  return [lo, hi];
}

class Crc64NvmeHasher implements Hasher {
  // Register state (pre-inverted), initial value all ones.
  private lo = 0xffffffff;
  private hi = 0xffffffff;
  private readonly tl: Uint32Array[];
  private readonly th: Uint32Array[];
  constructor() {
    [this.tl, this.th] = crc64Tables();
  }
  update(buf: Buffer): void {
    const [l0, l1, l2, l3, l4, l5, l6, l7] = this.tl;
    const [h0, h1, h2, h3, h4, h5, h6, h7] = this.th;
    let lo = this.lo;
    let hi = this.hi;
    const n = buf.length;
    let i = 0;
    for (; i + 8 <= n; i += 8) {
      const a = (lo ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24))) >>> 0;
      const b = (hi ^ (buf[i + 4] | (buf[i + 5] << 8) | (buf[i + 6] << 16) | (buf[i + 7] << 24))) >>> 0;
      const a0 = a & 0xff, a1 = (a >>> 8) & 0xff, a2 = (a >>> 16) & 0xff, a3 = a >>> 24;
      const b0 = b & 0xff, b1 = (b >>> 8) & 0xff, b2 = (b >>> 16) & 0xff, b3 = b >>> 24;
      lo = l7[a0] ^ l6[a1] ^ l5[a2] ^ l4[a3] ^ l3[b0] ^ l2[b1] ^ l1[b2] ^ l0[b3];
      hi = h7[a0] ^ h6[a1] ^ h5[a2] ^ h4[a3] ^ h3[b0] ^ h2[b1] ^ h1[b2] ^ h0[b3];
    }
    for (; i < n; i++) {
      const x = (lo ^ buf[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ l0[x];
      hi = (hi >>> 8) ^ h0[x];
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }
  digest(): Buffer {
    const b = Buffer.allocUnsafe(8);
    b.writeUInt32BE((~this.hi) >>> 0, 0);
    b.writeUInt32BE((~this.lo) >>> 0, 4);
    return b;
  }
}

/** A streaming hasher; CRC digests are the big-endian bytes of the CRC, as S3 base64-encodes them. */
export function createHasher(alg: ChecksumAlgorithm | 'MD5'): Hasher {
  switch (alg) {
    case 'CRC32': return new Crc32Hasher(zlibCrc32!);
    case 'CRC32C': return new Crc32Hasher(crc32c);
    case 'CRC64NVME': return new Crc64NvmeHasher();
    case 'SHA1': return new CryptoHasher('sha1');
    case 'SHA256': return new CryptoHasher('sha256');
    case 'MD5': return new CryptoHasher('md5');
    default: throw new Error(`unknown checksum algorithm ${String(alg)}`);
  }
}

/** 'crc32c' → 'CRC32C'; anything unknown → undefined. */
export function parseChecksumAlgorithm(s: string | undefined): ChecksumAlgorithm | undefined {
  if (s === undefined) return undefined;
  const u = s.trim().toUpperCase();
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(u) ? (u as ChecksumAlgorithm) : undefined;
}

/** 'CRC32' → 'x-amz-checksum-crc32' (lowercase, as Node presents header names). */
export function checksumHeaderName(alg: ChecksumAlgorithm): string {
  return `x-amz-checksum-${alg.toLowerCase()}`;
}

export function digestLengthBytes(alg: ChecksumAlgorithm | 'MD5'): number {
  return DIGEST_LENGTH_BYTES[alg];
}

/** True if `base64` is the canonical padded base64 of exactly digestLengthBytes(alg) bytes. */
export function isValidChecksumValue(alg: ChecksumAlgorithm, base64: string): boolean {
  const n = digestLengthBytes(alg);
  if (base64.length !== 4 * Math.ceil(n / 3)) return false;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return false;
  const raw = Buffer.from(base64, 'base64');
  return raw.length === n && raw.toString('base64') === base64;
}

function decodeDigest(alg: ChecksumAlgorithm, base64: string): Buffer {
  if (!isValidChecksumValue(alg, base64)) throw new Error(`invalid ${alg} checksum value`);
  return Buffer.from(base64, 'base64');
}

/** S3 COMPOSITE multipart checksum: base64(alg(concat(part digests))) + '-' + part count. */
export function compositeChecksum(alg: ChecksumAlgorithm, partChecksumsBase64: string[]): string {
  const h = createHasher(alg);
  for (const p of partChecksumsBase64) h.update(decodeDigest(alg, p));
  return `${h.digest().toString('base64')}-${partChecksumsBase64.length}`;
}

// ---------------------------------------------------------------------------------------------
// CRC combination (FULL_OBJECT multipart checksums). For these CRCs (reflected, init and xorout all
// ones) crc(A‖B) = crc(A)·x^(8·|B|) mod P  ⊕  crc(B): the init/xorout terms cancel. Polynomials are
// multiplied in GF(2) in the reflected bit order, with BigInt since this runs once per completed
// upload, not per byte. x^(8n) is built from a table of x^(2^k) and memoised per part size, since
// the parts of one upload nearly all have the same size.
// ---------------------------------------------------------------------------------------------
interface CrcParams { widthBits: number; poly: bigint; x2n: bigint[]; bySize: Map<number, bigint> }

const CRC_PARAMS: Record<CrcAlgorithm, CrcParams> = {
  CRC32: makeParams(32, 0xedb88320n),
  CRC32C: makeParams(32, 0x82f63b78n),
  CRC64NVME: makeParams(64, CRC64NVME_POLY),
};
const MAX_MEMO_SIZES = 64;

function makeParams(widthBits: number, poly: bigint): CrcParams {
  const p: CrcParams = { widthBits, poly, x2n: [], bySize: new Map() };
  let x = 1n << BigInt(widthBits - 2); // x^1 in reflected order
  for (let k = 0; k < 64; k++) {
    p.x2n.push(x); // x^(2^k)
    x = mulModP(p, x, x);
  }
  return p;
}

/** a·b mod P, both in reflected representation (x^0 is the top bit). */
function mulModP(p: CrcParams, a: bigint, b: bigint): bigint {
  let m = 1n << BigInt(p.widthBits - 1);
  let r = 0n;
  while (m !== 0n) {
    if (a & m) {
      r ^= b;
      if ((a & (m - 1n)) === 0n) break;
    }
    m >>= 1n;
    b = b & 1n ? (b >> 1n) ^ p.poly : b >> 1n;
  }
  return r;
}

/** x^(8·sizeBytes) mod P. */
function shiftFactor(p: CrcParams, sizeBytes: number): bigint {
  const memo = p.bySize.get(sizeBytes);
  if (memo !== undefined) return memo;
  let r = 1n << BigInt(p.widthBits - 1); // x^0
  let n = BigInt(sizeBytes);
  let k = 3; // 8·n = n·2^3
  while (n !== 0n) {
    if (n & 1n) r = mulModP(p, p.x2n[k], r);
    n >>= 1n;
    k++;
  }
  if (p.bySize.size >= MAX_MEMO_SIZES) p.bySize.clear();
  p.bySize.set(sizeBytes, r);
  return r;
}

function crcToBigint(alg: CrcAlgorithm, base64: string): bigint {
  return BigInt('0x' + decodeDigest(alg, base64).toString('hex'));
}

/** FULL_OBJECT checksum of the concatenation of the parts, from each part's CRC and size. */
export function combineCrc(alg: CrcAlgorithm, parts: { checksumBase64: string; sizeBytes: number }[]): string {
  const p = CRC_PARAMS[alg];
  if (!p) throw new Error(`combineCrc: ${String(alg)} is not a CRC`);
  let crc = 0n; // the CRC of no bytes
  for (const part of parts) {
    if (!Number.isSafeInteger(part.sizeBytes) || part.sizeBytes < 0) throw new Error(`combineCrc: bad part size ${part.sizeBytes}`);
    crc = mulModP(p, shiftFactor(p, part.sizeBytes), crc) ^ crcToBigint(alg, part.checksumBase64);
  }
  const out = Buffer.from(crc.toString(16).padStart(p.widthBits / 4, '0'), 'hex');
  return out.toString('base64');
}
