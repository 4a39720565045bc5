import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { XMLParser } from 'fast-xml-parser';
import { S3Context, S3Services } from './context';
import { S3Error } from './error';
import {
  contentsEntry, decodeContinuationToken, encodeContinuationToken, listObjectsV1, listObjectsV2, listObjectVersions,
  parseEncodingType, parseMaxParam, s3UrlEncode, toOrderedXml, versionEntry,
} from './list';
import { silentLogger } from '../util/logger';
import type { Store } from '../model/store';
import type { BucketRecord, ListObjectsQuery, ListObjectsResult, ListVersionsQuery, ListVersionsResult, ObjectVersion } from '../meta/types';

function s3Code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

async function s3CodeAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

function version(key: string, over: Partial<ObjectVersion> = {}): ObjectVersion {
  return {
    bucket: 'b', key, versionId: 'null', ts: 1, isLatest: true, deleteMarker: false, size: 3, etag: 'abc',
    lastModifiedMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678), headers: {}, userMeta: {}, blobs: [], tags: [], legalHold: false,
    owner: 'AKOWNER', ...over,
  };
}

/** A store that answers listings with canned pages and records the queries it was given. */
class FakeStore {
  objectQueries: ListObjectsQuery[] = [];
  versionQueries: ListVersionsQuery[] = [];
  objectsPage: ListObjectsResult = { contents: [], commonPrefixes: [], isTruncated: false };
  versionsPage: ListVersionsResult = { versions: [], commonPrefixes: [], isTruncated: false };
  bucket: BucketRecord = { name: 'b', owner: 'AKOWNER', createdMs: 0, region: 'us-east-1', versioning: 'Enabled', objectLockEnabled: false };
  /** Owners only, as a key without grants. */
  bucketAccess(b: BucketRecord, accessKeyId: string): 'owner' | undefined {
    return b.owner === accessKeyId ? 'owner' : undefined;
  }

  getBucket(name: string): BucketRecord {
    if (name !== this.bucket.name) throw new S3Error('NoSuchBucket');
    return this.bucket;
  }
  listObjects(_b: string, q: ListObjectsQuery): ListObjectsResult {
    this.objectQueries.push(q);
    return this.objectsPage;
  }
  listVersions(_b: string, q: ListVersionsQuery): ListVersionsResult {
    this.versionQueries.push(q);
    return this.versionsPage;
  }
}

interface Sent {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function fakeContext(store: FakeStore, query: string, accessKey = 'AKOWNER'): { ctx: S3Context; sent: () => Sent } {
  const req = Object.assign(new EventEmitter(), { headers: {}, method: 'GET', url: `/b?${query}` }) as unknown as IncomingMessage;
  let status = 0;
  let headers: Record<string, string> = {};
  let body = '';
  const res = {
    setHeader: () => undefined,
    writeHead: (s: number, h: Record<string, string>) => {
      status = s;
      headers = h;
    },
    end: (b?: Buffer) => {
      body = b ? b.toString('utf8') : '';
    },
  } as unknown as ServerResponse;
  const svc: S3Services = { store: store as unknown as Store, log: silentLogger(), region: 'us-east-1', domains: [] };
  const ctx = new S3Context(req, res, svc);
  ctx.bucket = 'b';
  ctx.auth = { accessKeyId: accessKey } as S3Context['auth'];
  for (const [k, v] of new URLSearchParams(query)) if (!ctx.query.has(k)) ctx.query.set(k, v);
  return { ctx, sent: () => ({ status, headers, body }) };
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (n) => ['Contents', 'CommonPrefixes', 'Version', 'DeleteMarker'].includes(n) });
const ordered = new XMLParser({ preserveOrder: true, ignoreAttributes: true, parseTagValue: false });

