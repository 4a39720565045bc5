import type { Duplex } from 'node:stream';
import { S3Error } from './error';
import type { S3Context } from './context';
import { ChunkedDecoder } from './auth/chunked';
import { DigestTransform, DigestAlgorithm } from '../model/digest';
import { CHECKSUM_ALGORITHMS, ChecksumAlgorithm, checksumHeaderName, isValidChecksumValue, parseChecksumAlgorithm } from '../util/checksum';
import type { BodyInput, BodyDigests } from '../model/body';
import { chain } from '../util/streams';
import { WorkerDigestTransform } from '../util/hash-worker';

/**
 * Bodies declared at least this long are hashed on the hash worker thread (util/hash-worker); smaller ones
 * on the event loop, where hashing costs less than handing the bytes over.
 */
const HASH_OFF_LOOP_MIN_BYTES = 256 * 1024;

export interface BodyOptions {
  maxBytes: number;
  /** Algorithm to compute whether or not the client sent a value (e.g. the multipart upload's). */
  checksumAlgorithm?: ChecksumAlgorithm;
}

/** The x-amz-checksum-* the client declares for this body: in a header now, or in the trailer later. */
interface DeclaredChecksum {
  algorithm: ChecksumAlgorithm;
  headerValue?: string;
  inTrailer: boolean;
}

function declaredChecksum(ctx: S3Context): DeclaredChecksum | undefined {
  const present = CHECKSUM_ALGORITHMS.filter((a) => ctx.header(checksumHeaderName(a)) !== undefined);
  if (present.length > 1) throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  const trailer = ctx.header('x-amz-trailer')?.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean) ?? [];
  const trailerAlgs = trailer.filter((t) => t.startsWith('x-amz-checksum-')).map((t) => parseChecksumAlgorithm(t.slice('x-amz-checksum-'.length)));
  if (trailerAlgs.some((a) => a === undefined)) throw new S3Error('InvalidRequest', `Unsupported trailer: ${ctx.header('x-amz-trailer')}`);
  if (present.length === 1 && trailerAlgs.length > 0) throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- header.');
  if (trailerAlgs.length > 1) throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- trailer.');
  if (present.length === 1) {
    const a = present[0];
    const v = ctx.header(checksumHeaderName(a))!;
    if (!isValidChecksumValue(a, v)) throw new S3Error('InvalidRequest', `Value for ${checksumHeaderName(a)} header is invalid.`);
    return { algorithm: a, headerValue: v, inTrailer: false };
  }
  if (trailerAlgs.length === 1) return { algorithm: trailerAlgs[0]!, inTrailer: true };
  const sdk = ctx.header('x-amz-sdk-checksum-algorithm');
  if (sdk !== undefined) {
    const a = parseChecksumAlgorithm(sdk);
    if (!a) throw new S3Error('InvalidRequest', `Checksum algorithm ${sdk} is not supported.`);
  }
  return undefined;
}

function isStreaming(ctx: S3Context): boolean {
  const k = ctx.auth?.payload.kind;
  return k === 'streaming-signed' || k === 'streaming-unsigned-trailer';
}

/** Declared size of the object bytes (after aws-chunked decoding). */
function declaredLength(ctx: S3Context): number {
  const chunked = isStreaming(ctx) || (ctx.header('content-encoding') ?? '').split(',').some((e) => e.trim() === 'aws-chunked');
  const raw = chunked ? ctx.header('x-amz-decoded-content-length') : ctx.header('content-length');
  if (raw === undefined) {
    if (!chunked && ctx.header('transfer-encoding') === undefined) return 0;
    throw new S3Error('MissingContentLength', chunked ? 'x-amz-decoded-content-length is required with aws-chunked bodies.' : undefined);
  }
  if (!/^\d{1,16}$/.test(raw)) throw new S3Error('InvalidArgument', 'Content-Length is not a valid number.', { ArgumentName: 'Content-Length' });
  return Number(raw);
}

