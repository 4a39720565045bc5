import { Readable } from 'node:stream';
import { crc32c } from '@node-rs/crc32';
import { HEADER_BYTES, chunkCrc, chunkLength, chunkOffset } from './blob-format';
import { BlobCorruptError, FRAMING_CHUNK_INDEX, OpenBlob, openBlob, readFully } from './blob-file';

export interface ByteRange {
  start: number;
  endInclusive: number;
}

interface ChunkRead {
  index: number;
  buf: Buffer;
  /** Bytes read. */
  done: Promise<number>;
}

/** A slice smaller than this share of its chunk is copied out, so the chunk buffer is reused, not pinned. */
const COPY_SLICE_BELOW_FRACTION = 0.25;
/**
 * A blob file up to this size is read in one read (header, data and footer) when the range covers at least
 * half of it: one system call and thread-pool round trip instead of three. No more memory than the chunked
 * path, which holds the current chunk and the one read ahead (1 MiB each by default).
 */
const WHOLE_READ_MAX_BYTES = 2 * 1024 * 1024;

/**
 * Streams bytes [start, endInclusive] of a blob. Each chunk is read whole and its CRC32C checked before any
 * of its bytes is pushed; on a mismatch the stream is destroyed with BlobCorruptError.
 *
 * highWaterMark is 1 byte: a chunk is pushed only when the consumer has taken the previous one, so when a
 * chunk turns out bad, the good ones before it have already been handed over (destroy() drops whatever
 * sits in a Readable's buffer). Disk reads still run one chunk ahead of the checks.
 */
export class BlobReadStream extends Readable {
  readonly blobId: string;
  private readonly file: string;
  private readonly range: ByteRange | undefined;
  private readonly onCorrupt: (id: string, chunkIndex: number) => void;
  private blob: OpenBlob | undefined;
  private startByte = 0;
  private endByte = -1;
  private nextChunk = 0;
  private lastChunk = -1;
  private spare: Buffer | undefined;
  private inFlight: Promise<void> | undefined;
  private ahead: ChunkRead | undefined;

  constructor(file: string, blobId: string, range: ByteRange | undefined, onCorrupt: (id: string, chunkIndex: number) => void) {
    // Checked before super(): the Readable schedules _construct() as soon as it exists.
    if (range !== undefined) assertRange(range);
    super({ highWaterMark: 1 });
    this.file = file;
    this.blobId = blobId;
    this.range = range;
    this.onCorrupt = onCorrupt;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    openBlob(this.file, this.blobId, { readWholeUpToBytes: this.wholeReadLimit() }).then((blob) => {
      this.blob = blob;
      const size = blob.footer.dataLengthBytes;
      this.startByte = this.range?.start ?? 0;
      this.endByte = this.range?.endInclusive ?? size - 1;
      if (this.endByte >= size) {
        callback(new RangeError(`range end ${this.endByte} is beyond blob ${this.blobId} of ${size} bytes`));
        return;
      }
      const cs = blob.header.chunkSizeBytes;
      this.nextChunk = Math.floor(this.startByte / cs);
      this.lastChunk = this.endByte < this.startByte ? this.nextChunk - 1 : Math.floor(this.endByte / cs);
      callback();
    }, (e: Error) => {
      if (e instanceof BlobCorruptError) this.reportCorrupt(e.chunkIndex);
      callback(e);
    });
  }

  /** Reading a small blob whole pays off unless the range is a small part of it. */
  private wholeReadLimit(): number {
    if (this.range === undefined) return WHOLE_READ_MAX_BYTES;
    return Math.min(WHOLE_READ_MAX_BYTES, 2 * (this.range.endInclusive - this.range.start + 1));
  }

