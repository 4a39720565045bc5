import type { AccessKeyRecord, BlobRef, BucketRecord, ObjectVersion, PartRecord, RetentionMode, UploadRecord } from './types';
import { assertKey } from './keys';
import { grantProblems } from './grants';

/**
 * Records ⇄ sqlite rows. Invariants are asserted on the way in (before writing) and the shape is checked
 * on the way out, so a bad caller or a damaged row fails loudly instead of spreading.
 */

/** Upper bound of one JSON column (10,000 parts with checksums is about 1.5 MB). */
const MAX_JSON_CHARS = 4 * 1024 * 1024;
const MAX_ID_CHARS = 256;
const MAX_PART_NUMBER = 10_000;

export interface VersionRow {
  bucket: string;
  key: string;
  version_id: string;
  ts: number;
  is_latest: number;
  delete_marker: number;
  size: number;
  etag: string;
  last_modified_ms: number;
  content_type: string | null;
  headers: string;
  user_meta: string;
  checksum: string | null;
  parts: string | null;
  blobs: string;
  tags: string;
  retention_mode: string | null;
  retention_until_ms: number | null;
  legal_hold: number;
  owner: string;
}

/** A position in version order (key ascending, then ts and version id descending). */
export interface VersionPos {
  key: string;
  ts: number;
  version_id: string;
}

/** Column order of every version read: reads use better-sqlite3's raw (array) mode, about twice as fast as objects. */
export const VERSION_COLUMN_LIST = [
  'bucket', 'key', 'version_id', 'ts', 'is_latest', 'delete_marker', 'size', 'etag', 'last_modified_ms', 'content_type', 'headers',
  'user_meta', 'checksum', 'parts', 'blobs', 'tags', 'retention_mode', 'retention_until_ms', 'legal_hold', 'owner',
] as const satisfies readonly (keyof VersionRow)[];
export const VERSION_COLUMNS = VERSION_COLUMN_LIST.join(', ');

/** One version as read in VERSION_COLUMN_LIST order. */
export type VersionTuple = [
  bucket: string, key: string, versionId: string, ts: number, isLatest: number, deleteMarker: number, size: number, etag: string,
  lastModifiedMs: number, contentType: string | null, headers: string, userMeta: string, checksum: string | null, parts: string | null,
  blobs: string, tags: string, retentionMode: string | null, retentionUntilMs: number | null, legalHold: number, owner: string,
];

export const tupleKey = (t: VersionTuple): string => t[1];
export const tupleVersionId = (t: VersionTuple): string => t[2];
export const tuplePos = (t: VersionTuple): VersionPos => ({ key: t[1], ts: t[3], version_id: t[2] });

export interface UploadRow {
  upload_id: string;
  bucket: string;
  key: string;
  initiated_ms: number;
  owner: string;
  content_type: string | null;
  headers: string;
  user_meta: string;
  tags: string;
  checksum_algorithm: string | null;
  checksum_type: string | null;
  retention_mode: string | null;
  retention_until_ms: number | null;
  legal_hold: number;
}

export type UploadPos = Pick<UploadRow, 'key' | 'initiated_ms' | 'upload_id'>;

export const UPLOAD_COLUMNS =
  'upload_id, bucket, key, initiated_ms, owner, content_type, headers, user_meta, tags, checksum_algorithm, ' +
  'checksum_type, retention_mode, retention_until_ms, legal_hold';

export interface PartRow {
  upload_id: string;
  part_number: number;
  size: number;
  etag: string;
  checksum: string | null;
  last_modified_ms: number;
  blob: string | null;
}

export interface BucketRow {
  name: string;
  owner: string;
  created_ms: number;
  region: string;
  versioning: string;
  object_lock: number;
  lock_default: string | null;
  tags: string | null;
  policy: string | null;
}

export interface AccessKeyRow {
  access_key_id: string;
  secret_access_key: string;
  name: string;
  created_ms: number;
  grants: string;
}

