import { Transform, TransformCallback } from 'node:stream';
import { createHasher, Hasher, ChecksumAlgorithm } from '../util/checksum';
import { S3Error } from '../s3/error';

export type DigestAlgorithm = ChecksumAlgorithm | 'MD5';

/**
 * Passes bytes through unchanged while hashing them once per requested algorithm and counting them.
 * A body longer than maxBytes fails with EntityTooLarge as soon as it crosses the bound.
 */
export class DigestTransform extends Transform {
  bytes = 0;
  private readonly hashers = new Map<DigestAlgorithm, Hasher>();
  private readonly digests = new Map<DigestAlgorithm, Buffer>();

  constructor(algorithms: Iterable<DigestAlgorithm>, private readonly maxBytes: number = Number.MAX_SAFE_INTEGER) {
    super();
    for (const a of algorithms) if (!this.hashers.has(a)) this.hashers.set(a, createHasher(a));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(new S3Error('EntityTooLarge', undefined, { MaxSizeAllowed: String(this.maxBytes) }));
      return;
    }
    for (const h of this.hashers.values()) h.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    for (const [a, h] of this.hashers) this.digests.set(a, h.digest());
    cb();
  }

  /** The digest of everything that passed; only after the stream ended. */
  digest(a: DigestAlgorithm): Buffer {
    const d = this.digests.get(a);
    if (!d) throw new Error(`digest ${a} not available (not requested or stream not ended)`);
    return d;
  }

  has(a: DigestAlgorithm): boolean {
    return this.hashers.has(a);
  }
}
