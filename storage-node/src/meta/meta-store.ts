import { createHash } from 'node:crypto';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CoalescingSync } from '../util/fsync';
import { Logger, silentLogger } from '../util/logger';
import { assertListingString } from './keys';
import { Cursor, listPage, Page, startAfterKey } from './listing';
import {
  assert, assertId, decodeAccessKey, decodeBucket, decodePart, decodeUpload, decodeVersion, encodeAccessKey,
  encodeBucket, encodePart, encodeUpload, encodeVersion, AccessKeyRow, BucketRow, PartRow, UploadPos, UploadRow,
  VersionPos, VersionTuple, tupleKey, tupleVersionId, UPLOAD_COLUMNS, VERSION_COLUMNS,
} from './rows';
import { FORMAT_VERSION, MIGRATIONS, runMigrations } from './schema';
import { RecordCache } from './record-cache';
import { liveObjectSource, uploadSource, versionSource } from './sources';
import type {
  AccessKeyRecord, BucketRecord, ConfigAccessKey, ListObjectsQuery, ListObjectsResult, ListUploadsQuery, ListUploadsResult,
  ListVersionsQuery, ListVersionsResult, ObjectVersion, PartRecord, UploadRecord,
} from './types';

/** sqlite truncates the WAL back to this size after a checkpoint, so a burst does not keep a huge file. */
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
/** Page cache: listings and point gets stay in memory for a working set of this size. */
const CACHE_SIZE_KIB = 32 * 1024;
/** Statements are built from a fixed set of shapes; more than this means a query is built from data. */
const MAX_CACHED_STATEMENTS = 128;
const MAX_LIST_PARTS = 10_000;
/** Buckets and access keys are read on every request; this many of each stay decoded in memory. */
const MAX_CACHED_RECORDS = 1024;
/** Version ids minted by util/hlc: 14 hex digits of the clock value, then 12 random chars. */
const HLC_VERSION_ID_RE = /^[0-9a-f]{14}[A-Za-z0-9_-]{12}$/;

const namedParams = (columns: string): string => columns.split(', ').map((c) => '@' + c).join(', ');
const INSERT_VERSION = `INSERT INTO versions (${VERSION_COLUMNS}, updated_ts) VALUES (${namedParams(VERSION_COLUMNS)}, :updated_ts)`;
const INSERT_UPLOAD = `INSERT INTO uploads (${UPLOAD_COLUMNS}) VALUES (${namedParams(UPLOAD_COLUMNS)})`;

export interface VersionPatch {
  tags?: [string, string][];
  /** null removes the retention. */
  retention?: ObjectVersion['retention'] | null;
  legalHold?: boolean;
}

export interface MetaStoreOptions {
  logger?: Logger;
}

/**
 * The metadata tables of one node (buckets, access keys, object versions, multipart uploads and parts) in
 * one sqlite database in WAL mode. Every method is synchronous; writes are atomic but become durable only
 * when a later `sync()` resolves (group commit, see docs/decisions/0001-metadata-store.md).
 */
export class MetaStore {
  private readonly statements = new Map<string, Database.Statement>();
  /** Read-through caches; every write to their table clears them (see RecordCache). */
  private readonly bucketCache = new RecordCache<BucketRecord>(MAX_CACHED_RECORDS);
  private readonly accessKeyCache = new RecordCache<AccessKeyRecord>(MAX_CACHED_RECORDS);
  private closed = false;
  private readonly prepare = (sql: string, raw?: boolean): Database.Statement => this.stmt(sql, raw);

  private constructor(
    private readonly db: Database.Database,
    private readonly walSync: CoalescingSync,
    readonly volumeId: string,
    readonly formatVersion: number,
  ) {}

  static open(file: string, opts: MetaStoreOptions = {}): MetaStore {
    const log = opts.logger ?? silentLogger();
    const db = new Database(file);
    try {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new Error(`metadata store ${file} cannot use WAL mode (got ${String(mode)})`);
      // NORMAL: a commit does not fsync (it would block the event loop); sync() makes commits durable.
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
      db.pragma(`cache_size = -${CACHE_SIZE_KIB}`);
      const formatVersion = runMigrations(db, MIGRATIONS, log);
      assert(formatVersion === FORMAT_VERSION, 'migrations reach the current format');
      const volumeId = ensureVolumeId(db);
      // A write at every open guarantees the -wal file exists before we fsync it and keep an fd on it.
      db.prepare("INSERT INTO meta (k, v) VALUES ('lastOpenedMs', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v").run(String(Date.now()));
      const wal = `${file}-wal`;
      if (!fs.existsSync(wal)) throw new Error(`metadata store ${file} has no WAL file after a write`);
      // Once, at start: the schema, the volume id and the WAL's directory entry are durable before we serve.
      fsyncPathSync(wal, false);
      fsyncPathSync(path.dirname(path.resolve(file)), true);
      log.info('metadata store opened', { file, volumeId, formatVersion });
      // fdatasync, as sqlite itself syncs its WAL: it flushes the frames and the file size when the WAL
      // grew, without forcing a journal commit for the modification time (which would also carry every
      // unrelated blob create and unlink pending in the file system's journal).
      return new MetaStore(db, new CoalescingSync(wal, { fsync: (fh) => fh.datasync() }), volumeId, formatVersion);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Resolves once every write committed before the call is on stable storage (one fsync of the WAL, shared). */
  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('metadata store is closed'));
    return this.walSync.sync();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.walSync.close().catch(() => undefined);
    // Closing the last connection checkpoints (with fsyncs) and removes the WAL: keep one per process.
    this.db.close();
  }

  /** Runs fn atomically; calls to this store inside it join the transaction (nested ones become savepoints). */
  transaction<T>(fn: () => T): T {
    this.assertOpen();
    return this.db.transaction(fn)();
  }