describe('s3 listing parameters', () => {
  it('defaults max-keys to 1000 and caps larger values at 1000', () => {
    assert.equal(parseMaxParam(undefined, 'max-keys'), 1000);
    assert.equal(parseMaxParam('0', 'max-keys'), 0);
    assert.equal(parseMaxParam('7', 'max-keys'), 7);
    assert.equal(parseMaxParam('5000', 'max-keys'), 1000);
    assert.equal(parseMaxParam('2147483647', 'max-keys'), 1000);
  });

  it('refuses a max-keys that is not a non-negative 32-bit integer', () => {
    for (const bad of ['-1', 'abc', '1.5', '', '2147483648', '99999999999', '0x10']) {
      assert.equal(s3Code(() => parseMaxParam(bad, 'max-keys')), 'InvalidArgument', bad);
    }
  });

  it('accepts encoding-type=url only', () => {
    assert.equal(parseEncodingType(undefined), undefined);
    assert.equal(parseEncodingType('url'), 'url');
    assert.equal(s3Code(() => parseEncodingType('base64')), 'InvalidArgument');
    assert.equal(s3Code(() => parseEncodingType('')), 'InvalidArgument');
  });

  it('url-encodes names the way S3 does: space as +, slash kept, everything else percent-encoded UTF-8', () => {
    assert.equal(s3UrlEncode('a b.txt'), 'a+b.txt');
    assert.equal(s3UrlEncode('a+b.txt'), 'a%2Bb.txt');
    assert.equal(s3UrlEncode('100%.csv'), '100%25.csv');
    assert.equal(s3UrlEncode('한글/x.txt'), '%ED%95%9C%EA%B8%80/x.txt');
    assert.equal(s3UrlEncode('ctl\u0001&<>'), 'ctl%01%26%3C%3E');
    assert.equal(s3UrlEncode("it's(~)!"), 'it%27s%28%7E%29%21');
    assert.equal(s3UrlEncode('a-b_c.d*e'), 'a-b_c.d*e');
  });
});

describe('s3 continuation tokens', () => {
  it('round-trip any UTF-8 key or common prefix', () => {
    for (const k of ['a', 'dir/', 'ünïcödé/ключ/😀', 'with space+plus%percent', 'ctl\u0001\u001f', 'x'.repeat(1024), '"quoted"\\back']) {
      const t = encodeContinuationToken(k);
      assert.match(t, /^[A-Za-z0-9_-]+$/);
      assert.equal(decodeContinuationToken(t), k);
    }
  });

  it('refuses tokens it did not make', () => {
    const good = encodeContinuationToken('some/key');
    const bad = [
      '', 'not base64!', good.slice(0, -2), good + 'A', Buffer.from('plain key').toString('base64url'),
      Buffer.from(JSON.stringify({ v: 2, a: 'k' })).toString('base64url'),
      Buffer.from(JSON.stringify({ v: 1, a: '' })).toString('base64url'),
      Buffer.from(JSON.stringify({ v: 1, a: 5 })).toString('base64url'),
      Buffer.from(JSON.stringify({ v: 1, a: 'k', x: 1 })).toString('base64url'),
      Buffer.from('{"v":1,"a":"\\ud800"}').toString('base64url'),
      Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('base64url'),
      'A'.repeat(20000),
    ];
    for (const t of bad) {
      assert.throws(() => decodeContinuationToken(t), (e: S3Error) => e.code === 'InvalidArgument' && e.message === 'The continuation token provided is incorrect', t.slice(0, 40));
    }
  });
});

