import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { XMLParser } from 'fast-xml-parser';
import { S3Context, S3Services } from './context';
import { S3Error } from './error';
import { parseXml } from './xml';
import {
  abortUpload, checkPartChecksumAlgorithm, completeUpload, createUpload, declaredChecksumAlgorithm, listParts, listUploads,
  objectLocation, parseCompleteParts, parsePartNumber, parsePartNumberMarker, parseUploadChecksum, partEntry, uploadEntry, uploadPart,
} from './multipart';
import { silentLogger } from '../util/logger';
import type { CompletePart, ObjectAttributes, Store, WriteConditions } from '../model/store';
import type { BodyInput } from '../model/body';
import type { BucketRecord, ListUploadsQuery, ListUploadsResult, ObjectVersion, PartRecord, UploadRecord } from '../meta/types';
import type { ChecksumAlgorithm } from '../util/checksum';

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

function upload(over: Partial<UploadRecord> = {}): UploadRecord {
  return {
    uploadId: 'UP1', bucket: 'b', key: 'dir/k', initiatedMs: Date.UTC(2026, 10, 1), owner: 'AKOWNER',
    headers: {}, userMeta: {}, tags: [], legalHold: false, ...over,
  };
}

function part(n: number, over: Partial<PartRecord> = {}): PartRecord {
  return { uploadId: 'UP1', partNumber: n, size: 5, etag: `e${n}`, lastModifiedMs: Date.UTC(2026, 10, 2), ...over };
}

/** A store that keeps uploads in a map and records what the handlers asked of it. */
class FakeStore {
  uploads = new Map<string, UploadRecord>();
  parts: PartRecord[] = [];
  created: { attrs: ObjectAttributes; checksum?: { algorithm: ChecksumAlgorithm; type: string } }[] = [];
  uploadedBodies: { partNumber: number; bytes: Buffer }[] = [];
  completed: { parts: CompletePart[]; cond: WriteConditions }[] = [];
  aborted: string[] = [];
  uploadsQueries: ListUploadsQuery[] = [];
  uploadsPage: ListUploadsResult = { uploads: [], commonPrefixes: [], isTruncated: false };
  bucket: BucketRecord = { name: 'b', owner: 'AKOWNER', createdMs: 0, region: 'us-east-1', versioning: 'Enabled', objectLockEnabled: false };

  /** Owners only, as a key without grants. */
  bucketAccess(b: BucketRecord, accessKeyId: string): 'owner' | undefined {
    return b.owner === accessKeyId ? 'owner' : undefined;
  }

  getBucket(name: string): BucketRecord {
    if (name !== this.bucket.name) throw new S3Error('NoSuchBucket');
    return this.bucket;
  }
  async createUpload(_b: BucketRecord, key: string, owner: string, attrs: ObjectAttributes, checksum?: { algorithm: ChecksumAlgorithm; type: 'FULL_OBJECT' | 'COMPOSITE' }): Promise<UploadRecord> {
    this.created.push({ attrs, checksum });
    const u = upload({ key, owner, uploadId: 'NEW', checksumAlgorithm: checksum?.algorithm, checksumType: checksum?.type });
    this.uploads.set(u.uploadId, u);
    return u;
  }
  getUpload(bucket: string, key: string, id: string): UploadRecord {
    const u = this.uploads.get(id);
    if (!u || u.bucket !== bucket || u.key !== key) throw new S3Error('NoSuchUpload');
    return u;
  }
  async uploadPart(u: UploadRecord, partNumber: number, body: BodyInput): Promise<PartRecord> {
    const chunks: Buffer[] = [];
    for await (const c of body.stream) chunks.push(c as Buffer);
    const d = body.finish();
    this.uploadedBodies.push({ partNumber, bytes: Buffer.concat(chunks) });
    return part(partNumber, { uploadId: u.uploadId, size: d.sizeBytes, etag: d.md5Hex, checksum: d.checksum?.value });
  }
  async completeUpload(_b: BucketRecord, u: UploadRecord, parts: CompletePart[], cond: WriteConditions): Promise<ObjectVersion> {
    this.completed.push({ parts, cond });
    return {
      bucket: 'b', key: u.key, versionId: '0000000000000aVERSIONID12', ts: 1, isLatest: true, deleteMarker: false, size: 10,
      etag: 'abc-2', lastModifiedMs: 0, headers: {}, userMeta: {}, blobs: [], tags: [], legalHold: false, owner: u.owner,
      checksum: u.checksumAlgorithm ? { algorithm: u.checksumAlgorithm, type: u.checksumType ?? 'COMPOSITE', value: 'AAAAAA==-2' } : undefined,
    };
  }
  checkWriteConditions(): void {}
  async abortUpload(u: UploadRecord): Promise<void> {
    this.aborted.push(u.uploadId);
    this.uploads.delete(u.uploadId);
  }
  listParts(_id: string, marker: number, max: number): { parts: PartRecord[]; isTruncated: boolean } {
    const after = this.parts.filter((p) => p.partNumber > marker);
    return { parts: after.slice(0, max), isTruncated: after.length > max };
  }
  listUploads(_b: string, q: ListUploadsQuery): ListUploadsResult {
    this.uploadsQueries.push(q);
    return this.uploadsPage;
  }
}

