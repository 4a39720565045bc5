import type { IncomingHttpHeaders } from 'node:http';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { S3Error } from '../error';

/**
 * AWS Signature Version 4 verification for S3, server side: the Authorization header and presigned
 * query forms. Streaming payloads (aws-chunked) are only recognised here; their chunk signatures are
 * checked by chunked.ts with the signing key and seed signature returned in AuthResult.
 */

export interface AuthRequest {
  method: string;
  /** The path exactly as in the request line: still percent-encoded, no query. Bytes > 0x7F as latin1 chars (as Node gives them). */
  rawPath: string;
  /** Everything after '?', may be ''. */
  rawQuery: string;
  /** Lowercase names, as Node gives them. */
  headers: IncomingHttpHeaders;
}

export type SecretLookup = (accessKeyId: string) => string | undefined;

export type PayloadMode =
  | { kind: 'unsigned' } // UNSIGNED-PAYLOAD, or presigned URL
  | { kind: 'sha256'; hex: string } // body must hash to this (caller verifies → XAmzContentSHA256Mismatch)
  | { kind: 'streaming-signed'; trailer: boolean } // STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]
  | { kind: 'streaming-unsigned-trailer' }; // STREAMING-UNSIGNED-PAYLOAD-TRAILER

export interface AuthResult {
  accessKeyId: string;
  region: string;
  payload: PayloadMode;
  signingKey: Buffer;
  seedSignature: string;
  amzDate: string;
  /** yyyymmdd/region/s3/aws4_request */
  scope: string;
  presigned: boolean;
}

export interface AuthOptions {
  nowMs: number;
  /** Header auth: largest accepted |x-amz-date − now|. Default 15 minutes, as AWS. */
  maxSkewMs?: number;
  /** Presigned URLs: largest accepted X-Amz-Expires. Default 604800 (7 days), as AWS. */
  maxPresignExpirySeconds?: number;
}

