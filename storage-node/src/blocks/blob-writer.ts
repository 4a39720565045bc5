import { randomFillSync } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { crc32c } from '@node-rs/crc32';
import type { BlobRef } from '../meta/types';
import { dirSync, fsyncFile } from '../util/fsync';
import { HEADER_BYTES, MAX_CHUNK_COUNT, assertChunkSize, chunkCountFor, encodeFooter, encodeHeader } from './blob-format';
import { assertBlobId, blobPath, isNotFound } from './blob-file';

export interface BlobWriterConfig {
  blobsDir: string;
  chunkSizeBytes: number;
  fsync: boolean;
  /**
   * Ids of the blobs being written, shared with the store: a writer adds its id before its file exists
   * and removes it once the blob is committed or its file removed, so that listings (scrubber, orphan
   * sweep) never see a blob without its footer.
   */
  inProgress: Set<string>;
  /** The id to write under (a replica receiving a copy keeps the gateway's id); default: a new random one. */
  id?: string;
}

/**
 * Bodies up to this size are held (as the caller's buffers, no copy) and written with their header and
 * footer in one writev at the end: one write system call per small blob instead of two. Bounds memory.
 */
const INLINE_WRITE_MAX_BYTES = 128 * 1024;

/** Random ids are cut from a pool refilled 256 ids at a time (one getrandom per refill, not per blob). */
const ID_POOL = Buffer.alloc(16 * 256);
let idPoolOffset = ID_POOL.length;

function newBlobId(): string {
  if (idPoolOffset === ID_POOL.length) {
    randomFillSync(ID_POOL);
    idPoolOffset = 0;
  }
  const id = ID_POOL.toString('hex', idPoolOffset, idPoolOffset + 16);
  idPoolOffset += 16;
  return id;
}

type WriterState = 'writing' | 'finished' | 'committed' | 'failed';

/**
 * Streams bytes into a new blob, written in place at blobs/<id[0..2]>/<id> (opened with O_EXCL). Data goes
 * to disk as it arrives (one positioned write per batch of buffered writes, no copies; a small body in one
 * write with its header and footer); only the CRC state of the current chunk and one CRC per finished
 * chunk are kept. After end(), commit() makes the blob durable; abort() removes it. One of the two must be
 * called, or the file's fd stays open until the process ends.
 *
 * The blob is not visible to readers until metadata references it (the caller's commit point), so no
 * temporary name and rename are needed: commit() fsyncs the file and its directory (that fsync started
 * when the file was created, and is shared with concurrent writers in the same directory). A crash
 * leaves at most an unreferenced file, which the orphan sweep removes at the next start.
 */
export class BlobWriter extends Writable {
  readonly id: string;
  private readonly cfg: BlobWriterConfig;
  private readonly filePath: string;
  private fh: FileHandle | undefined;
  /** The fsync of the directory entry, started as soon as the file exists; awaited by commit(). */
  private dirDurable: Promise<void> | undefined;
  private headerWritten = false;
  /** Every data byte accepted, and those of them already written (the rest are held in `pending`). */
  private dataBytes = 0;
  private writtenBytes = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private chunkFillBytes = 0;
  private chunkCrcState = 0;
  private readonly crcs: number[] = [];
  private state: WriterState = 'writing';
  private commitPromise: Promise<BlobRef> | undefined;
  private cleanupPromise: Promise<void> | undefined;