interface Sent {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function fakeContext(store: FakeStore, method: string, key: string | undefined, query: string, headers: Record<string, string> = {}, body?: Buffer): { ctx: S3Context; sent: () => Sent } {
  const req = (body ? Readable.from([body]) : Readable.from([])) as unknown as IncomingMessage;
  Object.assign(req, { headers: { host: 'localhost:9000', ...headers }, method, url: '/', socket: {} });
  let sent: Sent = { status: 0, headers: {}, body: '' };
  const res = {
    setHeader: () => undefined,
    writeHead: (s: number, h: Record<string, string>) => {
      sent = { ...sent, status: s, headers: h };
    },
    end: (b?: Buffer) => {
      sent = { ...sent, body: b ? b.toString('utf8') : '' };
    },
  } as unknown as ServerResponse;
  const svc: S3Services = { store: store as unknown as Store, log: silentLogger(), region: 'us-east-1', domains: [] };
  const ctx = new S3Context(req, res, svc);
  ctx.bucket = 'b';
  ctx.key = key;
  ctx.auth = { accessKeyId: 'AKOWNER', payload: { kind: 'unsigned' } } as unknown as S3Context['auth'];
  for (const [k, v] of new URLSearchParams(query)) if (!ctx.query.has(k)) ctx.query.set(k, v);
  return { ctx, sent: () => sent };
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (n) => ['Part', 'Upload', 'CommonPrefixes'].includes(n) });