  override _read(): void {
    if (this.inFlight !== undefined) return;
    // inFlight is cleared before push(): a push may call _read() again synchronously.
    this.inFlight = this.readNext().then(
      (out) => {
        this.inFlight = undefined;
        if (!this.destroyed) this.push(out);
      },
      (e: Error) => {
        this.inFlight = undefined;
        this.destroy(e);
      },
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const blob = this.blob;
    this.blob = undefined;
    this.spare = undefined;
    const ahead = this.ahead;
    this.ahead = undefined;
    // Close only after the reads in flight, so that the fd is not reused under them.
    void (async () => {
      await this.inFlight;
      await ahead?.done.catch(() => undefined);
      await blob?.fh.close();
    })().then(() => callback(error), (e: Error) => callback(error ?? e));
  }

  /** The next slice to push, or null at the end. */
  private async readNext(): Promise<Buffer | null> {
    const blob = this.blob;
    if (blob === undefined) throw new Error(`blob ${this.blobId} is not open`);
    const i = this.nextChunk;
    if (i > this.lastChunk) return null;
    this.nextChunk++;
    const cur = this.ahead?.index === i ? this.ahead : this.startRead(blob, i);
    this.ahead = undefined;
    const got = await cur.done;
    // Read the next chunk while this one is checked; nothing of it is pushed before it is checked in turn.
    if (i + 1 <= this.lastChunk && !this.destroyed) this.ahead = this.startRead(blob, i + 1);
    if (got !== cur.buf.length || crc32c(cur.buf) !== chunkCrc(blob.footer, i)) {
      this.reportCorrupt(i);
      throw new BlobCorruptError(this.blobId, i, got !== cur.buf.length ? 'short read' : 'checksum mismatch');
    }
    const chunkStart = i * blob.header.chunkSizeBytes;
    const from = Math.max(this.startByte - chunkStart, 0);
    const to = Math.min(this.endByte - chunkStart + 1, cur.buf.length);
    const slice = cur.buf.subarray(from, to);
    if (blob.whole !== undefined || slice.length >= cur.buf.length * COPY_SLICE_BELOW_FRACTION) return slice;
    this.spare = cur.buf;
    return Buffer.from(slice);
  }

  private startRead(blob: OpenBlob, index: number): ChunkRead {
    const cs = blob.header.chunkSizeBytes;
    if (blob.whole !== undefined) {
      // Already in memory (read by openBlob); checked by readNext like a chunk read from disk.
      const off = chunkOffset(cs, index);
      const buf = blob.whole.subarray(off, off + chunkLength(blob.footer.dataLengthBytes, cs, index));
      return { index, buf, done: Promise.resolve(buf.length) };
    }
    const buf = this.takeBuffer(chunkLength(blob.footer.dataLengthBytes, cs, index));
    const done = readFully(blob.fh, buf, chunkOffset(cs, index));
    // Awaited by readNext or _destroy; this only keeps a read abandoned by destroy() from being "unhandled".
    done.catch(() => undefined);
    return { index, buf, done };
  }

  /** A fresh buffer unless the last one was copied out of (a pushed buffer belongs to the consumer). */
  private takeBuffer(len: number): Buffer {
    const spare = this.spare;
    this.spare = undefined;
    if (spare !== undefined && spare.length >= len) return spare.subarray(0, len);
    return Buffer.allocUnsafe(len);
  }

  private reportCorrupt(chunkIndex: number): void {
    try {
      this.onCorrupt(this.blobId, chunkIndex);
    } catch {
      // A failing observer must not turn a clean corruption error into a crash.
    }
  }
}

function assertRange({ start, endInclusive }: ByteRange): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(endInclusive) || start < 0 || endInclusive < start) {
    throw new RangeError(`bad range [${start}, ${endInclusive}]`);
  }
}

export interface VerifyOptions {
  /** Awaited before each read with its size in bytes; the scrubber's rate limit. */
  throttle?: (bytes: number) => Promise<void>;
  signal?: AbortSignal;
}

export interface VerifyResult {
  ok: boolean;
  /** Chunks whose CRC does not match or that cannot be read; [FRAMING_CHUNK_INDEX] for a bad header or footer. */
  badChunks: number[];
  /** Data length from the footer; 0 when the framing itself is bad. */
  sizeBytes: number;
}

/** Reads every chunk of a blob and checks it. Throws BlobNotFoundError if the file is gone. */
export async function verifyBlob(file: string, id: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let blob: OpenBlob;
  try {
    blob = await openBlob(file, id);
  } catch (e) {
    if (e instanceof BlobCorruptError) return { ok: false, badChunks: [FRAMING_CHUNK_INDEX], sizeBytes: 0 };
    throw e;
  }
  try {
    const { header, footer } = blob;
    const cs = header.chunkSizeBytes;
    await opts.throttle?.(HEADER_BYTES + footer.crcs.length);
    // Nothing leaves this function, so one buffer serves every chunk.
    const buf = Buffer.allocUnsafe(Math.min(cs, footer.dataLengthBytes));
    const badChunks: number[] = [];
    for (let i = 0; i < footer.chunkCount; i++) {
      opts.signal?.throwIfAborted();
      const len = chunkLength(footer.dataLengthBytes, cs, i);
      await opts.throttle?.(len);
      const view = buf.subarray(0, len);
      let got: number;
      try {
        got = await readFully(blob.fh, view, chunkOffset(cs, i));
      } catch (e) {
        // A chunk the disk cannot return is as lost as a corrupt one: report it so it gets repaired.
        if ((e as NodeJS.ErrnoException).code !== 'EIO') throw e;
        got = -1;
      }
      if (got !== len || crc32c(view) !== chunkCrc(footer, i)) badChunks.push(i);
    }
    return { ok: badChunks.length === 0, badChunks, sizeBytes: footer.dataLengthBytes };
  } finally {
    await blob.fh.close();
  }
}