export const ALGORITHM = 'AWS4-HMAC-SHA256';
export const EMPTY_SHA256_HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const DEFAULT_MAX_SKEW_MS = 15 * 60 * 1000;
const DEFAULT_MAX_PRESIGN_EXPIRY_SECONDS = 604_800;
const MAX_AUTH_HEADER_CHARS = 4096;
const MAX_SIGNED_HEADERS = 64;
const SIGNATURE_RE = /^[0-9a-f]{64}$/;
const AMZ_DATE_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const HEADER_NAME_RE = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/** Verifies the request's signature. null = no credentials at all (anonymous); the caller decides. */
export function authenticate(req: AuthRequest, lookup: SecretLookup, opts: AuthOptions): AuthResult | null {
  const authz = headerValue(req.headers, 'authorization');
  const presign = req.rawQuery.includes('X-Amz-') ? presignParams(req.rawQuery) : undefined;
  if (authz !== undefined && presign !== undefined) {
    throw new S3Error('InvalidArgument', 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified');
  }
  if (authz !== undefined) return headerAuth(req, authz, lookup, opts);
  if (presign !== undefined) return presignedAuth(req, presign, lookup, opts);
  if (/(^|&)AWSAccessKeyId=/.test(req.rawQuery) && /(^|&)Signature=/.test(req.rawQuery)) {
    throw new S3Error('NotImplemented', 'Signature Version 2 presigned URLs are not supported; use Signature Version 4.');
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Authorization header
// ---------------------------------------------------------------------------------------------

interface ParsedCredential { accessKeyId: string; date: string; region: string; scope: string }

function headerAuth(req: AuthRequest, authz: string, lookup: SecretLookup, opts: AuthOptions): AuthResult {
  const malformed = (m: string) => new S3Error('AuthorizationHeaderMalformed', m);
  if (authz.length > MAX_AUTH_HEADER_CHARS) throw malformed('The authorization header is too long.');
  if (/^AWS [^ ]+:/.test(authz)) throw new S3Error('NotImplemented', 'Signature Version 2 is not supported; use Signature Version 4 (AWS4-HMAC-SHA256).');
  const sp = authz.indexOf(' ');
  const algorithm = sp < 0 ? authz : authz.slice(0, sp);
  if (algorithm === 'AWS4-ECDSA-P256-SHA256') throw new S3Error('NotImplemented', 'Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported; use AWS4-HMAC-SHA256.');
  if (algorithm !== ALGORITHM) throw malformed(`Unsupported authorization type ${algorithm.slice(0, 40)}; expected AWS4-HMAC-SHA256.`);

  const fields = new Map<string, string>();
  for (const part of authz.slice(sp + 1).split(',')) {
    const p = part.trim();
    const eq = p.indexOf('=');
    if (eq <= 0) throw malformed(`The authorization header is malformed; the component '${p.slice(0, 40)}' is not of the form key=value.`);
    const k = p.slice(0, eq);
    if (k !== 'Credential' && k !== 'SignedHeaders' && k !== 'Signature') throw malformed(`The authorization header is malformed; unknown component '${k.slice(0, 40)}'.`);
    if (fields.has(k)) throw malformed(`The authorization header is malformed; '${k}' appears twice.`);
    fields.set(k, p.slice(eq + 1));
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw malformed('The authorization header is malformed; it must contain Credential, SignedHeaders and Signature.');
  }
  const cred = parseCredential(credential, malformed);

  const amzDate = headerValue(req.headers, 'x-amz-date') ?? headerValue(req.headers, 'date');
  const dateMs = amzDate === undefined ? undefined : parseAmzDate(amzDate);
  if (amzDate === undefined || dateMs === undefined) {
    throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  }
  if (cred.date !== amzDate.slice(0, 8)) {
    throw malformed(`The authorization header is malformed; Invalid credential date "${cred.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  }

  // S3 insists on x-amz-content-sha256 with header auth (it answers InvalidRequest without it): the
  // value tells how the body is protected, and we do not guess.
  const contentSha = headerValue(req.headers, 'x-amz-content-sha256');
  if (contentSha === undefined) throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  const payload = parsePayloadMode(contentSha);

  const maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (Math.abs(dateMs - opts.nowMs) > maxSkewMs) {
    throw new S3Error('RequestTimeTooSkewed', undefined, {
      RequestTime: amzDate, ServerTime: new Date(opts.nowMs).toISOString(), MaxAllowedSkewMilliseconds: String(maxSkewMs),
    });
  }

  const secret = lookup(cred.accessKeyId);
  if (secret === undefined) throw new S3Error('InvalidAccessKeyId', undefined, { AWSAccessKeyId: cred.accessKeyId });

  const names = parseSignedHeaders(signedHeaders, malformed);
  const signingKey = signingKeyFor(secret, cred.date, cred.region);
  const canonical = canonicalRequest(req, names, signedHeaders, contentSha, false);
  verifySignature(signingKey, amzDate, cred.scope, canonical, signature, cred.accessKeyId);
  return {
    accessKeyId: cred.accessKeyId, region: cred.region, payload, signingKey, seedSignature: signature,
    amzDate, scope: cred.scope, presigned: false,
  };
}

// ---------------------------------------------------------------------------------------------
// Presigned URLs
// ---------------------------------------------------------------------------------------------

/** The X-Amz-* query parameters (decoded, first value), or undefined when the URL is not presigned. */
function presignParams(rawQuery: string): Map<string, string> | undefined {
  let found: Map<string, string> | undefined;
  for (const pair of rawQuery.split('&')) {
    if (!pair.startsWith('X-Amz-')) continue;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    found ??= new Map();
    if (found.has(name)) continue;
    try {
      found.set(name, decodeURIComponent((eq < 0 ? '' : pair.slice(eq + 1)).replace(/\+/g, ' ')));
    } catch {
      throw new S3Error('AuthorizationQueryParametersError', `The query parameter ${name} is not correctly percent-encoded.`);
    }
  }
  // Only these mark a presigned request; a stray X-Amz-Date alone does not.
  if (!found || !(found.has('X-Amz-Algorithm') || found.has('X-Amz-Credential') || found.has('X-Amz-Signature'))) return undefined;
  return found;
}

function presignedAuth(req: AuthRequest, q: Map<string, string>, lookup: SecretLookup, opts: AuthOptions): AuthResult {
  const bad = (m: string) => new S3Error('AuthorizationQueryParametersError', m);
  const algorithm = q.get('X-Amz-Algorithm');
  if (algorithm === 'AWS4-ECDSA-P256-SHA256') throw new S3Error('NotImplemented', 'Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported; use AWS4-HMAC-SHA256.');
  if (algorithm !== ALGORITHM) throw bad('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  const credential = q.get('X-Amz-Credential');
  const amzDate = q.get('X-Amz-Date');
  const expires = q.get('X-Amz-Expires');
  const signedHeaders = q.get('X-Amz-SignedHeaders');
  const signature = q.get('X-Amz-Signature');
  if (credential === undefined || amzDate === undefined || expires === undefined || signedHeaders === undefined || signature === undefined) {
    throw bad('Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
  }
  const cred = parseCredential(credential, bad);
  const dateMs = parseAmzDate(amzDate);
  if (dateMs === undefined) throw bad(`X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'"`);
  if (cred.date !== amzDate.slice(0, 8)) throw bad(`Invalid credential date "${cred.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  if (!/^\d{1,10}$/.test(expires)) throw bad('X-Amz-Expires should be a number');
  const expiresSeconds = Number(expires);
  const maxExpiry = opts.maxPresignExpirySeconds ?? DEFAULT_MAX_PRESIGN_EXPIRY_SECONDS;
  if (expiresSeconds > maxExpiry) throw bad(`X-Amz-Expires must be less than a week (in seconds) that is ${maxExpiry}`);

  const expiresAtMs = dateMs + expiresSeconds * 1000;
  if (opts.nowMs > expiresAtMs) {
    throw new S3Error('AccessDenied', 'Request has expired', {
      'X-Amz-Expires': expires, Expires: new Date(expiresAtMs).toISOString(), ServerTime: new Date(opts.nowMs).toISOString(),
    });
  }
  if (dateMs - opts.nowMs > (opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS)) throw new S3Error('AccessDenied', 'Request is not valid yet');

  const names = parseSignedHeaders(signedHeaders, bad);
  // A presigned URL travels to third parties: x-amz-* headers they add must not ride on its signature.
  const unsigned = Object.keys(req.headers).filter((h) => h.startsWith('x-amz-') && !names.includes(h));
  if (unsigned.length > 0) {
    throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed', { HeadersNotSigned: unsigned.join(', ') });
  }

  // The payload is unsigned unless the signer put X-Amz-Content-Sha256 in the query.
  const contentSha = q.get('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD';
  const payload = parsePayloadMode(contentSha);

  const secret = lookup(cred.accessKeyId);
  if (secret === undefined) throw new S3Error('InvalidAccessKeyId', undefined, { AWSAccessKeyId: cred.accessKeyId });
  const signingKey = signingKeyFor(secret, cred.date, cred.region);
  const canonical = canonicalRequest(req, names, signedHeaders, contentSha, true);
  verifySignature(signingKey, amzDate, cred.scope, canonical, signature, cred.accessKeyId);
  return {
    accessKeyId: cred.accessKeyId, region: cred.region, payload, signingKey, seedSignature: signature,
    amzDate, scope: cred.scope, presigned: true,
  };
}

// ---------------------------------------------------------------------------------------------
// Shared parsing
// ---------------------------------------------------------------------------------------------

function parseCredential(credential: string, err: (m: string) => S3Error): ParsedCredential {
  // AK/yyyymmdd/region/service/aws4_request; the access key id itself never contains '/'.
  const parts = credential.split('/');
  if (parts.length !== 5) throw err(`Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  const [accessKeyId, date, region, service, terminator] = parts as [string, string, string, string, string];
  if (accessKeyId === '' || accessKeyId.length > 128) throw err('The access key id in the credential is empty or too long.');
  if (!/^\d{8}$/.test(date)) throw err(`Invalid credential date "${date.slice(0, 20)}".`);
  if (region === '' || !/^[A-Za-z0-9_-]{1,64}$/.test(region)) throw err(`The credential region "${region.slice(0, 64)}" is not valid.`);
  if (service !== 's3') throw err(`The credential is scoped to the service "${service.slice(0, 32)}"; it should be scoped to the correct service: 's3'.`);
  if (terminator !== 'aws4_request') throw err(`The credential should end with "aws4_request", not "${terminator.slice(0, 32)}".`);
  return { accessKeyId, date, region, scope: `${date}/${region}/s3/aws4_request` };
}

function parseSignedHeaders(s: string, err: (m: string) => S3Error): string[] {
  const names = s.split(';');
  if (names.length > MAX_SIGNED_HEADERS) throw err('Too many signed headers.');
  for (const n of names) if (!HEADER_NAME_RE.test(n)) throw err(`The signed header name "${n.slice(0, 64)}" is not valid (it must be lowercase).`);
  if (!names.includes('host')) throw err('The host header must be signed.');
  return names;
}

/** yyyymmddThhmmssZ → epoch ms, or undefined if malformed. */
function parseAmzDate(s: string): number | undefined {
  const m = AMZ_DATE_RE.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, se);
  const back = new Date(ms);
  // Reject 20250230T... and friends that Date.UTC would silently roll over.
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) return undefined;
  return ms;
}

function parsePayloadMode(v: string): PayloadMode {
  switch (v) {
    case 'UNSIGNED-PAYLOAD': return { kind: 'unsigned' };
    case 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD': return { kind: 'streaming-signed', trailer: false };
    case 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER': return { kind: 'streaming-signed', trailer: true };
    case 'STREAMING-UNSIGNED-PAYLOAD-TRAILER': return { kind: 'streaming-unsigned-trailer' };
    case 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD':
    case 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER':
      throw new S3Error('NotImplemented', 'Signature Version 4A streaming payloads (STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD) are not supported.');
    default:
      if (/^[0-9a-fA-F]{64}$/.test(v)) return { kind: 'sha256', hex: v.toLowerCase() };
      throw new S3Error('InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.', { ArgumentName: 'x-amz-content-sha256' });
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

// ---------------------------------------------------------------------------------------------
// Canonical request
// ---------------------------------------------------------------------------------------------

/** AWS URI encoding of one byte: unreserved characters as they are, everything else %XX (uppercase). */
const ENCODED_BYTE: string[] = Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b);
  return /[A-Za-z0-9\-._~]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
});
const HEX_VALUE = new Int16Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;
  HEX_VALUE['0123456789ABCDEF'.charCodeAt(i)] = i;
}

function hexDigit(c: number): number {
  return c < 128 ? HEX_VALUE[c]! : -1;
}

/**
 * Canonical form of a raw (percent-encoded) path or query component: equivalent to decoding it and
 * encoding again per AWS rules, done in one pass on bytes so that invalid UTF-8 needs no special case.
 * Characters 0x80-0xFF are raw request bytes (Node gives the request line as latin1); characters
 * above 0xFF can only come from a caller's JS string and are taken as UTF-8.
 */
function canonicalEncode(raw: string, mode: 'path' | 'query'): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hi = i + 2 < raw.length ? hexDigit(raw.charCodeAt(i + 1)) : -1;
      const lo = i + 2 < raw.length ? hexDigit(raw.charCodeAt(i + 2)) : -1;
      if (hi < 0 || lo < 0) throw new S3Error('InvalidURI', 'The request URI contains an invalid percent-encoding.');
      out += ENCODED_BYTE[hi * 16 + lo];
      i += 2;
    } else if (c === 0x2f /* / */ && mode === 'path') {
      out += '/';
    } else if (c === 0x2b /* + */ && mode === 'query') {
      out += '%20'; // form encoding, as URLSearchParams (and so the router) reads it
    } else if (c < 256) {
      out += ENCODED_BYTE[c];
    } else {
      const cp = raw.codePointAt(i)!;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) out += ENCODED_BYTE[b];
      if (cp > 0xffff) i++;
    }
  }
  return out;
}

