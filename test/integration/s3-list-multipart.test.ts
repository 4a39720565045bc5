import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, DeleteObjectCommand, PutBucketVersioningCommand,
  ListObjectsV2Command, ListObjectsCommand, ListObjectVersionsCommand, CreateMultipartUploadCommand, UploadPartCommand,
  UploadPartCopyCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, ListPartsCommand,
  ListMultipartUploadsCommand, HeadObjectCommand, ChecksumAlgorithm, CompletedPart,
} from '@aws-sdk/client-s3';
import { Crc64Nvme } from '@aws-sdk/crc64-nvme';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { signedRequest, errorCode } from '../helpers/signed-http';

const MIB = 1024 * 1024;
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

async function body(s3: S3Client, cmd: GetObjectCommand): Promise<Buffer> {
  const r = await s3.send(cmd);
  return Buffer.from(await r.Body!.transformToByteArray());
}

/** The S3 error code a rejected SDK call carries ('none' when it succeeded). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { name?: string; Code?: string }).Code ?? (e as Error).name;
  }
  return 'none';
}

/** Runs `fn` over `items` with at most `limit` in flight (a bound on sockets and memory). */
async function inBatches<T>(items: T[], limit: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += limit) await Promise.all(items.slice(i, i + limit).map(fn));
}

/** What a delimiter listing of `keys` must return, computed independently of the server. */
function expectedListing(keys: string[], prefix: string, delimiter: string): { contents: string[]; prefixes: string[] } {
  const contents: string[] = [];
  const prefixes = new Set<string>();
  for (const k of [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    if (!k.startsWith(prefix)) continue;
    const i = k.indexOf(delimiter, prefix.length);
    if (i >= 0) prefixes.add(k.slice(0, i + delimiter.length));
    else contents.push(k);
  }
  return { contents, prefixes: [...prefixes] };
}

const s3Decode = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));

