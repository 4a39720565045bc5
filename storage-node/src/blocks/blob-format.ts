import { crc32c } from '@node-rs/crc32';

/*
 * On-disk format of a blob file, version 1. All integers little-endian.
 *
 *   header (32 bytes)
 *     0  magic 'ARCB'
 *     4  u16 format version (1)
 *     6  u16 flags (0; a reader refuses flags it does not know)
 *     8  u32 chunkSizeBytes
 *    12  16 bytes blob id (binary): a file at the wrong path is caught, not served as another blob
 *    28  u32 CRC32C of bytes 0..28
 *   data: chunkCount chunks of chunkSizeBytes, the last one possibly shorter; chunk i at 32 + i * chunkSize
 *   footer
 *     chunkCount x u32 CRC32C of each chunk
 *     tail (20 bytes): u64 data length, u32 chunk count, u32 CRC32C of (CRCs + length + count), magic 'ARCF'
 *
 * The tail has a fixed length so that a reader finds the footer from the end of the file; a range read
 * needs the header, the footer and the chunks it covers, nothing else.
 */

export const BLOB_FORMAT_VERSION = 1;
export const HEADER_BYTES = 32;
export const FOOTER_TAIL_BYTES = 20;
export const HEADER_MAGIC = 'ARCB';
export const FOOTER_MAGIC = 'ARCF';
/** Tiny chunks are for tests; the node configuration sets the real floor. */
export const MIN_CHUNK_SIZE_BYTES = 16;
export const MAX_CHUNK_SIZE_BYTES = 64 * 1024 * 1024;
/** Bounds the footer (8 MiB of CRCs) that a reader loads; with 4 KiB chunks that is an 8 GiB blob. */
export const MAX_CHUNK_COUNT = 2 * 1024 * 1024;
export const BLOB_ID_BYTES = 16;

const BLOB_ID_RE = /^[0-9a-f]{32}$/;

/** The file is not a well-formed blob of this format (truncated, foreign, damaged header or footer). */
export class BlobFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlobFormatError';
  }
}

export interface BlobHeader {
  formatVersion: number;
  flags: number;
  chunkSizeBytes: number;
  blobId: string;
}

export interface BlobFooter {
  dataLengthBytes: number;
  chunkCount: number;
  /** chunkCount x u32 LE; read with chunkCrc(). */
  crcs: Buffer;
}

export function isBlobId(id: string): boolean {
  return BLOB_ID_RE.test(id);
}

export function assertChunkSize(chunkSizeBytes: number): void {
  if (!Number.isInteger(chunkSizeBytes) || chunkSizeBytes < MIN_CHUNK_SIZE_BYTES || chunkSizeBytes > MAX_CHUNK_SIZE_BYTES) {
    throw new RangeError(`chunkSizeBytes must be an integer in [${MIN_CHUNK_SIZE_BYTES}, ${MAX_CHUNK_SIZE_BYTES}], got ${chunkSizeBytes}`);
  }
}

export function chunkCountFor(dataLengthBytes: number, chunkSizeBytes: number): number {
  return Math.ceil(dataLengthBytes / chunkSizeBytes);
}

export function footerBytesFor(chunkCount: number): number {
  return chunkCount * 4 + FOOTER_TAIL_BYTES;
}

export function fileSizeFor(dataLengthBytes: number, chunkSizeBytes: number): number {
  return HEADER_BYTES + dataLengthBytes + footerBytesFor(chunkCountFor(dataLengthBytes, chunkSizeBytes));
}

/** File offset of chunk i. */
export function chunkOffset(chunkSizeBytes: number, chunkIndex: number): number {
  return HEADER_BYTES + chunkIndex * chunkSizeBytes;
}

/** Length of chunk i (the last one may be short). */
export function chunkLength(dataLengthBytes: number, chunkSizeBytes: number, chunkIndex: number): number {
  return Math.min(chunkSizeBytes, dataLengthBytes - chunkIndex * chunkSizeBytes);
}

export function chunkCrc(footer: BlobFooter, chunkIndex: number): number {
  return footer.crcs.readUInt32LE(chunkIndex * 4);
}

export function encodeHeader(h: { chunkSizeBytes: number; blobId: string }): Buffer {
  assertChunkSize(h.chunkSizeBytes);
  if (!isBlobId(h.blobId)) throw new RangeError(`not a blob id: ${h.blobId}`);
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(HEADER_MAGIC, 0, 'latin1');
  b.writeUInt16LE(BLOB_FORMAT_VERSION, 4);
  b.writeUInt16LE(0, 6);
  b.writeUInt32LE(h.chunkSizeBytes, 8);
  b.write(h.blobId, 12, BLOB_ID_BYTES, 'hex');
  b.writeUInt32LE(crc32c(b.subarray(0, 28)), 28);
  return b;
}