const PLAIN_PATH_RE = /^[A-Za-z0-9\-._~/]*$/;
const PLAIN_COMPONENT_RE = /^[A-Za-z0-9\-._~]*$/;

/** S3 style: no path normalisation, each byte encoded once. */
export function canonicalUri(rawPath: string): string {
  if (rawPath === '') return '/';
  return PLAIN_PATH_RE.test(rawPath) ? rawPath : canonicalEncode(rawPath, 'path');
}

/** Pairs sorted by encoded name then value; a parameter without '=' has an empty value. */
export function canonicalQuery(rawQuery: string, dropSignature: boolean): string {
  if (rawQuery === '') return '';
  const pairs: [string, string][] = [];
  for (const p of rawQuery.split('&')) {
    if (p === '') continue;
    const eq = p.indexOf('=');
    const rn = eq < 0 ? p : p.slice(0, eq);
    const rv = eq < 0 ? '' : p.slice(eq + 1);
    const n = PLAIN_COMPONENT_RE.test(rn) ? rn : canonicalEncode(rn, 'query');
    if (dropSignature && n === 'X-Amz-Signature') continue;
    pairs.push([n, PLAIN_COMPONENT_RE.test(rv) ? rv : canonicalEncode(rv, 'query')]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

/**
 * Note: Node joins repeated request headers with ', ' where AWS joins them with ','; a header sent
 * twice is therefore not verifiable. Clients send each signed header once, so this is accepted.
 */
function canonicalRequest(req: AuthRequest, names: string[], signedHeaders: string, payloadHash: string, presigned: boolean): string {
  let headers = '';
  for (const n of names) {
    const v = headerValue(req.headers, n) ?? '';
    headers += `${n}:${v.trim().replace(/\s+/g, ' ')}\n`;
  }
  return `${req.method}\n${canonicalUri(req.rawPath)}\n${canonicalQuery(req.rawQuery, presigned)}\n${headers}\n${signedHeaders}\n${payloadHash}`;
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures
// ---------------------------------------------------------------------------------------------

const KEY_CACHE_MAX_ENTRIES = 256;
/** Derived signing keys change once a day per key and region; four HMACs saved per request. */
const keyCache = new Map<string, Buffer>();

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** The SigV4 signing key for s3, uncached. */
export function deriveSigningKey(secret: string, date: string, region: string): Buffer {
  return hmac(hmac(hmac(hmac('AWS4' + secret, date), region), 's3'), 'aws4_request');
}

function signingKeyFor(secret: string, date: string, region: string): Buffer {
  // The secret itself is not kept as a map key, only a digest of it.
  const id = `${createHash('sha256').update(secret).digest('base64')}/${date}/${region}`;
  const hit = keyCache.get(id);
  if (hit) {
    keyCache.delete(id); // re-insert: Map order is the LRU order
    keyCache.set(id, hit);
    return hit;
  }
  const key = deriveSigningKey(secret, date, region);
  keyCache.set(id, key);
  if (keyCache.size > KEY_CACHE_MAX_ENTRIES) keyCache.delete(keyCache.keys().next().value!);
  return key;
}

/** For tests and metrics: the number of cached signing keys. */
export function signingKeyCacheSize(): number {
  return keyCache.size;
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** hex(HMAC-SHA256(key, stringToSign)) */
export function signHex(signingKey: Buffer, stringToSign: string): string {
  return createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest('hex');
}

/** Constant-time comparison of two lowercase hex signatures. */
export function signaturesEqual(expectedHex: string, givenHex: string): boolean {
  if (!SIGNATURE_RE.test(givenHex)) return false;
  return timingSafeEqual(Buffer.from(expectedHex, 'latin1'), Buffer.from(givenHex, 'latin1'));
}

function verifySignature(signingKey: Buffer, amzDate: string, scope: string, canonical: string, given: string, accessKeyId: string): void {
  const stringToSign = `${ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`;
  if (!signaturesEqual(signHex(signingKey, stringToSign), given)) {
    // StringToSign and CanonicalRequest help a client developer and reveal nothing secret, as in AWS.
    throw new S3Error('SignatureDoesNotMatch', undefined, {
      AWSAccessKeyId: accessKeyId, StringToSign: stringToSign, SignatureProvided: given.slice(0, 128), CanonicalRequest: canonical.slice(0, 4096),
    });
  }
}
