import assert from 'node:assert/strict';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, DeleteBucketCommand, HeadObjectCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, GetObjectLockConfigurationCommand,
  ListObjectsV2Command, PutBucketVersioningCommand, DeleteObjectCommand,
} from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { signedRequest, errorCode, send } from '../helpers/signed-http';
import { S3_ERRORS } from '../../storage-node/src/s3/error';

/** The error codes the storage-node issue requires, each produced below by a real request. */
const REQUIRED = [
  'NoSuchBucket', 'NoSuchKey', 'NoSuchVersion', 'BucketNotEmpty', 'BucketAlreadyOwnedByYou', 'InvalidBucketName',
  'KeyTooLongError', 'EntityTooLarge', 'EntityTooSmall', 'InvalidPart', 'InvalidPartOrder', 'InvalidRange',
  'PreconditionFailed', 'NotModified', 'SignatureDoesNotMatch', 'InvalidAccessKeyId', 'AccessDenied',
  'RequestTimeTooSkewed', 'MalformedXML', 'BadDigest', 'XAmzContentSHA256Mismatch', 'InvalidArgument',
  'InvalidObjectState', 'ObjectLockConfigurationNotFoundError', 'NotImplemented', 'InternalError',
] as const;

interface SdkError {
  name: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string> };
}

async function expectS3Error(p: Promise<unknown>, code: string, status: number): Promise<SdkError> {
  try {
    await p;
  } catch (e) {
    const err = e as SdkError;
    const got = err.Code ?? err.name;
    assert.equal(got, code, `expected ${code}, got ${got} (${(e as Error).message})`);
    assert.equal(err.$metadata?.httpStatusCode, status, `${code} must come with HTTP ${status}`);
    return err;
  }
  assert.fail(`expected ${code}, but the request succeeded`);
}

