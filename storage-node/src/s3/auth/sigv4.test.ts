import assert from 'node:assert/strict';
import { createHash, createHmac, Hash, Hmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import aws4 from 'aws4';
import { SignatureV4 } from '@smithy/signature-v4';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { S3Error } from '../error';
import { AuthRequest, AuthResult, authenticate, canonicalQuery, canonicalUri, deriveSigningKey, signingKeyCacheSize } from './sigv4';

// The example credentials and time of AWS's SigV4-for-S3 documentation.
const EX_AK = 'AKIAIOSFODNN7EXAMPLE';
const EX_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const EX_NOW = Date.UTC(2013, 4, 24, 0, 0, 0);
const EMPTY_SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const AK = 'ARCHIPELTESTKEY';
const SECRET = 'test/secret+key=with/odd+chars';
const lookup = (id: string) => (id === EX_AK ? EX_SECRET : id === AK ? SECRET : undefined);

function expectS3Error(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof S3Error, `expected S3Error, got ${String(e)}`);
    assert.equal(e.code, code, `code (message: ${e.message})`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

function authHeader(signedHeaders: string, signature: string, cred = `${EX_AK}/20130524/us-east-1/s3/aws4_request`): string {
  return `AWS4-HMAC-SHA256 Credential=${cred},SignedHeaders=${signedHeaders},Signature=${signature}`;
}

/** Splits an aws4-signed request object into what the server sees. */
function fromAws4(signed: aws4.Request): AuthRequest {
  const path = signed.path ?? '/';
  const q = path.indexOf('?');
  const headers: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(signed.headers ?? {})) headers[k.toLowerCase()] = String(v);
  headers.host ??= signed.host;
  return { method: signed.method ?? 'GET', rawPath: q < 0 ? path : path.slice(0, q), rawQuery: q < 0 ? '' : path.slice(q + 1), headers };
}

/** Pins aws4's signing time to 2026-11-29T12:00:00Z (a header for header auth, a query parameter for presigning). */
function withDate(opts: aws4.Request): aws4.Request {
  const date = '20261129T120000Z';
  if (!opts.signQuery) return { ...opts, headers: { 'X-Amz-Date': date, ...opts.headers } };
  const path = opts.path ?? '/';
  return { ...opts, path: `${path}${path.includes('?') ? '&' : '?'}X-Amz-Date=${date}` };
}

/** The SDK's URI encoding (encodeURIComponent plus !'()*), which is what goes on the wire. */
function sdkEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function toBytes(d: string | ArrayBuffer | ArrayBufferView): string | Buffer {
  if (typeof d === 'string') return d;
  return ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d);
}

class NodeSha256 {
  private readonly h: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret ? createHmac('sha256', toBytes(secret)) : createHash('sha256');
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(toBytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.h.digest();
  }
}

function smithySigner(): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: AK, secretAccessKey: SECRET }, region: 'eu-west-3', service: 's3',
    sha256: NodeSha256, uriEscapePath: false, applyChecksum: true,
  });
}

function smithyToAuthRequest(r: { method: string; path: string; query?: Record<string, string | string[] | null>; headers: Record<string, string> }): AuthRequest {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(r.query ?? {})) {
    for (const one of Array.isArray(v) ? v : [v]) parts.push(one === null ? sdkEncode(k) : `${sdkEncode(k)}=${sdkEncode(one)}`);
  }
  const headers: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(r.headers)) headers[k.toLowerCase()] = v;
  return { method: r.method, rawPath: r.path, rawQuery: parts.join('&'), headers };
}