describe('s3 multipart parameters', () => {
  it('accepts part numbers 1..10000 only', () => {
    assert.equal(parsePartNumber('1'), 1);
    assert.equal(parsePartNumber('10000'), 10000);
    for (const bad of [undefined, '', '0', '10001', '-1', '1.0', 'x', '000001']) {
      assert.equal(s3Code(() => parsePartNumber(bad)), 'InvalidArgument', String(bad));
    }
  });

  it('reads part-number-marker as a non-negative integer', () => {
    assert.equal(parsePartNumberMarker(undefined), 0);
    assert.equal(parsePartNumberMarker('17'), 17);
    assert.equal(s3Code(() => parsePartNumberMarker('-2')), 'InvalidArgument');
    assert.equal(s3Code(() => parsePartNumberMarker('a')), 'InvalidArgument');
  });

  it('follows S3 rules for multipart checksum algorithm and type', () => {
    assert.equal(parseUploadChecksum(undefined, undefined), undefined);
    assert.deepEqual(parseUploadChecksum('crc32', undefined), { algorithm: 'CRC32', type: 'COMPOSITE' });
    assert.deepEqual(parseUploadChecksum('CRC32C', 'FULL_OBJECT'), { algorithm: 'CRC32C', type: 'FULL_OBJECT' });
    assert.deepEqual(parseUploadChecksum('CRC64NVME', undefined), { algorithm: 'CRC64NVME', type: 'FULL_OBJECT' });
    assert.deepEqual(parseUploadChecksum('SHA256', 'COMPOSITE'), { algorithm: 'SHA256', type: 'COMPOSITE' });
    assert.equal(s3Code(() => parseUploadChecksum('CRC64NVME', 'COMPOSITE')), 'InvalidRequest');
    assert.equal(s3Code(() => parseUploadChecksum('SHA1', 'FULL_OBJECT')), 'InvalidRequest');
    assert.equal(s3Code(() => parseUploadChecksum('MD5', undefined)), 'InvalidRequest');
    assert.equal(s3Code(() => parseUploadChecksum('CRC32', 'BOTH')), 'InvalidRequest');
    assert.equal(s3Code(() => parseUploadChecksum(undefined, 'COMPOSITE')), 'InvalidRequest');
  });

  it('finds the checksum algorithm a part declares in a header or a trailer', () => {
    assert.equal(declaredChecksumAlgorithm({}), undefined);
    assert.equal(declaredChecksumAlgorithm({ 'x-amz-checksum-sha256': 'x' }), 'SHA256');
    assert.equal(declaredChecksumAlgorithm({ 'x-amz-trailer': 'x-amz-checksum-crc32c' }), 'CRC32C');
    assert.equal(s3Code(() => checkPartChecksumAlgorithm('CRC32', 'SHA1')), 'InvalidRequest');
    assert.equal(s3Code(() => checkPartChecksumAlgorithm('CRC32', 'CRC32')), 'none');
    assert.equal(s3Code(() => checkPartChecksumAlgorithm(undefined, 'CRC32')), 'none');
  });

  it('parses the CompleteMultipartUpload part list with the checksums of the upload algorithm', () => {
    const doc = parseXml('<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><PartNumber>1</PartNumber><ETag>"e1"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>'
      + '<Part><ETag>e2</ETag><PartNumber> 2 </PartNumber><ChecksumCRC32>AAAAAQ==</ChecksumCRC32></Part></CompleteMultipartUpload>', 'CompleteMultipartUpload');
    assert.deepEqual(parseCompleteParts(doc, { checksumAlgorithm: 'CRC32', checksumType: 'COMPOSITE' }), [
      { partNumber: 1, etag: '"e1"', checksum: 'AAAAAA==' },
      { partNumber: 2, etag: 'e2', checksum: 'AAAAAQ==' },
    ]);
    assert.deepEqual(parseCompleteParts(doc, {}), [{ partNumber: 1, etag: '"e1"' }, { partNumber: 2, etag: 'e2' }]);
  });

  it('refuses Complete documents that are empty, lack a field, or miss a composite checksum', () => {
    const p = (xml: string): XmlDoc => parseXml(`<CompleteMultipartUpload>${xml}</CompleteMultipartUpload>`, 'CompleteMultipartUpload');
    type XmlDoc = ReturnType<typeof parseXml>;
    assert.equal(s3Code(() => parseCompleteParts(p(''), {})), 'MalformedXML');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><ETag>x</ETag></Part>'), {})), 'MalformedXML');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><PartNumber>1</PartNumber></Part>'), {})), 'MalformedXML');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><PartNumber>one</PartNumber><ETag>x</ETag></Part>'), {})), 'MalformedXML');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><PartNumber>10001</PartNumber><ETag>x</ETag></Part>'), {})), 'InvalidArgument');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>'), { checksumAlgorithm: 'SHA256', checksumType: 'COMPOSITE' })), 'InvalidRequest');
    assert.equal(s3Code(() => parseCompleteParts(p('<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>'), { checksumAlgorithm: 'CRC32', checksumType: 'FULL_OBJECT' })), 'none');
  });

  it('builds the Location of a completed object with its key percent-encoded', () => {
    assert.equal(objectLocation('http', 'h:9000', 'b', 'a b/ü?', false), 'http://h:9000/b/a%20b/%C3%BC%3F');
    assert.equal(objectLocation('https', 'b.s3.example', 'b', 'k', true), 'https://b.s3.example/k');
  });

  it('shapes Part and Upload entries', () => {
    assert.deepEqual(partEntry(part(3, { checksum: 'CS' }), 'CRC32C'), { PartNumber: 3, LastModified: '2026-11-02T00:00:00.000Z', ETag: '"e3"', Size: 5, ChecksumCRC32C: 'CS' });
    assert.equal(partEntry(part(3, { checksum: 'CS' }), undefined).ChecksumCRC32C, undefined);
    const e = uploadEntry(upload({ key: 'a b' }), 'url');
    assert.equal(e.Key, 'a+b');
    assert.deepEqual(e.Initiator, { ID: 'AKOWNER', DisplayName: 'AKOWNER' });
    assert.equal(e.Initiated, '2026-11-01T00:00:00.000Z');
  });
});

