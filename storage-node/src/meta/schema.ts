import type Database from 'better-sqlite3';
import type { Logger } from '../util/logger';

/**
 * The on-disk format of the metadata store and its migrations. The `meta` table holds the format version;
 * each migration moves it up by one inside a transaction, and a store written by newer software is refused
 * rather than misread.
 */

export interface Migration {
  /** The format version this migration produces (previous + 1). */
  to: number;
  sql: string;
}

/**
 * Version 1. Notes:
 * - TEXT columns use the BINARY collation, i.e. UTF-8 byte order, which is S3's key order.
 * - versions: one row per version or delete marker; at most one row per key has is_latest = 1 (unique
 *   partial index), `versions_live` serves ListObjects, `versions_by_order` serves ListObjectVersions and
 *   the promotion of the next newest version.
 * - blob_refs counts references from versions and parts, kept by triggers on every path (cascades too),
 *   so the orphan-blob sweep asks one primary-key lookup per blob.
 */
const V1 = `
CREATE TABLE access_keys (
  access_key_id TEXT PRIMARY KEY,
  secret_access_key TEXT NOT NULL,
  name TEXT NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE buckets (
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  region TEXT NOT NULL,
  versioning TEXT NOT NULL CHECK (versioning IN ('Unversioned', 'Enabled', 'Suspended')),
  object_lock INTEGER NOT NULL,
  lock_default TEXT,
  tags TEXT
) STRICT;

CREATE TABLE versions (
  bucket TEXT NOT NULL REFERENCES buckets(name),
  key TEXT NOT NULL,
  version_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  is_latest INTEGER NOT NULL CHECK (is_latest IN (0, 1)),
  delete_marker INTEGER NOT NULL CHECK (delete_marker IN (0, 1)),
  size INTEGER NOT NULL,
  etag TEXT NOT NULL,
  last_modified_ms INTEGER NOT NULL,
  content_type TEXT,
  headers TEXT NOT NULL,
  user_meta TEXT NOT NULL,
  checksum TEXT,
  parts TEXT,
  blobs TEXT NOT NULL,
  tags TEXT NOT NULL,
  retention_mode TEXT,
  retention_until_ms INTEGER,
  legal_hold INTEGER NOT NULL,
  owner TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX versions_by_id ON versions (bucket, key, version_id);
CREATE INDEX versions_by_order ON versions (bucket, key, ts DESC, version_id DESC);
CREATE UNIQUE INDEX versions_latest ON versions (bucket, key) WHERE is_latest = 1;
CREATE INDEX versions_live ON versions (bucket, key) WHERE is_latest = 1 AND delete_marker = 0;

CREATE TABLE uploads (
  upload_id TEXT PRIMARY KEY,
  bucket TEXT NOT NULL REFERENCES buckets(name) ON DELETE CASCADE,
  key TEXT NOT NULL,
  initiated_ms INTEGER NOT NULL,
  owner TEXT NOT NULL,
  content_type TEXT,
  headers TEXT NOT NULL,
  user_meta TEXT NOT NULL,
  tags TEXT NOT NULL,
  checksum_algorithm TEXT,
  checksum_type TEXT,
  retention_mode TEXT,
  retention_until_ms INTEGER,
  legal_hold INTEGER NOT NULL
) STRICT;
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated_ms, upload_id);

CREATE TABLE parts (
  upload_id TEXT NOT NULL REFERENCES uploads(upload_id) ON DELETE CASCADE,
  part_number INTEGER NOT NULL,
  size INTEGER NOT NULL,
  etag TEXT NOT NULL,
  checksum TEXT,
  last_modified_ms INTEGER NOT NULL,
  blob TEXT,
  PRIMARY KEY (upload_id, part_number)
) STRICT, WITHOUT ROWID;

CREATE TABLE blob_refs (
  blob_id TEXT PRIMARY KEY,
  refs INTEGER NOT NULL CHECK (refs >= 0)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER versions_blobs_insert AFTER INSERT ON versions BEGIN
  INSERT INTO blob_refs (blob_id, refs) SELECT value ->> 'id', 1 FROM json_each(NEW.blobs) WHERE true
    ON CONFLICT (blob_id) DO UPDATE SET refs = refs + 1;
END;
CREATE TRIGGER versions_blobs_delete AFTER DELETE ON versions BEGIN
  UPDATE blob_refs SET refs = refs - (SELECT count(*) FROM json_each(OLD.blobs) j WHERE j.value ->> 'id' = blob_refs.blob_id)
    WHERE blob_id IN (SELECT value ->> 'id' FROM json_each(OLD.blobs));
  DELETE FROM blob_refs WHERE refs = 0 AND blob_id IN (SELECT value ->> 'id' FROM json_each(OLD.blobs));
END;
CREATE TRIGGER versions_blobs_immutable BEFORE UPDATE OF blobs, bucket, key, version_id ON versions BEGIN
  SELECT RAISE(ABORT, 'the data and identity of a version are immutable');
END;
CREATE TRIGGER parts_blob_insert AFTER INSERT ON parts WHEN NEW.blob IS NOT NULL BEGIN
  INSERT INTO blob_refs (blob_id, refs) VALUES (NEW.blob ->> 'id', 1)
    ON CONFLICT (blob_id) DO UPDATE SET refs = refs + 1;
END;
CREATE TRIGGER parts_blob_delete AFTER DELETE ON parts WHEN OLD.blob IS NOT NULL BEGIN
  UPDATE blob_refs SET refs = refs - 1 WHERE blob_id = OLD.blob ->> 'id';
  DELETE FROM blob_refs WHERE refs = 0 AND blob_id = OLD.blob ->> 'id';
END;
CREATE TRIGGER parts_immutable BEFORE UPDATE ON parts BEGIN
  SELECT RAISE(ABORT, 'parts are replaced, never updated');
END;
`;

