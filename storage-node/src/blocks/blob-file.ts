import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import {
  BlobFooter, BlobFormatError, BlobHeader, FOOTER_TAIL_BYTES, HEADER_BYTES, decodeFooter, decodeFooterTail, decodeHeader,
  fileSizeFor, footerBytesFor, isBlobId,
} from './blob-format';

/** Shared by the store, its writer and its readers: errors, paths, and opening a blob with its framing checked. */

/** Chunk index reported when the header or footer, not a data chunk, is damaged (truncated, foreign file). */
export const FRAMING_CHUNK_INDEX = -1;

/** Bytes of a blob failed their checksum; none of them were served. */
export class BlobCorruptError extends Error {
  readonly blobId: string;
  /** The bad chunk, or FRAMING_CHUNK_INDEX when the header or footer is damaged. */
  readonly chunkIndex: number;

  constructor(blobId: string, chunkIndex: number, detail?: string) {
    super(`blob ${blobId} is corrupt at ${chunkIndex === FRAMING_CHUNK_INDEX ? 'its header or footer' : `chunk ${chunkIndex}`}${detail ? `: ${detail}` : ''}`);
    this.name = 'BlobCorruptError';
    this.blobId = blobId;
    this.chunkIndex = chunkIndex;
  }
}

export class BlobNotFoundError extends Error {
  readonly blobId: string;

  constructor(blobId: string) {
    super(`blob ${blobId} not found`);
    this.name = 'BlobNotFoundError';
    this.blobId = blobId;
  }
}

/** Ids come from peers and metadata: anything but 32 lowercase hex digits could walk out of the directory. */
export function assertBlobId(id: string): void {
  if (typeof id !== 'string' || !isBlobId(id)) throw new RangeError(`not a blob id: ${JSON.stringify(id)}`);
}

/**
 * blobs/<id[0..2]>/<id>: 256 fan-out directories, all made when the store opens. One level (not
 * 256 x 256) so that a commit never has to create and fsync a new directory on the write path; a
 * directory holds ~4k entries per million blobs, which ext4/xfs index well.
 */
export function blobPath(blobsDir: string, id: string): string {
  return path.join(blobsDir, id.slice(0, 2), id);
}

/** The 256 fan-out directory names. */
export const FANOUT_DIRS: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Reads exactly buf.length bytes at `position`; returns the count read (less only at end of file). */
export async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export interface OpenBlob {
  fh: FileHandle;
  header: BlobHeader;
  footer: BlobFooter;
  fileSizeBytes: number;
  /** The whole file, when openBlob was asked to read it at once (header, data, footer: framing checked, data not). */
  whole?: Buffer;
}

export interface OpenBlobOptions {
  /** A file of at most this many bytes is read whole, in one read, instead of header, footer and chunks apart. */
  readWholeUpToBytes?: number;
}

/** The tail read covers the footer of blobs up to ~1000 chunks, so most opens take two reads. */
const TAIL_PREFETCH_BYTES = 4096;

/**
 * Opens a blob and checks its framing: header (magic, version, CRC, id), footer (magic, CRC) and that the
 * file size is exactly what they describe. A truncated or foreign file is a BlobCorruptError, a missing one
 * a BlobNotFoundError. The caller owns (and closes) the returned handle.
 */
export async function openBlob(file: string, id: string, opts: OpenBlobOptions = {}): Promise<OpenBlob> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    if (isNotFound(e)) throw new BlobNotFoundError(id);
    throw e;
  }
  try {
    const fileSizeBytes = (await fh.stat()).size;
    if (fileSizeBytes < HEADER_BYTES + FOOTER_TAIL_BYTES) throw new BlobFormatError(`file of ${fileSizeBytes} bytes is too short`);
    let headerBuf: Buffer;
    let tailBuf: Buffer;
    let whole: Buffer | undefined;
    if (fileSizeBytes <= (opts.readWholeUpToBytes ?? 0)) {
      whole = Buffer.allocUnsafe(fileSizeBytes);
      if ((await readFully(fh, whole, 0)) !== fileSizeBytes) throw new BlobFormatError('file shrank while being opened');
      headerBuf = whole.subarray(0, HEADER_BYTES);
      tailBuf = whole.subarray(HEADER_BYTES);
    } else {
      headerBuf = Buffer.alloc(HEADER_BYTES);
      tailBuf = Buffer.alloc(Math.min(fileSizeBytes - HEADER_BYTES, TAIL_PREFETCH_BYTES));
      const [headerRead, tailRead] = await Promise.all([
        readFully(fh, headerBuf, 0),
        readFully(fh, tailBuf, fileSizeBytes - tailBuf.length),
      ]);
      if (headerRead !== HEADER_BYTES || tailRead !== tailBuf.length) throw new BlobFormatError('file shrank while being opened');
    }
    const tailLen = tailBuf.length;
    const header = decodeHeader(headerBuf);
    if (header.blobId !== id) throw new BlobFormatError(`file holds blob ${header.blobId}`);
    const tail = decodeFooterTail(tailBuf.subarray(tailLen - FOOTER_TAIL_BYTES));
    const expected = fileSizeFor(tail.dataLengthBytes, header.chunkSizeBytes);
    if (fileSizeBytes !== expected) throw new BlobFormatError(`file is ${fileSizeBytes} bytes, its footer says ${expected}`);
    const footerLen = footerBytesFor(tail.chunkCount);
    if (footerLen > tailLen) {
      // Bounded: the size check above ties the chunk count to the file size and MAX_CHUNK_COUNT.
      tailBuf = Buffer.alloc(footerLen);
      if ((await readFully(fh, tailBuf, fileSizeBytes - footerLen)) !== footerLen) throw new BlobFormatError('file shrank while being opened');
    }
    const footer = decodeFooter(tailBuf.subarray(tailBuf.length - footerLen), header.chunkSizeBytes);
    return { fh, header, footer, fileSizeBytes, whole };
  } catch (e) {
    await fh.close().catch(() => undefined);
    if (e instanceof BlobFormatError) throw new BlobCorruptError(id, FRAMING_CHUNK_INDEX, e.message);
    throw e;
  }
}