export function decodeHeader(b: Buffer): BlobHeader {
  if (b.length !== HEADER_BYTES) throw new BlobFormatError(`header is ${b.length} bytes, expected ${HEADER_BYTES}`);
  if (b.toString('latin1', 0, 4) !== HEADER_MAGIC) throw new BlobFormatError('not a blob file (bad header magic)');
  if (b.readUInt32LE(28) !== crc32c(b.subarray(0, 28))) throw new BlobFormatError('header checksum mismatch');
  const formatVersion = b.readUInt16LE(4);
  if (formatVersion !== BLOB_FORMAT_VERSION) throw new BlobFormatError(`unsupported blob format version ${formatVersion}`);
  const flags = b.readUInt16LE(6);
  if (flags !== 0) throw new BlobFormatError(`unknown header flags ${flags}`);
  const chunkSizeBytes = b.readUInt32LE(8);
  if (chunkSizeBytes < MIN_CHUNK_SIZE_BYTES || chunkSizeBytes > MAX_CHUNK_SIZE_BYTES) {
    throw new BlobFormatError(`chunk size ${chunkSizeBytes} out of range`);
  }
  return { formatVersion, flags, chunkSizeBytes, blobId: b.toString('hex', 12, 12 + BLOB_ID_BYTES) };
}

/** `crcs`: one CRC32C per chunk, in order. */
export function encodeFooter(crcs: ArrayLike<number>, dataLengthBytes: number, chunkSizeBytes: number): Buffer {
  const chunkCount = crcs.length;
  if (chunkCount !== chunkCountFor(dataLengthBytes, chunkSizeBytes)) {
    throw new RangeError(`${chunkCount} CRCs for ${dataLengthBytes} bytes in chunks of ${chunkSizeBytes}`);
  }
  if (chunkCount > MAX_CHUNK_COUNT) throw new RangeError(`${chunkCount} chunks exceed the limit of ${MAX_CHUNK_COUNT}`);
  const b = Buffer.alloc(footerBytesFor(chunkCount));
  for (let i = 0; i < chunkCount; i++) b.writeUInt32LE(crcs[i], i * 4);
  const t = chunkCount * 4;
  b.writeBigUInt64LE(BigInt(dataLengthBytes), t);
  b.writeUInt32LE(chunkCount, t + 8);
  b.writeUInt32LE(crc32c(b.subarray(0, t + 12)), t + 12);
  b.write(FOOTER_MAGIC, t + 16, 'latin1');
  return b;
}

/** Reads the fixed tail (the last FOOTER_TAIL_BYTES of the file); its CRC is checked by decodeFooter. */
export function decodeFooterTail(tail: Buffer): { dataLengthBytes: number; chunkCount: number } {
  if (tail.length !== FOOTER_TAIL_BYTES) throw new BlobFormatError(`footer tail is ${tail.length} bytes`);
  if (tail.toString('latin1', 16, 20) !== FOOTER_MAGIC) throw new BlobFormatError('bad footer magic (truncated or foreign file)');
  const len = tail.readBigUInt64LE(0);
  if (len > BigInt(Number.MAX_SAFE_INTEGER)) throw new BlobFormatError('data length out of range');
  const chunkCount = tail.readUInt32LE(8);
  if (chunkCount > MAX_CHUNK_COUNT) throw new BlobFormatError(`chunk count ${chunkCount} out of range`);
  return { dataLengthBytes: Number(len), chunkCount };
}

/** `b`: the whole footer (CRCs + tail). */
export function decodeFooter(b: Buffer, chunkSizeBytes: number): BlobFooter {
  if (b.length < FOOTER_TAIL_BYTES) throw new BlobFormatError('footer too short');
  const { dataLengthBytes, chunkCount } = decodeFooterTail(b.subarray(b.length - FOOTER_TAIL_BYTES));
  if (b.length !== footerBytesFor(chunkCount)) throw new BlobFormatError(`footer is ${b.length} bytes for ${chunkCount} chunks`);
  const t = chunkCount * 4;
  if (b.readUInt32LE(t + 12) !== crc32c(b.subarray(0, t + 12))) throw new BlobFormatError('footer checksum mismatch');
  if (chunkCount !== chunkCountFor(dataLengthBytes, chunkSizeBytes)) {
    throw new BlobFormatError(`${chunkCount} chunks cannot hold ${dataLengthBytes} bytes in chunks of ${chunkSizeBytes}`);
  }
  return { dataLengthBytes, chunkCount, crcs: b.subarray(0, t) };
}