describe('S3 error codes (real node, real clients)', function () {
  this.timeout(120_000);
  let node: StartedNode;
  let s3: S3Client;
  let other: S3Client;
  const seen = new Set<string>();

  before(async () => {
    node = await startNode({ extraKeys: [{ accessKeyId: 'other-key', secretAccessKey: 'other-secret-key', name: 'other' }] });
    s3 = node.s3Client({ maxAttempts: 1 });
    other = node.s3Client({ maxAttempts: 1, credentials: { accessKeyId: 'other-key', secretAccessKey: 'other-secret-key' } });
    await s3.send(new CreateBucketCommand({ Bucket: 'errs' }));
    await s3.send(new PutObjectCommand({ Bucket: 'errs', Key: 'ten', Body: '0123456789' }));
  });
  after(async () => {
    s3?.destroy();
    other?.destroy();
    await cleanupAllNodes();
  });

  const sdk = async (p: Promise<unknown>, code: string, status: number): Promise<SdkError> => {
    const e = await expectS3Error(p, code, status);
    seen.add(code);
    return e;
  };
  const raw = async (p: Promise<{ status: number; body: string }>, code: string, status: number): Promise<void> => {
    const r = await p;
    assert.equal(r.status, status, `${code}: status ${r.status}, body ${r.body}`);
    assert.equal(errorCode(r.body), code, `body: ${r.body}`);
    assert.match(r.body, /<RequestId>[^<]+<\/RequestId>/, 'errors carry a request id');
    seen.add(code);
  };

  it('the catalogue holds every required code with its AWS status', () => {
    for (const c of REQUIRED) assert.ok(c in S3_ERRORS, `${c} missing from the catalogue`);
    assert.equal(S3_ERRORS.NoSuchKey[0], 404);
    assert.equal(S3_ERRORS.AccessDenied[0], 403);
    assert.equal(S3_ERRORS.NotImplemented[0], 501);
  });

  it('missing buckets, keys and versions are 404s', async () => {
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'x' })), 'NoSuchBucket', 404);
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'missing' })), 'NoSuchKey', 404);
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'ten', VersionId: '0000000000000aAAAAAAAAAAAA' })), 'NoSuchVersion', 404);
  });

  it('bucket lifecycle refusals: exists, not empty, bad name', async () => {
    await sdk(s3.send(new CreateBucketCommand({ Bucket: 'errs' })), 'BucketAlreadyOwnedByYou', 409);
    await sdk(s3.send(new DeleteBucketCommand({ Bucket: 'errs' })), 'BucketNotEmpty', 409);
    await raw(signedRequest(node, { method: 'PUT', path: '/Bad_Bucket' }), 'InvalidBucketName', 400);
    await raw(signedRequest(node, { method: 'PUT', path: '/ab' }), 'InvalidBucketName', 400);
  });

  it('keys over 1024 bytes are refused', async () => {
    await sdk(s3.send(new PutObjectCommand({ Bucket: 'errs', Key: 'k'.repeat(1025), Body: 'x' })), 'KeyTooLongError', 400);
  });

  it('a PUT declaring more than 5 GiB is refused before any byte is read', async () => {
    await raw(signedRequest(node, { method: 'PUT', path: '/errs/huge', headers: { 'content-length': String(5 * 1024 ** 3 + 1), 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, body: undefined }), 'EntityTooLarge', 400);
  });

  it('multipart completion checks part sizes, existence and order', async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'errs', Key: 'mp' }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket: 'errs', Key: 'mp', UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: 'errs', Key: 'mp', UploadId, PartNumber: 2, Body: Buffer.alloc(1024, 2) }));
    await sdk(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'errs', Key: 'mp', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } })), 'EntityTooSmall', 400);
    await sdk(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'errs', Key: 'mp', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }] } })), 'InvalidPart', 400);
    await sdk(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'errs', Key: 'mp', UploadId, MultipartUpload: { Parts: [{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 1, ETag: p1.ETag }] } })), 'InvalidPartOrder', 400);
  });

  it('ranges and preconditions: 416, 412, 304', async () => {
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'ten', Range: 'bytes=10-' })), 'InvalidRange', 416);
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'ten', IfMatch: '"nope"' })), 'PreconditionFailed', 412);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'errs', Key: 'ten' }));
    const r = await signedRequest(node, { method: 'GET', path: '/errs/ten', headers: { 'if-none-match': head.ETag! } });
    assert.equal(r.status, 304);
    assert.equal(r.body, '', 'a 304 has no body');
    assert.equal(r.headers.etag, head.ETag);
    seen.add('NotModified');
    await sdk(s3.send(new PutObjectCommand({ Bucket: 'errs', Key: 'ten', Body: 'x', IfNoneMatch: '*' })), 'PreconditionFailed', 412);
  });

  it('authentication failures: bad signature, unknown key, other owner, skewed clock', async () => {
    const wrong = node.s3Client({ maxAttempts: 1, credentials: { accessKeyId: node.accessKeyId, secretAccessKey: 'not-the-secret' } });
    await sdk(wrong.send(new ListObjectsV2Command({ Bucket: 'errs' })), 'SignatureDoesNotMatch', 403);
    wrong.destroy();
    const unknown = node.s3Client({ maxAttempts: 1, credentials: { accessKeyId: 'nobody', secretAccessKey: 'nobody-secret' } });
    await sdk(unknown.send(new ListObjectsV2Command({ Bucket: 'errs' })), 'InvalidAccessKeyId', 403);
    unknown.destroy();
    await sdk(other.send(new GetObjectCommand({ Bucket: 'errs', Key: 'ten' })), 'AccessDenied', 403);
    await sdk(other.send(new DeleteObjectCommand({ Bucket: 'errs', Key: 'ten' })), 'AccessDenied', 403);
    await raw(signedRequest(node, { method: 'GET', path: '/errs/ten', date: new Date(Date.now() - 20 * 60_000) }), 'RequestTimeTooSkewed', 403);
    const anon = await send(node.host, node.s3Port, 'GET', '/errs/ten', {}, undefined);
    assert.equal(anon.status, 403);
    assert.equal(errorCode(anon.body), 'AccessDenied');
  });

  it('bodies that do not match what was declared', async () => {
    await raw(signedRequest(node, { method: 'POST', path: '/errs?delete', body: '<Delete><Object><Key>a</Key></Object' }), 'MalformedXML', 400);
    await sdk(s3.send(new PutObjectCommand({ Bucket: 'errs', Key: 'md5', Body: 'hello', ContentMD5: Buffer.alloc(16).toString('base64') })), 'BadDigest', 400);
    await raw(signedRequest(node, { method: 'PUT', path: '/errs/sha', body: 'hello', headers: { 'x-amz-content-sha256': 'a'.repeat(64) } }), 'XAmzContentSHA256Mismatch', 400);
    await raw(signedRequest(node, { method: 'PUT', path: '/errs/crc', body: 'hello', headers: { 'x-amz-checksum-crc32': 'AAAAAA==' } }), 'BadDigest', 400);
    // Nothing of the refused bodies was stored.
    await sdk(s3.send(new HeadObjectCommand({ Bucket: 'errs', Key: 'md5' })), 'NotFound', 404);
    await sdk(s3.send(new GetObjectCommand({ Bucket: 'errs', Key: 'sha' })), 'NoSuchKey', 404);
  });

  it('invalid arguments, object state and missing lock configuration', async () => {
    await raw(signedRequest(node, { method: 'GET', path: '/errs?list-type=2&max-keys=-1' }), 'InvalidArgument', 400);
    await raw(signedRequest(node, { method: 'GET', path: '/errs/ten?versionId=not-a-version' }), 'InvalidArgument', 400);
    await sdk(s3.send(new GetObjectLockConfigurationCommand({ Bucket: 'errs' })), 'ObjectLockConfigurationNotFoundError', 404);
    await s3.send(new CreateBucketCommand({ Bucket: 'locked', ObjectLockEnabledForBucket: true }));
    await s3.send(new PutObjectCommand({ Bucket: 'locked', Key: 'k', Body: 'x' }));
    const del = await s3.send(new DeleteObjectCommand({ Bucket: 'locked', Key: 'k' }));
    assert.equal(del.DeleteMarker, true);
    await raw(signedRequest(node, {
      method: 'PUT', path: `/locked/k?legal-hold&versionId=${del.VersionId}`,
      body: '<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>ON</Status></LegalHold>',
    }), 'InvalidObjectState', 403);
    await s3.send(new PutBucketVersioningCommand({ Bucket: 'errs', VersioningConfiguration: { Status: 'Enabled' } }));
  });

  it('features not served answer NotImplemented', async () => {
    await raw(signedRequest(node, { method: 'PUT', path: '/errs?website', body: '<WebsiteConfiguration/>' }), 'NotImplemented', 501);
    await raw(signedRequest(node, { method: 'PUT', path: '/errs/sse', body: 'x', headers: { 'x-amz-server-side-encryption-customer-algorithm': 'AES256' } }), 'NotImplemented', 501);
  });

  it('covers every required code', () => {
    const missing = REQUIRED.filter((c) => c !== 'InternalError' && !seen.has(c));
    assert.deepEqual(missing, [], 'codes no test produced');
  });
});
