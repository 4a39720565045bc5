import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from '../util/logger';
import { HybridClock, newVersionId, newUploadId, isValidVersionId } from '../util/hlc';
import { compositeChecksum, combineCrc, ChecksumAlgorithm } from '../util/checksum';
import { pump } from '../util/streams';
import type { MetaStore } from '../meta/meta-store';
import type { BlobStore } from '../blocks/blob-store';
import type { BlobBackend, BlobPlace } from './blob-backend';
import { grantedAccess } from '../meta/grants';
import type {
  AccessGrant, AccessKeyRecord, BlobRef, BucketRecord, GrantAccess, ObjectVersion, VersioningState, PartRecord, RetentionMode, UploadRecord,
  ListObjectsQuery, ListObjectsResult, ListVersionsQuery, ListVersionsResult, ListUploadsQuery, ListUploadsResult,
} from '../meta/types';
import { S3Error } from '../s3/error';
import type { BodyInput, BodyDigests } from './body';
import { assertDeletable, assertRetentionChange, defaultRetention } from './lock';

/** Limits of the S3 data model (AWS's). */
export const LIMITS = {
  maxPutBytes: 5 * 1024 ** 3,
  maxPartBytes: 5 * 1024 ** 3,
  minPartBytes: 5 * 1024 ** 2,
  maxObjectBytes: 5 * 1024 ** 4,
  maxParts: 10_000,
  maxTags: 10,
} as const;

/** The owner of a bucket created through the admin API without one: no key owns it, grants give access. */
export const ADMIN_OWNER = 'archipel:admin';

export interface BucketOptions {
  /** Default: Enabled with object lock, else Unversioned. Object lock needs Enabled. */
  versioning?: VersioningState;
  /** A policy of the layout bound to the bucket (the caller checks that the layout has it). */
  policy?: string;
}

export interface ObjectAttributes {
  contentType?: string;
  headers: Record<string, string>;
  userMeta: Record<string, string>;
  tags: [string, string][];
  retention?: { mode: RetentionMode; untilMs: number };
  legalHold?: boolean;
}

export interface WriteConditions {
  /** If-None-Match: * — fail if a current object exists. */
  ifNoneMatchStar?: boolean;
  /** If-Match: "etag" — fail unless the current object has this ETag. */
  ifMatch?: string;
}

export interface CompletePart {
  partNumber: number;
  etag: string;
  checksum?: string;
}

/**
 * The S3 data model on one node: buckets, versions, delete markers, object lock, multipart uploads.
 * Knows nothing of HTTP; throws S3Error for refusals. Data is durable (blob fsync + metadata sync)
 * before any method that writes resolves.
 */
export class Store {
  constructor(
    readonly meta: MetaStore,
    readonly blobs: BlobBackend,
    private readonly log: Logger,
    readonly clock = new HybridClock(),
    private readonly nowMs: () => number = Date.now,
  ) {}

  // ---- access keys -------------------------------------------------------------------------------

  secretFor(accessKeyId: string): string | undefined {
    return this.meta.getAccessKey(accessKeyId)?.secretAccessKey;
  }

  /** The record is frozen; it carries the secret, which never leaves the node but to its peers. */
  accessKey(accessKeyId: string): AccessKeyRecord | undefined {
    return this.meta.getAccessKey(accessKeyId);
  }

  listAccessKeys(): AccessKeyRecord[] {
    return this.meta.listAccessKeys();
  }

  /** What a key may do on a bucket: everything on the buckets it owns, else what its grants say. */
  bucketAccess(b: BucketRecord, accessKeyId: string): GrantAccess | undefined {
    if (b.owner === accessKeyId) return 'owner';
    const k = this.meta.getAccessKey(accessKeyId);
    return k ? grantedAccess(k.grants, b.name) : undefined;
  }

