import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Request signing between the nodes of one grid (see docs/decisions/0010-peer-rpc.md).
 * The signature is HMAC-SHA256, keyed with the grid secret, over a canonical string of
 * method, path+query, date (ms since epoch), sender node id and the body's sha256
 * (or the literal STREAMING for streamed bodies, whose integrity the blob chunk checksums cover).
 */
export const HEADER_DATE = 'x-archipel-date';
export const HEADER_NODE = 'x-archipel-node';
export const HEADER_BODY_SHA256 = 'x-archipel-content-sha256';
export const HEADER_SIGNATURE = 'x-archipel-signature';
export const HEADER_LAYOUT_VERSION = 'x-archipel-layout-version';
export const STREAMING_BODY = 'STREAMING';

/** Requests whose date is further than this from the receiver's clock are refused. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
const MIN_SECRET_BYTES = 16;
const MAX_NODE_ID_CHARS = 128;
const SIGNATURE_ALGORITHM = 'ARCHIPEL-HMAC-SHA256';
const HEX64 = /^[0-9a-f]{64}$/;

/** The grid secrets: sign with `current`; during a rotation, `previous` is still accepted. */
export interface GridSecrets {
  current: string;
  previous?: string;
}

export function assertGridSecrets(s: GridSecrets): void {
  if (typeof s?.current !== 'string' || Buffer.byteLength(s.current) < MIN_SECRET_BYTES) {
    throw new RangeError(`grid secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  if (s.previous !== undefined && Buffer.byteLength(s.previous) < MIN_SECRET_BYTES) {
    throw new RangeError(`previous grid secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
}

export function sha256Hex(body: Buffer | string): string {
  return createHash('sha256').update(body).digest('hex');
}

export const EMPTY_BODY_SHA256 = sha256Hex('');

export interface SignInput {
  method: string;
  /** Path with query string, exactly as sent on the request line (e.g. `/blocks/abc?offset=0`). */
  pathAndQuery: string;
  nodeId: string;
  /** sha256 hex of the buffered body, or STREAMING_BODY. */
  bodySha256: string;
  dateMs: number;
}

function canonical(i: SignInput): string {
  return [SIGNATURE_ALGORITHM, i.method.toUpperCase(), i.pathAndQuery, String(i.dateMs), i.nodeId, i.bodySha256].join('\n');
}

function hmacHex(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex');
}

/** The headers that authenticate one request. */
export function signRequest(secret: string, input: SignInput): Record<string, string> {
  if (!input.pathAndQuery.startsWith('/')) throw new RangeError('path must start with /');
  if (input.nodeId.length === 0 || input.nodeId.length > MAX_NODE_ID_CHARS || /[\n\r]/.test(input.nodeId)) {
    throw new RangeError('invalid node id');
  }
  if (input.bodySha256 !== STREAMING_BODY && !HEX64.test(input.bodySha256)) throw new RangeError('invalid body hash');
  return {
    [HEADER_DATE]: String(input.dateMs),
    [HEADER_NODE]: input.nodeId,
    [HEADER_BODY_SHA256]: input.bodySha256,
    [HEADER_SIGNATURE]: hmacHex(secret, canonical(input)),
  };
}

export type VerifyResult =
  | { ok: true; peerId: string; bodySha256: string }
  | { ok: false; reason: 'missing' | 'malformed' | 'expired' | 'bad-signature' };

type HeaderBag = Record<string, string | string[] | undefined>;

function single(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * Checks the signature headers of a request against every accepted secret, in constant time
 * per secret. The body hash is only checked for being signed here: the caller compares it with
 * the bytes it actually reads (see server.ts).
 */
export function verifyRequest(
  secrets: GridSecrets,
  method: string,
  pathAndQuery: string,
  headers: HeaderBag,
  nowMs: number,
  maxSkewMs = MAX_CLOCK_SKEW_MS,
): VerifyResult {
  const date = single(headers, HEADER_DATE);
  const nodeId = single(headers, HEADER_NODE);
  const bodySha256 = single(headers, HEADER_BODY_SHA256);
  const signature = single(headers, HEADER_SIGNATURE);
  if (date === undefined || nodeId === undefined || bodySha256 === undefined || signature === undefined) {
    return { ok: false, reason: 'missing' };
  }
  if (!/^\d{1,16}$/.test(date) || !HEX64.test(signature) || nodeId.length === 0 || nodeId.length > MAX_NODE_ID_CHARS) {
    return { ok: false, reason: 'malformed' };
  }
  if (bodySha256 !== STREAMING_BODY && !HEX64.test(bodySha256)) return { ok: false, reason: 'malformed' };
  const dateMs = Number(date);
  if (Math.abs(nowMs - dateMs) > maxSkewMs) return { ok: false, reason: 'expired' };
  const text = canonical({ method, pathAndQuery, nodeId, bodySha256, dateMs });
  const given = Buffer.from(signature, 'hex');
  let match = false;
  // Check every secret (no early exit) so the timing does not tell which one matched.
  for (const secret of [secrets.current, secrets.previous]) {
    if (secret === undefined) continue;
    const expected = Buffer.from(hmacHex(secret, text), 'hex');
    if (timingSafeEqual(expected, given)) match = true;
  }
  return match ? { ok: true, peerId: nodeId, bodySha256 } : { ok: false, reason: 'bad-signature' };
}

/** Constant-time comparison of two hex digests of equal length. */
export function digestsEqual(aHex: string, bHex: string): boolean {
  if (!HEX64.test(aHex) || !HEX64.test(bHex)) return false;
  return timingSafeEqual(Buffer.from(aHex, 'hex'), Buffer.from(bHex, 'hex'));
}