// ---- assertions ------------------------------------------------------------------------------------

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`metadata invariant violated: ${msg}`);
}

export function assertId(name: string, v: unknown): asserts v is string {
  assert(typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_CHARS, `${name} must be a non-empty string of at most ${MAX_ID_CHARS} chars`);
}

function assertCount(name: string, v: unknown): asserts v is number {
  assert(Number.isSafeInteger(v) && (v as number) >= 0, `${name} must be a non-negative safe integer`);
}

function assertRetention(r: { mode: RetentionMode; untilMs: number } | undefined): void {
  if (r === undefined) return;
  assert(r.mode === 'GOVERNANCE' || r.mode === 'COMPLIANCE', 'retention mode must be GOVERNANCE or COMPLIANCE');
  assertCount('retention untilMs', r.untilMs);
}

function json(name: string, v: unknown): string {
  const s = JSON.stringify(v);
  assert(typeof s === 'string' && s.length <= MAX_JSON_CHARS, `${name} must serialize to at most ${MAX_JSON_CHARS} chars`);
  return s;
}

function assertStringMap(name: string, m: Record<string, string>): void {
  assert(m !== null && typeof m === 'object' && !Array.isArray(m), `${name} must be an object`);
  for (const v of Object.values(m)) assert(typeof v === 'string', `${name} values must be strings`);
}

function assertTags(tags: [string, string][]): void {
  assert(Array.isArray(tags), 'tags must be an array');
  for (const t of tags) assert(Array.isArray(t) && t.length === 2 && typeof t[0] === 'string' && typeof t[1] === 'string', 'a tag must be a [key, value] pair of strings');
}

function assertBlob(b: BlobRef): void {
  assertId('blob id', b.id);
  assertCount('blob size', b.size);
}

// ---- versions --------------------------------------------------------------------------------------

export function encodeVersion(v: ObjectVersion): VersionRow {
  assertId('bucket', v.bucket);
  assertKey(v.key);
  assertId('versionId', v.versionId);
  assertCount('ts', v.ts);
  assertCount('size', v.size);
  assertCount('lastModifiedMs', v.lastModifiedMs);
  assert(typeof v.etag === 'string', 'etag must be a string');
  assertId('owner', v.owner);
  assertStringMap('headers', v.headers);
  assertStringMap('userMeta', v.userMeta);
  assertTags(v.tags);
  assertRetention(v.retention);
  assert(Array.isArray(v.blobs), 'blobs must be an array');
  v.blobs.forEach(assertBlob);
  const blobBytes = v.blobs.reduce((s, b) => s + b.size, 0);
  if (v.deleteMarker) assert(v.size === 0 && v.blobs.length === 0, 'a delete marker has no data');
  else assert(blobBytes === v.size, 'the blobs of a version add up to its size');
  return {
    bucket: v.bucket,
    key: v.key,
    version_id: v.versionId,
    ts: v.ts,
    is_latest: v.isLatest ? 1 : 0,
    delete_marker: v.deleteMarker ? 1 : 0,
    size: v.size,
    etag: v.etag,
    last_modified_ms: v.lastModifiedMs,
    content_type: v.contentType ?? null,
    headers: json('headers', v.headers),
    user_meta: json('userMeta', v.userMeta),
    checksum: v.checksum ? json('checksum', v.checksum) : null,
    parts: v.parts ? json('parts', v.parts) : null,
    blobs: json('blobs', v.blobs),
    tags: json('tags', v.tags),
    retention_mode: v.retention?.mode ?? null,
    retention_until_ms: v.retention?.untilMs ?? null,
    legal_hold: v.legalHold ? 1 : 0,
    owner: v.owner,
  };
}

