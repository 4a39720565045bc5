import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { crc32c } from '@node-rs/crc32';
import type { BlobRef } from '../meta/types';
import { dirSync, fsyncFile } from '../util/fsync';
import { HEADER_BYTES, MAX_CHUNK_COUNT, assertChunkSize, chunkCountFor, encodeFooter, encodeHeader } from './blob-format';
import { blobPath, isNotFound } from './blob-file';

export interface BlobWriterConfig {
  blobsDir: string;
  tmpDir: string;
  chunkSizeBytes: number;
  fsync: boolean;
}

type WriterState = 'writing' | 'finished' | 'committed' | 'failed';

/**
 * Streams bytes into a new blob. Data goes to disk as it arrives (one positioned write per batch of
 * buffered writes, no copies); only the CRC state of the current chunk and one CRC per finished chunk
 * are kept. After end(), commit() makes the blob durable and visible; abort() throws it away. One of the
 * two must be called, or the temp file's fd stays open until the process ends.
 */
export class BlobWriter extends Writable {
  readonly id: string;
  private readonly cfg: BlobWriterConfig;
  private readonly tmpPath: string;
  private fh: FileHandle | undefined;
  private headerWritten = false;
  private dataBytes = 0;
  private chunkFillBytes = 0;
  private chunkCrcState = 0;
  private readonly crcs: number[] = [];
  private state: WriterState = 'writing';
  private commitPromise: Promise<BlobRef> | undefined;
  private cleanupPromise: Promise<void> | undefined;

  constructor(cfg: BlobWriterConfig) {
    // Checked before super(): the Writable schedules _construct() as soon as it exists.
    assertChunkSize(cfg.chunkSizeBytes);
    // Bounds what a producer that respects backpressure can make us hold, whatever the chunk size.
    super({ highWaterMark: Math.min(cfg.chunkSizeBytes, 1024 * 1024), decodeStrings: true });
    this.cfg = cfg;
    this.id = randomBytes(16).toString('hex');
    this.tmpPath = path.join(cfg.tmpDir, `${this.id}.tmp`);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fsp.open(this.tmpPath, 'wx', 0o600).then((fh) => {
      this.fh = fh;
      callback();
    }, callback);
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

  /** After end(): fsync the temp file, rename it into blobs/, fsync that directory. Resolves when durable. */
  commit(): Promise<BlobRef> {
    this.commitPromise ??= this.doCommit();
    return this.commitPromise;
  }

  /** Removes the temp file. Safe after errors and when called twice; does nothing after a successful commit. */
  async abort(): Promise<void> {
    if (this.commitPromise !== undefined) {
      const committed = await this.commitPromise.then(() => true, () => false);
      if (committed) return;
    }
    if (this.state === 'writing') this.state = 'failed';
    // Destroying waits for _construct: cleaning up before the temp file is even open would miss it.
    this.destroy();
    if (!this.closed) await new Promise<void>((resolve) => this.once('close', resolve));
    this.state = 'failed';
    await this.cleanup();
  }

  private async append(bufs: Buffer[]): Promise<void> {
    const fh = this.requireHandle();
    let total = 0;
    for (const b of bufs) total += b.length;
    if (total === 0) return;
    if (chunkCountFor(this.dataBytes + total, this.cfg.chunkSizeBytes) > MAX_CHUNK_COUNT) {
      throw new RangeError(`blob ${this.id} would exceed ${MAX_CHUNK_COUNT} chunks`);
    }
    const position = this.headerWritten ? HEADER_BYTES + this.dataBytes : 0;
    const out = this.headerWritten ? bufs : [this.header(), ...bufs];
    const expected = this.headerWritten ? total : total + HEADER_BYTES;
    const writing = fh.writev(out, position);
    // The checksums are computed here while the thread pool writes the same (immutable) buffers.
    for (const b of bufs) this.updateCrcs(b);
    const { bytesWritten } = await writing;
    if (bytesWritten !== expected) throw new Error(`short write to blob ${this.id}: ${bytesWritten} of ${expected} bytes`);
    this.headerWritten = true;
    this.dataBytes += total;
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
    const fh = this.requireHandle();
    if (this.chunkFillBytes > 0) this.closeChunk();
    const footer = encodeFooter(this.crcs, this.dataBytes, this.cfg.chunkSizeBytes);
    const out = this.headerWritten ? [footer] : [this.header(), footer];
    const expected = this.headerWritten ? footer.length : HEADER_BYTES + footer.length;
    const { bytesWritten } = await fh.writev(out, this.headerWritten ? HEADER_BYTES + this.dataBytes : 0);
    if (bytesWritten !== expected) throw new Error(`short write of blob ${this.id} footer`);
    this.headerWritten = true;
    // An abort or destroy may have raced with this write: then the blob stays failed.
    if (this.state === 'writing') this.state = 'finished';
  }

  private header(): Buffer {
    return encodeHeader({ chunkSizeBytes: this.cfg.chunkSizeBytes, blobId: this.id });
  }

  private async doCommit(): Promise<BlobRef> {
    await this.waitFinished();
    const fh = this.requireHandle();
    const target = blobPath(this.cfg.blobsDir, this.id);
    try {
      if (this.cfg.fsync) await fsyncFile(fh);
      this.fh = undefined;
      await fh.close();
      await this.renameIntoPlace(target);
    } catch (e) {
      this.state = 'failed';
      throw e;
    }
    try {
      // The rename is durable only once its directory is; that fsync is shared with concurrent commits.
      if (this.cfg.fsync) await dirSync(path.dirname(target));
    } catch (e) {
      this.state = 'failed';
      // Not durable, so not committed: take it back rather than leave a blob nobody will reference.
      await fsp.unlink(target).catch(() => undefined);
      throw e;
    }
    this.state = 'committed';
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

  private async renameIntoPlace(target: string): Promise<void> {
    try {
      await fsp.rename(this.tmpPath, target);
      return;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    // The fan-out directory is made when the store opens; if it was removed since, make it again
    // and its entry durable before use (synced even when a concurrent writer re-created it: that
    // writer's fsync may not have completed yet).
    await fsp.mkdir(path.dirname(target), { recursive: true });
    if (this.cfg.fsync) await dirSync(this.cfg.blobsDir);
    await fsp.rename(this.tmpPath, target);
  }

  private requireHandle(): FileHandle {
    if (this.fh === undefined) throw new Error(`blob ${this.id} has no open file`);
    return this.fh;
  }

  private cleanup(): Promise<void> {
    this.cleanupPromise ??= (async () => {
      const fh = this.fh;
      this.fh = undefined;
      // FileHandle.close() waits for reads and writes still running on it.
      if (fh !== undefined) await fh.close().catch(() => undefined);
      await fsp.unlink(this.tmpPath).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
    })();
    return this.cleanupPromise;
  }
}