describe('s3 multipart handlers', () => {
  it('CreateMultipartUpload answers the upload id and echoes the checksum algorithm and type', async () => {
    const store = new FakeStore();
    const c = fakeContext(store, 'POST', 'dir/k', 'uploads', { 'x-amz-checksum-algorithm': 'CRC32', 'content-type': 'text/plain', 'x-amz-meta-a': '1' });
    await createUpload(c.ctx);
    const r = parser.parse(c.sent().body).InitiateMultipartUploadResult;
    assert.deepEqual({ b: r.Bucket, k: r.Key, u: r.UploadId }, { b: 'b', k: 'dir/k', u: 'NEW' });
    assert.equal(c.sent().headers['x-amz-checksum-algorithm'], 'CRC32');
    assert.equal(c.sent().headers['x-amz-checksum-type'], 'COMPOSITE');
    assert.equal(store.created[0].attrs.contentType, 'text/plain');
    assert.equal(store.created[0].attrs.userMeta.a, '1');
  });

  it('UploadPart refuses an unknown upload or a bad part number without reading the body', async () => {
    const store = new FakeStore();
    store.uploads.set('UP1', upload());
    const unknown = fakeContext(store, 'PUT', 'dir/k', 'partNumber=1&uploadId=NOPE', { 'content-length': '3' }, Buffer.from('abc'));
    assert.equal(await s3CodeAsync(() => uploadPart(unknown.ctx)), 'NoSuchUpload');
    assert.equal(unknown.ctx.bodyConsumed, false);
    const otherKey = fakeContext(store, 'PUT', 'other', 'partNumber=1&uploadId=UP1', { 'content-length': '3' }, Buffer.from('abc'));
    assert.equal(await s3CodeAsync(() => uploadPart(otherKey.ctx)), 'NoSuchUpload');
    const badNumber = fakeContext(store, 'PUT', 'dir/k', 'partNumber=0&uploadId=UP1', { 'content-length': '3' }, Buffer.from('abc'));
    assert.equal(await s3CodeAsync(() => uploadPart(badNumber.ctx)), 'InvalidArgument');
    store.uploads.set('UP1', upload({ checksumAlgorithm: 'CRC32C', checksumType: 'COMPOSITE' }));
    const mismatch = fakeContext(store, 'PUT', 'dir/k', 'partNumber=1&uploadId=UP1', { 'content-length': '3', 'x-amz-checksum-sha1': 'qZk+NkcGgWq6PiVxeFDCbJzQ2J0=' }, Buffer.from('abc'));
    assert.equal(await s3CodeAsync(() => uploadPart(mismatch.ctx)), 'InvalidRequest');
    assert.equal(mismatch.ctx.bodyConsumed, false);
    assert.equal(store.uploadedBodies.length, 0);
  });

  it('UploadPart stores the body and answers its quoted MD5 ETag and checksum', async () => {
    const store = new FakeStore();
    store.uploads.set('UP1', upload({ checksumAlgorithm: 'SHA256', checksumType: 'COMPOSITE' }));
    const c = fakeContext(store, 'PUT', 'dir/k', 'partNumber=4&uploadId=UP1', { 'content-length': '3' }, Buffer.from('abc'));
    await uploadPart(c.ctx);
    assert.equal(c.sent().status, 200);
    assert.equal(c.sent().headers.etag, `"${crypto.createHash('md5').update('abc').digest('hex')}"`);
    assert.equal(c.sent().headers['x-amz-checksum-sha256'], crypto.createHash('sha256').update('abc').digest('base64'));
    assert.deepEqual(store.uploadedBodies, [{ partNumber: 4, bytes: Buffer.from('abc') }]);
  });

  it('CompleteMultipartUpload ignores whole-object checksum headers when verifying its XML body, and answers the result', async () => {
    const store = new FakeStore();
    store.uploads.set('UP1', upload({ checksumAlgorithm: 'CRC32', checksumType: 'COMPOSITE' }));
    const xml = Buffer.from('<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"e1"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>');
    const c = fakeContext(store, 'POST', 'dir/k', 'uploadId=UP1', { 'content-length': String(xml.length), 'x-amz-checksum-crc32': 'AAAAAA==', 'if-none-match': '*' }, xml);
    await completeUpload(c.ctx);
    assert.deepEqual(store.completed[0].parts, [{ partNumber: 1, etag: '"e1"', checksum: 'AAAAAA==' }]);
    assert.equal(store.completed[0].cond.ifNoneMatchStar, true);
    assert.equal(c.ctx.req.headers['x-amz-checksum-crc32'], 'AAAAAA==');
    const r = parser.parse(c.sent().body).CompleteMultipartUploadResult;
    assert.equal(r.Location, 'http://localhost:9000/b/dir/k');
    assert.equal(r.ETag, '"abc-2"');
    assert.equal(r.ChecksumCRC32, 'AAAAAA==-2');
    assert.equal(r.ChecksumType, 'COMPOSITE');
    assert.equal(c.sent().headers['x-amz-version-id'], '0000000000000aVERSIONID12');
    assert.equal(c.ctx.versionId, '0000000000000aVERSIONID12');
  });

  it('CompleteMultipartUpload of an unknown upload is NoSuchUpload', async () => {
    const store = new FakeStore();
    const c = fakeContext(store, 'POST', 'dir/k', 'uploadId=UP9', { 'content-length': '0' });
    assert.equal(await s3CodeAsync(() => completeUpload(c.ctx)), 'NoSuchUpload');
  });

  it('AbortMultipartUpload answers 204 once and NoSuchUpload after', async () => {
    const store = new FakeStore();
    store.uploads.set('UP1', upload());
    const c = fakeContext(store, 'DELETE', 'dir/k', 'uploadId=UP1');
    await abortUpload(c.ctx);
    assert.equal(c.sent().status, 204);
    assert.deepEqual(store.aborted, ['UP1']);
    assert.equal(await s3CodeAsync(() => abortUpload(fakeContext(store, 'DELETE', 'dir/k', 'uploadId=UP1').ctx)), 'NoSuchUpload');
  });

  it('ListParts pages by part-number-marker and max-parts', async () => {
    const store = new FakeStore();
    store.uploads.set('UP1', upload({ checksumAlgorithm: 'CRC32', checksumType: 'COMPOSITE' }));
    store.parts = [part(1, { checksum: 'C1' }), part(2), part(5)];
    const c = fakeContext(store, 'GET', 'dir/k', 'uploadId=UP1&max-parts=1&part-number-marker=1');
    await listParts(c.ctx);
    const r = parser.parse(c.sent().body).ListPartsResult;
    assert.equal(r.PartNumberMarker, '1');
    assert.equal(r.NextPartNumberMarker, '2');
    assert.equal(r.MaxParts, '1');
    assert.equal(r.IsTruncated, 'true');
    assert.equal(r.Part.length, 1);
    assert.equal(r.Part[0].PartNumber, '2');
    assert.equal(r.Part[0].ETag, '"e2"');
    assert.equal(r.ChecksumAlgorithm, 'CRC32');
    assert.equal(r.Owner.ID, 'AKOWNER');
  });

  it('ListMultipartUploads passes markers on (upload-id-marker only with key-marker) and shapes the result', async () => {
    const store = new FakeStore();
    store.uploadsPage = { uploads: [upload({ key: 'a b' })], commonPrefixes: ['p/'], isTruncated: true, nextKeyMarker: 'a b', nextUploadIdMarker: 'UP1' };
    const c = fakeContext(store, 'GET', undefined, 'uploads&prefix=a&delimiter=/&key-marker=a&upload-id-marker=X1&max-uploads=2&encoding-type=url');
    await listUploads(c.ctx);
    assert.deepEqual(store.uploadsQueries[0], { prefix: 'a', delimiter: '/', maxUploads: 2, keyMarker: 'a', uploadIdMarker: 'X1' });
    const r = parser.parse(c.sent().body).ListMultipartUploadsResult;
    assert.equal(r.NextKeyMarker, 'a+b');
    assert.equal(r.NextUploadIdMarker, 'UP1');
    assert.equal(r.Upload[0].Key, 'a+b');
    assert.equal(r.Upload[0].UploadId, 'UP1');
    assert.equal(r.CommonPrefixes[0].Prefix, 'p/');
    assert.equal(r.EncodingType, 'url');
    await listUploads(fakeContext(store, 'GET', undefined, 'uploads&upload-id-marker=X1').ctx);
    assert.equal(store.uploadsQueries[1].uploadIdMarker, undefined);
  });
});
