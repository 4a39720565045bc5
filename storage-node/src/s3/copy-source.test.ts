import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { S3Context, S3Services } from './context';
import { S3Error } from './error';
import { bodyFromVersion, checkCopySourceConditions, parseCopySource, parseCopySourceRange, parseCopySourceValue, resolveCopySource } from './copy-source';
import { silentLogger } from '../util/logger';
import type { Store } from '../model/store';
import type { BucketRecord, ObjectVersion } from '../meta/types';

function s3Code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

const DATA = Buffer.from('0123456789abcdefghij');
const LAST_MODIFIED_MS = Date.UTC(2026, 5, 1, 12, 0, 0);

function version(over: Partial<ObjectVersion> = {}): ObjectVersion {
  return {
    bucket: 'src', key: 'k', versionId: 'null', ts: 1, isLatest: true, deleteMarker: false, size: DATA.length,
    etag: crypto.createHash('md5').update(DATA).digest('hex'), lastModifiedMs: LAST_MODIFIED_MS, headers: {}, userMeta: {},
    blobs: [], tags: [], legalHold: false, owner: 'AKOWNER', ...over,
  };
}

/** Serves DATA (or a shorter copy, to model a store that lost bytes) for any version. */
class FakeStore {
  served = DATA;
  buckets: BucketRecord[] = [
    { name: 'src', owner: 'AKOWNER', createdMs: 0, region: 'us-east-1', versioning: 'Enabled', objectLockEnabled: false },
    { name: 'theirs', owner: 'AKOTHER', createdMs: 0, region: 'us-east-1', versioning: 'Unversioned', objectLockEnabled: false },
  ];
  /** Owners only, as a key without grants. */
  bucketAccess(b: BucketRecord, accessKeyId: string): 'owner' | undefined {
    return b.owner === accessKeyId ? 'owner' : undefined;
  }

  getBucket(name: string): BucketRecord {
    const b = this.buckets.find((x) => x.name === name);
    if (!b) throw new S3Error('NoSuchBucket');
    return b;
  }
  resolveVersion(_b: string, key: string, versionId: string | undefined): ObjectVersion {
    if (key !== 'k') throw new S3Error('NoSuchKey');
    if (versionId === 'deletemarker0000000000000') throw new S3Error('MethodNotAllowed');
    return version({ versionId: versionId ?? 'null' });
  }
  openObject(_v: ObjectVersion, range?: { start: number; endInclusive: number }): Readable {
    const bytes = range ? this.served.subarray(range.start, range.endInclusive + 1) : this.served;
    // Several chunks, as the blob layer gives them.
    return Readable.from([bytes.subarray(0, 3), bytes.subarray(3)]);
  }
}

function ctxWith(headers: Record<string, string>, store = new FakeStore()): S3Context {
  const req = { headers } as unknown as IncomingMessage;
  const res = { setHeader: () => undefined } as unknown as ServerResponse;
  const svc: S3Services = { store: store as unknown as Store, log: silentLogger(), region: 'us-east-1', domains: [] };
  const ctx = new S3Context(req, res, svc);
  ctx.auth = { accessKeyId: 'AKOWNER' } as S3Context['auth'];
  return ctx;
}