describe('S3 listings and multipart uploads with @aws-sdk/client-s3 (real node)', function () {
  this.timeout(180_000);
  let node: StartedNode;
  let s3: S3Client;
  const keys: string[] = [];

  before(async () => {
    node = await startNode();
    s3 = node.s3Client();
    await s3.send(new CreateBucketCommand({ Bucket: 'lists' }));
    await s3.send(new CreateBucketCommand({ Bucket: 'versions' }));
    await s3.send(new PutBucketVersioningCommand({ Bucket: 'versions', VersioningConfiguration: { Status: 'Enabled' } }));
    await s3.send(new CreateBucketCommand({ Bucket: 'mpu' }));
    for (let i = 0; i < 25; i++) keys.push(`top-${String(i).padStart(3, '0')}`);
    for (let i = 0; i < 30; i++) keys.push(`dir-a/file-${i}`);
    for (let i = 0; i < 12; i++) keys.push(`dir-b/sub-${i % 4}/leaf-${i}`);
    for (let i = 0; i < 9; i++) keys.push(`dir-${String.fromCharCode(99 + i)}/only`);
    keys.push('ünï cödé/ключ', 'ünï cödé/😀 emoji', 'plus+and space', 'pct%25/x', 'a&b<c>/"q"');
    await inBatches(keys, 8, (k) => s3.send(new PutObjectCommand({ Bucket: 'lists', Key: k, Body: k })));
  });
  after(async () => {
    s3?.destroy();
    await cleanupAllNodes();
  });

  it('pages a ListObjectsV2 delimiter listing with continuation tokens, never repeating or skipping an entry', async () => {
    for (const [prefix, maxKeys] of [['', 7], ['dir-', 3], ['dir-b/', 1], ['ünï cödé/', 1]] as const) {
      const contents: string[] = [];
      const prefixes: string[] = [];
      let token: string | undefined;
      for (let page = 0; page < 200; page++) {
        const r = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', Prefix: prefix, Delimiter: '/', MaxKeys: maxKeys, ContinuationToken: token }));
        const n = (r.Contents?.length ?? 0) + (r.CommonPrefixes?.length ?? 0);
        assert.equal(r.KeyCount, n);
        assert.ok(n <= maxKeys);
        contents.push(...(r.Contents ?? []).map((c) => c.Key!));
        prefixes.push(...(r.CommonPrefixes ?? []).map((c) => c.Prefix!));
        if (!r.IsTruncated) break;
        assert.ok(r.NextContinuationToken);
        token = r.NextContinuationToken;
      }
      const want = expectedListing(keys, prefix, '/');
      assert.deepEqual(contents, want.contents, `contents under ${prefix}`);
      assert.deepEqual(prefixes, want.prefixes, `prefixes under ${prefix}`);
    }
  });

  it('pages a plain ListObjectsV2 listing and honours start-after', async () => {
    const all: string[] = [];
    let token: string | undefined;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', MaxKeys: 13, ContinuationToken: token, FetchOwner: true }));
      for (const c of r.Contents ?? []) {
        assert.equal(c.ETag, `"${md5(Buffer.from(c.Key!))}"`);
        assert.equal(c.Size, Buffer.byteLength(c.Key!));
        assert.equal(c.StorageClass, 'STANDARD');
        assert.equal(c.Owner?.ID, node.accessKeyId);
      }
      all.push(...(r.Contents ?? []).map((c) => c.Key!));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    assert.deepEqual(all, expectedListing(keys, '', '\u0000').contents);
    const after = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', StartAfter: 'top-020' }));
    assert.deepEqual(after.Contents!.map((c) => c.Key), ['top-021', 'top-022', 'top-023', 'top-024', 'ünï cödé/ключ', 'ünï cödé/😀 emoji']);
    assert.equal(after.Contents![0].Owner, undefined, 'no Owner without fetch-owner');
  });

  it('url-encodes listing names under encoding-type=url', async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', Prefix: 'ünï', Delimiter: '/', EncodingType: 'url' }));
    assert.equal(r.EncodingType, 'url');
    assert.deepEqual(r.CommonPrefixes!.map((p) => p.Prefix), ['%C3%BCn%C3%AF+c%C3%B6d%C3%A9/']);
    const plus = await s3.send(new ListObjectsV2Command({ Bucket: 'lists', Prefix: 'plus', EncodingType: 'url' }));
    assert.deepEqual(plus.Contents!.map((c) => c.Key), ['plus%2Band+space']);
    assert.equal(s3Decode(plus.Contents![0].Key!), 'plus+and space');
  });

  it('refuses a forged continuation token and a bad max-keys', async () => {
    assert.equal(await codeOf(s3.send(new ListObjectsV2Command({ Bucket: 'lists', ContinuationToken: 'Zm9yZ2Vk' }))), 'InvalidArgument');
    const t = { host: node.host, s3Port: node.s3Port, accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey, region: node.region };
    const r = await signedRequest(t, { method: 'GET', path: '/lists?list-type=2&max-keys=-1' });
    assert.equal(r.status, 400);
    assert.equal(errorCode(r.body), 'InvalidArgument');
  });

  it('pages ListObjects v1 with NextMarker under a delimiter and the last key without one', async () => {
    const seen: string[] = [];
    let marker: string | undefined;
    for (let i = 0; i < 100; i++) {
      const r = await s3.send(new ListObjectsCommand({ Bucket: 'lists', Delimiter: '/', MaxKeys: 4, Marker: marker }));
      seen.push(...(r.Contents ?? []).map((c) => c.Key!), ...(r.CommonPrefixes ?? []).map((p) => p.Prefix!));
      for (const c of r.Contents ?? []) assert.equal(c.Owner?.ID, node.accessKeyId);
      if (!r.IsTruncated) break;
      assert.ok(r.NextMarker, 'NextMarker with a delimiter');
      marker = r.NextMarker;
    }
    const want = expectedListing(keys, '', '/');
    assert.deepEqual([...seen].sort(), [...want.contents, ...want.prefixes].sort());
    assert.equal(seen.length, want.contents.length + want.prefixes.length);
    const plain = await s3.send(new ListObjectsCommand({ Bucket: 'lists', MaxKeys: 2 }));
    assert.equal(plain.IsTruncated, true);
    assert.equal(plain.NextMarker, undefined);
  });

  it('lists versions and delete markers newest first per key, paging with key and version-id markers', async () => {
    const v1 = await s3.send(new PutObjectCommand({ Bucket: 'versions', Key: 'k', Body: 'one' }));
    const v2 = await s3.send(new PutObjectCommand({ Bucket: 'versions', Key: 'k', Body: 'two' }));
    const dm = await s3.send(new DeleteObjectCommand({ Bucket: 'versions', Key: 'k' }));
    const other = await s3.send(new PutObjectCommand({ Bucket: 'versions', Key: 'l', Body: 'x' }));
    const order: string[] = [];
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await s3.send(new ListObjectVersionsCommand({ Bucket: 'versions', MaxKeys: 1, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
      const entries = [...(r.Versions ?? []).map((v) => ({ ...v, dm: false })), ...(r.DeleteMarkers ?? []).map((d) => ({ ...d, dm: true }))];
      assert.equal(entries.length, 1);
      order.push(`${entries[0].Key}:${entries[0].VersionId}:${entries[0].dm ? 'dm' : 'v'}:${entries[0].IsLatest}`);
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      versionIdMarker = r.NextVersionIdMarker;
    }
    assert.deepEqual(order, [
      `k:${dm.VersionId}:dm:true`, `k:${v2.VersionId}:v:false`, `k:${v1.VersionId}:v:false`, `l:${other.VersionId}:v:true`,
    ]);
    // On the wire, Version and DeleteMarker elements come in listing order.
    const t = { host: node.host, s3Port: node.s3Port, accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey, region: node.region };
    const raw = await signedRequest(t, { method: 'GET', path: '/versions?versions' });
    const tags = [...raw.body.matchAll(/<(Version|DeleteMarker)>/g)].map((m) => m[1]);
    assert.deepEqual(tags, ['DeleteMarker', 'Version', 'Version', 'Version']);
    const bad = await signedRequest(t, { method: 'GET', path: `/versions?versions&version-id-marker=${v1.VersionId}` });
    assert.equal(errorCode(bad.body), 'InvalidArgument');
  });

  it('assembles a multipart upload of 5 MiB, 5 MiB and 1 byte with a composite CRC32', async () => {
    const parts = [crypto.randomBytes(5 * MIB), crypto.randomBytes(5 * MIB), crypto.randomBytes(1)];
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'big', ContentType: 'application/x-test', ChecksumAlgorithm: ChecksumAlgorithm.CRC32 }));
    assert.equal(created.ChecksumAlgorithm, 'CRC32');
    const done: CompletedPart[] = [];
    for (let i = 0; i < parts.length; i++) {
      const r = await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'big', UploadId: created.UploadId, PartNumber: i + 1, Body: parts[i], ChecksumAlgorithm: ChecksumAlgorithm.CRC32 }));
      assert.equal(r.ETag, `"${md5(parts[i])}"`);
      assert.ok(r.ChecksumCRC32);
      done.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumCRC32: r.ChecksumCRC32 });
    }
    const listed = await s3.send(new ListPartsCommand({ Bucket: 'mpu', Key: 'big', UploadId: created.UploadId, MaxParts: 2 }));
    assert.equal(listed.IsTruncated, true);
    assert.deepEqual(listed.Parts!.map((p) => [p.PartNumber, p.Size, p.ETag, p.ChecksumCRC32]), done.slice(0, 2).map((p, i) => [p.PartNumber, parts[i].length, p.ETag, p.ChecksumCRC32]));
    const rest = await s3.send(new ListPartsCommand({ Bucket: 'mpu', Key: 'big', UploadId: created.UploadId, PartNumberMarker: listed.NextPartNumberMarker }));
    assert.equal(rest.IsTruncated, false);
    assert.deepEqual(rest.Parts!.map((p) => p.PartNumber), [3]);

    const completed = await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'big', UploadId: created.UploadId, MultipartUpload: { Parts: done } }));
    const etag = md5(Buffer.concat(parts.map((p) => Buffer.from(md5(p), 'hex'))));
    assert.equal(completed.ETag, `"${etag}-3"`);
    assert.match(completed.ChecksumCRC32 ?? '', /-3$/);
    assert.equal(completed.Key, 'big');
    const whole = Buffer.concat(parts);
    const got = await body(s3, new GetObjectCommand({ Bucket: 'mpu', Key: 'big' }));
    assert.equal(got.length, whole.length);
    assert.ok(got.equals(whole), 'the object is the parts in order');
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'mpu', Key: 'big' }));
    assert.equal(head.ContentType, 'application/x-test');
    assert.equal(await codeOf(s3.send(new ListPartsCommand({ Bucket: 'mpu', Key: 'big', UploadId: created.UploadId }))), 'NoSuchUpload');
  });

  it('gives a full-object CRC64NVME for a multipart upload and accepts the whole-object checksum on Complete', async () => {
    const parts = [crypto.randomBytes(5 * MIB), crypto.randomBytes(777)];
    const crc = new Crc64Nvme();
    for (const p of parts) crc.update(p);
    const whole = Buffer.from(await crc.digest()).toString('base64');
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'full', ChecksumAlgorithm: ChecksumAlgorithm.CRC64NVME, ChecksumType: 'FULL_OBJECT' }));
    assert.equal(created.ChecksumType, 'FULL_OBJECT');
    const done: CompletedPart[] = [];
    for (let i = 0; i < parts.length; i++) {
      const r = await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'full', UploadId: created.UploadId, PartNumber: i + 1, Body: parts[i], ChecksumAlgorithm: ChecksumAlgorithm.CRC64NVME }));
      done.push({ PartNumber: i + 1, ETag: r.ETag });
    }
    const completed = await s3.send(new CompleteMultipartUploadCommand({
      Bucket: 'mpu', Key: 'full', UploadId: created.UploadId, MultipartUpload: { Parts: done }, ChecksumCRC64NVME: whole, ChecksumType: 'FULL_OBJECT',
    }));
    assert.equal(completed.ChecksumCRC64NVME, whole);
    assert.equal(completed.ChecksumType, 'FULL_OBJECT');
    const wrongAlg = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'full2', ChecksumAlgorithm: ChecksumAlgorithm.SHA256 }));
    const mismatch = s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'full2', UploadId: wrongAlg.UploadId, PartNumber: 1, Body: 'x', ChecksumAlgorithm: ChecksumAlgorithm.CRC32 }));
    assert.equal(await codeOf(mismatch), 'InvalidRequest');
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: 'full2', UploadId: wrongAlg.UploadId }));
  });

  it('refuses completions with a too-small part, an unknown part or parts out of order', async () => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'bad' }));
    const up = async (n: number, b: Buffer): Promise<CompletedPart> => {
      const r = await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'bad', UploadId: created.UploadId, PartNumber: n, Body: b }));
      return { PartNumber: n, ETag: r.ETag };
    };
    const p1 = await up(1, Buffer.from('small'));
    const p2 = await up(2, Buffer.from('also small'));
    const complete = (parts: CompletedPart[]): Promise<unknown> =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'bad', UploadId: created.UploadId, MultipartUpload: { Parts: parts } }));
    assert.equal(await codeOf(complete([p1, p2])), 'EntityTooSmall');
    assert.equal(await codeOf(complete([p1, { PartNumber: 2, ETag: '"00000000000000000000000000000000"' }])), 'InvalidPart');
    assert.equal(await codeOf(complete([p1, { PartNumber: 3, ETag: p2.ETag }])), 'InvalidPart');
    assert.equal(await codeOf(complete([p2, p1])), 'InvalidPartOrder');
    assert.equal(await codeOf(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'bad', UploadId: 'no-such-upload', PartNumber: 1, Body: 'x' }))), 'NoSuchUpload');
    assert.equal(await codeOf(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'bad', UploadId: created.UploadId, PartNumber: 10001, Body: 'x' }))), 'InvalidArgument');
    // The upload survived the refusals: a single small last part completes.
    await complete([p1]);
    assert.equal((await body(s3, new GetObjectCommand({ Bucket: 'mpu', Key: 'bad' }))).toString(), 'small');
  });

  it('copies ranges of an object into parts with UploadPartCopy', async () => {
    const src = crypto.randomBytes(10 * MIB + 123);
    await s3.send(new PutObjectCommand({ Bucket: 'lists', Key: 'copy-src', Body: src }));
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'copied' }));
    const cut = 5 * MIB;
    const c1 = await s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 1, CopySource: 'lists/copy-src', CopySourceRange: `bytes=0-${cut - 1}` }));
    const c2 = await s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 2, CopySource: '/lists/copy-src', CopySourceRange: `bytes=${cut}-${src.length - 1}` }));
    assert.equal(c1.CopyPartResult?.ETag, `"${md5(src.subarray(0, cut))}"`);
    assert.ok(c1.CopyPartResult?.LastModified instanceof Date);
    const c3 = await s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 3, CopySource: 'lists/top-000' }));
    assert.equal(c3.CopyPartResult?.ETag, `"${md5(Buffer.from('top-000'))}"`);
    assert.equal(await codeOf(s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 4, CopySource: 'lists/copy-src', CopySourceRange: `bytes=0-${src.length}` }))), 'InvalidArgument');
    assert.equal(await codeOf(s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 4, CopySource: 'lists/copy-src', CopySourceIfMatch: '"nope"' }))), 'PreconditionFailed');
    assert.equal(await codeOf(s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId, PartNumber: 4, CopySource: 'lists/missing' }))), 'NoSuchKey');
    await s3.send(new CompleteMultipartUploadCommand({
      Bucket: 'mpu', Key: 'copied', UploadId: created.UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: c1.CopyPartResult!.ETag }, { PartNumber: 2, ETag: c2.CopyPartResult!.ETag }, { PartNumber: 3, ETag: c3.CopyPartResult!.ETag }] },
    }));
    const got = await body(s3, new GetObjectCommand({ Bucket: 'mpu', Key: 'copied' }));
    assert.ok(got.equals(Buffer.concat([src, Buffer.from('top-000')])), 'copied parts hold the source ranges');
  });

  it('lists uploads in progress with prefix and delimiter, and forgets an aborted one', async () => {
    const ids: Record<string, string> = {};
    for (const k of ['up/a', 'up/b', 'up/sub/c', 'other']) {
      ids[k] = (await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: k }))).UploadId!;
    }
    const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Prefix: 'up/', Delimiter: '/' }));
    assert.deepEqual(r.Uploads!.map((u) => [u.Key, u.UploadId]), [['up/a', ids['up/a']], ['up/b', ids['up/b']]]);
    assert.deepEqual(r.CommonPrefixes!.map((p) => p.Prefix), ['up/sub/']);
    assert.equal(r.Uploads![0].Initiator?.ID, node.accessKeyId);
    const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Prefix: 'up/', MaxUploads: 1 }));
    assert.equal(page.IsTruncated, true);
    assert.equal(page.NextKeyMarker, 'up/a');
    const next = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Prefix: 'up/', KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker }));
    assert.deepEqual(next.Uploads!.map((u) => u.Key), ['up/b', 'up/sub/c']);

    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: 'up/a', UploadId: ids['up/a'] }));
    assert.equal(await codeOf(s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: 'up/a', UploadId: ids['up/a'] }))), 'NoSuchUpload');
    assert.equal(await codeOf(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'up/a', UploadId: ids['up/a'], PartNumber: 1, Body: 'x' }))), 'NoSuchUpload');
    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Prefix: 'up/' }));
    assert.deepEqual(after.Uploads!.map((u) => u.Key), ['up/b', 'up/sub/c']);
    for (const k of ['up/b', 'up/sub/c', 'other']) await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: k, UploadId: ids[k] }));
  });
});
