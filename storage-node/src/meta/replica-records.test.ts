import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MetaStore } from './meta-store';
import { FORMAT_VERSION, MIGRATIONS, runMigrations } from './schema';
import { silentLogger } from '../util/logger';
import { bucket, TempStores, version } from './testing';

describe('meta/meta-store: replication records (last writer wins)', () => {
  const temp = new TempStores();
  afterEach(() => temp.cleanup());

  const store = (): MetaStore => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    return s;
  };
  const latestId = (s: MetaStore, key: string): string | undefined => s.getVersion('b', key)?.versionId;

  it('keeps the newer write of a version, whatever the order the replicas receive them', () => {
    const v1 = version('b', 'k', 'null', 100, { tags: [['n', '1']] });
    const v2 = version('b', 'k', 'null', 100, { tags: [['n', '2']] });
    for (const order of [[[v1, 10], [v2, 20]], [[v2, 20], [v1, 10]]] as const) {
      const s = store();
      for (const [v, t] of order) s.applyVersion(v, t);
      assert.deepEqual(s.getVersion('b', 'k', 'null')?.tags, [['n', '2']]);
      assert.deepEqual(s.recordTs('b', 'k', 'null'), { updatedTs: 20, deleted: false });
    }
  });

  it('says whether a write was applied, and returns the record it replaced so its blobs can be freed', () => {
    const s = store();
    assert.deepEqual(s.applyVersion(version('b', 'k', 'null', 100), 100), { applied: true });
    const again = s.applyVersion(version('b', 'k', 'null', 200), 200);
    assert.equal(again.applied, true);
    assert.equal(again.replaced?.ts, 100);
    assert.equal(s.applyVersion(version('b', 'k', 'null', 150), 150).applied, false, 'an older write changes nothing');
    assert.equal(s.getVersion('b', 'k')?.ts, 200);
  });

  it('derives the latest version as the newest, whichever arrived last', () => {
    const s = store();
    s.applyVersion(version('b', 'k', 'v300', 300), 300);
    s.applyVersion(version('b', 'k', 'v100', 100), 100);
    s.applyVersion(version('b', 'k', 'v200', 200), 200);
    assert.equal(latestId(s, 'k'), 'v300');
    assert.deepEqual(s.listVersions('b', { prefix: '', maxKeys: 10 }).versions.map((v) => [v.versionId, v.isLatest]),
      [['v300', true], ['v200', false], ['v100', false]]);
  });

  it('a tombstone removes a version and wins over an older write of it that arrives later', () => {
    const s = store();
    s.applyVersion(version('b', 'k', 'v1', 100), 100);
    s.applyVersion(version('b', 'k', 'v2', 200), 200);
    const t = s.applyTombstone('b', 'k', 'v2', 250);
    assert.equal(t.applied, true);
    assert.equal(t.removed?.versionId, 'v2');
    assert.equal(latestId(s, 'k'), 'v1', 'the next newest becomes latest');
    // A replica that missed the delete sends the version again: it must stay deleted.
    assert.equal(s.applyVersion(version('b', 'k', 'v2', 200), 200).applied, false);
    assert.equal(latestId(s, 'k'), 'v1');
    assert.deepEqual(s.recordTs('b', 'k', 'v2'), { updatedTs: 250, deleted: true });
    // A newer write of the same version id (a 'null' version rewritten) wins over the tombstone.
    assert.equal(s.applyVersion(version('b', 'k', 'v2', 200), 300).applied, true);
    assert.equal(latestId(s, 'k'), 'v2');
    assert.equal(s.recordTs('b', 'k', 'v2')?.deleted, false);
  });

  it('on equal write times a tombstone wins, in either order, as the gateways\' merge decides', () => {
    const a = store();
    a.applyVersion(version('b', 'k', 'v1', 100), 700);
    assert.equal(a.applyTombstone('b', 'k', 'v1', 700).applied, true);
    const b = store();
    b.applyTombstone('b', 'k', 'v1', 700);
    assert.equal(b.applyVersion(version('b', 'k', 'v1', 100), 700).applied, false);
    assert.deepEqual(a.recordTs('b', 'k', 'v1'), { updatedTs: 700, deleted: true });
    assert.deepEqual(a.recordDigests('b'), b.recordDigests('b'));
  });

  it('a tombstone for a version never seen is kept, and an older tombstone loses to a newer write', () => {
    const s = store();
    assert.deepEqual(s.applyTombstone('b', 'k', 'v9', 500), { applied: true });
    assert.equal(s.applyVersion(version('b', 'k', 'v9', 400), 400).applied, false);
    assert.equal(s.getVersion('b', 'k'), undefined);
    s.applyVersion(version('b', 'k', 'v8', 600), 700);
    assert.equal(s.applyTombstone('b', 'k', 'v8', 650).applied, false);
    assert.equal(latestId(s, 'k'), 'v8');
  });

  it('lists a key\'s records, versions newest first then tombstones', () => {
    const s = store();
    s.applyVersion(version('b', 'k', 'v1', 100), 100);
    s.applyVersion(version('b', 'k', 'v2', 200), 210);
    s.applyTombstone('b', 'k', 'v3', 300);
    const recs = s.keyRecords('b', 'k');
    assert.deepEqual(recs.map((r) => [r.versionId, r.updatedTs, r.version !== undefined]), [['v2', 210, true], ['v1', 100, true], ['v3', 300, false]]);
    assert.equal(recs[0].version?.isLatest, true);
  });

  it('replicas with the same records have the same digests, and the leaf that differs names the records to exchange', () => {
    const a = store();
    const b = store();
    for (let i = 0; i < 200; i++) {
      const v = version('b', `key-${i}`, 'null', 1000 + i);
      a.applyVersion(v, 1000 + i);
      b.applyVersion(v, 1000 + i);
    }
    a.applyTombstone('b', 'key-7', 'null', 5000);
    b.applyTombstone('b', 'key-7', 'null', 5000);
    assert.deepEqual(a.recordDigests('b'), b.recordDigests('b'));
    // b misses one write: exactly one leaf differs, and its records show what b lacks.
    a.applyVersion(version('b', 'key-42', 'null', 1042, { tags: [['x', 'y']] }), 9000);
    const da = a.recordDigests('b');
    const db = b.recordDigests('b');
    const differing = da.map((d, i) => (d === db[i] ? -1 : i)).filter((i) => i >= 0);
    assert.equal(differing.length, 1);
    const ra = a.leafRecords('b', differing[0]);
    const rb = b.leafRecords('b', differing[0]);
    const missing = ra.filter((r) => !rb.some((x) => x.key === r.key && x.versionId === r.versionId && x.updatedTs === r.updatedTs));
    assert.deepEqual(missing.map((r) => [r.key, r.updatedTs]), [['key-42', 9000]]);
    // After the exchange the replicas agree again.
    for (const r of a.keyRecords('b', 'key-42')) if (r.version) b.applyVersion(r.version, r.updatedTs);
    assert.deepEqual(a.recordDigests('b'), b.recordDigests('b'));
  });

  it('knows its newest clock time, so a restarted node writes after everything it holds', () => {
    const s = store();
    assert.equal(s.maxTimestamp(), 0);
    s.applyVersion(version('b', 'k', 'v1', 100), 900);
    s.applyVersion(version('b', 'k', 'v2', 1_500), 1_500);
    assert.equal(s.maxTimestamp(), 1_500);
    s.applyTombstone('b', 'k', 'v9', 2_000);
    assert.equal(s.maxTimestamp(), 2_000);
  });

  it('forgets old tombstones only', () => {
    const s = store();
    s.applyTombstone('b', 'old', 'null', 10, 1_000);
    s.applyTombstone('b', 'new', 'null', 20, 5_000);
    assert.equal(s.purgeTombstones(2_000), 1);
    assert.equal(s.recordTs('b', 'old', 'null'), undefined);
    assert.deepEqual(s.recordTs('b', 'new', 'null'), { updatedTs: 20, deleted: true });
  });

  it('migrates a format-1 store: existing versions get updated_ts = ts and keep their latest flag', () => {
    const file = path.join(temp.dir(), 'meta.db');
    const raw = new Database(file);
    runMigrations(raw, MIGRATIONS.slice(0, 1), silentLogger());
    raw.prepare("INSERT INTO buckets (name, owner, created_ms, region, versioning, object_lock) VALUES ('b', 'o', 1, 'r', 'Enabled', 0)").run();
    raw.prepare(`INSERT INTO versions (bucket, key, version_id, ts, is_latest, delete_marker, size, etag, last_modified_ms, headers, user_meta, blobs, tags, legal_hold, owner)
      VALUES ('b', 'k', 'v1', 123, 1, 0, 0, 'd41d8cd98f00b204e9800998ecf8427e', 1, '{}', '{}', '[]', '[]', 0, 'o')`).run();
    raw.close();
    const s = temp.open(file);
    assert.equal(s.formatVersion, FORMAT_VERSION);
    assert.deepEqual(s.recordTs('b', 'k', 'v1'), { updatedTs: 123, deleted: false });
    assert.equal(s.applyVersion(version('b', 'k', 'v1', 123), 100).applied, false, 'an older write loses against the migrated row');
    assert.equal(latestId(s, 'k'), 'v1');
  });

  it('refuses a record time that is not a positive integer', () => {
    const s = store();
    assert.throws(() => s.applyVersion(version('b', 'k', 'null', 1), 0), /positive integer/);
    assert.throws(() => s.applyTombstone('b', 'k', 'null', 1.5), /positive integer/);
  });
  describe('grid mode (enableReplication)', () => {
    let clock = 1_000;
    const gridStore = (): MetaStore => {
      const s = store();
      s.enableReplication(() => ++clock);
      return s;
    };

    it('a local delete leaves a tombstone newer than the version, so it wins on the replicas', () => {
      const s = gridStore();
      s.putVersion(version('b', 'k', 'v1', 5_000));
      s.deleteVersion('b', 'k', 'v1');
      const t = s.recordTs('b', 'k', 'v1');
      assert.equal(t?.deleted, true);
      assert.ok(t!.updatedTs > 5_000, 'newer than the write it deletes');
      const replica = store();
      replica.applyVersion(version('b', 'k', 'v1', 5_000), 5_000);
      replica.applyTombstone('b', 'k', 'v1', t!.updatedTs);
      assert.equal(replica.getVersion('b', 'k'), undefined);
    });

    it('a local change of tags or retention gives the record a newer write time', () => {
      const s = gridStore();
      s.putVersion(version('b', 'k', 'v1', 5_000));
      s.updateVersion('b', 'k', 'v1', { tags: [['a', 'b']] });
      assert.ok(s.recordTs('b', 'k', 'v1')!.updatedTs > 5_000);
    });

    it('buckets: the newer record wins, a deletion is kept as a tombstone, and an older create loses to it', () => {
      const a = gridStore();
      const recs = a.bucketRecords();
      assert.deepEqual(recs.map((r) => r.name), ['b']);
      const other = temp.open();
      assert.equal(other.applyBucket(recs[0]), true);
      assert.equal(other.getBucket('b')?.owner, 'AKOWNER');
      assert.equal(other.applyBucket(recs[0]), false, 'the same record twice changes nothing');
      a.updateBucket('b', { versioning: 'Suspended' });
      assert.equal(other.applyBucket(a.bucketRecord('b')!), true);
      assert.equal(other.getBucket('b')?.versioning, 'Suspended');
      a.deleteBucket('b');
      const tomb = a.bucketRecord('b')!;
      assert.equal(tomb.bucket, undefined);
      other.applyVersion(version('b', 'k', 'v1', 1), 1);
      assert.equal(other.applyBucket(tomb), true);
      assert.equal(other.getBucket('b'), undefined);
      assert.equal(other.getVersion('b', 'k'), undefined, 'what the node held of the bucket went with it');
      assert.equal(other.applyBucket(recs[0]), false, 'the older create does not bring it back');
    });
  });
});