  /** False if the id is taken or was revoked. Durable and replicated before it resolves. */
  async createAccessKey(k: AccessKeyRecord): Promise<boolean> {
    if (!this.meta.createAccessKey(k)) return false;
    await this.meta.sync();
    await this.replicateAccessKey(k.accessKeyId);
    this.log.info('access key created', { accessKeyId: k.accessKeyId, grants: k.grants.length });
    return true;
  }

  /** False if there is no such key. */
  async setAccessKeyGrants(accessKeyId: string, grants: AccessGrant[]): Promise<boolean> {
    if (!this.meta.setAccessKeyGrants(accessKeyId, grants)) return false;
    await this.meta.sync();
    await this.replicateAccessKey(accessKeyId);
    this.log.info('access key grants changed', { accessKeyId, grants: grants.length });
    return true;
  }

  /** False if there is no such key. The key stops working here at once, on the other nodes once replicated. */
  async revokeAccessKey(accessKeyId: string): Promise<boolean> {
    if (!this.meta.deleteAccessKey(accessKeyId)) return false;
    await this.meta.sync();
    await this.replicateAccessKey(accessKeyId);
    this.log.info('access key revoked', { accessKeyId });
    return true;
  }

  // ---- buckets -----------------------------------------------------------------------------------

  async createBucket(name: string, owner: string, region: string, objectLock: boolean, opts: BucketOptions = {}): Promise<BucketRecord> {
    const existing = this.meta.getBucket(name);
    if (existing) throw new S3Error(existing.owner === owner ? 'BucketAlreadyOwnedByYou' : 'BucketAlreadyExists', undefined, { BucketName: name });
    const versioning = opts.versioning ?? (objectLock ? 'Enabled' : 'Unversioned');
    if (objectLock && versioning !== 'Enabled') throw new S3Error('InvalidBucketState', 'Object lock needs versioning Enabled.');
    const rec: BucketRecord = {
      name, owner, region, createdMs: this.nowMs(), versioning,
      objectLockEnabled: objectLock,
    };
    if (opts.policy !== undefined) rec.policy = opts.policy;
    if (!this.meta.createBucket(rec)) throw new S3Error('BucketAlreadyOwnedByYou', undefined, { BucketName: name });
    await this.meta.sync();
    await this.replicateBucket(name);
    this.log.info('bucket created', { bucket: name, owner, objectLock, versioning, policy: opts.policy });
    return rec;
  }

  getBucket(name: string): BucketRecord {
    const b = this.meta.getBucket(name);
    if (!b) throw new S3Error('NoSuchBucket', undefined, { BucketName: name });
    return b;
  }

  /** The buckets a key owns or has a grant on, by name. */
  listBuckets(accessKeyId: string): BucketRecord[] {
    return this.meta.listBuckets().filter((b) => this.bucketAccess(b, accessKeyId) !== undefined);
  }

  /** Every bucket, by name (admin API). */
  listAllBuckets(): BucketRecord[] {
    return this.meta.listBuckets();
  }

  async deleteBucket(name: string): Promise<void> {
    const { policy } = this.getBucket(name);
    const parts = this.meta.transaction(() => {
      if (this.meta.bucketHasObjects(name)) throw new S3Error('BucketNotEmpty', undefined, { BucketName: name });
      const uploads = this.meta.listUploads(name, { prefix: '', maxUploads: 100_000 }).uploads;
      const freed: { key: string; parts: PartRecord[] }[] = [];
      for (const u of uploads) freed.push({ key: u.key, parts: this.meta.deleteUpload(u.uploadId) });
      this.meta.deleteBucket(name);
      return freed;
    });
    await this.meta.sync();
    await this.replicateBucket(name);
    // The bucket is gone: its bound policy comes from the record read before.
    for (const f of parts) this.freeBlobs(policy === undefined ? { bucket: name, key: f.key } : { bucket: name, key: f.key, policy }, f.parts.flatMap((p) => (p.blob ? [p.blob] : [])));
    this.log.info('bucket deleted', { bucket: name });
  }