  // ---- access keys -------------------------------------------------------------------------------

  /**
   * A key from the node config, at start: created with no grants, or its secret and name updated (its
   * grants and write time are kept). A key revoked through the admin API stays revoked: false.
   */
  upsertAccessKey(k: ConfigAccessKey): boolean {
    const row = encodeAccessKey({ ...k, grants: [] });
    this.accessKeyCache.clear();
    return this.transaction(() => {
      if (this.stmt('SELECT 1 FROM access_key_tombstones WHERE access_key_id = ?').get(k.accessKeyId)) return false;
      this.stmt(
        'INSERT INTO access_keys (access_key_id, secret_access_key, name, created_ms, grants) VALUES (@access_key_id, @secret_access_key, @name, @created_ms, @grants) ' +
          'ON CONFLICT (access_key_id) DO UPDATE SET secret_access_key = excluded.secret_access_key, name = excluded.name, created_ms = excluded.created_ms',
      ).run(row);
      return true;
    });
  }

  /** A new key (admin API). False if the id is taken or was revoked: ids are never reused. */
  createAccessKey(k: AccessKeyRecord): boolean {
    const row = encodeAccessKey(k);
    this.accessKeyCache.clear();
    return this.transaction(() => {
      if (this.accessKeyRecord(k.accessKeyId)) return false;
      this.stmt(
        'INSERT INTO access_keys (access_key_id, secret_access_key, name, created_ms, grants, updated_ts) ' +
          'VALUES (@access_key_id, @secret_access_key, @name, @created_ms, @grants, @updated_ts)',
      ).run({ ...row, updated_ts: this.accessKeyWriteTs(k.accessKeyId) });
      return true;
    });
  }

  /** Replaces the grants of a key; false if there is no such key. */
  setAccessKeyGrants(id: string, grants: AccessKeyRecord['grants']): boolean {
    this.accessKeyCache.clear();
    return this.transaction(() => {
      const cur = this.getAccessKey(id);
      if (!cur) return false;
      const row = encodeAccessKey({ ...cur, grants });
      this.stmt('UPDATE access_keys SET grants = ?, updated_ts = ? WHERE access_key_id = ?').run(row.grants, this.accessKeyWriteTs(id), id);
      return true;
    });
  }

  /** The returned record is frozen (it may be shared through the cache). */
  getAccessKey(id: string): AccessKeyRecord | undefined {
    const hit = this.accessKeyCache.get(id);
    if (hit) return hit;
    const r = this.stmt('SELECT * FROM access_keys WHERE access_key_id = ?').get(id) as AccessKeyRow | undefined;
    if (!r) return undefined;
    const k = decodeAccessKey(r);
    return this.db.inTransaction ? k : this.accessKeyCache.set(id, k);
  }

  listAccessKeys(): AccessKeyRecord[] {
    return (this.stmt('SELECT * FROM access_keys ORDER BY access_key_id').all() as AccessKeyRow[]).map(decodeAccessKey);
  }

  /**
   * Revokes a key: the row goes and a tombstone stays (stand-alone too), so that neither a peer that
   * missed the revocation nor the node config at the next start brings the key back.
   */
  deleteAccessKey(id: string): boolean {
    this.accessKeyCache.clear();
    return this.transaction(() => {
      const ts = this.accessKeyWriteTs(id);
      const deleted = this.stmt('DELETE FROM access_keys WHERE access_key_id = ?').run(id).changes > 0;
      if (deleted) {
        this.stmt('INSERT INTO access_key_tombstones (access_key_id, updated_ts) VALUES (?, ?) ON CONFLICT (access_key_id) DO UPDATE SET updated_ts = excluded.updated_ts')
          .run(id, ts);
      }
      return deleted;
    });
  }

  /** The write time of a key change: newer than anything held for that id (a grid's clock, else held + 1). */
  private accessKeyWriteTs(id: string): number {
    const held = this.accessKeyRecord(id)?.updatedTs ?? 0;
    return Math.max(this.replicationClock?.() ?? 0, held + 1);
  }

  /** Every access key and key tombstone with its write time: what nodes exchange to agree on keys. */
  accessKeyRecords(): AccessKeyReplicaRecord[] {
    const live = (this.stmt('SELECT * FROM access_keys ORDER BY access_key_id').all() as (AccessKeyRow & { updated_ts: number })[])
      .map((r): AccessKeyReplicaRecord => ({ accessKeyId: r.access_key_id, updatedTs: r.updated_ts, key: decodeAccessKey(r) }));
    const dead = (this.stmt('SELECT access_key_id, updated_ts FROM access_key_tombstones ORDER BY access_key_id').all() as { access_key_id: string; updated_ts: number }[])
      .map((r): AccessKeyReplicaRecord => ({ accessKeyId: r.access_key_id, updatedTs: r.updated_ts }));
    return [...live, ...dead];
  }

  accessKeyRecord(id: string): AccessKeyReplicaRecord | undefined {
    const r = this.stmt('SELECT * FROM access_keys WHERE access_key_id = ?').get(id) as (AccessKeyRow & { updated_ts: number }) | undefined;
    if (r) return { accessKeyId: id, updatedTs: r.updated_ts, key: decodeAccessKey(r) };
    const t = this.stmt('SELECT updated_ts FROM access_key_tombstones WHERE access_key_id = ?').get(id) as { updated_ts: number } | undefined;
    return t ? { accessKeyId: id, updatedTs: t.updated_ts } : undefined;
  }

