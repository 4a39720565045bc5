import type Database from 'better-sqlite3';
import type { KeyBound, ListSource } from './listing';
import { tupleKey, tuplePos, UPLOAD_COLUMNS, VERSION_COLUMNS, UploadPos, UploadRow, VersionPos, VersionTuple } from './rows';

/**
 * The three listings as ordered range reads over their indexes. Each query has a fixed shape per
 * (inclusive, bounded) pair so that the statement cache holds a handful of prepared statements.
 */

/** A cached prepared statement; raw: rows as arrays (see VERSION_COLUMN_LIST). */
export type Prepare = (sql: string, raw?: boolean) => Database.Statement;

function keyRange(from: KeyBound, upper: string | undefined): string {
  return `key ${from.inclusive ? '>=' : '>'} ?${upper === undefined ? '' : ' AND key < ?'}`;
}

function params(bucket: string, from: KeyBound, upper: string | undefined, limit: number): unknown[] {
  return upper === undefined ? [bucket, from.key, limit] : [bucket, from.key, upper, limit];
}

/** Latest versions that are not delete markers, by key (index versions_live). */
export function liveObjectSource(prepare: Prepare, bucket: string): ListSource<VersionTuple, VersionPos> {
  const fromKey = (from: KeyBound, upper: string | undefined, limit: number): VersionTuple[] =>
    prepare(
      `SELECT ${VERSION_COLUMNS} FROM versions WHERE bucket = ? AND is_latest = 1 AND delete_marker = 0 ` +
        `AND ${keyRange(from, upper)} ORDER BY key LIMIT ?`,
      true,
    ).all(...params(bucket, from, upper, limit)) as VersionTuple[];
  return {
    keyOf: tupleKey,
    positionOf: tuplePos,
    fromKey,
    // One row per key: the rest of the key is empty.
    afterRow: (pos, upper, limit) => fromKey({ key: pos.key, inclusive: false }, upper, limit),
  };
}

/** Every version and delete marker: key ascending, then newest first (index versions_by_order). */
export function versionSource(prepare: Prepare, bucket: string): ListSource<VersionTuple, VersionPos> {
  const fromKey = (from: KeyBound, upper: string | undefined, limit: number): VersionTuple[] =>
    prepare(
      `SELECT ${VERSION_COLUMNS} FROM versions WHERE bucket = ? AND ${keyRange(from, upper)} ` +
        'ORDER BY key, ts DESC, version_id DESC LIMIT ?',
      true,
    ).all(...params(bucket, from, upper, limit)) as VersionTuple[];
  return {
    keyOf: tupleKey,
    positionOf: tuplePos,
    fromKey,
    afterRow: (pos, upper, limit) => {
      const rest = prepare(
        `SELECT ${VERSION_COLUMNS} FROM versions WHERE bucket = ? AND key = ? AND (ts, version_id) < (?, ?) ` +
          'ORDER BY ts DESC, version_id DESC LIMIT ?',
        true,
      ).all(bucket, pos.key, pos.ts, pos.version_id, limit) as VersionTuple[];
      if (rest.length === limit) return rest;
      return rest.concat(fromKey({ key: pos.key, inclusive: false }, upper, limit - rest.length));
    },
  };
}

/** Multipart uploads: key ascending, then initiation time ascending, upload id breaking ties (index uploads_by_key). */
export function uploadSource(prepare: Prepare, bucket: string): ListSource<UploadRow, UploadPos> {
  const fromKey = (from: KeyBound, upper: string | undefined, limit: number): UploadRow[] =>
    prepare(
      `SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE bucket = ? AND ${keyRange(from, upper)} ` +
        'ORDER BY key, initiated_ms, upload_id LIMIT ?',
    ).all(...params(bucket, from, upper, limit)) as UploadRow[];
  return {
    keyOf: (r) => r.key,
    positionOf: (r) => r,
    fromKey,
    afterRow: (pos, upper, limit) => {
      const rest = prepare(
        `SELECT ${UPLOAD_COLUMNS} FROM uploads WHERE bucket = ? AND key = ? AND (initiated_ms, upload_id) > (?, ?) ` +
          'ORDER BY initiated_ms, upload_id LIMIT ?',
      ).all(bucket, pos.key, pos.initiated_ms, pos.upload_id, limit) as UploadRow[];
      if (rest.length === limit) return rest;
      return rest.concat(fromKey({ key: pos.key, inclusive: false }, upper, limit - rest.length));
    },
  };
}
