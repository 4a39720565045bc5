import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand,
  DeleteObjectsCommand, ListBucketsCommand, PutBucketVersioningCommand, GetBucketVersioningCommand,
  GetBucketLocationCommand, HeadBucketCommand, DeleteBucketCommand, CopyObjectCommand, ListObjectsV2Command,
  ChecksumAlgorithm,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { signedRequest, send, errorCode } from '../helpers/signed-http';

const sha = (b: Buffer | string): string => crypto.createHash('sha256').update(b).digest('hex');

async function body(s3: S3Client, cmd: GetObjectCommand): Promise<Buffer> {
  const r = await s3.send(cmd);
  return Buffer.from(await r.Body!.transformToByteArray());
}

describe('S3 objects with @aws-sdk/client-s3 (real node)', function () {
  this.timeout(120_000);
  let node: StartedNode;
  let s3: S3Client;

  before(async () => {
    node = await startNode({ configOverrides: { s3: { domains: ['s3.localhost'] } }, extraKeys: [{ accessKeyId: 'second-key', secretAccessKey: 'second-secret-key', name: 'second' }] });
    s3 = node.s3Client();
    await s3.send(new CreateBucketCommand({ Bucket: 'objects' }));
  });
  after(async () => {
    s3?.destroy();
    await cleanupAllNodes();
  });

  it('round-trips a streamed upload sent aws-chunked with a trailing checksum', async () => {
    const data = crypto.randomBytes(3 * 1024 * 1024 + 17);
    const put = await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'streamed', Body: Readable.from([data.subarray(0, 1000), data.subarray(1000)]), ContentLength: data.length }));
    assert.equal(put.ETag, `"${crypto.createHash('md5').update(data).digest('hex')}"`);
    assert.equal(sha(await body(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'streamed' }))), sha(data));
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'streamed', ChecksumMode: 'ENABLED' }));
    assert.equal(head.ContentLength, data.length);
    assert.ok(head.ChecksumCRC32, 'the trailing checksum was stored and is returned with x-amz-checksum-mode');
  });

  for (const alg of [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME, ChecksumAlgorithm.SHA1, ChecksumAlgorithm.SHA256]) {
    it(`verifies, stores and returns a ${alg} checksum`, async () => {
      const data = crypto.randomBytes(200_000);
      await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: `ck-${alg}`, Body: data, ChecksumAlgorithm: alg }));
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: `ck-${alg}`, ChecksumMode: 'ENABLED' }));
      const field = `Checksum${alg}` as keyof typeof head;
      assert.ok(head[field], `${alg} returned`);
      const got = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: `ck-${alg}`, ChecksumMode: 'ENABLED' }));
      assert.equal(sha(Buffer.from(await got.Body!.transformToByteArray())), sha(data));
    });
  }

  it('keeps content headers and user metadata', async () => {
    await s3.send(new PutObjectCommand({
      Bucket: 'objects', Key: 'meta', Body: 'hello',
      ContentType: 'text/plain; charset=utf-8', ContentDisposition: 'attachment; filename="x.txt"', CacheControl: 'no-cache',
      ContentEncoding: 'identity', ContentLanguage: 'fr', Metadata: { patient: 'p-42', 'Mixed-Case': 'v' }, Tagging: 'a=1&b=2',
    }));
    const h = await s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'meta' }));
    assert.equal(h.ContentType, 'text/plain; charset=utf-8');
    assert.equal(h.ContentDisposition, 'attachment; filename="x.txt"');
    assert.equal(h.CacheControl, 'no-cache');
    assert.equal(h.ContentLanguage, 'fr');
    assert.deepEqual(h.Metadata, { patient: 'p-42', 'mixed-case': 'v' });
    assert.equal(h.TagCount, 2);
  });

  it('serves ranges, part of conditional GETs and response overrides', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'abc', Body: 'abcdefghij' }));
    const r = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'abc', Range: 'bytes=2-5' }));
    assert.equal(r.$metadata.httpStatusCode, 206);
    assert.equal(r.ContentRange, 'bytes 2-5/10');
    assert.equal(await r.Body!.transformToString(), 'cdef');
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'abc', Range: 'bytes=-3' }))).toString(), 'hij');
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'abc', Range: 'bytes=7-' }))).toString(), 'hij');
    const o = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'abc', ResponseContentType: 'x/y', ResponseContentDisposition: 'inline' }));
    assert.equal(o.ContentType, 'x/y');
    assert.equal(o.ContentDisposition, 'inline');
    await o.Body!.transformToString();
    const future = new Date(Date.now() + 3600_000);
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'abc', IfModifiedSince: future })), (e: { $metadata: { httpStatusCode: number } }) => e.$metadata.httpStatusCode === 304);
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'abc', IfUnmodifiedSince: new Date(Date.now() - 3600_000) })), (e: { name: string }) => e.name === 'PreconditionFailed');
    const ok = await s3.send(new GetObjectCommand({ Bucket: 'objects', Key: 'abc', IfMatch: o.ETag }));
    assert.equal(await ok.Body!.transformToString(), 'abcdefghij');
  });

  it('presigned URLs work until they expire', async () => {
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'objects', Key: 'presigned' }), { expiresIn: 60 });
    const u = new URL(putUrl);
    const put = await send(node.host, node.s3Port, 'PUT', u.pathname + u.search, { 'content-length': 7 }, 'payload');
    assert.equal(put.status, 200, put.body);
    const getUrl = new URL(await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'presigned' }), { expiresIn: 60 }));
    const got = await send(node.host, node.s3Port, 'GET', getUrl.pathname + getUrl.search, {}, undefined);
    assert.equal(got.body, 'payload');
    const expired = new URL(await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'presigned' }), { expiresIn: 1, signingDate: new Date(Date.now() - 10_000) }));
    const refused = await send(node.host, node.s3Port, 'GET', expired.pathname + expired.search, {}, undefined);
    assert.equal(refused.status, 403);
    assert.equal(errorCode(refused.body), 'AccessDenied');
    const tampered = await send(node.host, node.s3Port, 'GET', getUrl.pathname.replace('presigned', 'presignex') + getUrl.search, {}, undefined);
    assert.equal(errorCode(tampered.body), 'SignatureDoesNotMatch');
  });

  it('versioning: versions, delete markers, reads by version id, suspended null versions', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'versioned' }));
    await s3.send(new PutBucketVersioningCommand({ Bucket: 'versioned', VersioningConfiguration: { Status: 'Enabled' } }));
    assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: 'versioned' }))).Status, 'Enabled');
    const v1 = await s3.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'doc', Body: 'one' }));
    const v2 = await s3.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'doc', Body: 'two' }));
    assert.ok(v1.VersionId && v2.VersionId && v1.VersionId !== v2.VersionId);
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc' }))).toString(), 'two');
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc', VersionId: v1.VersionId }))).toString(), 'one');
    const del = await s3.send(new DeleteObjectCommand({ Bucket: 'versioned', Key: 'doc' }));
    assert.equal(del.DeleteMarker, true);
    const gone = await signedRequest(node, { method: 'GET', path: '/versioned/doc' });
    assert.equal(gone.status, 404);
    assert.equal(gone.headers['x-amz-delete-marker'], 'true');
    const onMarker = await signedRequest(node, { method: 'GET', path: `/versioned/doc?versionId=${del.VersionId}` });
    assert.equal(onMarker.status, 405);
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc', VersionId: v2.VersionId }))).toString(), 'two');
    await s3.send(new DeleteObjectCommand({ Bucket: 'versioned', Key: 'doc', VersionId: del.VersionId }));
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc' }))).toString(), 'two', 'removing the marker brings the object back');
    await s3.send(new PutBucketVersioningCommand({ Bucket: 'versioned', VersioningConfiguration: { Status: 'Suspended' } }));
    const n1 = await s3.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'doc', Body: 'null-1' }));
    const n2 = await s3.send(new PutObjectCommand({ Bucket: 'versioned', Key: 'doc', Body: 'null-2' }));
    assert.equal(n1.VersionId, 'null');
    assert.equal(n2.VersionId, 'null');
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc', VersionId: 'null' }))).toString(), 'null-2');
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'versioned', Key: 'doc', VersionId: v1.VersionId }))).toString(), 'one', 'older versions are kept');
  });

  it('unversioned buckets overwrite in place and delete for good', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'plain', Body: 'a' }));
    const p = await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'plain', Body: 'b' }));
    assert.equal(p.VersionId, undefined);
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'objects', Key: 'plain' }))).toString(), 'b');
    const d = await s3.send(new DeleteObjectCommand({ Bucket: 'objects', Key: 'plain' }));
    assert.equal(d.DeleteMarker, undefined);
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: 'objects', Key: 'plain' })));
  });

  it('deletes in batches, quietly or not', async () => {
    for (const k of ['b1', 'b2', 'b3']) await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: k, Body: k }));
    const loud = await s3.send(new DeleteObjectsCommand({ Bucket: 'objects', Delete: { Objects: [{ Key: 'b1' }, { Key: 'b2' }] } }));
    assert.deepEqual(loud.Deleted!.map((d) => d.Key).sort(), ['b1', 'b2']);
    const quiet = await s3.send(new DeleteObjectsCommand({ Bucket: 'objects', Delete: { Quiet: true, Objects: [{ Key: 'b3' }] } }));
    assert.equal(quiet.Deleted, undefined);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: 'objects', Prefix: 'b' }));
    assert.equal(left.KeyCount, 0);
  });

  it('copies objects across buckets with COPY and REPLACE metadata', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'copy-target' }));
    await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'src', Body: 'copy me', ContentType: 'text/x-src', Metadata: { a: '1' } }));
    await s3.send(new CopyObjectCommand({ Bucket: 'copy-target', Key: 'same', CopySource: 'objects/src' }));
    const same = await s3.send(new HeadObjectCommand({ Bucket: 'copy-target', Key: 'same' }));
    assert.equal(same.ContentType, 'text/x-src');
    assert.deepEqual(same.Metadata, { a: '1' });
    await s3.send(new CopyObjectCommand({ Bucket: 'copy-target', Key: 'replaced', CopySource: 'objects/src', MetadataDirective: 'REPLACE', ContentType: 'text/x-new', Metadata: { b: '2' } }));
    const rep = await s3.send(new HeadObjectCommand({ Bucket: 'copy-target', Key: 'replaced' }));
    assert.equal(rep.ContentType, 'text/x-new');
    assert.deepEqual(rep.Metadata, { b: '2' });
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'copy-target', Key: 'replaced' }))).toString(), 'copy me');
  });

  it('buckets: head, location, list shows only the caller\'s, delete when empty', async () => {
    await s3.send(new HeadBucketCommand({ Bucket: 'objects' }));
    const loc = await s3.send(new GetBucketLocationCommand({ Bucket: 'objects' }));
    const lc = loc.LocationConstraint as string | undefined;
    assert.ok(lc === undefined || lc === '' || lc === node.region);
    const second = node.s3Client({ credentials: { accessKeyId: 'second-key', secretAccessKey: 'second-secret-key' } });
    await second.send(new CreateBucketCommand({ Bucket: 'seconds-bucket' }));
    const mine = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
    assert.ok(mine.includes('objects') && !mine.includes('seconds-bucket'));
    await second.send(new DeleteBucketCommand({ Bucket: 'seconds-bucket' }));
    second.destroy();
  });

  it('answers virtual-hosted-style requests', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'objects', Key: 'vhost', Body: 'by host' }));
    const r = await signedRequest(node, { method: 'GET', path: '/vhost', hostHeader: `objects.s3.localhost:${node.s3Port}` });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'by host');
  });
});