export function decodeVersion(t: VersionTuple): ObjectVersion {
  assert(t.length === VERSION_COLUMN_LIST.length, 'a version row has every column');
  const [bucket, key, versionId, ts, isLatest, deleteMarker, size, etag, lastModifiedMs, contentType, headers, userMeta, checksum, parts,
    blobs, tags, retentionMode, retentionUntilMs, legalHold, owner] = t;
  const v: ObjectVersion = {
    bucket,
    key,
    versionId,
    ts,
    isLatest: isLatest === 1,
    deleteMarker: deleteMarker === 1,
    size,
    etag,
    lastModifiedMs,
    headers: JSON.parse(headers),
    userMeta: JSON.parse(userMeta),
    blobs: JSON.parse(blobs),
    tags: JSON.parse(tags),
    legalHold: legalHold === 1,
    owner,
  };
  if (contentType !== null) v.contentType = contentType;
  if (checksum !== null) v.checksum = JSON.parse(checksum);
  if (parts !== null) v.parts = JSON.parse(parts);
  if (retentionMode !== null) {
    assert(retentionUntilMs !== null, 'stored retention has a date');
    v.retention = { mode: retentionMode as RetentionMode, untilMs: retentionUntilMs };
  }
  return v;
}

// ---- uploads and parts -----------------------------------------------------------------------------

export function encodeUpload(u: UploadRecord): UploadRow {
  assertId('uploadId', u.uploadId);
  assertId('bucket', u.bucket);
  assertKey(u.key);
  assertCount('initiatedMs', u.initiatedMs);
  assertId('owner', u.owner);
  assertStringMap('headers', u.headers);
  assertStringMap('userMeta', u.userMeta);
  assertTags(u.tags);
  assertRetention(u.retention);
  return {
    upload_id: u.uploadId,
    bucket: u.bucket,
    key: u.key,
    initiated_ms: u.initiatedMs,
    owner: u.owner,
    content_type: u.contentType ?? null,
    headers: json('headers', u.headers),
    user_meta: json('userMeta', u.userMeta),
    tags: json('tags', u.tags),
    checksum_algorithm: u.checksumAlgorithm ?? null,
    checksum_type: u.checksumType ?? null,
    retention_mode: u.retention?.mode ?? null,
    retention_until_ms: u.retention?.untilMs ?? null,
    legal_hold: u.legalHold ? 1 : 0,
  };
}

export function decodeUpload(r: UploadRow): UploadRecord {
  const u: UploadRecord = {
    uploadId: r.upload_id,
    bucket: r.bucket,
    key: r.key,
    initiatedMs: r.initiated_ms,
    owner: r.owner,
    headers: JSON.parse(r.headers),
    userMeta: JSON.parse(r.user_meta),
    tags: JSON.parse(r.tags),
    legalHold: r.legal_hold === 1,
  };
  if (r.content_type !== null) u.contentType = r.content_type;
  if (r.checksum_algorithm !== null) u.checksumAlgorithm = r.checksum_algorithm as UploadRecord['checksumAlgorithm'];
  if (r.checksum_type !== null) u.checksumType = r.checksum_type as UploadRecord['checksumType'];
  if (r.retention_mode !== null) {
    assert(r.retention_until_ms !== null, 'stored retention has a date');
    u.retention = { mode: r.retention_mode as RetentionMode, untilMs: r.retention_until_ms };
  }
  return u;
}

export function encodePart(p: PartRecord): PartRow {
  assertId('uploadId', p.uploadId);
  assert(Number.isInteger(p.partNumber) && p.partNumber >= 1 && p.partNumber <= MAX_PART_NUMBER, `part number must be in [1, ${MAX_PART_NUMBER}]`);
  assertCount('size', p.size);
  assert(typeof p.etag === 'string', 'etag must be a string');
  assertCount('lastModifiedMs', p.lastModifiedMs);
  if (p.checksum !== undefined) assert(typeof p.checksum === 'string', 'part checksum must be a string');
  if (p.blob) {
    assertBlob(p.blob);
    assert(p.blob.size === p.size, 'the blob of a part has the part size');
  } else {
    assert(p.size === 0, 'only an empty part has no blob');
  }
  return {
    upload_id: p.uploadId,
    part_number: p.partNumber,
    size: p.size,
    etag: p.etag,
    checksum: p.checksum ?? null,
    last_modified_ms: p.lastModifiedMs,
    blob: p.blob ? json('blob', { id: p.blob.id, size: p.blob.size }) : null,
  };
}

