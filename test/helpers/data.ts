import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Deterministic pseudo-random test data of any size, produced as a stream so that gigabytes never sit
 * in memory. The bytes are the AES-128-CTR keystream for a key derived from `seed`: native, fast
 * (several GB/s), incompressible, and the same on every run for the same seed and size.
 */
export const PATTERN_BLOCK_BYTES = 1024 * 1024;

function cipherFor(seed: string): crypto.Cipher {
  const key = crypto.createHash('sha256').update(`archipel-test-data:${seed}`).digest().subarray(0, 16);
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
}

export class PatternStream extends Readable {
  private produced = 0;
  private readonly cipher: crypto.Cipher;
  private readonly zeros = Buffer.alloc(PATTERN_BLOCK_BYTES);
  private readonly hash = crypto.createHash('sha256');
  private hex: string | undefined;

  constructor(readonly sizeBytes: number, readonly seed = 'default') {
    super({ highWaterMark: PATTERN_BLOCK_BYTES });
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new Error(`bad size ${sizeBytes}`);
    this.cipher = cipherFor(seed);
  }

  override _read(): void {
    const n = Math.min(PATTERN_BLOCK_BYTES, this.sizeBytes - this.produced);
    if (n <= 0) {
      this.hex = this.hash.digest('hex');
      this.push(null);
      return;
    }
    const block = this.cipher.update(n === PATTERN_BLOCK_BYTES ? this.zeros : this.zeros.subarray(0, n));
    this.produced += n;
    this.hash.update(block);
    this.push(block);
  }

  /** sha256 (hex) of everything produced; only once the stream has ended. */
  sha256(): string {
    if (this.hex === undefined) throw new Error('PatternStream.sha256() before the stream ended');
    return this.hex;
  }
}

/** The pattern bytes in memory, for small objects. */
export function patternBuffer(sizeBytes: number, seed = 'default'): Buffer {
  if (sizeBytes > 256 * 1024 * 1024) throw new Error('patternBuffer is for small data; stream larger sizes');
  return cipherFor(seed).update(Buffer.alloc(sizeBytes));
}

/** Writes `sizeBytes` of pattern data to a file; returns its sha256 (hex). */
export async function writePatternFile(file: string, sizeBytes: number, seed = 'default'): Promise<string> {
  const src = new PatternStream(sizeBytes, seed);
  await pipeline(src, fs.createWriteStream(file));
  return src.sha256();
}

/** Consumes a stream, returning its byte count and sha256, holding at most one chunk at a time. */
export async function hashStream(src: Readable | AsyncIterable<Uint8Array>): Promise<{ sizeBytes: number; sha256: string }> {
  const hash = crypto.createHash('sha256');
  let sizeBytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      cb();
    },
  });
  await pipeline(src as Readable, sink);
  return { sizeBytes, sha256: hash.digest('hex') };
}

export async function sha256File(file: string): Promise<string> {
  return (await hashStream(fs.createReadStream(file))).sha256;
}
