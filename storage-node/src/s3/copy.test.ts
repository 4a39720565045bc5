import assert from 'node:assert/strict';
import { parseDirective, parseCopyChecksumAlgorithm, copyAttributes, isUnchangedSelfCopy, copyResultXml, CopyRequest } from './copy';
import { S3Error } from './error';
import { toXml } from './xml';
import type { ObjectVersion } from '../meta/types';

function s3Code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return 'none';
}

function version(p: Partial<ObjectVersion> = {}): ObjectVersion {
  return {
    bucket: 'src', key: 'a', versionId: 'null', ts: 1, isLatest: true, deleteMarker: false, size: 3, etag: '900150983cd24fb0d6963f7d28e17f72',
    lastModifiedMs: Date.UTC(2026, 10, 29, 12), contentType: 'text/csv',
    headers: { 'cache-control': 'no-store', 'x-amz-website-redirect-location': '/old' },
    userMeta: { patient: 'p1' }, blobs: [], tags: [['phase', 'raw']],
    retention: { mode: 'COMPLIANCE', untilMs: Date.UTC(2030, 0, 1) }, legalHold: true, owner: 'o', ...p,
  };
}

function request(p: Partial<CopyRequest> = {}): CopyRequest {
  return { metadata: 'COPY', tagging: 'COPY', fromRequest: { headers: {}, userMeta: {}, tags: [] }, ...p };
}

describe('CopyObject rules', () => {
  it('directives default to COPY; anything but COPY or REPLACE is InvalidArgument', () => {
    assert.equal(parseDirective(undefined, 'metadata'), 'COPY');
    assert.equal(parseDirective('REPLACE', 'tagging'), 'REPLACE');
    assert.equal(s3Code(() => parseDirective('replace', 'metadata')), 'InvalidArgument');
    assert.equal(s3Code(() => parseDirective('MERGE', 'tagging')), 'InvalidArgument');
  });

  it('the checksum algorithm is one S3 knows, or absent', () => {
    assert.equal(parseCopyChecksumAlgorithm(undefined), undefined);
    assert.equal(parseCopyChecksumAlgorithm('crc64nvme'), 'CRC64NVME');
    assert.equal(s3Code(() => parseCopyChecksumAlgorithm('MD5')), 'InvalidRequest');
  });

  it('COPY keeps the source metadata and tags, but never its website redirect nor its lock', () => {
    const a = copyAttributes(version(), request({ fromRequest: { contentType: 'ignored', headers: { 'cache-control': 'ignored' }, userMeta: { x: 'ignored' }, tags: [['ignored', '1']] } }));
    assert.deepEqual(a, { contentType: 'text/csv', headers: { 'cache-control': 'no-store' }, userMeta: { patient: 'p1' }, tags: [['phase', 'raw']] });
  });

  it('a website redirect given with COPY is set on the copy', () => {
    const a = copyAttributes(version(), request({ redirect: '/new' }));
    assert.equal(a.headers['x-amz-website-redirect-location'], '/new');
  });

  it('REPLACE takes metadata and tags from the request only', () => {
    const fromRequest = { contentType: 'application/json', headers: { 'content-language': 'fr' }, userMeta: { patient: 'p2' }, tags: [['phase', 'clean']] as [string, string][] };
    const a = copyAttributes(version(), request({ metadata: 'REPLACE', tagging: 'REPLACE', fromRequest }));
    assert.deepEqual(a, { contentType: 'application/json', headers: { 'content-language': 'fr' }, userMeta: { patient: 'p2' }, tags: [['phase', 'clean']] });
    const untagged = copyAttributes(version(), request({ tagging: 'REPLACE' }));
    assert.deepEqual(untagged.tags, []);
  });

  it('lock settings of the request apply to the copy', () => {
    const retention = { mode: 'GOVERNANCE' as const, untilMs: Date.UTC(2031, 0, 1) };
    const a = copyAttributes(version({ retention: undefined, legalHold: false }), request({ fromRequest: { headers: {}, userMeta: {}, tags: [], retention, legalHold: true } }));
    assert.deepEqual(a.retention, retention);
    assert.equal(a.legalHold, true);
  });

  it('the copy does not share mutable state with the source record', () => {
    const src = version();
    const a = copyAttributes(src, request());
    a.tags[0][1] = 'changed';
    a.userMeta.patient = 'changed';
    assert.deepEqual(src.tags, [['phase', 'raw']]);
    assert.equal(src.userMeta.patient, 'p1');
  });

  it('copying the current version onto itself needs some change', () => {
    const v = version({ checksum: { algorithm: 'CRC32', value: 'AAAAAA==', type: 'FULL_OBJECT' } });
    assert.equal(isUnchangedSelfCopy(true, v, request()), true);
    assert.equal(isUnchangedSelfCopy(false, v, request()), false, 'another key or an older version is a real copy');
    assert.equal(isUnchangedSelfCopy(true, v, request({ metadata: 'REPLACE' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ tagging: 'REPLACE' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ storageClass: 'STANDARD' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ redirect: '/x' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ sse: 'AES256' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ checksumAlgorithm: 'SHA256' })), false);
    assert.equal(isUnchangedSelfCopy(true, v, request({ checksumAlgorithm: 'CRC32' })), true, 'the same algorithm changes nothing');
  });

  it('the result names the new ETag, date and checksum', () => {
    const xml = toXml('CopyObjectResult', copyResultXml(version({ checksum: { algorithm: 'SHA256', value: 'abc=', type: 'FULL_OBJECT' } })));
    assert.match(xml, /<ETag>&quot;900150983cd24fb0d6963f7d28e17f72&quot;<\/ETag>/);
    assert.match(xml, /<LastModified>2026-11-29T12:00:00.000Z<\/LastModified>/);
    assert.match(xml, /<ChecksumType>FULL_OBJECT<\/ChecksumType><ChecksumSHA256>abc=<\/ChecksumSHA256>/);
    assert.doesNotMatch(toXml('CopyObjectResult', copyResultXml(version())), /Checksum/);
  });
});
