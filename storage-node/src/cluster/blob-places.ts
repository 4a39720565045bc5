// Which object each blob copy on this node belongs to: what the scrubber needs to have a corrupt copy
// replaced (the object's placement names the nodes holding good copies).
import Database from 'better-sqlite3';
import type { BlobPlace } from '../model/blob-backend';

/**
 * A small index next to the metadata: blob id → (bucket, key). Written when a copy is stored, without
 * its own fsync: it is advisory (a copy whose entry a crash lost is still read, checked and repaired
 * when a read meets it; only the scrubber's repair needs the entry).
 */
export class BlobPlaces {
  private readonly insert: Database.Statement;
  private readonly select: Database.Statement;
  private readonly remove: Database.Statement;

  private constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO places (blob_id, bucket, key) VALUES (?, ?, ?) ON CONFLICT (blob_id) DO NOTHING');
    this.select = db.prepare('SELECT bucket, key FROM places WHERE blob_id = ?');
    this.remove = db.prepare('DELETE FROM places WHERE blob_id = ?');
  }

  static open(file: string): BlobPlaces {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE IF NOT EXISTS places (blob_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL) STRICT, WITHOUT ROWID');
    return new BlobPlaces(db);
  }

  record(id: string, place: BlobPlace): void {
    this.insert.run(id, place.bucket, place.key);
  }

  get(id: string): BlobPlace | undefined {
    return this.select.get(id) as BlobPlace | undefined;
  }

  forget(id: string): void {
    this.remove.run(id);
  }

  close(): void {
    this.db.close();
  }
}