describe('sigv4', () => {
  describe("AWS's published examples", () => {
    it('verifies the GET Object example (header auth, Range signed)', () => {
      const r = authenticate({
        method: 'GET', rawPath: '/test.txt', rawQuery: '',
        headers: {
          host: 'examplebucket.s3.amazonaws.com', range: 'bytes=0-9', 'x-amz-content-sha256': EMPTY_SHA, 'x-amz-date': '20130524T000000Z',
          authorization: authHeader('host;range;x-amz-content-sha256;x-amz-date', 'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41'),
        },
      }, lookup, { nowMs: EX_NOW })!;
      assert.equal(r.accessKeyId, EX_AK);
      assert.equal(r.region, 'us-east-1');
      assert.equal(r.scope, '20130524/us-east-1/s3/aws4_request');
      assert.deepEqual(r.payload, { kind: 'sha256', hex: EMPTY_SHA });
      assert.equal(r.presigned, false);
    });

    it('verifies the PUT Object example (path with $, Date and storage class signed)', () => {
      const r = authenticate({
        method: 'PUT', rawPath: '/test%24file.text', rawQuery: '',
        headers: {
          host: 'examplebucket.s3.amazonaws.com', date: 'Fri, 24 May 2013 00:00:00 GMT', 'x-amz-date': '20130524T000000Z',
          'x-amz-storage-class': 'REDUCED_REDUNDANCY', 'x-amz-content-sha256': '44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072',
          authorization: authHeader('date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class', '98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd'),
        },
      }, lookup, { nowMs: EX_NOW })!;
      assert.deepEqual(r.payload, { kind: 'sha256', hex: '44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072' });
    });

    it('verifies the GET Bucket lifecycle example (sub-resource without value)', () => {
      assert.ok(authenticate({
        method: 'GET', rawPath: '/', rawQuery: 'lifecycle',
        headers: {
          host: 'examplebucket.s3.amazonaws.com', 'x-amz-date': '20130524T000000Z', 'x-amz-content-sha256': EMPTY_SHA,
          authorization: authHeader('host;x-amz-content-sha256;x-amz-date', 'fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543'),
        },
      }, lookup, { nowMs: EX_NOW }));
    });

    it('verifies the GET Bucket (list objects) example (query parameters sorted)', () => {
      assert.ok(authenticate({
        method: 'GET', rawPath: '/', rawQuery: 'max-keys=2&prefix=J',
        headers: {
          host: 'examplebucket.s3.amazonaws.com', 'x-amz-date': '20130524T000000Z', 'x-amz-content-sha256': EMPTY_SHA,
          authorization: authHeader('host;x-amz-content-sha256;x-amz-date', '34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7'),
        },
      }, lookup, { nowMs: EX_NOW }));
    });

    it('verifies the presigned URL example', () => {
      const r = authenticate({
        method: 'GET', rawPath: '/test.txt',
        rawQuery: 'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
        headers: { host: 'examplebucket.s3.amazonaws.com' },
      }, lookup, { nowMs: EX_NOW + 3600_000 })!;
      assert.equal(r.presigned, true);
      assert.deepEqual(r.payload, { kind: 'unsigned' });
    });

    it('verifies the seed signature of the chunked upload example', () => {
      const r = authenticate({
        method: 'PUT', rawPath: '/examplebucket/chunkObject.txt', rawQuery: '',
        headers: {
          host: 's3.amazonaws.com', 'x-amz-date': '20130524T000000Z', 'x-amz-storage-class': 'REDUCED_REDUNDANCY',
          'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'content-encoding': 'aws-chunked',
          'x-amz-decoded-content-length': '66560', 'content-length': '66824',
          authorization: authHeader('content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class',
            '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9'),
        },
      }, lookup, { nowMs: EX_NOW })!;
      assert.deepEqual(r.payload, { kind: 'streaming-signed', trailer: false });
      assert.equal(r.seedSignature, '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9');
      assert.equal(r.amzDate, '20130524T000000Z');
      assert.deepEqual(r.signingKey, deriveSigningKey(EX_SECRET, '20130524', 'us-east-1'));
    });
  });

  describe('round trips with client signers', () => {
    const now = Date.UTC(2026, 10, 29, 12, 0, 0);
    const keys = ['plain.txt', 'with space.txt', 'plus+sign', 'percent%25literal%', 'unicodé/日本語/🙂', 'a/b//c/', "quote'(star)*!", 'tilde~under_score', 'semi;colon,comma=eq&amp'];

    function aws4Sign(opts: aws4.Request, secret = SECRET): AuthRequest {
      return fromAws4(aws4.sign(withDate({ host: 'bucket.s3.local', service: 's3', region: 'eu-west-3', ...opts }), { accessKeyId: AK, secretAccessKey: secret }));
    }

    it('accepts aws4 header signatures for keys with spaces, unicode, + and %', () => {
      for (const key of keys) {
        const path = '/' + key.split('/').map(sdkEncode).join('/');
        const req = aws4Sign({ method: 'GET', path });
        const r = authenticate(req, lookup, { nowMs: now });
        assert.equal(r?.accessKeyId, AK, key);
        assert.equal(r?.region, 'eu-west-3');
      }
    });

    it('accepts aws4 signatures with empty and valueless query parameters', () => {
      // (aws4 signs only the first value of a repeated parameter for s3; repeated ones are covered with smithy.)
      for (const query of ['list-type=2&prefix=a%20b&delimiter=%2F', 'uploads', 'tagging=', 'b&a=1', 'prefix=&max-keys=10', 'versionId=x%2By&z=%E2%9C%93']) {
        const req = aws4Sign({ method: 'GET', path: `/bucket/?${query}` });
        assert.ok(authenticate(req, lookup, { nowMs: now }), query);
      }
    });

    it('accepts aws4 signatures of a PUT with a signed body hash and user metadata', () => {
      const req = aws4Sign({ method: 'PUT', path: '/bucket/obj', body: 'hello', headers: { 'X-Amz-Meta-Color': '  blue   and  green ', 'Content-Type': 'text/plain' } });
      const r = authenticate(req, lookup, { nowMs: now })!;
      assert.deepEqual(r.payload, { kind: 'sha256', hex: createHash('sha256').update('hello').digest('hex') });
    });

    it('accepts aws4 presigned URLs', () => {
      for (const key of keys) {
        const req = aws4Sign({ method: 'GET', path: '/' + key.split('/').map(sdkEncode).join('/') + '?response-content-type=text%2Fplain', signQuery: true });
        const r = authenticate(req, lookup, { nowMs: now + 60_000 });
        assert.equal(r?.presigned, true, key);
        assert.deepEqual(r?.payload, { kind: 'unsigned' });
      }
    });

    it('accepts @smithy/signature-v4 header signatures and presigned URLs (what the AWS SDK uses)', async () => {
      const signer = smithySigner();
      const signingDate = new Date(now);
      for (const key of keys) {
        const path = '/bucket/' + key.split('/').map(sdkEncode).join('/');
        const base = {
          method: 'PUT', protocol: 'http:', hostname: '127.0.0.1', port: 9000, path,
          query: { uploadId: 'u/1+2', partNumber: '3', empty: '', rep: ['b', 'a'] } as Record<string, string | string[]>,
          headers: { host: '127.0.0.1:9000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'x-amz-meta-a': 'b' } as Record<string, string>,
        };
        const signed = await signer.sign({ ...base, headers: { ...base.headers } }, { signingDate });
        const r = authenticate(smithyToAuthRequest(signed as never), lookup, { nowMs: now });
        assert.equal(r?.accessKeyId, AK, key);

      }
    });

    it('accepts URLs presigned by @aws-sdk/s3-request-presigner until they expire', async () => {
      const client = new S3Client({
        region: 'eu-west-3', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true,
        credentials: { accessKeyId: AK, secretAccessKey: SECRET },
      });
      const signingDate = new Date(now);
      for (const key of keys) {
        const commands = [
          new GetObjectCommand({ Bucket: 'bucket', Key: key, ResponseContentType: 'text/plain; charset=utf-8', VersionId: 'v+1' }),
          new PutObjectCommand({ Bucket: 'bucket', Key: key, ContentType: 'text/plain', Metadata: { color: 'blue' } }),
        ];
        for (const command of commands) {
          const url = new URL(await getSignedUrl(client, command, { expiresIn: 900, signingDate }));
          const headers: IncomingHttpHeaders = { host: url.host };
          if (command instanceof PutObjectCommand) headers['content-type'] = 'text/plain'; // sent by the client, not signed
          const req: AuthRequest = { method: command instanceof PutObjectCommand ? 'PUT' : 'GET', rawPath: url.pathname, rawQuery: url.search.slice(1), headers };
          const p = authenticate(req, lookup, { nowMs: now + 899_000 });
          assert.equal(p?.presigned, true, key);
          assert.deepEqual(p?.payload, { kind: 'unsigned' });
          expectS3Error(() => authenticate(req, lookup, { nowMs: now + 901_000 }), 'AccessDenied', /Request has expired/);
        }
      }
      client.destroy();
    });

    it('reports the streaming payload kinds the SDKs announce', () => {
      const kinds: [string, AuthResult['payload']][] = [
        ['UNSIGNED-PAYLOAD', { kind: 'unsigned' }],
        ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD', { kind: 'streaming-signed', trailer: false }],
        ['STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER', { kind: 'streaming-signed', trailer: true }],
        ['STREAMING-UNSIGNED-PAYLOAD-TRAILER', { kind: 'streaming-unsigned-trailer' }],
      ];
      for (const [value, payload] of kinds) {
        const req = aws4Sign({ method: 'PUT', path: '/b/k', headers: { 'X-Amz-Content-Sha256': value } });
        assert.deepEqual(authenticate(req, lookup, { nowMs: now })?.payload, payload, value);
      }
    });

    it('rejects a request altered after signing', () => {
      const good = aws4Sign({ method: 'GET', path: '/bucket/key?versionId=1' });
      const variants: AuthRequest[] = [
        { ...good, method: 'DELETE' },
        { ...good, rawPath: '/bucket/key2' },
        { ...good, rawPath: '/bucket/Key' },
        { ...good, rawQuery: 'versionId=2' },
        { ...good, rawQuery: 'versionId=1&extra' },
        { ...good, headers: { ...good.headers, host: 'other.s3.local' } },
      ];
      for (const v of variants) expectS3Error(() => authenticate(v, lookup, { nowMs: now }), 'SignatureDoesNotMatch');
      expectS3Error(() => authenticate(aws4Sign({ method: 'GET', path: '/b/k' }, 'wrong-secret'), lookup, { nowMs: now }), 'SignatureDoesNotMatch');
    });
  });

  describe('refusals', () => {
    const now = Date.UTC(2026, 10, 29, 12, 0, 0);
    const sign = (opts: aws4.Request = {}) => fromAws4(aws4.sign(withDate({ host: 'b.s3.local', service: 's3', region: 'us-east-1', method: 'GET', path: '/b/k', ...opts }), { accessKeyId: AK, secretAccessKey: SECRET }));
    const withAuth = (req: AuthRequest, authorization: string): AuthRequest => ({ ...req, headers: { ...req.headers, authorization } });

    it('returns null for an anonymous request', () => {
      assert.equal(authenticate({ method: 'GET', rawPath: '/b/k', rawQuery: 'X-Amz-Date=x&prefix=a', headers: { host: 'h' } }, lookup, { nowMs: now }), null);
    });

    it('answers NotImplemented for Signature Version 2 and 4A', () => {
      const req = sign();
      expectS3Error(() => authenticate(withAuth(req, 'AWS AKID:c2lnbmF0dXJl'), lookup, { nowMs: now }), 'NotImplemented', /Version 2/);
      expectS3Error(() => authenticate({ ...req, headers: { host: 'h' }, rawQuery: 'AWSAccessKeyId=AK&Expires=1&Signature=x' }, lookup, { nowMs: now }), 'NotImplemented', /Version 2/);
      expectS3Error(() => authenticate(withAuth(req, 'AWS4-ECDSA-P256-SHA256 Credential=AK/20261129/s3/aws4_request, SignedHeaders=host, Signature=ab'), lookup, { nowMs: now }), 'NotImplemented', /4A/);
      expectS3Error(() => authenticate({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD' } }, lookup, { nowMs: now }), 'NotImplemented', /4A/);
      expectS3Error(() => authenticate({ ...req, headers: { host: 'h' }, rawQuery: 'X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Credential=a' }, lookup, { nowMs: now }), 'NotImplemented');
    });

    it('answers AuthorizationHeaderMalformed for a malformed Authorization header', () => {
      const req = sign();
      const sig = 'a'.repeat(64);
      const cases = [
        'AWS4-HMAC-SHA256',
        'Bearer token',
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3/aws4_request, SignedHeaders=host`,
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3, SignedHeaders=host, Signature=${sig}`,
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}, Extra=1`,
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3/aws4_request, SignedHeaders=Host;X-Amz-Date, Signature=${sig}`,
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=${sig}`, // host not signed
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=${sig}`, // wrong service
        `AWS4-HMAC-SHA256 Credential=${AK}/20261128/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${sig}`, // scope date ≠ x-amz-date
        `AWS4-HMAC-SHA256 Credential=${AK}/20261129/us-east-1/s3/aws4_request, Credential=x, SignedHeaders=host, Signature=${sig}`,
        'AWS4-HMAC-SHA256 ' + 'x'.repeat(5000),
      ];
      for (const c of cases) expectS3Error(() => authenticate(withAuth(req, c), lookup, { nowMs: now }), 'AuthorizationHeaderMalformed');
    });

    it('answers InvalidAccessKeyId for an unknown key', () => {
      const req = fromAws4(aws4.sign({ host: 'b', service: 's3', region: 'us-east-1', path: '/', headers: { 'X-Amz-Date': '20261129T120000Z' } }, { accessKeyId: 'NOSUCHKEY', secretAccessKey: 'x' }));
      expectS3Error(() => authenticate(req, lookup, { nowMs: now }), 'InvalidAccessKeyId');
    });

    it('answers SignatureDoesNotMatch for a wrong or malformed signature', () => {
      const req = sign();
      const authz = String(req.headers.authorization);
      const flipped = authz.replace(/Signature=(.)/, (_m, c: string) => `Signature=${c === '0' ? '1' : '0'}`);
      expectS3Error(() => authenticate(withAuth(req, flipped), lookup, { nowMs: now }), 'SignatureDoesNotMatch');
      expectS3Error(() => authenticate(withAuth(req, authz.replace(/Signature=.*/, 'Signature=xyz')), lookup, { nowMs: now }), 'SignatureDoesNotMatch');
      expectS3Error(() => authenticate(withAuth(req, authz.replace(/Signature=(.*)/, (_m, s: string) => `Signature=${s.toUpperCase()}`)), lookup, { nowMs: now }), 'SignatureDoesNotMatch');
    });

    it('answers RequestTimeTooSkewed when x-amz-date is more than 15 minutes off', () => {
      const req = sign();
      assert.ok(authenticate(req, lookup, { nowMs: now + 14 * 60_000 }));
      assert.ok(authenticate(req, lookup, { nowMs: now - 14 * 60_000 }));
      expectS3Error(() => authenticate(req, lookup, { nowMs: now + 16 * 60_000 }), 'RequestTimeTooSkewed');
      expectS3Error(() => authenticate(req, lookup, { nowMs: now - 16 * 60_000 }), 'RequestTimeTooSkewed');
      expectS3Error(() => authenticate(req, lookup, { nowMs: now + 61_000, maxSkewMs: 60_000 }), 'RequestTimeTooSkewed');
    });

    it('requires a valid x-amz-date and x-amz-content-sha256 with header auth', () => {
      const req = sign();
      const { 'x-amz-date': _d, ...noDate } = req.headers;
      expectS3Error(() => authenticate({ ...req, headers: noDate }, lookup, { nowMs: now }), 'AccessDenied', /x-amz-date/);
      expectS3Error(() => authenticate({ ...req, headers: { ...req.headers, 'x-amz-date': '20261129T250000Z' } }, lookup, { nowMs: now }), 'AccessDenied');
      const { 'x-amz-content-sha256': _c, ...noSha } = req.headers;
      expectS3Error(() => authenticate({ ...req, headers: noSha }, lookup, { nowMs: now }), 'InvalidRequest', /x-amz-content-sha256/);
      expectS3Error(() => authenticate({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': 'abc' } }, lookup, { nowMs: now }), 'InvalidArgument');
    });

    it('refuses header and query credentials together', () => {
      const req = sign();
      expectS3Error(() => authenticate({ ...req, rawQuery: 'X-Amz-Signature=abc&X-Amz-Credential=x' }, lookup, { nowMs: now }), 'InvalidArgument', /one auth mechanism/);
    });

    it('answers AuthorizationQueryParametersError for malformed presign parameters', () => {
      const presigned = sign({ signQuery: true });
      const q = presigned.rawQuery;
      const cases = [
        q.replace(/X-Amz-Algorithm=[^&]*/, 'X-Amz-Algorithm=HMAC'),
        q.replace(/&X-Amz-Expires=[^&]*/, ''),
        q.replace(/&X-Amz-SignedHeaders=[^&]*/, ''),
        q.replace(/X-Amz-Date=[^&]*/, 'X-Amz-Date=yesterday'),
        q.replace(/X-Amz-Expires=[^&]*/, 'X-Amz-Expires=604801'),
        q.replace(/X-Amz-Expires=[^&]*/, 'X-Amz-Expires=-5'),
        q.replace(/X-Amz-Credential=[^&]*/, 'X-Amz-Credential=AK%2F20261129%2Fus-east-1'),
        q.replace(/X-Amz-Credential=[^&]*/, `X-Amz-Credential=${AK}%2F20261129%2Fus-east-1%2Fsts%2Faws4_request`),
        q.replace(/X-Amz-Credential=[^&]*/, 'X-Amz-Credential=%E0%A4%A'),
      ];
      for (const c of cases) expectS3Error(() => authenticate({ ...presigned, rawQuery: c }, lookup, { nowMs: now }), 'AuthorizationQueryParametersError', undefined);
    });

    it('answers AccessDenied "Request has expired" for an expired presigned URL, and refuses one from the future', () => {
      const req = sign({ signQuery: true }); // aws4 default expiry: 86400 s
      assert.ok(authenticate(req, lookup, { nowMs: now + 86_400_000 }));
      expectS3Error(() => authenticate(req, lookup, { nowMs: now + 86_401_000 }), 'AccessDenied', /^Request has expired$/);
      expectS3Error(() => authenticate(req, lookup, { nowMs: now - 3600_000 }), 'AccessDenied', /not valid yet/);
    });

    it('refuses unsigned x-amz-* headers added to a presigned URL', () => {
      const req = sign({ signQuery: true });
      expectS3Error(() => authenticate({ ...req, headers: { ...req.headers, 'x-amz-copy-source': '/other/key' } }, lookup, { nowMs: now }), 'AccessDenied', /not signed/);
    });

    it('refuses a bad percent-encoding in the path', () => {
      const req = sign();
      expectS3Error(() => authenticate({ ...req, rawPath: '/b/%zz' }, lookup, { nowMs: now }), 'InvalidURI');
      expectS3Error(() => authenticate({ ...req, rawPath: '/b/%4' }, lookup, { nowMs: now }), 'InvalidURI');
    });
  });

  describe('canonical forms', () => {
    it('re-encodes each path byte once, keeps slashes, and never normalises', () => {
      assert.equal(canonicalUri(''), '/');
      assert.equal(canonicalUri('/a/./b/../c//d'), '/a/./b/../c//d');
      assert.equal(canonicalUri('/a%2fb'), '/a%2Fb');
      assert.equal(canonicalUri('/a b+c'), '/a%20b%2Bc');
      assert.equal(canonicalUri('/%7Euser/%41'), '/~user/A');
      assert.equal(canonicalUri('/caf\u00c3\u00a9'), '/caf%C3%A9'); // raw UTF-8 bytes as Node presents them (latin1)
      assert.equal(canonicalUri('/%FF%fe'), '/%FF%FE'); // not UTF-8: still one byte each
    });

    it('sorts query parameters by name then value, with + read as a space', () => {
      assert.equal(canonicalQuery('b=2&a=2&a=1&c', false), 'a=1&a=2&b=2&c=');
      assert.equal(canonicalQuery('prefix=a+b&x=%7e', false), 'prefix=a%20b&x=~');
      assert.equal(canonicalQuery('X-Amz-Signature=abc&a=1', true), 'a=1');
      assert.equal(canonicalQuery('&&a=1&', false), 'a=1');
    });
  });

  describe('cost', () => {
    it('bounds the signing-key cache', () => {
      const now = Date.UTC(2026, 10, 29, 12, 0, 0);
      for (let i = 0; i < 300; i++) {
        const req = fromAws4(aws4.sign({ host: 'b', service: 's3', region: `r${i}`, path: '/', headers: { 'X-Amz-Date': '20261129T120000Z' } }, { accessKeyId: AK, secretAccessKey: SECRET }));
        assert.ok(authenticate(req, lookup, { nowMs: now }));
      }
      assert.ok(signingKeyCacheSize() <= 256, `cache size ${signingKeyCacheSize()}`);
    });

    it('authenticates a typical request in well under 0.2 ms', () => {
      const now = Date.UTC(2026, 10, 29, 12, 0, 0);
      const req = fromAws4(aws4.sign({
        host: 'bucket.s3.local', service: 's3', region: 'us-east-1', method: 'PUT', path: '/bucket/some/key%20name.bin?partNumber=3&uploadId=abcdef',
        headers: { 'X-Amz-Date': '20261129T120000Z', 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD', 'Content-Length': '1048576', 'X-Amz-Meta-A': 'b' },
      }, { accessKeyId: AK, secretAccessKey: SECRET }));
      for (let i = 0; i < 500; i++) authenticate(req, lookup, { nowMs: now });
      const n = 5000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) authenticate(req, lookup, { nowMs: now });
      const perMs = Number(process.hrtime.bigint() - t0) / 1e6 / n;
      assert.ok(perMs < 0.2, `${perMs.toFixed(4)} ms per request`);
    });
  });
});