describe('s3 listing XML', () => {
  it('shapes a Contents entry with a quoted ETag, ISO date, STANDARD class and the stored checksum algorithm', () => {
    const e = contentsEntry(version('a b', { checksum: { algorithm: 'CRC32', value: 'AAAAAA==', type: 'FULL_OBJECT' } }), 'url', false);
    assert.deepEqual(e, {
      Key: 'a+b', LastModified: '2026-01-02T03:04:05.678Z', ETag: '"abc"', ChecksumAlgorithm: 'CRC32', ChecksumType: 'FULL_OBJECT',
      Size: 3, Owner: undefined, StorageClass: 'STANDARD',
    });
    assert.deepEqual(contentsEntry(version('k'), undefined, true).Owner, { ID: 'AKOWNER', DisplayName: 'AKOWNER' });
  });

  it('keeps Version and DeleteMarker elements interleaved in listing order, with text escaped', () => {
    const entries = [
      versionEntry(version('a<&>', { versionId: 'v3', deleteMarker: true, etag: '', size: 0 }), undefined),
      versionEntry(version('a<&>', { versionId: 'v2', isLatest: false }), undefined),
      versionEntry(version('b', { versionId: 'v1', deleteMarker: true, etag: '', size: 0 }), undefined),
      versionEntry(version('c', { versionId: 'v0' }), undefined),
    ];
    const xml = toOrderedXml('ListVersionsResult', [['Name', 'b'], ['IsTruncated', false], ...entries, ['CommonPrefixes', [{ Prefix: 'p/' }, { Prefix: 'q/' }]]]);
    assert.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'));
    assert.ok(xml.includes('<Key>a&lt;&amp;&gt;</Key>'));
    const doc = ordered.parse(xml) as Record<string, unknown>[];
    const root = doc.find((n) => 'ListVersionsResult' in n)!.ListVersionsResult as Record<string, unknown>[];
    const names = root.map((n) => Object.keys(n).find((k) => k !== ':@'));
    assert.deepEqual(names, ['Name', 'IsTruncated', 'DeleteMarker', 'Version', 'DeleteMarker', 'Version', 'CommonPrefixes', 'CommonPrefixes']);
    const plain = parser.parse(xml).ListVersionsResult;
    assert.equal(plain.DeleteMarker[0].Key, 'a<&>');
    assert.equal(plain.DeleteMarker[0].ETag, undefined);
    assert.equal(plain.Version[0].ETag, '"abc"');
    assert.equal(plain.Version[0].IsLatest, 'false');
  });
});