  /** Takes a key record (or a revocation) if newer than what this node holds; a tombstone wins a tie. */
  applyAccessKey(rec: AccessKeyReplicaRecord): boolean {
    if (!Number.isSafeInteger(rec.updatedTs) || rec.updatedTs < 0) throw new RangeError(`updatedTs must be an integer ≥ 0, got ${rec.updatedTs}`);
    this.accessKeyCache.clear();
    return this.transaction(() => {
      const held = this.accessKeyRecord(rec.accessKeyId);
      if (held && !replicaRecordWins(rec.updatedTs, rec.key === undefined, held.updatedTs, held.key === undefined)) return false;
      if (rec.key) {
        const row = encodeAccessKey({ ...rec.key, accessKeyId: rec.accessKeyId });
        this.stmt('DELETE FROM access_key_tombstones WHERE access_key_id = ?').run(rec.accessKeyId);
        this.stmt(
          'INSERT INTO access_keys (access_key_id, secret_access_key, name, created_ms, grants, updated_ts) ' +
            'VALUES (@access_key_id, @secret_access_key, @name, @created_ms, @grants, @updated_ts) ' +
            'ON CONFLICT (access_key_id) DO UPDATE SET secret_access_key = excluded.secret_access_key, name = excluded.name, ' +
            'created_ms = excluded.created_ms, grants = excluded.grants, updated_ts = excluded.updated_ts',
        ).run({ ...row, updated_ts: rec.updatedTs });
      } else {
        this.stmt('DELETE FROM access_keys WHERE access_key_id = ?').run(rec.accessKeyId);
        this.stmt('INSERT INTO access_key_tombstones (access_key_id, updated_ts) VALUES (?, ?) ON CONFLICT (access_key_id) DO UPDATE SET updated_ts = excluded.updated_ts')
          .run(rec.accessKeyId, rec.updatedTs);
      }
      return true;
    });
  }

  // ---- buckets -----------------------------------------------------------------------------------

  /** False if a bucket of that name exists. */
  createBucket(b: BucketRecord): boolean {
    const row = encodeBucket(b);
    this.bucketCache.clear();
    return this.transaction(() => {
      const created = this.stmt(
        'INSERT INTO buckets (name, owner, created_ms, region, versioning, object_lock, lock_default, tags, policy, updated_ts) ' +
          'VALUES (@name, @owner, @created_ms, @region, @versioning, @object_lock, @lock_default, @tags, @policy, @updated_ts) ON CONFLICT (name) DO NOTHING',
      ).run({ ...row, updated_ts: this.bucketWriteTs(b.name) }).changes === 1;
      if (created) this.stmt('DELETE FROM bucket_tombstones WHERE name = ?').run(b.name);
      return created;
    });
  }

  /** The write time of a bucket change: newer than anything held for that name (grid), or 0. */
  private bucketWriteTs(name: string): number {
    if (!this.replicationClock) return 0;
    return Math.max(this.replicationClock(), (this.bucketRecord(name)?.updatedTs ?? 0) + 1);
  }

  /** The returned record is frozen (it may be shared through the cache). */
  getBucket(name: string): BucketRecord | undefined {
    const hit = this.bucketCache.get(name);
    if (hit) return hit;
    const r = this.stmt('SELECT * FROM buckets WHERE name = ?').get(name) as BucketRow | undefined;
    if (!r) return undefined;
    const b = decodeBucket(r);
    return this.db.inTransaction ? b : this.bucketCache.set(name, b);
  }

  /** By name, in byte order. */
  listBuckets(): BucketRecord[] {
    return (this.stmt('SELECT * FROM buckets ORDER BY name').all() as BucketRow[]).map(decodeBucket);
  }

  /** A field present in `patch` with value undefined is removed (e.g. lockDefault, tags). */
  updateBucket(name: string, patch: Partial<Omit<BucketRecord, 'name' | 'owner' | 'createdMs' | 'policy'>>): void {
    this.bucketCache.clear();
    this.transaction(() => {
      const cur = this.getBucket(name);
      if (!cur) throw new Error(`no such bucket: ${name}`);
      const row = encodeBucket({ ...cur, ...patch, name: cur.name, owner: cur.owner, createdMs: cur.createdMs });
      this.stmt(
        'UPDATE buckets SET region = @region, versioning = @versioning, object_lock = @object_lock, lock_default = @lock_default, tags = @tags WHERE name = @name',
      ).run({ name: row.name, region: row.region, versioning: row.versioning, object_lock: row.object_lock, lock_default: row.lock_default, tags: row.tags });
      if (this.replicationClock) this.stmt('UPDATE buckets SET updated_ts = ? WHERE name = ?').run(this.bucketWriteTs(name), name);
    });
  }

  /** Also deletes the bucket's uploads and their parts. The caller checks that no version remains. */
  deleteBucket(name: string): boolean {
    this.bucketCache.clear();
    return this.transaction(() => {
      if (this.bucketHasObjects(name)) throw new Error(`bucket ${name} still has versions`);
      const ts = this.bucketWriteTs(name);
      this.stmt('DELETE FROM tombstones WHERE bucket = ?').run(name);
      // uploads and parts go by ON DELETE CASCADE; their blob references by trigger.
      const deleted = this.stmt('DELETE FROM buckets WHERE name = ?').run(name).changes > 0;
      if (deleted && this.replicationClock) {
        this.stmt('INSERT INTO bucket_tombstones (name, updated_ts) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET updated_ts = excluded.updated_ts').run(name, ts);
      }
      return deleted;
    });
  }

  /** Any version or delete marker. */
  bucketHasObjects(name: string): boolean {
    return this.stmt('SELECT 1 FROM versions WHERE bucket = ? LIMIT 1').get(name) !== undefined;
  }

  bucketHasUploads(name: string): boolean {
    return this.stmt('SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1').get(name) !== undefined;
  }

  // ---- versions ----------------------------------------------------------------------------------

