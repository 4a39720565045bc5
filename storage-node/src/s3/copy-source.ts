import { pipeline, Readable } from 'node:stream';
import { S3Error } from './error';
import type { S3Context } from './context';
import { validateBucketName, validateKey } from './names';
import { etagMatches } from '../model/store';
import type { Store } from '../model/store';
import { DigestTransform, DigestAlgorithm } from '../model/digest';
import type { BodyInput, BodyDigests } from '../model/body';
import type { BucketRecord, ObjectVersion } from '../meta/types';
import type { ChecksumAlgorithm } from '../util/checksum';

/** Shared by CopyObject and UploadPartCopy: where the bytes come from and whether they may be copied. */

export interface CopySource {
  bucket: string;
  key: string;
  versionId?: string;
}

export interface ByteRange {
  start: number;
  endInclusive: number;
}

/** Longest x-amz-copy-source we look at: bucket (63) + key (1024 bytes, up to 3 chars each encoded) + versionId. */
const MAX_COPY_SOURCE_CHARS = 63 + 1 + 3 * 1024 + 64;

function badSource(value: string, why = 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey'): S3Error {
  return new S3Error('InvalidArgument', why, { ArgumentName: 'x-amz-copy-source', ArgumentValue: value.slice(0, 256) });
}

/** Parses an x-amz-copy-source value: `bucket/key` or `/bucket/key`, URL-encoded, optional `?versionId=`. */
export function parseCopySourceValue(raw: string): CopySource {
  if (raw.length > MAX_COPY_SOURCE_CHARS) throw badSource(raw, 'The x-amz-copy-source header is too long.');
  // Node hands raw bytes above 0x7F as latin1 characters; read them back as the UTF-8 they were.
  const text = /[^\x00-\x7F]/.test(raw) ? Buffer.from(raw, 'latin1').toString('utf8') : raw;
  const qi = text.indexOf('?');
  const pathPart = qi < 0 ? text : text.slice(0, qi);
  let versionId: string | undefined;
  if (qi >= 0) {
    const q = new URLSearchParams(text.slice(qi + 1));
    for (const name of q.keys()) if (name !== 'versionId') throw badSource(raw, `Unknown parameter in x-amz-copy-source: ${name.slice(0, 64)}`);
    const v = q.get('versionId');
    if (v === null || v === '') throw badSource(raw, 'Invalid version id specified');
    versionId = v;
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathPart);
  } catch {
    throw badSource(raw, 'Invalid copy source encoding.');
  }
  if (decoded.startsWith('/')) decoded = decoded.slice(1);
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1) throw badSource(raw);
  const bucket = decoded.slice(0, slash);
  const key = decoded.slice(slash + 1);
  validateBucketName(bucket, false);
  validateKey(key);
  return versionId === undefined ? { bucket, key } : { bucket, key, versionId };
}

/** The source named by the request's x-amz-copy-source header. */
export function parseCopySource(ctx: S3Context): CopySource {
  const raw = ctx.header('x-amz-copy-source');
  if (raw === undefined || raw === '') throw badSource('');
  return parseCopySourceValue(raw);
}

function parseHttpDate(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * x-amz-copy-source-if-* as S3 evaluates them: if-match true wins over a false if-unmodified-since, a false
 * if-none-match loses whatever if-modified-since says; any failure is 412.
 */
export function checkCopySourceConditions(ctx: S3Context, v: ObjectVersion): void {
  const lastModifiedS = Math.floor(v.lastModifiedMs / 1000);
  const ifMatch = ctx.header('x-amz-copy-source-if-match');
  const ifNoneMatch = ctx.header('x-amz-copy-source-if-none-match');
  const ifUnmodified = parseHttpDate(ctx.header('x-amz-copy-source-if-unmodified-since'));
  const ifModified = parseHttpDate(ctx.header('x-amz-copy-source-if-modified-since'));
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, v.etag)) throw new S3Error('PreconditionFailed', undefined, { Condition: 'x-amz-copy-source-If-Match' });
  } else if (ifUnmodified !== undefined && lastModifiedS > Math.floor(ifUnmodified / 1000)) {
    throw new S3Error('PreconditionFailed', undefined, { Condition: 'x-amz-copy-source-If-Unmodified-Since' });
  }
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, v.etag)) throw new S3Error('PreconditionFailed', undefined, { Condition: 'x-amz-copy-source-If-None-Match' });
  } else if (ifModified !== undefined && ifModified <= Date.now() && lastModifiedS <= Math.floor(ifModified / 1000)) {
    // A date in the future is ignored, as for GET's If-Modified-Since.
    throw new S3Error('PreconditionFailed', undefined, { Condition: 'x-amz-copy-source-If-Modified-Since' });
  }
}