describe('s3 listing handlers', () => {
  it('ListObjectsV2 hands the next position back as a token and resumes from it', async () => {
    const store = new FakeStore();
    store.objectsPage = { contents: [version('dir/a')], commonPrefixes: ['dir/sub/'], isTruncated: true, nextAfter: 'dir/sub/' };
    const first = fakeContext(store, 'list-type=2&prefix=dir/&delimiter=/&max-keys=2&start-after=dir/0');
    await listObjectsV2(first.ctx);
    assert.deepEqual(store.objectQueries[0], { prefix: 'dir/', delimiter: '/', after: 'dir/0', maxKeys: 2 });
    const r1 = parser.parse(first.sent().body).ListBucketResult;
    assert.equal(first.sent().status, 200);
    assert.equal(r1.KeyCount, '2');
    assert.equal(r1.IsTruncated, 'true');
    assert.equal(r1.StartAfter, 'dir/0');
    assert.equal(r1.Contents[0].Owner, undefined);
    assert.equal(r1.CommonPrefixes[0].Prefix, 'dir/sub/');
    const token = r1.NextContinuationToken as string;
    assert.equal(decodeContinuationToken(token), 'dir/sub/');

    store.objectsPage = { contents: [version('dir/z')], commonPrefixes: [], isTruncated: false };
    const second = fakeContext(store, `list-type=2&prefix=dir/&delimiter=/&max-keys=2&start-after=dir/0&fetch-owner=true&continuation-token=${token}`);
    await listObjectsV2(second.ctx);
    assert.equal(store.objectQueries[1].after, 'dir/sub/');
    const r2 = parser.parse(second.sent().body).ListBucketResult;
    assert.equal(r2.ContinuationToken, token);
    assert.equal(r2.NextContinuationToken, undefined);
    assert.equal(r2.StartAfter, undefined);
    assert.equal(r2.Contents[0].Owner.ID, 'AKOWNER');
  });

  it('ListObjectsV2 url-encodes keys, prefixes, delimiter and start-after when asked', async () => {
    const store = new FakeStore();
    store.objectsPage = { contents: [version('a b/ü+')], commonPrefixes: ['x y|'], isTruncated: false };
    const c = fakeContext(store, 'list-type=2&encoding-type=url&prefix=a%20b&delimiter=|&start-after=k%20m');
    await listObjectsV2(c.ctx);
    const r = parser.parse(c.sent().body).ListBucketResult;
    assert.equal(r.EncodingType, 'url');
    assert.equal(r.Prefix, 'a+b');
    assert.equal(r.Delimiter, '%7C');
    assert.equal(r.StartAfter, 'k+m');
    assert.equal(r.Contents[0].Key, 'a+b/%C3%BC%2B');
    assert.equal(r.CommonPrefixes[0].Prefix, 'x+y%7C');
  });

  it('ListObjectsV2 refuses a bad token or max-keys before listing', async () => {
    const store = new FakeStore();
    assert.equal(await s3CodeAsync(() => listObjectsV2(fakeContext(store, 'list-type=2&continuation-token=zzz').ctx)), 'InvalidArgument');
    assert.equal(await s3CodeAsync(() => listObjectsV2(fakeContext(store, 'list-type=2&max-keys=-3').ctx)), 'InvalidArgument');
    assert.equal(await s3CodeAsync(() => listObjectsV2(fakeContext(store, 'list-type=2&encoding-type=gzip').ctx)), 'InvalidArgument');
    assert.equal(store.objectQueries.length, 0);
  });

  it('listing a bucket of another key is AccessDenied', async () => {
    const store = new FakeStore();
    assert.equal(await s3CodeAsync(() => listObjectsV2(fakeContext(store, 'list-type=2', 'AKOTHER').ctx)), 'AccessDenied');
  });

  it('ListObjects v1 gives NextMarker only with a delimiter, and always an Owner', async () => {
    const store = new FakeStore();
    store.objectsPage = { contents: [version('a'), version('b')], commonPrefixes: [], isTruncated: true, nextAfter: 'b' };
    const plain = fakeContext(store, 'max-keys=2&marker=0');
    await listObjectsV1(plain.ctx);
    assert.equal(store.objectQueries[0].after, '0');
    const r1 = parser.parse(plain.sent().body).ListBucketResult;
    assert.equal(r1.Marker, '0');
    assert.equal(r1.NextMarker, undefined);
    assert.equal(r1.IsTruncated, 'true');
    assert.equal(r1.Contents[1].Owner.ID, 'AKOWNER');

    const delimited = fakeContext(store, 'max-keys=2&delimiter=/');
    await listObjectsV1(delimited.ctx);
    const r2 = parser.parse(delimited.sent().body).ListBucketResult;
    assert.equal(r2.NextMarker, 'b');
    assert.equal(r2.Marker, '');
    assert.equal(r2.Delimiter, '/');
  });

  it('ListObjectVersions refuses a version-id-marker without a key-marker', async () => {
    const store = new FakeStore();
    const code = await s3CodeAsync(() => listObjectVersions(fakeContext(store, 'versions&version-id-marker=null').ctx));
    assert.equal(code, 'InvalidArgument');
    assert.equal(await s3CodeAsync(() => listObjectVersions(fakeContext(store, 'versions&key-marker=k&version-id-marker=bogus').ctx)), 'InvalidArgument');
    assert.equal(store.versionQueries.length, 0);
  });

  it('ListObjectVersions lists versions and delete markers in store order with next markers when truncated', async () => {
    const store = new FakeStore();
    store.versionsPage = {
      versions: [version('k', { versionId: 'v2', deleteMarker: true, etag: '', size: 0 }), version('k', { versionId: 'v1', isLatest: false })],
      commonPrefixes: [], isTruncated: true, nextKeyMarker: 'k', nextVersionIdMarker: 'v1',
    };
    const c = fakeContext(store, 'versions&key-marker=a&version-id-marker=null&max-keys=2');
    await listObjectVersions(c.ctx);
    assert.deepEqual(store.versionQueries[0], { prefix: '', delimiter: undefined, maxKeys: 2, keyMarker: 'a', versionIdMarker: 'null' });
    const body = c.sent().body;
    assert.ok(body.indexOf('<DeleteMarker>') < body.indexOf('<Version>'));
    const r = parser.parse(body).ListVersionsResult;
    assert.equal(r.KeyMarker, 'a');
    assert.equal(r.VersionIdMarker, 'null');
    assert.equal(r.NextKeyMarker, 'k');
    assert.equal(r.NextVersionIdMarker, 'v1');
    assert.equal(r.DeleteMarker[0].IsLatest, 'true');
    assert.equal(r.Version[0].VersionId, 'v1');
    assert.equal(r.Version[0].StorageClass, 'STANDARD');
    assert.equal(c.sent().headers['content-type'], 'application/xml');
    assert.equal(Number(c.sent().headers['content-length']), Buffer.byteLength(body));
  });
});