  /**
   * Inserts a version and makes it the latest of its key (the stored isLatest is true whatever v says).
   * A new 'null' version replaces (deletes) the key's existing 'null' version, which is returned so that
   * the caller can free its blobs once the change is durable.
   */
  putVersion(v: ObjectVersion): { replaced?: ObjectVersion } {
    const row = encodeVersion({ ...v, isLatest: true });
    return this.transaction(() => {
      if (!this.stmt('SELECT 1 FROM buckets WHERE name = ?').get(row.bucket)) throw new Error(`no such bucket: ${row.bucket}`);
      const old = this.versionRow(row.bucket, row.key, row.version_id);
      if (old !== undefined && row.version_id !== 'null') throw new Error(`version ${row.version_id} of ${row.key} already exists`);
      if (old !== undefined) this.stmt('DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').run(row.bucket, row.key, row.version_id);
      this.stmt('UPDATE versions SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1').run(row.bucket, row.key);
      this.stmt(INSERT_VERSION).run({ ...row, updated_ts: row.ts });
      return old ? { replaced: decodeVersion(old) } : {};
    });
  }

  // ---- replication records (last writer wins; docs/decisions/0008-cluster-design.md) -------------------

  private replicationClock: (() => number) | undefined;

  /**
   * Grid mode: deletions of versions and buckets leave tombstones, and every change of a version or a
   * bucket takes a newer `updated_ts` from `clock` (the node's hybrid clock), so that replicas can
   * tell the newest write. Stand-alone nodes do not keep tombstones.
   */
  enableReplication(clock: () => number): void {
    this.replicationClock = clock;
  }

  /** Every bucket and bucket tombstone with its write time: what nodes exchange to agree on buckets. */
  bucketRecords(): BucketReplicaRecord[] {
    const live = (this.stmt('SELECT * FROM buckets ORDER BY name').all() as (BucketRow & { updated_ts: number })[])
      .map((r): BucketReplicaRecord => ({ name: r.name, updatedTs: r.updated_ts, bucket: decodeBucket(r) }));
    const dead = (this.stmt('SELECT name, updated_ts FROM bucket_tombstones ORDER BY name').all() as { name: string; updated_ts: number }[])
      .map((r): BucketReplicaRecord => ({ name: r.name, updatedTs: r.updated_ts }));
    return [...live, ...dead];
  }

  bucketRecord(name: string): BucketReplicaRecord | undefined {
    const r = this.stmt('SELECT * FROM buckets WHERE name = ?').get(name) as (BucketRow & { updated_ts: number }) | undefined;
    if (r) return { name, updatedTs: r.updated_ts, bucket: decodeBucket(r) };
    const t = this.stmt('SELECT updated_ts FROM bucket_tombstones WHERE name = ?').get(name) as { updated_ts: number } | undefined;
    return t ? { name, updatedTs: t.updated_ts } : undefined;
  }

  /**
   * Takes a bucket record (or a bucket tombstone) if newer than what this node holds. A tombstone also
   * removes what this node still holds of the bucket's objects and uploads (the deleting node checked
   * at a quorum that it was empty). Returns whether it was applied.
   */
  applyBucket(rec: BucketReplicaRecord): boolean {
    // 0 is the time of buckets made before the node joined a grid: older than any grid write.
    if (!Number.isSafeInteger(rec.updatedTs) || rec.updatedTs < 0) throw new RangeError(`updatedTs must be an integer ≥ 0, got ${rec.updatedTs}`);
    this.bucketCache.clear();
    return this.transaction(() => {
      const held = this.bucketRecord(rec.name);
      if (held && !replicaRecordWins(rec.updatedTs, rec.bucket === undefined, held.updatedTs, held.bucket === undefined)) return false;
      if (rec.bucket) {
        const row = encodeBucket({ ...rec.bucket, name: rec.name });
        this.stmt('DELETE FROM bucket_tombstones WHERE name = ?').run(rec.name);
        this.stmt(
          'INSERT INTO buckets (name, owner, created_ms, region, versioning, object_lock, lock_default, tags, policy, updated_ts) ' +
            'VALUES (@name, @owner, @created_ms, @region, @versioning, @object_lock, @lock_default, @tags, @policy, @updated_ts) ' +
            'ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, created_ms = excluded.created_ms, region = excluded.region, ' +
            'versioning = excluded.versioning, object_lock = excluded.object_lock, lock_default = excluded.lock_default, tags = excluded.tags, ' +
            'policy = excluded.policy, updated_ts = excluded.updated_ts',
        ).run({ ...row, updated_ts: rec.updatedTs });
      } else {
        this.stmt('DELETE FROM versions WHERE bucket = ?').run(rec.name);
        this.stmt('DELETE FROM tombstones WHERE bucket = ?').run(rec.name);
        this.stmt('DELETE FROM buckets WHERE name = ?').run(rec.name);
        this.stmt('INSERT INTO bucket_tombstones (name, updated_ts) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET updated_ts = excluded.updated_ts')
          .run(rec.name, rec.updatedTs);
      }
      return true;
    });
  }

  /** Removes every record this node holds for a key (a cached copy that could not be replicated). */
  forgetKey(bucket: string, key: string): void {
    this.transaction(() => {
      this.stmt('DELETE FROM versions WHERE bucket = ? AND key = ?').run(bucket, key);
      this.stmt('DELETE FROM tombstones WHERE bucket = ? AND key = ?').run(bucket, key);
    });
  }