  constructor(cfg: BlobWriterConfig) {
    // Checked before super(): the Writable schedules _construct() as soon as it exists.
    assertChunkSize(cfg.chunkSizeBytes);
    if (cfg.id !== undefined) {
      assertBlobId(cfg.id);
      if (cfg.inProgress.has(cfg.id)) throw new Error(`blob ${cfg.id} is already being written`);
    }
    // Bounds what a producer that respects backpressure can make us hold, whatever the chunk size.
    super({ highWaterMark: Math.min(cfg.chunkSizeBytes, 1024 * 1024), decodeStrings: true });
    this.cfg = cfg;
    this.id = cfg.id ?? newBlobId();
    this.filePath = blobPath(cfg.blobsDir, this.id);
    cfg.inProgress.add(this.id);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.create().then(() => callback(), callback);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.append([chunk]).then(() => callback(), callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.append(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finish().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // autoDestroy runs this after a clean finish too: then the file is kept for commit() or abort().
    if (this.state === 'finished' && !error) {
      callback(null);
      return;
    }
    if (this.state === 'writing') this.state = 'failed';
    this.cleanup().then(() => callback(error), (e: Error) => callback(error ?? e));
  }

  /** After end(): fsync the file, and its directory entry (in parallel). Resolves when both are durable. */
  commit(): Promise<BlobRef> {
    this.commitPromise ??= this.doCommit();
    return this.commitPromise;
  }

  /** Removes the file. Safe after errors and when called twice; does nothing after a successful commit. */
  async abort(): Promise<void> {
    if (this.commitPromise !== undefined) {
      const committed = await this.commitPromise.then(() => true, () => false);
      if (committed) return;
    }
    if (this.state === 'writing') this.state = 'failed';
    // Destroying waits for _construct: cleaning up before the file is even open would miss it.
    this.destroy();
    if (!this.closed) await new Promise<void>((resolve) => this.once('close', resolve));
    this.state = 'failed';
    await this.cleanup();
  }

  private async create(): Promise<void> {
    const dir = path.dirname(this.filePath);
    try {
      this.fh = await fsp.open(this.filePath, 'wx', 0o600);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      // The fan-out directory is made when the store opens; if it was removed since, make it again
      // and its entry durable before use (synced even when a concurrent writer re-created it: that
      // writer's fsync may not have completed yet).
      await fsp.mkdir(dir, { recursive: true });
      if (this.cfg.fsync) await dirSync(this.cfg.blobsDir);
      this.fh = await fsp.open(this.filePath, 'wx', 0o600);
    }
    if (this.cfg.fsync) {
      // The entry exists now, so an fsync of the directory that starts now covers it. Awaited by commit();
      // the handler only keeps an abandoned writer's failure from being an unhandled rejection.
      this.dirDurable = dirSync(dir);
      this.dirDurable.catch(() => undefined);
    }
  }

  private async append(bufs: Buffer[]): Promise<void> {
    let total = 0;
    for (const b of bufs) total += b.length;
    if (total === 0) return;
    if (chunkCountFor(this.dataBytes + total, this.cfg.chunkSizeBytes) > MAX_CHUNK_COUNT) {
      throw new RangeError(`blob ${this.id} would exceed ${MAX_CHUNK_COUNT} chunks`);
    }
    for (const b of bufs) this.updateCrcs(b);
    this.dataBytes += total;
    if (!this.headerWritten && this.pendingBytes + total <= INLINE_WRITE_MAX_BYTES) {
      // Buffers handed to a Writable are not reused by their producer: holding them is safe.
      for (const b of bufs) this.pending.push(b);
      this.pendingBytes += total;
      return;
    }
    await this.writeOut(bufs, total);
  }

  /** Writes the header (first time), the held buffers and `tail` (of which tailDataBytes are data) in one positioned writev. */
  private async writeOut(tail: Buffer[], tailDataBytes: number): Promise<void> {
    const fh = this.requireHandle();
    const out = this.headerWritten ? [...this.pending, ...tail] : [this.header(), ...this.pending, ...tail];
    let expected = 0;
    for (const b of out) expected += b.length;
    const position = this.headerWritten ? HEADER_BYTES + this.writtenBytes : 0;
    const dataBytes = this.pendingBytes + tailDataBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const { bytesWritten } = await fh.writev(out, position);
    if (bytesWritten !== expected) throw new Error(`short write to blob ${this.id}: ${bytesWritten} of ${expected} bytes`);
    this.headerWritten = true;
    this.writtenBytes += dataBytes;
  }

  /** CRC32C per chunk, cutting the incoming buffers at chunk boundaries (no copies). */
  private updateCrcs(b: Buffer): void {
    const cs = this.cfg.chunkSizeBytes;
    let off = 0;
    while (off < b.length) {
      const take = Math.min(b.length - off, cs - this.chunkFillBytes);
      this.chunkCrcState = crc32c(b.subarray(off, off + take), this.chunkCrcState);
      this.chunkFillBytes += take;
      off += take;
      if (this.chunkFillBytes === cs) this.closeChunk();
    }
  }

  private closeChunk(): void {
    this.crcs.push(this.chunkCrcState);
    this.chunkCrcState = 0;
    this.chunkFillBytes = 0;
  }

  private async finish(): Promise<void> {
    if (this.chunkFillBytes > 0) this.closeChunk();
    await this.writeOut([encodeFooter(this.crcs, this.dataBytes, this.cfg.chunkSizeBytes)], 0);
    // An abort or destroy may have raced with this write: then the blob stays failed.
    if (this.state === 'writing') this.state = 'finished';
  }

  private header(): Buffer {
    return encodeHeader({ chunkSizeBytes: this.cfg.chunkSizeBytes, blobId: this.id });
  }

  private async doCommit(): Promise<BlobRef> {
    await this.waitFinished();
    const fh = this.requireHandle();
    const fileDurable = (async () => {
      if (this.cfg.fsync) await fsyncFile(fh);
      this.fh = undefined;
      await fh.close();
    })();
    // Both settle before we decide, so that a failure never leaves the other still running on the file.
    const [file, dir] = await Promise.allSettled([fileDurable, this.dirDurable]);
    const failure = file.status === 'rejected' ? file.reason : dir.status === 'rejected' ? dir.reason : undefined;
    if (failure !== undefined) {
      this.state = 'failed';
      // Not durable, so not committed: take it back rather than leave a blob nobody will reference.
      await this.cleanup().catch(() => undefined);
      throw failure;
    }
    this.state = 'committed';
    this.cfg.inProgress.delete(this.id);
    return { id: this.id, size: this.dataBytes };
  }

  private async waitFinished(): Promise<void> {
    if (this.state === 'failed' || this.errored) throw new Error(`blob ${this.id} failed or was aborted`);
    if (this.state === 'finished') return;
    if (!this.writableEnded) throw new Error('BlobWriter.commit() needs end() first');
    // Rejects on error and on a destroy before finish (an abort meanwhile).
    await finished(this);
    if ((this.state as WriterState) !== 'finished') throw new Error(`blob ${this.id} did not finish`);
  }

  private requireHandle(): FileHandle {
    if (this.fh === undefined) throw new Error(`blob ${this.id} has no open file`);
    return this.fh;
  }

  private cleanup(): Promise<void> {
    this.cleanupPromise ??= (async () => {
      // The file is the committed blob now: only the metadata layer may remove it.
      if (this.state === 'committed') return;
      const fh = this.fh;
      this.fh = undefined;
      // FileHandle.close() waits for reads and writes still running on it.
      if (fh !== undefined) await fh.close().catch(() => undefined);
      await fsp.unlink(this.filePath).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      this.cfg.inProgress.delete(this.id);
    })();
    return this.cleanupPromise;
  }
}
