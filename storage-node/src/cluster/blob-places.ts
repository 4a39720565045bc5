// Which object each blob copy on this node belongs to: what the scrubber needs to have a corrupt copy
// replaced (the object's placement names the nodes holding good copies), and what a layout transition
// lists partition by partition to move copies (docs/decisions/0016-layout-transitions.md).
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import type { BlobPlace } from '../model/blob-backend';

/**
 * The first two bytes of sha256("bucket/key"), big-endian: the data partition under any partition
 * count is `hash16 % partitionCount` (see partitionOf in layout/placement.ts), so the index does not
 * depend on the layout.
 */
export function nameHash16(bucket: string, key: string): number {
  return createHash('sha256').update(`${bucket}/${key}`, 'utf8').digest().readUInt16BE(0);
}

export interface PlacedBlob {
  id: string;
  bucket: string;
  key: string;
  hash16: number;
  /** Data bytes, or null for an entry written before sizes were kept. */
  size: number | null;
}

/** Largest page a listing returns. */
export const MAX_PLACES_PAGE = 1000;

/**
 * A small index next to the metadata: blob id → (bucket, key, name hash, size). Written when a copy is
 * stored, without its own fsync (synchronous=NORMAL in WAL mode survives a killed process, not a power
 * cut): it is advisory. A copy whose entry was lost is still read, checked and repaired when a read
 * meets it; only the scrubber's repair and the partition moves of a layout transition need the entry.
 */
export class BlobPlaces {
  private readonly insert: Database.Statement;
  private readonly select: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly countAll: Database.Statement;

  private constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO places (blob_id, bucket, key, hash16, size) VALUES (?, ?, ?, ?, ?) ON CONFLICT (blob_id) DO UPDATE SET size = coalesce(places.size, excluded.size)');
    this.select = db.prepare('SELECT bucket, key FROM places WHERE blob_id = ?');
    this.remove = db.prepare('DELETE FROM places WHERE blob_id = ?');
    this.countAll = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM places');
  }

  static open(file: string): BlobPlaces {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE IF NOT EXISTS places (blob_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL) STRICT, WITHOUT ROWID');
    const cols = (db.prepare('PRAGMA table_info(places)').all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('hash16')) {
      // Entries from before layout transitions: the name hash is computed once, here.
      db.exec('ALTER TABLE places ADD COLUMN hash16 INTEGER');
      db.exec('ALTER TABLE places ADD COLUMN size INTEGER');
      const rows = db.prepare('SELECT blob_id, bucket, key FROM places').all() as { blob_id: string; bucket: string; key: string }[];
      const set = db.prepare('UPDATE places SET hash16 = ? WHERE blob_id = ?');
      db.transaction(() => {
        for (const r of rows) set.run(nameHash16(r.bucket, r.key), r.blob_id);
      })();
    }
    db.exec('CREATE INDEX IF NOT EXISTS places_by_hash ON places (hash16, blob_id)');
    return new BlobPlaces(db);
  }

  record(id: string, place: BlobPlace, size?: number): void {
    this.insert.run(id, place.bucket, place.key, nameHash16(place.bucket, place.key), size ?? null);
  }

  get(id: string): BlobPlace | undefined {
    return this.select.get(id) as BlobPlace | undefined;
  }

  forget(id: string): void {
    this.remove.run(id);
  }

  /** Entries held, and their bytes (entries without a size count 0). */
  count(): { blobs: number; bytes: number } {
    const r = this.countAll.get() as { n: number; bytes: number };
    return { blobs: r.n, bytes: r.bytes };
  }

  /**
   * A page of the entries of some partitions (under `partitionCount`), ordered by (hash16, id); `after`
   * is the last entry of the previous page.
   */
  list(partitions: readonly number[], partitionCount: number, after: { hash16: number; id: string } | undefined, limit: number): PlacedBlob[] {
    const hashes = hashesOf(partitions, partitionCount);
    if (hashes.length === 0) return [];
    const lim = Math.max(1, Math.min(MAX_PLACES_PAGE, limit));
    const inList = hashes.join(',');
    const where = after === undefined ? '' : 'AND (hash16 > @h OR (hash16 = @h AND blob_id > @id))';
    // The hashes are integers we computed, never client text: safe to inline (and far more than the
    // 999 host parameters an old SQLite allows).
    const rows = this.db.prepare(`SELECT blob_id AS id, bucket, key, hash16, size FROM places WHERE hash16 IN (${inList}) ${where} ORDER BY hash16, blob_id LIMIT @lim`)
      .all({ h: after?.hash16 ?? 0, id: after?.id ?? '', lim }) as PlacedBlob[];
    return rows;
  }

  /** Count and bytes per partition, for the partitions asked (partitions with nothing are left out). */
  sizes(partitions: readonly number[], partitionCount: number): Map<number, { blobs: number; bytes: number }> {
    const out = new Map<number, { blobs: number; bytes: number }>();
    const hashes = hashesOf(partitions, partitionCount);
    if (hashes.length === 0) return out;
    const rows = this.db.prepare(`SELECT hash16, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM places WHERE hash16 IN (${hashes.join(',')}) GROUP BY hash16`)
      .all() as { hash16: number; n: number; bytes: number }[];
    for (const r of rows) {
      const p = r.hash16 % partitionCount;
      const cur = out.get(p) ?? { blobs: 0, bytes: 0 };
      cur.blobs += r.n;
      cur.bytes += r.bytes;
      out.set(p, cur);
    }
    return out;
  }

  /** Every entry, in (hash16, id) order, a page at a time (for the passes over all copies held). */
  *all(pageSize = MAX_PLACES_PAGE): Generator<PlacedBlob[]> {
    const stmt = this.db.prepare('SELECT blob_id AS id, bucket, key, hash16, size FROM places WHERE (hash16 > @h OR (hash16 = @h AND blob_id > @id)) ORDER BY hash16, blob_id LIMIT @lim');
    let after = { h: -1, id: '' };
    for (;;) {
      const rows = stmt.all({ ...after, lim: pageSize }) as PlacedBlob[];
      if (rows.length === 0) return;
      yield rows;
      const last = rows[rows.length - 1];
      after = { h: last.hash16, id: last.id };
    }
  }

  close(): void {
    this.db.close();
  }
}

/** The name hashes that fall in the given partitions: every h in 0..65535 with h % count in the set. */
function hashesOf(partitions: readonly number[], partitionCount: number): number[] {
  if (!Number.isInteger(partitionCount) || partitionCount < 1 || partitionCount > 65536) throw new RangeError(`bad partition count ${partitionCount}`);
  const out: number[] = [];
  for (const p of new Set(partitions)) {
    if (!Number.isInteger(p) || p < 0 || p >= partitionCount) throw new RangeError(`partition ${p} is not in 0..${partitionCount - 1}`);
    for (let h = p; h < 65536; h += partitionCount) out.push(h);
  }
  return out.sort((a, b) => a - b);
}
