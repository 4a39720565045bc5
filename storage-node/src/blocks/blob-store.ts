import { Dir, Dirent, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Logger, silentLogger } from '../util/logger';
import { dirSync } from '../util/fsync';
import { assertChunkSize, isBlobId } from './blob-format';
import { BlobCorruptError, BlobNotFoundError, FANOUT_DIRS, assertBlobId, blobPath, isNotFound, openBlob } from './blob-file';
import { BlobReadStream, ByteRange, VerifyOptions, VerifyResult, verifyBlob } from './blob-reader';
import { BlobWriter } from './blob-writer';

export { BlobCorruptError, BlobNotFoundError, FRAMING_CHUNK_INDEX } from './blob-file';
export { BlobWriter } from './blob-writer';
export type { ByteRange, VerifyOptions, VerifyResult } from './blob-reader';

export interface BlobStoreOptions {
  /** Default 1 MiB. Applies to new blobs; each blob records its own, so changing it keeps old blobs readable. */
  chunkSizeBytes?: number;
  logger?: Logger;
  /** Default true; false only for benchmarks of the protocol (a crash may then lose acknowledged data). */
  fsync?: boolean;
}

const DEFAULT_CHUNK_SIZE_BYTES = 1024 * 1024;
const FANOUT_DIR_RE = /^[0-9a-f]{2}$/;

/**
 * The local data store: immutable blobs, one file each, a CRC32C per chunk checked before any byte
 * leaves. Layout under `dir`: blobs/<id[0..2]>/<id>, written in place (see BlobWriter); list() skips the
 * blobs this process is still writing. tmp/ held blobs being written by earlier versions: whatever is
 * left there at open is a crash leftover and is removed.
 */
export class BlobStore {
  readonly dir: string;
  readonly chunkSizeBytes: number;
  /** Called when a read finds a corrupt chunk (or a damaged header/footer: FRAMING_CHUNK_INDEX). */
  onCorrupt: ((id: string, chunkIndex: number) => void) | undefined;
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly fsync: boolean;
  private readonly log: Logger;
  /** Ids of the blobs being written now (no footer yet, or not yet durable). */
  private readonly inProgress = new Set<string>();

  private constructor(dir: string, chunkSizeBytes: number, fsync: boolean, log: Logger) {
    this.dir = dir;
    this.chunkSizeBytes = chunkSizeBytes;
    this.fsync = fsync;
    this.log = log;
    this.blobsDir = path.join(dir, 'blobs');
    this.tmpDir = path.join(dir, 'tmp');
  }

  static async open(dir: string, opts: BlobStoreOptions = {}): Promise<BlobStore> {
    const chunkSizeBytes = opts.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES;
    assertChunkSize(chunkSizeBytes);
    const log = opts.logger ?? silentLogger();
    const store = new BlobStore(path.resolve(dir), chunkSizeBytes, opts.fsync ?? true, log);
    const created = await fsp.mkdir(store.blobsDir, { recursive: true });
    if (store.fsync && created !== undefined) {
      // New directories must be durable before blobs are committed into them.
      await Promise.all([dirSync(path.dirname(store.dir)), dirSync(store.dir)]);
    }
    const fanout = await Promise.all(FANOUT_DIRS.map((d) => fsp.mkdir(path.join(store.blobsDir, d), { recursive: true })));
    if (store.fsync && fanout.some((c) => c !== undefined)) await dirSync(store.blobsDir);
    const leftovers = await store.removeTmpLeftovers();
    log.info('blob store opened', { dir: store.dir, chunkSizeBytes, fsync: store.fsync, tmpFilesRemoved: leftovers.files, tmpBytesRemoved: leftovers.bytes });
    return store;
  }

  /** True while a writer is writing this blob (its file exists but has no footer yet). */
  isWriting(id: string): boolean {
    return this.inProgress.has(id);
  }

  /** A writer for a new blob; `opts.id` writes under a given id (a replica's copy), refused if one exists. */
  createWriter(opts: { id?: string } = {}): BlobWriter {
    return new BlobWriter({ blobsDir: this.blobsDir, chunkSizeBytes: this.chunkSizeBytes, fsync: this.fsync, inProgress: this.inProgress, id: opts.id });
  }