  /**
   * Applies a whole version record written at `updatedTs` by some gateway: kept only if newer than
   * what this replica holds for (bucket, key, versionId), version or tombstone. The latest version of
   * the key is then derived again (newest by ts, then version id). A replaced record is returned so
   * that the caller can free blobs the new one no longer uses (a 'null' version rewritten).
   */
  applyVersion(v: ObjectVersion, updatedTs: number): { applied: boolean; replaced?: ObjectVersion } {
    assertHlc(updatedTs);
    const row = encodeVersion({ ...v, isLatest: false });
    return this.transaction(() => {
      if (!this.stmt('SELECT 1 FROM buckets WHERE name = ?').get(row.bucket)) throw new Error(`no such bucket: ${row.bucket}`);
      const held = this.recordTs(row.bucket, row.key, row.version_id);
      if (held !== undefined && !replicaRecordWins(updatedTs, false, held.updatedTs, held.deleted)) return { applied: false };
      const old = this.versionRow(row.bucket, row.key, row.version_id);
      if (old !== undefined) this.stmt('DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').run(row.bucket, row.key, row.version_id);
      this.stmt('DELETE FROM tombstones WHERE bucket = ? AND key = ? AND version_id = ?').run(row.bucket, row.key, row.version_id);
      this.stmt(INSERT_VERSION).run({ ...row, updated_ts: updatedTs });
      this.deriveLatest(row.bucket, row.key);
      return old ? { applied: true, replaced: decodeVersion(old) } : { applied: true };
    });
  }

  /**
   * Deletes a version as of `updatedTs` and remembers the deletion (a tombstone), unless this replica
   * holds a newer write of that version. Returns the removed version, if there was one here.
   */
  applyTombstone(bucket: string, key: string, versionId: string, updatedTs: number, nowMs = Date.now()): { applied: boolean; removed?: ObjectVersion } {
    assertHlc(updatedTs);
    return this.transaction(() => {
      const held = this.recordTs(bucket, key, versionId);
      if (held !== undefined && !replicaRecordWins(updatedTs, true, held.updatedTs, held.deleted)) return { applied: false };
      const old = this.versionRow(bucket, key, versionId);
      if (old !== undefined) this.stmt('DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').run(bucket, key, versionId);
      this.stmt(
        'INSERT INTO tombstones (bucket, key, version_id, updated_ts, deleted_ms) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (bucket, key, version_id) DO UPDATE SET updated_ts = excluded.updated_ts, deleted_ms = excluded.deleted_ms',
      ).run(bucket, key, versionId, updatedTs, nowMs);
      if (old !== undefined) this.deriveLatest(bucket, key);
      return old ? { applied: true, removed: decodeVersion(old) } : { applied: true };
    });
  }

  /** The record this replica holds for one version: its write time and whether it is a tombstone. */
  recordTs(bucket: string, key: string, versionId: string): { updatedTs: number; deleted: boolean } | undefined {
    const v = this.stmt('SELECT updated_ts AS t FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').get(bucket, key, versionId) as { t: number } | undefined;
    if (v !== undefined) return { updatedTs: v.t, deleted: false };
    const t = this.stmt('SELECT updated_ts AS t FROM tombstones WHERE bucket = ? AND key = ? AND version_id = ?').get(bucket, key, versionId) as { t: number } | undefined;
    return t === undefined ? undefined : { updatedTs: t.t, deleted: true };
  }

  /**
   * Every record of a key, versions and tombstones, newest first (by the version's ts; tombstones
   * carry no ts of their own and come last), at most `limit`: what a gateway merges from replicas.
   */
  keyRecords(bucket: string, key: string, limit = 1000): ReplicaRecord[] {
    const versions = (this.stmt(
      `SELECT ${VERSION_COLUMNS}, updated_ts FROM versions WHERE bucket = ? AND key = ? ORDER BY ts DESC, version_id DESC LIMIT ?`, true,
    ).all(bucket, key, limit) as [...VersionTuple, number][]).map((t): ReplicaRecord => ({
      versionId: t[2], updatedTs: t[20], version: decodeVersion(t.slice(0, 20) as VersionTuple),
    }));
    const tombs = (this.stmt('SELECT version_id, updated_ts FROM tombstones WHERE bucket = ? AND key = ? ORDER BY version_id LIMIT ?')
      .all(bucket, key, limit) as { version_id: string; updated_ts: number }[]).map((t): ReplicaRecord => ({ versionId: t.version_id, updatedTs: t.updated_ts }));
    return [...versions, ...tombs];
  }

  /**
   * Digests of a bucket's records in 256 leaves (by the first byte of sha256(key)), computed by one
   * ordered scan in constant memory: replicas compare leaves and exchange only the records of leaves
   * that differ (anti-entropy). Each leaf is the XOR of sha256(key, versionId, updatedTs, deleted).
   */
  recordDigests(bucket: string): string[] {
    const leaves = Array.from({ length: 256 }, () => Buffer.alloc(32));
    const fold = (key: string, versionId: string, updatedTs: number, deleted: boolean): void => {
      const h = recordHash(key, versionId, updatedTs, deleted);
      const leaf = leaves[leafOf(key)];
      for (let i = 0; i < 32; i++) leaf[i] ^= h[i];
    };
    for (const r of this.stmt('SELECT key, version_id, updated_ts FROM versions WHERE bucket = ?', true).iterate(bucket) as Iterable<[string, string, number]>) {
      fold(r[0], r[1], r[2], false);
    }
    for (const r of this.stmt('SELECT key, version_id, updated_ts FROM tombstones WHERE bucket = ?', true).iterate(bucket) as Iterable<[string, string, number]>) {
      fold(r[0], r[1], r[2], true);
    }
    return leaves.map((l) => l.toString('hex'));
  }

  /** (key, versionId, updatedTs, deleted) of every record of one digest leaf, key order, at most `limit`. */
  leafRecords(bucket: string, leaf: number, limit = 100_000): { key: string; versionId: string; updatedTs: number; deleted: boolean }[] {
    return this.leavesRecords(bucket, [leaf], limit);
  }