async function drain(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('s3 copy source', () => {
  it('parses bucket/key with or without a leading slash, URL-decoded, with an optional versionId', () => {
    assert.deepEqual(parseCopySourceValue('src/dir/a%20b.txt'), { bucket: 'src', key: 'dir/a b.txt' });
    assert.deepEqual(parseCopySourceValue('/src/k%3Fx'), { bucket: 'src', key: 'k?x' });
    assert.deepEqual(parseCopySourceValue('/src/k?versionId=0000000000000aVERSIONID12'), { bucket: 'src', key: 'k', versionId: '0000000000000aVERSIONID12' });
    assert.deepEqual(parseCopySourceValue('src/%E2%82%AC+'), { bucket: 'src', key: '€+' });
    // Raw UTF-8 bytes, as Node hands them (latin1 characters), are read back as UTF-8.
    assert.deepEqual(parseCopySourceValue(Buffer.from('src/é', 'utf8').toString('latin1')), { bucket: 'src', key: 'é' });
  });

  it('refuses copy sources without a bucket and key, badly encoded, or with unknown parameters', () => {
    for (const bad of ['src', 'src/', '/k', '', '/src/%E0%A4%A', 'src/k?versionId=', 'src/k?foo=1', 'src/' + 'k'.repeat(5000)]) {
      assert.equal(s3Code(() => parseCopySourceValue(bad)), 'InvalidArgument', bad.slice(0, 40));
    }
    assert.equal(s3Code(() => parseCopySourceValue('Bad_Bucket/k')), 'NoSuchBucket');
    assert.equal(s3Code(() => parseCopySourceValue('src/a%00b')), 'InvalidArgument');
    assert.equal(s3Code(() => parseCopySource(ctxWith({}))), 'InvalidArgument');
  });

  it('accepts only bytes=first-last ranges inside the source', () => {
    assert.equal(parseCopySourceRange(undefined, 10), undefined);
    assert.deepEqual(parseCopySourceRange('bytes=0-9', 10), { start: 0, endInclusive: 9 });
    assert.deepEqual(parseCopySourceRange('bytes=3-3', 10), { start: 3, endInclusive: 3 });
    for (const bad of ['bytes=-1', 'bytes=2-', 'bytes=5-4', 'bytes=0-10', 'bytes=10-10', 'items=0-1', 'bytes=0-1,3-4']) {
      assert.equal(s3Code(() => parseCopySourceRange(bad, 10)), 'InvalidArgument', bad);
    }
    assert.throws(() => parseCopySourceRange('bytes=0-10', 10), (e: S3Error) => e.message === 'Range specified is not valid for source object of size: 10');
  });

  it('evaluates x-amz-copy-source-if-* as S3 does', () => {
    const v = version();
    const etag = `"${v.etag}"`;
    const before = new Date(LAST_MODIFIED_MS - 60_000).toUTCString();
    const after = new Date(LAST_MODIFIED_MS + 60_000).toUTCString();
    const code = (h: Record<string, string>): string => s3Code(() => checkCopySourceConditions(ctxWith(h), v));
    assert.equal(code({}), 'none');
    assert.equal(code({ 'x-amz-copy-source-if-match': etag }), 'none');
    assert.equal(code({ 'x-amz-copy-source-if-match': '"other"' }), 'PreconditionFailed');
    assert.equal(code({ 'x-amz-copy-source-if-none-match': etag }), 'PreconditionFailed');
    assert.equal(code({ 'x-amz-copy-source-if-none-match': '"other"' }), 'none');
    assert.equal(code({ 'x-amz-copy-source-if-unmodified-since': before }), 'PreconditionFailed');
    assert.equal(code({ 'x-amz-copy-source-if-unmodified-since': after }), 'none');
    assert.equal(code({ 'x-amz-copy-source-if-modified-since': after }), 'PreconditionFailed');
    assert.equal(code({ 'x-amz-copy-source-if-modified-since': before }), 'none');
    // if-match true wins over a false if-unmodified-since; a false if-none-match fails whatever if-modified-since says.
    assert.equal(code({ 'x-amz-copy-source-if-match': etag, 'x-amz-copy-source-if-unmodified-since': before }), 'none');
    assert.equal(code({ 'x-amz-copy-source-if-none-match': etag, 'x-amz-copy-source-if-modified-since': before }), 'PreconditionFailed');
  });

  it('needs the caller to own the source bucket and refuses a delete marker named by version id', () => {
    const ok = resolveCopySource(ctxWith({ 'x-amz-copy-source': '/src/k' }));
    assert.equal(ok.bucket.name, 'src');
    assert.equal(ok.version.key, 'k');
    assert.equal(s3Code(() => resolveCopySource(ctxWith({ 'x-amz-copy-source': '/theirs/k' }))), 'AccessDenied');
    assert.equal(s3Code(() => resolveCopySource(ctxWith({ 'x-amz-copy-source': '/nosuch/k' }))), 'NoSuchBucket');
    assert.equal(s3Code(() => resolveCopySource(ctxWith({ 'x-amz-copy-source': '/src/missing' }))), 'NoSuchKey');
    assert.equal(s3Code(() => resolveCopySource(ctxWith({ 'x-amz-copy-source': '/src/k?versionId=deletemarker0000000000000' }))), 'InvalidRequest');
    assert.equal(s3Code(() => resolveCopySource(ctxWith({ 'x-amz-copy-source': '/src/k', 'x-amz-copy-source-if-match': '"x"' }))), 'PreconditionFailed');
  });

  it('streams a version or a range of it with its MD5 and the requested checksum', async () => {
    const store = new FakeStore();
    const whole = bodyFromVersion(store as unknown as Store, version(), undefined, 'SHA256');
    assert.deepEqual(await drain(whole.stream), DATA);
    assert.deepEqual(whole.finish(), {
      sizeBytes: DATA.length,
      md5Hex: crypto.createHash('md5').update(DATA).digest('hex'),
      checksum: { algorithm: 'SHA256', value: crypto.createHash('sha256').update(DATA).digest('base64') },
    });
    const part = bodyFromVersion(store as unknown as Store, version(), { start: 5, endInclusive: 14 });
    const bytes = await drain(part.stream);
    assert.deepEqual(bytes, DATA.subarray(5, 15));
    assert.deepEqual(part.finish(), { sizeBytes: 10, md5Hex: crypto.createHash('md5').update(bytes).digest('hex'), checksum: undefined });
  });

  it('fails rather than copy fewer bytes than the source version holds', async () => {
    const store = new FakeStore();
    store.served = DATA.subarray(0, 12);
    const body = bodyFromVersion(store as unknown as Store, version());
    await drain(body.stream);
    assert.throws(() => body.finish(), /expected 20/);
    assert.throws(() => bodyFromVersion(store as unknown as Store, version(), { start: 0, endInclusive: 20 }));
  });
});