/** Checks what can be checked before reading a byte; returns the declared length. */
export function precheckBody(ctx: S3Context, maxBytes: number): number {
  const len = declaredLength(ctx);
  if (len > maxBytes) throw new S3Error('EntityTooLarge', undefined, { ProposedSize: String(len), MaxSizeAllowed: String(maxBytes) });
  const md5 = ctx.header('content-md5');
  if (md5 !== undefined && !/^[A-Za-z0-9+/]{22}==$/.test(md5)) throw new S3Error('InvalidDigest');
  return len;
}

/**
 * The request body as object bytes: aws-chunked framing decoded and its signatures checked, every byte
 * hashed once per algorithm, the declared digests verified in finish(). Nothing is buffered whole.
 */
export function objectBody(ctx: S3Context, opts: BodyOptions): BodyInput {
  const length = precheckBody(ctx, opts.maxBytes);
  const md5Header = ctx.header('content-md5');
  const declared = declaredChecksum(ctx);
  const payload = ctx.auth?.payload ?? { kind: 'unsigned' as const };
  const algs = new Set<DigestAlgorithm>(['MD5']);
  if (payload.kind === 'sha256') algs.add('SHA256');
  const checksumAlg = declared?.algorithm ?? opts.checksumAlgorithm;
  if (checksumAlg) algs.add(checksumAlg);
  const digest = length >= HASH_OFF_LOOP_MIN_BYTES
    ? new WorkerDigestTransform(algs, opts.maxBytes, () => new S3Error('EntityTooLarge', undefined, { MaxSizeAllowed: String(opts.maxBytes) }))
    : new DigestTransform(algs, opts.maxBytes);

  let decoder: ChunkedDecoder | undefined;
  if (payload.kind === 'streaming-signed' || payload.kind === 'streaming-unsigned-trailer') {
    const a = ctx.auth!;
    decoder = new ChunkedDecoder({
      signing: payload.kind === 'streaming-signed' ? { signingKey: a.signingKey, seedSignature: a.seedSignature, amzDate: a.amzDate, scope: a.scope } : undefined,
      expectTrailer: payload.kind === 'streaming-unsigned-trailer' || (payload.kind === 'streaming-signed' && payload.trailer),
      declaredTrailers: (ctx.header('x-amz-trailer') ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean),
    });
  }
  ctx.bodyConsumed = true;
  const stages: Duplex[] = decoder ? [decoder, digest] : [digest];
  // The consumer sees an error through `stream`; here only the byte count is recorded.
  const stream = chain(ctx.req, stages, () => {
    ctx.bytesIn = digest.bytes;
  });

  const finish = (): BodyDigests => {
    ctx.bytesIn = digest.bytes;
    if (digest.bytes !== length) {
      throw new S3Error('IncompleteBody', `Received ${digest.bytes} bytes, expected ${length}.`);
    }
    const md5 = digest.digest('MD5');
    if (md5Header !== undefined && md5.toString('base64') !== md5Header) throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.');
    if (payload.kind === 'sha256' && digest.digest('SHA256').toString('hex') !== payload.hex.toLowerCase()) {
      throw new S3Error('XAmzContentSHA256Mismatch', undefined, { ClientComputedContentSHA256: payload.hex, S3ComputedContentSHA256: digest.digest('SHA256').toString('hex') });
    }
    let checksum: BodyDigests['checksum'];
    if (checksumAlg) {
      const value = digest.digest(checksumAlg).toString('base64');
      const expected = declared?.inTrailer ? decoder?.trailers[checksumHeaderName(checksumAlg)] : declared?.headerValue;
      if (declared?.inTrailer && expected === undefined) throw new S3Error('InvalidRequest', `The trailer ${checksumHeaderName(checksumAlg)} was declared but not sent.`);
      if (expected !== undefined && expected !== value) throw new S3Error('BadDigest', `The ${checksumAlg} you specified did not match the calculated checksum.`);
      checksum = { algorithm: checksumAlg, value };
    }
    return { sizeBytes: digest.bytes, md5Hex: md5.toString('hex'), checksum };
  };
  return { stream, finish };
}

/** A small body (XML documents), read whole under a bound and verified like any other. */
export async function readSmallBody(ctx: S3Context, maxBytes: number): Promise<Buffer> {
  const body = objectBody(ctx, { maxBytes });
  const parts: Buffer[] = [];
  for await (const c of body.stream) parts.push(c as Buffer);
  body.finish();
  return Buffer.concat(parts);
}