  /** The records of several digest leaves in one scan of the bucket (not one scan per leaf). */
  leavesRecords(bucket: string, leaves: readonly number[], limit = 100_000): { key: string; versionId: string; updatedTs: number; deleted: boolean }[] {
    const wanted = new Set(leaves);
    const out: { key: string; versionId: string; updatedTs: number; deleted: boolean }[] = [];
    const scan = (sql: string, deleted: boolean): void => {
      for (const r of this.stmt(sql, true).iterate(bucket) as Iterable<[string, string, number]>) {
        if (!wanted.has(leafOf(r[0]))) continue;
        if (out.length >= limit) return;
        out.push({ key: r[0], versionId: r[1], updatedTs: r[2], deleted });
      }
    };
    scan('SELECT key, version_id, updated_ts FROM versions WHERE bucket = ? ORDER BY key, version_id', false);
    scan('SELECT key, version_id, updated_ts FROM tombstones WHERE bucket = ? ORDER BY key, version_id', true);
    return out;
  }

  /**
   * The newest hybrid-clock time in the store (version times, record write times, tombstones): a node
   * starts its clock past it, so a version written after a restart sorts after every older one even if
   * the wall clock went back. One scan at start-up.
   */
  maxTimestamp(): number {
    const v = this.stmt('SELECT max(max(ts), max(updated_ts)) AS t FROM versions').get() as { t: number | null };
    const t = this.stmt('SELECT max(updated_ts) AS t FROM tombstones').get() as { t: number | null };
    return Math.max(v.t ?? 0, t.t ?? 0);
  }

  /** Forgets tombstones older than `olderThanMs` (once every replica has them); returns how many. */
  purgeTombstones(olderThanMs: number): number {
    return this.stmt('DELETE FROM tombstones WHERE deleted_ms < ?').run(olderThanMs).changes;
  }

  /** The newest version of a key (ts, then version id) becomes its latest; the others are not. */
  private deriveLatest(bucket: string, key: string): void {
    this.stmt('UPDATE versions SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1').run(bucket, key);
    const top = this.stmt('SELECT rowid AS id FROM versions WHERE bucket = ? AND key = ? ORDER BY ts DESC, version_id DESC LIMIT 1').get(bucket, key) as { id: number } | undefined;
    if (top) this.stmt('UPDATE versions SET is_latest = 1 WHERE rowid = ?').run(top.id);
  }

  /** No versionId: the latest version of the key, which may be a delete marker. */
  getVersion(bucket: string, key: string, versionId?: string): ObjectVersion | undefined {
    const r = versionId === undefined
      ? (this.stmt(`SELECT ${VERSION_COLUMNS} FROM versions WHERE bucket = ? AND key = ? AND is_latest = 1`, true).get(bucket, key) as VersionTuple | undefined)
      : this.versionRow(bucket, key, versionId);
    return r && decodeVersion(r);
  }

  /** Removes one version; if it was the latest, the next newest (ts desc, versionId desc) becomes latest. */
  deleteVersion(bucket: string, key: string, versionId: string): ObjectVersion | undefined {
    return this.transaction(() => {
      const old = this.versionRow(bucket, key, versionId);
      if (!old) return undefined;
      const removed = decodeVersion(old);
      const heldTs = this.replicationClock ? this.recordTs(bucket, key, versionId)?.updatedTs ?? 0 : 0;
      this.stmt('DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').run(bucket, key, versionId);
      // In a grid the deletion must travel to the replicas and win there: it is kept as a tombstone.
      if (this.replicationClock) {
        this.stmt(
          'INSERT INTO tombstones (bucket, key, version_id, updated_ts, deleted_ms) VALUES (?, ?, ?, ?, ?) ' +
            'ON CONFLICT (bucket, key, version_id) DO UPDATE SET updated_ts = excluded.updated_ts, deleted_ms = excluded.deleted_ms',
        ).run(bucket, key, versionId, Math.max(this.replicationClock(), heldTs + 1), Date.now());
      }
      if (removed.isLatest) {
        const next = this.stmt('SELECT rowid AS id FROM versions WHERE bucket = ? AND key = ? ORDER BY ts DESC, version_id DESC LIMIT 1').get(bucket, key) as { id: number } | undefined;
        if (next) this.stmt('UPDATE versions SET is_latest = 1 WHERE rowid = ?').run(next.id);
      }
      return removed;
    });
  }

  /** False if the version does not exist. */
  updateVersion(bucket: string, key: string, versionId: string, patch: VersionPatch): boolean {
    return this.transaction(() => {
      const cur = this.getVersion(bucket, key, versionId);
      if (!cur) return false;
      const next: ObjectVersion = { ...cur };
      if (patch.tags !== undefined) next.tags = patch.tags;
      if (patch.retention === null) delete next.retention;
      else if (patch.retention !== undefined) next.retention = patch.retention;
      if (patch.legalHold !== undefined) next.legalHold = patch.legalHold;
      const row = encodeVersion(next); // validates the whole record again
      this.stmt(
        'UPDATE versions SET tags = ?, retention_mode = ?, retention_until_ms = ?, legal_hold = ? WHERE bucket = ? AND key = ? AND version_id = ?',
      ).run(row.tags, row.retention_mode, row.retention_until_ms, row.legal_hold, bucket, key, versionId);
      // A change of the record is a newer write of it, which replicas take over their copy.
      if (this.replicationClock) {
        const held = this.recordTs(bucket, key, versionId)?.updatedTs ?? 0;
        this.stmt('UPDATE versions SET updated_ts = ? WHERE bucket = ? AND key = ? AND version_id = ?')
          .run(Math.max(this.replicationClock(), held + 1), bucket, key, versionId);
      }
      return true;
    });
  }