  /**
   * Streams bytes [start, endInclusive] of a blob (all of it without a range). Each chunk is read whole,
   * its CRC32C verified, then the requested slice pushed. On a mismatch the stream is destroyed with
   * BlobCorruptError (after the bytes of the good chunks before it were handed over) and onCorrupt is
   * called. A missing blob errors with BlobNotFoundError, a range past the end with RangeError.
   */
  openReader(id: string, range?: ByteRange): Readable {
    assertBlobId(id);
    return new BlobReadStream(blobPath(this.blobsDir, id), id, range, (blobId, chunkIndex) => {
      this.log.warn('blob corrupt', { blobId, chunkIndex });
      this.onCorrupt?.(blobId, chunkIndex);
    });
  }

  /** Size of a committed blob, undefined if there is none. Throws BlobCorruptError if its framing is damaged. */
  async stat(id: string): Promise<{ sizeBytes: number } | undefined> {
    assertBlobId(id);
    try {
      const blob = await openBlob(blobPath(this.blobsDir, id), id);
      await blob.fh.close();
      return { sizeBytes: blob.footer.dataLengthBytes };
    } catch (e) {
      if (e instanceof BlobNotFoundError) return undefined;
      throw e;
    }
  }

  /** Modification time (ms since epoch) of a committed blob, undefined if there is none; for orphan sweeps. */
  async statTime(id: string): Promise<number | undefined> {
    assertBlobId(id);
    try {
      return (await fsp.stat(blobPath(this.blobsDir, id))).mtimeMs;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /**
   * Removes a blob; a missing one is not an error. Not fsynced: a delete lost in a crash leaves an
   * unreferenced blob, which the orphan sweep removes.
   */
  async delete(id: string): Promise<void> {
    assertBlobId(id);
    try {
      await fsp.unlink(blobPath(this.blobsDir, id));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /**
   * Ids of committed blobs, streamed from the directory tree (constant memory, no particular order). Blobs
   * this process is writing are skipped; a crash leftover (a file without its footer) is listed, and the
   * orphan sweep removes it since no metadata references it.
   */
  async *list(): AsyncIterable<string> {
    for await (const a of this.subdirs(this.blobsDir)) {
      for await (const name of this.entries(path.join(this.blobsDir, a))) {
        if (name.isFile() && isBlobId(name.name) && name.name.startsWith(a) && !this.inProgress.has(name.name)) yield name.name;
      }
    }
  }

  /**
   * Bytes the committed blob files take (their sizes, framing included), from one walk of the tree with
   * a stat per file: for capacity reports, refreshed now and then, not per request.
   */
  async usedBytes(): Promise<{ bytes: number; blobs: number }> {
    let bytes = 0;
    let blobs = 0;
    for await (const id of this.list()) {
      try {
        bytes += (await fsp.stat(blobPath(this.blobsDir, id))).size;
        blobs++;
      } catch (e) {
        if (!isNotFound(e)) throw e; // deleted meanwhile: not counted
      }
    }
    return { bytes, blobs };
  }

  /** Reads and checks every chunk (the scrubber). Throws BlobNotFoundError if the blob is gone. */
  verify(id: string, opts?: VerifyOptions): Promise<VerifyResult> {
    assertBlobId(id);
    return verifyBlob(blobPath(this.blobsDir, id), id, opts);
  }

  private async *subdirs(dir: string): AsyncIterable<string> {
    for await (const d of this.entries(dir)) {
      if (d.isDirectory() && FANOUT_DIR_RE.test(d.name)) yield d.name;
    }
  }

  /** Directory entries; a directory that vanished meanwhile has none. */
  private async *entries(dir: string): AsyncIterable<Dirent> {
    let handle: Dir;
    try {
      handle = await fsp.opendir(dir, { bufferSize: 256 });
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    // The Dir's async iterator closes it at the end, on break and on error.
    yield* handle;
  }

  /** Files left in tmp/ by a version that wrote blobs there first; the folder goes too. */
  private async removeTmpLeftovers(): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    for await (const d of this.entries(this.tmpDir)) {
      if (!d.isFile()) continue;
      const p = path.join(this.tmpDir, d.name);
      try {
        bytes += (await fsp.stat(p)).size;
        await fsp.unlink(p);
        files++;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    await fsp.rmdir(this.tmpDir).catch((e: NodeJS.ErrnoException) => {
      if (!isNotFound(e) && e.code !== 'ENOTEMPTY' && e.code !== 'ENOTDIR') throw e;
    });
    return { files, bytes };
  }
}

/** True for errors that mean "this copy is bad, read another replica". */
export function isBlobCorrupt(e: unknown): e is BlobCorruptError {
  return e instanceof BlobCorruptError;
}