  async setVersioning(name: string, state: 'Enabled' | 'Suspended'): Promise<void> {
    const b = this.getBucket(name);
    if (b.objectLockEnabled && state === 'Suspended') {
      throw new S3Error('InvalidBucketState', 'An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.');
    }
    this.meta.updateBucket(name, { versioning: state });
    await this.meta.sync();
    await this.replicateBucket(name);
  }

  async setLockConfiguration(name: string, rule: BucketRecord['lockDefault'] | undefined): Promise<void> {
    const b = this.getBucket(name);
    if (!b.objectLockEnabled) {
      if (b.versioning !== 'Enabled') throw new S3Error('InvalidBucketState', 'Versioning must be Enabled on the bucket to apply an Object Lock configuration.');
    }
    this.meta.updateBucket(name, { objectLockEnabled: true, lockDefault: rule });
    await this.meta.sync();
    await this.replicateBucket(name);
  }

  async setBucketTags(name: string, tags: [string, string][] | undefined): Promise<void> {
    this.getBucket(name);
    this.meta.updateBucket(name, { tags });
    await this.meta.sync();
    await this.replicateBucket(name);
  }

  // ---- objects -----------------------------------------------------------------------------------

  /** Validates a write's preconditions against the current version; also used before reading a body. */
  checkWriteConditions(bucket: string, key: string, c: WriteConditions): void {
    if (!c.ifNoneMatchStar && c.ifMatch === undefined) return;
    const cur = this.meta.getVersion(bucket, key);
    const live = cur && !cur.deleteMarker ? cur : undefined;
    if (c.ifNoneMatchStar && live) throw new S3Error('PreconditionFailed', undefined, { Condition: 'If-None-Match' });
    if (c.ifMatch !== undefined) {
      if (!live) throw new S3Error('NoSuchKey', undefined, { Key: key });
      if (!etagMatches(c.ifMatch, live.etag)) throw new S3Error('PreconditionFailed', undefined, { Condition: 'If-Match' });
    }
  }

  async putObject(bucket: BucketRecord, key: string, owner: string, body: BodyInput, attrs: ObjectAttributes, cond: WriteConditions = {}): Promise<ObjectVersion> {
    this.checkWriteConditions(bucket.name, key, cond);
    const { ref, digests } = await this.writeBlob(body, this.placeOf(bucket.name, key));
    return this.commitVersion(bucket, key, owner, attrs, cond, {
      size: digests.sizeBytes,
      etag: digests.md5Hex,
      blobs: ref ? [ref] : [],
      checksum: digests.checksum ? { ...digests.checksum, type: 'FULL_OBJECT' } : undefined,
    });
  }

