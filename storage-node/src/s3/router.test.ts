import assert from 'node:assert/strict';
import { route } from './router';
import { validateBucketName, validateKey } from './names';
import { parseRange } from './get';
import { S3Error } from './error';

const q = (s: string): Map<string, string> => new Map([...new URLSearchParams(s)]);
const op = (method: string, bucket: boolean, key: boolean, query = '', headers: Record<string, string> = {}): string => route(method, bucket, key, q(query), headers).operation;

function s3Code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

describe('s3 router', () => {
  it('maps service, bucket and object requests to their operations', () => {
    assert.equal(op('GET', false, false), 'ListBuckets');
    assert.equal(op('PUT', true, false), 'CreateBucket');
    assert.equal(op('GET', true, false, 'list-type=2&prefix=a'), 'ListObjectsV2');
    assert.equal(op('GET', true, false, 'prefix=a'), 'ListObjects');
    assert.equal(op('GET', true, false, 'versions'), 'ListObjectVersions');
    assert.equal(op('GET', true, false, 'uploads'), 'ListMultipartUploads');
    assert.equal(op('POST', true, false, 'delete'), 'DeleteObjects');
    assert.equal(op('PUT', true, true), 'PutObject');
    assert.equal(op('PUT', true, true, '', { 'x-amz-copy-source': 'b/k' }), 'CopyObject');
    assert.equal(op('PUT', true, true, 'partNumber=1&uploadId=u'), 'UploadPart');
    assert.equal(op('PUT', true, true, 'partNumber=1&uploadId=u', { 'x-amz-copy-source': 'b/k' }), 'UploadPartCopy');
    assert.equal(op('POST', true, true, 'uploads'), 'CreateMultipartUpload');
    assert.equal(op('POST', true, true, 'uploadId=u'), 'CompleteMultipartUpload');
    assert.equal(op('DELETE', true, true, 'uploadId=u'), 'AbortMultipartUpload');
    assert.equal(op('GET', true, true, 'retention'), 'GetObjectRetention');
    assert.equal(op('PUT', true, true, 'legal-hold'), 'PutObjectLegalHold');
    assert.equal(op('PUT', true, false, 'object-lock'), 'PutObjectLockConfiguration');
  });

  it('never mistakes an unsupported sub-resource for a plain read or write', () => {
    assert.equal(op('PUT', true, false, 'policy'), 'PutBucket:policy');
    assert.equal(op('GET', true, false, 'policy'), 'GetBucketPolicy');
    assert.equal(op('POST', true, true, 'select&select-type=2'), 'Object:select');
    assert.equal(s3Code(() => route('PATCH', true, true, q(''), {})), 'MethodNotAllowed');
  });
});

describe('bucket and key names', () => {
  it('accepts names S3 accepts and refuses the rest', () => {
    for (const ok of ['abc', 'my-bucket.v2', 'a'.repeat(63), '1bucket']) assert.equal(s3Code(() => validateBucketName(ok, true)), 'none', ok);
    for (const bad of ['ab', 'A-b-c', 'a_b', '-ab', 'ab-', 'a..b', '10.0.0.1', 'xn--ab', 'a.-b', 'ab-s3alias', 'a'.repeat(64)]) {
      assert.equal(s3Code(() => validateBucketName(bad, true)), 'InvalidBucketName', bad);
      assert.equal(s3Code(() => validateBucketName(bad, false)), 'NoSuchBucket', bad);
    }
  });

  it('limits keys to 1024 UTF-8 bytes and refuses NUL and lone surrogates', () => {
    assert.equal(s3Code(() => validateKey('é'.repeat(512))), 'none');
    assert.equal(s3Code(() => validateKey('é'.repeat(513))), 'KeyTooLongError');
    assert.equal(s3Code(() => validateKey('a\u0000b')), 'InvalidArgument');
    assert.equal(s3Code(() => validateKey('a\uD800b')), 'InvalidURI');
    assert.equal(s3Code(() => validateKey('emoji 😀 ok')), 'none');
  });
});

describe('Range header', () => {
  it('parses the three single-range forms and clamps the end', () => {
    assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, endInclusive: 0 });
    assert.deepEqual(parseRange('bytes=2-', 10), { start: 2, endInclusive: 9 });
    assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, endInclusive: 9 });
    assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, endInclusive: 9 });
    assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, endInclusive: 9 });
  });

  it('ignores what it cannot parse and refuses what cannot be satisfied', () => {
    assert.equal(parseRange(undefined, 10), undefined);
    assert.equal(parseRange('bytes=a-b', 10), undefined);
    assert.equal(parseRange('bytes=0-1,3-4', 10), undefined);
    assert.equal(parseRange('bytes=5-2', 10), undefined);
    assert.equal(s3Code(() => parseRange('bytes=10-', 10)), 'InvalidRange');
    assert.equal(s3Code(() => parseRange('bytes=-0', 10)), 'InvalidRange');
  });
});