/**
 * Version 2: replication records (docs/decisions/0008-cluster-design.md, "Replicated records").
 * - versions.updated_ts: the hybrid-clock time of the last change of the whole record (tags, retention,
 *   legal hold write the record again with a newer one); last writer wins between replicas. Rows written
 *   before have updated_ts = ts.
 * - tombstones: a deleted version is remembered with the time of its deletion, so that a replica that
 *   missed the delete cannot bring the version back; dropped once every replica has it.
 */
const V2 = `
ALTER TABLE versions ADD COLUMN updated_ts INTEGER NOT NULL DEFAULT 0;
UPDATE versions SET updated_ts = ts;
CREATE TABLE tombstones (
  bucket TEXT NOT NULL,
  key TEXT NOT NULL,
  version_id TEXT NOT NULL,
  updated_ts INTEGER NOT NULL,
  deleted_ms INTEGER NOT NULL,
  PRIMARY KEY (bucket, key, version_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX tombstones_by_age ON tombstones (deleted_ms);
`;

/**
 * Version 3: buckets are replicated to every node of a grid. `buckets.updated_ts` is the hybrid-clock
 * time of the bucket's last change; a deleted bucket leaves a tombstone so that a node that missed the
 * delete does not bring it back. Rows written before have updated_ts = 0 (older than any grid write).
 */
const V3 = `
ALTER TABLE buckets ADD COLUMN updated_ts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE bucket_tombstones (
  name TEXT PRIMARY KEY,
  updated_ts INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`;

/**
 * Version 4: access keys with grants, kept on every node of a grid like buckets, and buckets bound to a
 * replication policy (docs/decisions/0015-access-grants.md).
 * - access_keys.grants: JSON list of {bucket (name or glob), access: read|write|owner}; keys written
 *   before have none (they use the buckets they own, as before).
 * - access_keys.updated_ts and access_key_tombstones: last writer wins between nodes, as for buckets. A
 *   revoked key leaves a tombstone on every node, stand-alone too, so that neither a peer that missed the
 *   revocation nor the node config at the next start brings it back.
 * - buckets.policy: the name of a layout policy bound to the bucket (NULL: the policy globs decide).
 */
const V4 = `
ALTER TABLE access_keys ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
ALTER TABLE access_keys ADD COLUMN updated_ts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE access_key_tombstones (
  access_key_id TEXT PRIMARY KEY,
  updated_ts INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
ALTER TABLE buckets ADD COLUMN policy TEXT;
`;

export const MIGRATIONS: readonly Migration[] = [{ to: 1, sql: V1 }, { to: 2, sql: V2 }, { to: 3, sql: V3 }, { to: 4, sql: V4 }];

/** The format this software writes. */
export const FORMAT_VERSION = MIGRATIONS[MIGRATIONS.length - 1].to;

function readFormatVersion(db: Database.Database): number {
  const row = db.prepare("SELECT v FROM meta WHERE k = 'formatVersion'").get() as { v: string } | undefined;
  if (!row) return 0;
  const n = Number(row.v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`metadata store has an invalid format version: ${JSON.stringify(row.v)}`);
  return n;
}

/**
 * Brings the store to the newest format of `migrations`, one transaction per step; returns the format
 * version. Refuses a store whose version is newer than the software knows (a downgrade would misread it).
 */
export function runMigrations(db: Database.Database, migrations: readonly Migration[], log: Logger): number {
  migrations.forEach((m, i) => {
    if (m.to !== i + 1) throw new Error(`migration ${i} must produce version ${i + 1}, not ${m.to}`);
  });
  const latest = migrations.length;
  db.exec('CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) STRICT');
  const current = readFormatVersion(db);
  if (current > latest) {
    throw new Error(
      `metadata store format version ${current} is newer than this software supports (${latest}); ` +
        'run a newer Archipel release on this volume or restore a backup',
    );
  }
  const setVersion = db.prepare("INSERT INTO meta (k, v) VALUES ('formatVersion', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v");
  for (const m of migrations) {
    if (m.to <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      setVersion.run(String(m.to));
    })();
    log.info('metadata format migrated', { formatVersion: m.to });
  }
  return latest;
}