  listObjects(bucket: string, q: ListObjectsQuery): ListObjectsResult {
    this.assertListing(q.prefix, q.delimiter, q.after);
    const page = listPage(liveObjectSource(this.prepare, bucket), {
      prefix: q.prefix, delimiter: q.delimiter, start: { bound: startAfterKey(q.prefix, q.after) }, skipPrefixesUpTo: q.after, maxEntries: q.maxKeys,
    });
    const res: ListObjectsResult = { contents: page.rows.map(decodeVersion), commonPrefixes: page.prefixes, isTruncated: page.isTruncated };
    const next = nextMarkers(page, tupleKey, tupleVersionId);
    if (next.key !== undefined) res.nextAfter = next.key;
    return res;
  }

  /**
   * keyMarker alone: start after every version of that key. With versionIdMarker: continue after that
   * version within the key. A versionIdMarker without keyMarker is ignored (the S3 layer refuses it).
   */
  listVersions(bucket: string, q: ListVersionsQuery): ListVersionsResult {
    this.assertListing(q.prefix, q.delimiter, q.keyMarker);
    let start: Cursor<VersionPos> = { bound: startAfterKey(q.prefix, q.keyMarker) };
    if (q.keyMarker !== undefined && q.versionIdMarker !== undefined && q.keyMarker.startsWith(q.prefix)) {
      const pos = this.versionPosition(bucket, q.keyMarker, q.versionIdMarker);
      if (pos) start = { after: pos };
    }
    const page = listPage(versionSource(this.prepare, bucket), {
      prefix: q.prefix, delimiter: q.delimiter, start, skipPrefixesUpTo: q.keyMarker, maxEntries: q.maxKeys,
    });
    const res: ListVersionsResult = { versions: page.rows.map(decodeVersion), commonPrefixes: page.prefixes, isTruncated: page.isTruncated };
    const next = nextMarkers(page, tupleKey, tupleVersionId);
    if (next.key !== undefined) res.nextKeyMarker = next.key;
    if (next.id !== undefined) res.nextVersionIdMarker = next.id;
    return res;
  }

  /** True if a version or a part references the blob (for the orphan-blob sweep). */
  isBlobReferenced(blobId: string): boolean {
    return this.stmt('SELECT 1 FROM blob_refs WHERE blob_id = ?').get(blobId) !== undefined;
  }

  // ---- multipart uploads -------------------------------------------------------------------------

  createUpload(u: UploadRecord): void {
    const row = encodeUpload(u);
    this.transaction(() => {
      if (!this.stmt('SELECT 1 FROM buckets WHERE name = ?').get(row.bucket)) throw new Error(`no such bucket: ${row.bucket}`);
      this.stmt(INSERT_UPLOAD).run(row);
    });
  }

  getUpload(uploadId: string): UploadRecord | undefined {
    const r = this.stmt(`SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?`).get(uploadId) as UploadRow | undefined;
    return r && decodeUpload(r);
  }

  /** Deletes the upload and its parts; returns the parts (by part number) so that their blobs can be freed. */
  deleteUpload(uploadId: string): PartRecord[] {
    return this.transaction(() => {
      const parts = this.getParts(uploadId);
      this.stmt('DELETE FROM uploads WHERE upload_id = ?').run(uploadId);
      return parts;
    });
  }

  /**
   * Key ascending, then initiation ascending. keyMarker + uploadIdMarker continue after that upload; if it
   * no longer exists, after every upload of keyMarker (never a repeat, possibly a miss of a concurrent one).
   */
  listUploads(bucket: string, q: ListUploadsQuery): ListUploadsResult {
    this.assertListing(q.prefix, q.delimiter, q.keyMarker);
    let start: Cursor<UploadPos> = { bound: startAfterKey(q.prefix, q.keyMarker) };
    if (q.keyMarker !== undefined && q.uploadIdMarker !== undefined && q.keyMarker.startsWith(q.prefix)) {
      const m = this.stmt('SELECT key, initiated_ms, upload_id FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?')
        .get(q.uploadIdMarker, bucket, q.keyMarker) as UploadPos | undefined;
      if (m) start = { after: m };
    }
    const page = listPage(uploadSource(this.prepare, bucket), {
      prefix: q.prefix, delimiter: q.delimiter, start, skipPrefixesUpTo: q.keyMarker, maxEntries: q.maxUploads,
    });
    const res: ListUploadsResult = { uploads: page.rows.map(decodeUpload), commonPrefixes: page.prefixes, isTruncated: page.isTruncated };
    const next = nextMarkers(page, (r) => r.key, (r) => r.upload_id);
    if (next.key !== undefined) res.nextKeyMarker = next.key;
    if (next.id !== undefined) res.nextUploadIdMarker = next.id;
    return res;
  }

  /** Adds or replaces a part; a replaced part is returned so that its blob can be freed. */
  putPart(p: PartRecord): { replaced?: PartRecord } {
    const row = encodePart(p);
    return this.transaction(() => {
      if (!this.stmt('SELECT 1 FROM uploads WHERE upload_id = ?').get(row.upload_id)) throw new Error(`no such upload: ${row.upload_id}`);
      const old = this.stmt('SELECT * FROM parts WHERE upload_id = ? AND part_number = ?').get(row.upload_id, row.part_number) as PartRow | undefined;
      if (old) this.stmt('DELETE FROM parts WHERE upload_id = ? AND part_number = ?').run(row.upload_id, row.part_number);
      this.stmt(
        'INSERT INTO parts (upload_id, part_number, size, etag, checksum, last_modified_ms, blob) ' +
          'VALUES (@upload_id, @part_number, @size, @etag, @checksum, @last_modified_ms, @blob)',
      ).run(row);
      return old ? { replaced: decodePart(old) } : {};
    });
  }