export function decodePart(r: PartRow): PartRecord {
  const p: PartRecord = {
    uploadId: r.upload_id,
    partNumber: r.part_number,
    size: r.size,
    etag: r.etag,
    lastModifiedMs: r.last_modified_ms,
  };
  if (r.checksum !== null) p.checksum = r.checksum;
  if (r.blob !== null) p.blob = JSON.parse(r.blob);
  return p;
}

// ---- buckets and access keys -----------------------------------------------------------------------

export function encodeBucket(b: BucketRecord): BucketRow {
  assertId('bucket name', b.name);
  assertId('owner', b.owner);
  assertCount('createdMs', b.createdMs);
  assert(typeof b.region === 'string', 'region must be a string');
  assert(b.versioning === 'Unversioned' || b.versioning === 'Enabled' || b.versioning === 'Suspended', 'unknown versioning state');
  if (b.lockDefault) {
    const d = b.lockDefault;
    assert(d.mode === 'GOVERNANCE' || d.mode === 'COMPLIANCE', 'lock default mode must be GOVERNANCE or COMPLIANCE');
    assert((d.days === undefined) !== (d.years === undefined), 'lock default has exactly one of days and years');
  }
  if (b.tags) assertTags(b.tags);
  if (b.policy !== undefined) assertId('bucket policy', b.policy);
  return {
    name: b.name,
    owner: b.owner,
    created_ms: b.createdMs,
    region: b.region,
    versioning: b.versioning,
    object_lock: b.objectLockEnabled ? 1 : 0,
    lock_default: b.lockDefault ? json('lockDefault', b.lockDefault) : null,
    tags: b.tags ? json('tags', b.tags) : null,
    policy: b.policy ?? null,
  };
}

export function decodeBucket(r: BucketRow): BucketRecord {
  const b: BucketRecord = {
    name: r.name,
    owner: r.owner,
    createdMs: r.created_ms,
    region: r.region,
    versioning: r.versioning as BucketRecord['versioning'],
    objectLockEnabled: r.object_lock === 1,
  };
  if (r.lock_default !== null) b.lockDefault = JSON.parse(r.lock_default);
  if (r.tags !== null) b.tags = JSON.parse(r.tags);
  if (r.policy !== null) b.policy = r.policy;
  return b;
}

export function encodeAccessKey(k: AccessKeyRecord): AccessKeyRow {
  assertId('accessKeyId', k.accessKeyId);
  assertId('secretAccessKey', k.secretAccessKey);
  assert(typeof k.name === 'string', 'access key name must be a string');
  assertCount('createdMs', k.createdMs);
  const problems = grantProblems(k.grants);
  assert(problems.length === 0, `access key grants: ${problems.join('; ')}`);
  return {
    access_key_id: k.accessKeyId, secret_access_key: k.secretAccessKey, name: k.name, created_ms: k.createdMs,
    grants: json('grants', k.grants.map((g) => ({ bucket: g.bucket, access: g.access }))),
  };
}

export function decodeAccessKey(r: AccessKeyRow): AccessKeyRecord {
  const grants = JSON.parse(r.grants) as AccessKeyRecord['grants'];
  assert(grantProblems(grants).length === 0, `stored grants of ${r.access_key_id} are well formed`);
  return { accessKeyId: r.access_key_id, secretAccessKey: r.secret_access_key, name: r.name, createdMs: r.created_ms, grants };
}