  /** Resolves the version a read or a sub-resource call addresses; delete markers answer as S3 does. */
  resolveVersion(bucket: string, key: string, versionId: string | undefined): ObjectVersion {
    if (versionId !== undefined) {
      if (!isValidVersionId(versionId)) throw new S3Error('InvalidArgument', 'Invalid version id specified', { ArgumentName: 'versionId', ArgumentValue: versionId });
      const v = this.meta.getVersion(bucket, key, versionId);
      if (!v) throw new S3Error('NoSuchVersion', undefined, { Key: key, VersionId: versionId });
      if (v.deleteMarker) {
        throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.', { Method: 'GET', ResourceType: 'DeleteMarker' },
          { 'x-amz-delete-marker': 'true', 'x-amz-version-id': v.versionId, 'last-modified': new Date(v.lastModifiedMs).toUTCString() });
      }
      return v;
    }
    const v = this.meta.getVersion(bucket, key);
    if (!v) throw new S3Error('NoSuchKey', undefined, { Key: key });
    if (v.deleteMarker) throw new S3Error('NoSuchKey', undefined, { Key: key }, { 'x-amz-delete-marker': 'true', 'x-amz-version-id': v.versionId });
    return v;
  }

  /** The bytes [start, endInclusive] of a version, each chunk verified before it is emitted. */
  openObject(v: ObjectVersion, range?: { start: number; endInclusive: number }): Readable {
    const start = range?.start ?? 0;
    const end = range?.endInclusive ?? v.size - 1;
    const blobs = this.blobs;
    const place = this.placeOf(v.bucket, v.key);
    async function* gen(): AsyncGenerator<Buffer> {
      let offset = 0;
      for (const b of v.blobs) {
        const bStart = offset;
        const bEnd = offset + b.size - 1;
        offset += b.size;
        if (b.size === 0 || bEnd < start || bStart > end) continue;
        const r = blobs.openReader(b, place, { start: Math.max(start, bStart) - bStart, endInclusive: Math.min(end, bEnd) - bStart });
        try {
          for await (const chunk of r) yield chunk as Buffer;
        } finally {
          r.destroy();
        }
      }
    }
    return Readable.from(gen(), { objectMode: false, highWaterMark: 1 });
  }

  async deleteObject(bucket: BucketRecord, key: string, versionId: string | undefined, owner: string, bypassGovernance: boolean): Promise<{ versionId?: string; deleteMarker: boolean }> {
    const now = this.nowMs();
    if (versionId !== undefined) {
      if (!isValidVersionId(versionId)) throw new S3Error('InvalidArgument', 'Invalid version id specified', { ArgumentName: 'versionId', ArgumentValue: versionId });
      const removed = this.meta.transaction(() => {
        const v = this.meta.getVersion(bucket.name, key, versionId);
        if (!v) return undefined;
        assertDeletable(v, bypassGovernance, now);
        return this.meta.deleteVersion(bucket.name, key, versionId);
      });
      if (!removed) return { versionId, deleteMarker: false };
      await this.meta.sync();
      await this.replicateKey(bucket.name, key);
      this.freeBlobs(this.placeOf(bucket.name, key), removed.blobs);
      return { versionId, deleteMarker: removed.deleteMarker };
    }
    if (bucket.versioning === 'Unversioned') {
      const removed = this.meta.transaction(() => {
        const v = this.meta.getVersion(bucket.name, key, 'null');
        if (!v) return undefined;
        assertDeletable(v, bypassGovernance, now);
        return this.meta.deleteVersion(bucket.name, key, 'null');
      });
      if (removed) {
        await this.meta.sync();
        await this.replicateKey(bucket.name, key);
        this.freeBlobs(this.placeOf(bucket.name, key), removed.blobs);
      }
      return { deleteMarker: false };
    }
    const marker = await this.commitVersion(bucket, key, owner, { headers: {}, userMeta: {}, tags: [] }, {}, { size: 0, etag: '', blobs: [], deleteMarker: true, bypassGovernance });
    return { versionId: marker.versionId, deleteMarker: true };
  }

  /** The version a lock call addresses; a delete marker has no data to protect, so lock calls on one are refused. */
  private lockTarget(bucket: string, key: string, versionId: string | undefined): ObjectVersion {
    if (versionId !== undefined && isValidVersionId(versionId)) {
      const v = this.meta.getVersion(bucket, key, versionId);
      if (v?.deleteMarker) throw new S3Error('InvalidObjectState', 'Object Lock settings cannot be applied to a delete marker.', { Key: key, VersionId: versionId });
    }
    return this.resolveVersion(bucket, key, versionId);
  }

  async setObjectTags(bucket: string, key: string, versionId: string | undefined, tags: [string, string][]): Promise<ObjectVersion> {
    const v = this.resolveVersion(bucket, key, versionId);
    this.meta.updateVersion(bucket, key, v.versionId, { tags });
    await this.meta.sync();
    await this.replicateKey(bucket, key);
    return v;
  }

  async setRetention(bucket: BucketRecord, key: string, versionId: string | undefined, next: { mode: RetentionMode; untilMs: number } | undefined, bypassGovernance: boolean): Promise<ObjectVersion> {
    if (!bucket.objectLockEnabled) throw new S3Error('InvalidRequest', 'Bucket is missing Object Lock Configuration');
    const now = this.nowMs();
    const v = this.meta.transaction(() => {
      const cur = this.lockTarget(bucket.name, key, versionId);
      assertRetentionChange(cur.retention, next, bypassGovernance, now);
      this.meta.updateVersion(bucket.name, key, cur.versionId, { retention: next ?? null });
      return cur;
    });
    await this.meta.sync();
    await this.replicateKey(bucket.name, key);
    return v;
  }

  async setLegalHold(bucket: BucketRecord, key: string, versionId: string | undefined, on: boolean): Promise<ObjectVersion> {
    if (!bucket.objectLockEnabled) throw new S3Error('InvalidRequest', 'Bucket is missing Object Lock Configuration');
    const v = this.lockTarget(bucket.name, key, versionId);
    this.meta.updateVersion(bucket.name, key, v.versionId, { legalHold: on });
    await this.meta.sync();
    await this.replicateKey(bucket.name, key);
    return v;
  }

  listObjects(bucket: string, q: ListObjectsQuery): ListObjectsResult {
    return this.meta.listObjects(bucket, q);
  }

  listVersions(bucket: string, q: ListVersionsQuery): ListVersionsResult {
    return this.meta.listVersions(bucket, q);
  }

  // ---- multipart ---------------------------------------------------------------------------------

  async createUpload(bucket: BucketRecord, key: string, owner: string, attrs: ObjectAttributes, checksum?: { algorithm: ChecksumAlgorithm; type: 'FULL_OBJECT' | 'COMPOSITE' }): Promise<UploadRecord> {
    this.assertLockAttrs(bucket, attrs);
    const u: UploadRecord = {
      uploadId: this.newUploadId(), bucket: bucket.name, key, owner, initiatedMs: this.nowMs(),
      contentType: attrs.contentType, headers: attrs.headers, userMeta: attrs.userMeta, tags: attrs.tags,
      checksumAlgorithm: checksum?.algorithm, checksumType: checksum?.type,
      retention: attrs.retention, legalHold: attrs.legalHold ?? false,
    };
    this.meta.createUpload(u);
    await this.meta.sync();
    return u;
  }

  getUpload(bucket: string, key: string, uploadId: string): UploadRecord {
    const u = this.meta.getUpload(uploadId);
    if (!u || u.bucket !== bucket || u.key !== key) throw new S3Error('NoSuchUpload', undefined, { UploadId: uploadId });
    return u;
  }

  async uploadPart(u: UploadRecord, partNumber: number, body: BodyInput): Promise<PartRecord> {
    const place = this.placeOf(u.bucket, u.key);
    const { ref, digests } = await this.writeBlob(body, place);
    const part: PartRecord = {
      uploadId: u.uploadId, partNumber, size: digests.sizeBytes, etag: digests.md5Hex,
      checksum: digests.checksum?.value, lastModifiedMs: this.nowMs(), blob: ref,
    };
    let replaced: PartRecord | undefined;
    try {
      replaced = this.meta.transaction(() => {
        if (!this.meta.getUpload(u.uploadId)) throw new S3Error('NoSuchUpload', undefined, { UploadId: u.uploadId });
        return this.meta.putPart(part).replaced;
      });
    } catch (e) {
      if (ref) this.freeBlobs(place, [ref]);
      throw e;
    }
    await this.meta.sync();
    await this.replicateUpload(u, 'part', part);
    if (replaced?.blob) this.freeBlobs(place, [replaced.blob]);
    return part;
  }

  /**
   * Makes the object from the listed parts. `expect` carries what the client says of the whole object
   * (x-amz-checksum-*, x-amz-mp-object-size): a mismatch refuses the completion and leaves the upload as it was.
   */
  async completeUpload(bucket: BucketRecord, u: UploadRecord, requested: CompletePart[], cond: WriteConditions,
    expect: { checksum?: { algorithm: ChecksumAlgorithm; value: string }; sizeBytes?: number } = {}): Promise<ObjectVersion> {
    if (requested.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part.');
    if (requested.length > LIMITS.maxParts) throw new S3Error('InvalidArgument', `At most ${LIMITS.maxParts} parts.`);
    for (let i = 1; i < requested.length; i++) {
      if (requested[i].partNumber <= requested[i - 1].partNumber) throw new S3Error('InvalidPartOrder');
    }
    const stored = new Map(this.meta.getParts(u.uploadId).map((p) => [p.partNumber, p]));
    const chosen: PartRecord[] = [];
    for (const r of requested) {
      const p = stored.get(r.partNumber);
      if (!p || normalizeEtag(r.etag) !== p.etag) throw new S3Error('InvalidPart', undefined, { UploadId: u.uploadId, PartNumber: String(r.partNumber), ETag: r.etag });
      if (r.checksum !== undefined && p.checksum !== undefined && r.checksum !== p.checksum) {
        throw new S3Error('InvalidPart', `The checksum of part ${r.partNumber} does not match the uploaded part.`);
      }
      chosen.push(p);
    }
    chosen.forEach((p, i) => {
      if (i < chosen.length - 1 && p.size < LIMITS.minPartBytes) {
        throw new S3Error('EntityTooSmall', undefined, { ProposedSize: String(p.size), MinSizeAllowed: String(LIMITS.minPartBytes), PartNumber: String(p.partNumber), ETag: p.etag });
      }
    });
    const size = chosen.reduce((s, p) => s + p.size, 0);
    if (size > LIMITS.maxObjectBytes) throw new S3Error('EntityTooLarge');
    const md5s = Buffer.concat(chosen.map((p) => Buffer.from(p.etag, 'hex')));
    const etag = `${crypto.createHash('md5').update(md5s).digest('hex')}-${chosen.length}`;
    let checksum: ObjectVersion['checksum'];
    if (u.checksumAlgorithm && chosen.every((p) => p.checksum !== undefined)) {
      const alg = u.checksumAlgorithm;
      if (u.checksumType === 'FULL_OBJECT' && (alg === 'CRC32' || alg === 'CRC32C' || alg === 'CRC64NVME')) {
        checksum = { algorithm: alg, type: 'FULL_OBJECT', value: combineCrc(alg, chosen.map((p) => ({ checksumBase64: p.checksum!, sizeBytes: p.size }))) };
      } else {
        checksum = { algorithm: alg, type: 'COMPOSITE', value: compositeChecksum(alg, chosen.map((p) => p.checksum!)) };
      }
    }
    if (expect.sizeBytes !== undefined && expect.sizeBytes !== size) {
      throw new S3Error('InvalidRequest', `The provided x-amz-mp-object-size (${expect.sizeBytes}) does not match the size of the parts (${size}).`);
    }
    if (expect.checksum) {
      const bare = (x: string): string => x.replace(/-\d+$/, '');
      if (!checksum || checksum.algorithm !== expect.checksum.algorithm || bare(checksum.value) !== bare(expect.checksum.value)) {
        throw new S3Error('BadDigest', `The ${expect.checksum.algorithm} you specified for the whole object did not match the calculated checksum.`);
      }
    }
    const used = new Set(chosen.map((p) => p.partNumber));
    let unused: PartRecord[] = [];
    const v = await this.commitVersion(bucket, u.key, u.owner,
      { contentType: u.contentType, headers: u.headers, userMeta: u.userMeta, tags: u.tags, retention: u.retention, legalHold: u.legalHold }, cond,
      {
        size, etag, checksum,
        blobs: chosen.flatMap((p) => (p.blob ? [p.blob] : [])),
        parts: chosen.map((p) => ({ partNumber: p.partNumber, size: p.size, etag: p.etag, checksum: p.checksum })),
        inTransaction: () => {
          if (!this.meta.getUpload(u.uploadId)) throw new S3Error('NoSuchUpload', undefined, { UploadId: u.uploadId });
          unused = this.meta.deleteUpload(u.uploadId).filter((p) => !used.has(p.partNumber));
        },
        keepBlobsOnFailure: true,
      });
    await this.replicateUpload(u, 'gone');
    this.freeBlobs(this.placeOf(u.bucket, u.key), unused.flatMap((p) => (p.blob ? [p.blob] : [])));
    return v;
  }

  async abortUpload(u: UploadRecord): Promise<void> {
    const parts = this.meta.transaction(() => this.meta.deleteUpload(u.uploadId));
    await this.meta.sync();
    await this.replicateUpload(u, 'gone');
    this.freeBlobs(this.placeOf(u.bucket, u.key), parts.flatMap((p) => (p.blob ? [p.blob] : [])));
  }

  listUploads(bucket: string, q: ListUploadsQuery): ListUploadsResult {
    return this.meta.listUploads(bucket, q);
  }

  listParts(uploadId: string, marker: number, max: number): ReturnType<MetaStore['listParts']> {
    return this.meta.listParts(uploadId, marker, max);
  }

  // ---- internals ---------------------------------------------------------------------------------

  /** Streams a body into a new blob; returns no blob for an empty body. The blob is durable on return. */
  private async writeBlob(body: BodyInput, place: BlobPlace): Promise<{ ref?: BlobRef; digests: BodyDigests }> {
    const w = this.blobs.createWriter(place);
    try {
      await pump(body.stream, w);
      const digests = body.finish();
      if (digests.sizeBytes === 0) {
        await w.abort();
        return { digests };
      }
      const ref = await w.commit();
      if (ref.size !== digests.sizeBytes) throw new Error(`blob size ${ref.size} differs from body size ${digests.sizeBytes}`);
      return { ref, digests };
    } catch (e) {
      await w.abort().catch(() => undefined);
      throw e;
    }
  }

  private assertLockAttrs(bucket: BucketRecord, attrs: ObjectAttributes): void {
    if ((attrs.retention || attrs.legalHold) && !bucket.objectLockEnabled) {
      throw new S3Error('InvalidRequest', 'Bucket is missing Object Lock Configuration');
    }
    if (attrs.retention && attrs.retention.untilMs <= this.nowMs()) throw new S3Error('InvalidArgument', 'The retain until date must be in the future!');
  }

  /**
   * Makes a new version (or delete marker) the current one, atomically with its preconditions, then waits
   * for the metadata to be durable. A replaced 'null' version is freed only after that.
   */
  private async commitVersion(
    bucket: BucketRecord, key: string, owner: string, attrs: ObjectAttributes, cond: WriteConditions,
    data: {
      size: number; etag: string; blobs: BlobRef[]; checksum?: ObjectVersion['checksum']; parts?: ObjectVersion['parts'];
      deleteMarker?: boolean; bypassGovernance?: boolean; inTransaction?: () => void; keepBlobsOnFailure?: boolean;
    },
  ): Promise<ObjectVersion> {
    let replaced: ObjectVersion | undefined;
    let v: ObjectVersion;
    try {
      this.assertLockAttrs(bucket, attrs);
      v = this.meta.transaction(() => {
        // Re-read the bucket inside the transaction: versioning may have changed while the body streamed.
        const b = this.meta.getBucket(bucket.name);
        if (!b) throw new S3Error('NoSuchBucket', undefined, { BucketName: bucket.name });
        this.checkWriteConditions(b.name, key, cond);
        data.inTransaction?.();
        const now = this.nowMs();
        const ts = this.clock.now();
        const versionId = b.versioning === 'Enabled' ? newVersionId(ts) : 'null';
        if (versionId === 'null') {
          const old = this.meta.getVersion(b.name, key, 'null');
          if (old) assertDeletable(old, data.bypassGovernance ?? false, now);
        }
        const rec: ObjectVersion = {
          bucket: b.name, key, versionId, ts, isLatest: true, deleteMarker: data.deleteMarker ?? false,
          size: data.size, etag: data.etag, lastModifiedMs: now,
          contentType: attrs.contentType, headers: attrs.headers, userMeta: attrs.userMeta,
          checksum: data.checksum, parts: data.parts, blobs: data.blobs, tags: attrs.tags,
          retention: data.deleteMarker ? undefined : attrs.retention ?? defaultRetention(b, now),
          legalHold: data.deleteMarker ? false : attrs.legalHold ?? false,
          owner,
        };
        replaced = this.meta.putVersion(rec).replaced;
        return rec;
      });
    } catch (e) {
      if (!data.keepBlobsOnFailure) this.freeBlobs(this.placeOf(bucket.name, key), data.blobs);
      throw e;
    }
    await this.meta.sync();
    await this.replicateKey(bucket.name, key);
    if (replaced) this.freeBlobs(this.placeOf(bucket.name, key), replaced.blobs);
    return v;
  }

  // ---- hooks for the grid (docs/decisions/0014-grid-metadata.md); stand-alone they do nothing -----------

  /**
   * Runs before an S3 request is handled, with the operation and its bucket and key: a grid brings the
   * local metadata of that key (or that bucket, for listings) up to date from its replicas first.
   */
  async prepare(_operation: string, _bucket?: string, _key?: string, _headers?: Record<string, string | string[] | undefined>, _query?: ReadonlyMap<string, string>): Promise<void> {}

  /** Runs once a change of the key's versions is durable here, before it is acknowledged. */
  protected async replicateKey(_bucket: string, _key: string): Promise<void> {}

  /** A new multipart upload id (a grid names the node that keeps the upload in it). */
  protected newUploadId(): string {
    return newUploadId();
  }

  /** Runs once a part was stored, or the upload completed or aborted, here, before it is acknowledged. */
  protected async replicateUpload(_u: UploadRecord, _change: 'part' | 'gone', _part?: PartRecord): Promise<void> {}

  /** Runs once a bucket was created, changed or deleted here, before it is acknowledged. */
  protected async replicateBucket(_name: string): Promise<void> {}

  /** Runs once an access key was created, changed or revoked here, before it is acknowledged. */
  protected async replicateAccessKey(_accessKeyId: string): Promise<void> {}

  /**
   * Where an object's blobs are placed: its bucket and key, and the policy bound to the bucket if any
   * (the blob backend places the data by it, whatever the layout's globs say).
   */
  private placeOf(bucket: string, key: string): BlobPlace {
    const policy = this.meta.getBucket(bucket)?.policy;
    return policy === undefined ? { bucket, key } : { bucket, key, policy };
  }

  /** Deletes blobs no longer referenced; failures are logged (the orphan sweep catches them later). */
  private freeBlobs(place: BlobPlace, refs: BlobRef[]): void {
    for (const r of refs) {
      this.blobs.delete(r, place).catch((e: Error) => this.log.warn('blob delete failed', { blobId: r.id, error: e.message }));
    }
  }

  /**
   * Removes blobs that no metadata references and that are older than `olderThanMs` (so that blobs being
   * committed right now are never touched). Run in the background after start-up.
   */
  async sweepOrphanBlobs(local: BlobStore, olderThanMs: number, isStopping: () => boolean): Promise<number> {
    let removed = 0;
    for await (const id of local.list()) {
      if (isStopping()) break;
      if (this.meta.isBlobReferenced(id)) continue;
      const st = await local.statTime(id);
      if (st === undefined || st >= olderThanMs) continue;
      if (this.meta.isBlobReferenced(id)) continue;
      await local.delete(id);
      removed++;
    }
    if (removed) this.log.info('orphan blobs removed', { removed });
    return removed;
  }
}

export function normalizeEtag(e: string): string {
  let s = e.trim();
  if (s.startsWith('W/')) s = s.slice(2);
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) s = s.slice(1, -1);
  return s;
}

/** If-Match / If-None-Match lists: "a", "b" or *. */
export function etagMatches(header: string, etag: string): boolean {
  return header.split(',').some((t) => {
    const x = t.trim();
    return x === '*' || normalizeEtag(x) === etag;
  });
}
