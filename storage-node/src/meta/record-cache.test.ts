import assert from 'node:assert/strict';
import { RecordCache } from './record-cache';
import { bucket, TempStores } from './testing';

describe('meta/record-cache', () => {
  it('keeps at most maxEntries records, dropping the oldest first', () => {
    const c = new RecordCache<{ v: number }>(2);
    c.set('a', { v: 1 });
    c.set('b', { v: 2 });
    c.set('c', { v: 3 });
    assert.equal(c.size, 2);
    assert.equal(c.get('a'), undefined);
    assert.equal(c.get('c')?.v, 3);
  });

  it('freezes what it keeps, nested values included', () => {
    const c = new RecordCache<{ tags: [string, string][] }>(4);
    const r = c.set('a', { tags: [['k', 'v']] });
    assert.throws(() => { (r.tags as [string, string][]).push(['x', 'y']); }, TypeError);
  });

  describe('in the metadata store', () => {
    const temp = new TempStores();
    afterEach(() => temp.cleanup());

    it('a bucket read after a change, a delete or a re-create sees the change', () => {
      const m = temp.open();
      assert.ok(m.createBucket(bucket('b1', { versioning: 'Unversioned' })));
      assert.equal(m.getBucket('b1')?.versioning, 'Unversioned');
      m.updateBucket('b1', { versioning: 'Enabled' });
      assert.equal(m.getBucket('b1')?.versioning, 'Enabled');
      m.deleteBucket('b1');
      assert.equal(m.getBucket('b1'), undefined);
      m.createBucket(bucket('b1', { owner: 'OTHER' }));
      assert.equal(m.getBucket('b1')?.owner, 'OTHER');
    });

    it('a bucket change rolled back with its transaction is not served from the cache', () => {
      const m = temp.open();
      m.createBucket(bucket('b1', { versioning: 'Unversioned' }));
      assert.equal(m.getBucket('b1')?.versioning, 'Unversioned');
      assert.throws(() => m.transaction(() => {
        m.updateBucket('b1', { versioning: 'Enabled' });
        assert.equal(m.getBucket('b1')?.versioning, 'Enabled');
        throw new Error('roll back');
      }), /roll back/);
      assert.equal(m.getBucket('b1')?.versioning, 'Unversioned');
    });

    it('an access key read after a new secret or a delete sees it', () => {
      const m = temp.open();
      m.upsertAccessKey({ accessKeyId: 'AK1', secretAccessKey: 'one', name: 'a', createdMs: 1 });
      assert.equal(m.getAccessKey('AK1')?.secretAccessKey, 'one');
      m.upsertAccessKey({ accessKeyId: 'AK1', secretAccessKey: 'two', name: 'a', createdMs: 1 });
      assert.equal(m.getAccessKey('AK1')?.secretAccessKey, 'two');
      m.deleteAccessKey('AK1');
      assert.equal(m.getAccessKey('AK1'), undefined);
    });
  });
});