/**
 * The source version a copy reads: the caller needs read access to the source bucket, a delete marker is refused as S3
 * refuses it, and the x-amz-copy-source-if-* conditions hold.
 */
export function resolveCopySource(ctx: S3Context, src: CopySource = parseCopySource(ctx)): { bucket: BucketRecord; version: ObjectVersion } {
  const bucket = ctx.svc.store.getBucket(src.bucket);
  ctx.requireAccess(bucket, 'read');
  let version: ObjectVersion;
  try {
    version = ctx.svc.store.resolveVersion(src.bucket, src.key, src.versionId);
  } catch (e) {
    if (e instanceof S3Error && e.code === 'MethodNotAllowed') {
      throw new S3Error('InvalidRequest', 'The source of a copy request may not specifically refer to a delete marker by version id.');
    }
    if (e instanceof S3Error && e.code === 'NoSuchKey') throw new S3Error('NoSuchKey', undefined, { Key: src.key });
    throw e;
  }
  checkCopySourceConditions(ctx, version);
  return { bucket, version };
}

/** x-amz-copy-source-range: strictly `bytes=first-last`, inside the source; undefined when absent. */
export function parseCopySourceRange(header: string | undefined, sizeBytes: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{1,16})-(\d{1,16})$/.exec(header.trim());
  if (!m) {
    throw new S3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
      { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: header.slice(0, 128) });
  }
  const start = Number(m[1]);
  const endInclusive = Number(m[2]);
  if (endInclusive < start || endInclusive >= sizeBytes) {
    throw new S3Error('InvalidArgument', `Range specified is not valid for source object of size: ${sizeBytes}`,
      { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: header.slice(0, 128) });
  }
  return { start, endInclusive };
}

/**
 * A stored version's bytes (or a range of them) as a body for the store: each chunk is verified by the blob
 * layer as it is read, and MD5 (plus `checksumAlgorithm`) is computed on the way through.
 */
export function bodyFromVersion(store: Store, v: ObjectVersion, range?: ByteRange, checksumAlgorithm?: ChecksumAlgorithm): BodyInput {
  const expectedBytes = range ? range.endInclusive - range.start + 1 : v.size;
  if (expectedBytes < 0 || (range && (range.start < 0 || range.endInclusive >= v.size))) {
    throw new Error(`copy range ${range?.start}-${range?.endInclusive} outside version of ${v.size} bytes`);
  }
  const algs = new Set<DigestAlgorithm>(['MD5']);
  if (checksumAlgorithm) algs.add(checksumAlgorithm);
  const digest = new DigestTransform(algs, expectedBytes);
  const source = store.openObject(v, range);
  const stream = (pipeline as (...s: unknown[]) => Readable)(source, digest, (err: Error | null) => {
    void err; // the consumer sees the error through `stream`
  });
  const finish = (): BodyDigests => {
    // Fewer bytes than the version claims means the stored data is not what the metadata says.
    if (digest.bytes !== expectedBytes) throw new Error(`copy source gave ${digest.bytes} bytes, expected ${expectedBytes}`);
    const md5Hex = digest.digest('MD5').toString('hex');
    const checksum = checksumAlgorithm ? { algorithm: checksumAlgorithm, value: digest.digest(checksumAlgorithm).toString('base64') } : undefined;
    return { sizeBytes: digest.bytes, md5Hex, checksum };
  };
  return { stream, finish };
}