  /** Parts with number > partNumberMarker, at most maxParts; nextPartNumberMarker is set when truncated. */
  listParts(uploadId: string, partNumberMarker: number, maxParts: number): { parts: PartRecord[]; isTruncated: boolean; nextPartNumberMarker?: number } {
    assert(Number.isInteger(partNumberMarker) && partNumberMarker >= 0, 'part number marker is a non-negative integer');
    assert(Number.isInteger(maxParts) && maxParts >= 0 && maxParts <= MAX_LIST_PARTS, `max parts is an integer in [0, ${MAX_LIST_PARTS}]`);
    if (maxParts === 0) return { parts: [], isTruncated: false };
    const rows = this.stmt('SELECT * FROM parts WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?')
      .all(uploadId, partNumberMarker, maxParts + 1) as PartRow[];
    const isTruncated = rows.length > maxParts;
    const parts = rows.slice(0, maxParts).map(decodePart);
    return isTruncated ? { parts, isTruncated, nextPartNumberMarker: parts[parts.length - 1].partNumber } : { parts, isTruncated };
  }

  /** All parts of the upload, by part number. */
  getParts(uploadId: string): PartRecord[] {
    return (this.stmt('SELECT * FROM parts WHERE upload_id = ? ORDER BY part_number').all(uploadId) as PartRow[]).map(decodePart);
  }

  // ---- internals ---------------------------------------------------------------------------------

  /** A cached prepared statement; raw: rows come as arrays in select order (faster for wide rows). */
  private stmt(sql: string, raw = false): Database.Statement {
    this.assertOpen();
    const cacheKey = raw ? `raw:${sql}` : sql;
    let s = this.statements.get(cacheKey);
    if (s === undefined) {
      assert(this.statements.size < MAX_CACHED_STATEMENTS, 'statement cache is bounded');
      s = this.db.prepare(sql);
      if (raw) s.raw(true);
      this.statements.set(cacheKey, s);
    }
    return s;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('metadata store is closed');
  }

  private assertListing(prefix: string, delimiter: string | undefined, marker: string | undefined): void {
    assert(typeof prefix === 'string', 'listing prefix is a string');
    assertListingString('prefix', prefix);
    assertListingString('delimiter', delimiter);
    assertListingString('marker', marker);
  }

  private versionRow(bucket: string, key: string, versionId: string): VersionTuple | undefined {
    assertId('versionId', versionId);
    return this.stmt(`SELECT ${VERSION_COLUMNS} FROM versions WHERE bucket = ? AND key = ? AND version_id = ?`, true).get(bucket, key, versionId) as VersionTuple | undefined;
  }

  /**
   * Where "after this version" is in version order. A marker version deleted since the previous page is
   * placed by the clock value its id carries (ids from util/hlc); a vanished 'null' version cannot be
   * placed, so the listing continues after the whole key.
   */
  private versionPosition(bucket: string, key: string, versionId: string): VersionPos | undefined {
    const r = this.stmt('SELECT key, ts, version_id FROM versions WHERE bucket = ? AND key = ? AND version_id = ?').get(bucket, key, versionId) as VersionPos | undefined;
    if (r) return r;
    if (HLC_VERSION_ID_RE.test(versionId)) return { key, ts: parseInt(versionId.slice(0, 14), 16), version_id: versionId };
    return undefined;
  }
}

function ensureVolumeId(db: Database.Database): string {
  db.prepare("INSERT INTO meta (k, v) VALUES ('volumeId', ?) ON CONFLICT (k) DO NOTHING").run(crypto.randomUUID());
  const row = db.prepare("SELECT v FROM meta WHERE k = 'volumeId'").get() as { v: string } | undefined;
  assert(row !== undefined && row.v.length > 0, 'the store has a volume id');
  return row.v;
}

function fsyncPathSync(p: string, isDirectory: boolean): void {
  const fd = fs.openSync(p, isDirectory ? fs.constants.O_RDONLY | fs.constants.O_DIRECTORY : fs.constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The next-page markers of a truncated page: its last row gives key and id, a last common prefix the key only. */
function nextMarkers<R>(page: Page<R>, keyOf: (r: R) => string, idOf: (r: R) => string): { key?: string; id?: string } {
  if (!page.last) return {};
  if ('row' in page.last) return { key: keyOf(page.last.row), id: idOf(page.last.row) };
  return { key: page.last.prefix };
}

/** One record a replica holds for a version: the version itself, or (no `version`) a tombstone. */
export interface ReplicaRecord {
  versionId: string;
  updatedTs: number;
  version?: ObjectVersion;
}

function assertHlc(ts: number): void {
  if (!Number.isSafeInteger(ts) || ts <= 0) throw new RangeError(`updatedTs must be a positive integer, got ${ts}`);
}

/** Digest leaf of a key: the first byte of its sha256. */
export function leafOf(key: string): number {
  return createHash('sha256').update(key).digest()[0];
}

function recordHash(key: string, versionId: string, updatedTs: number, deleted: boolean): Buffer {
  return createHash('sha256').update(`${key}\0${versionId}\0${updatedTs}\0${deleted ? 1 : 0}`).digest();
}

/** A bucket as nodes exchange it: the record, or (no `bucket`) a tombstone, with its write time. */
export interface BucketReplicaRecord {
  name: string;
  updatedTs: number;
  bucket?: BucketRecord;
}

/** An access key as nodes exchange it: the record, or (no `key`) a revocation, with its write time. */
export interface AccessKeyReplicaRecord {
  accessKeyId: string;
  updatedTs: number;
  key?: AccessKeyRecord;
}

/** Last writer wins between nodes; on equal times a tombstone beats a record (so a revocation is final). */
/**
 * Last writer wins between replicated records of one thing (a version, a bucket, an access key): the
 * newer write time wins; on a tie a tombstone wins over a live record, so replicas that receive a
 * delete and a write of the same time in either order end the same. The one rule every replica and
 * every gateway merge applies.
 */
export function replicaRecordWins(ts: number, isTombstone: boolean, heldTs: number, heldIsTombstone: boolean): boolean {
  if (ts !== heldTs) return ts > heldTs;
  return isTombstone && !heldIsTombstone;
}
