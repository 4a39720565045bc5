import assert from 'node:assert/strict';
import { TempStores, bucket } from './testing';
import type { AccessKeyRecord } from './types';

const key = (id: string, over: Partial<AccessKeyRecord> = {}): AccessKeyRecord => ({
  accessKeyId: id, secretAccessKey: `secret-of-${id}`, name: id, createdMs: 1, grants: [{ bucket: 'med-*', access: 'read' }], ...over,
});

describe('meta/meta-store: access keys with grants, replicated like buckets', () => {
  const t = new TempStores();
  afterEach(() => t.cleanup());

  it('keeps the grants of a key and replaces them with a newer write time', () => {
    const s = t.open();
    assert.equal(s.createAccessKey(key('AK1')), true);
    assert.equal(s.createAccessKey(key('AK1')), false, 'ids are not reused');
    const before = s.accessKeyRecord('AK1')!.updatedTs;
    assert.equal(s.setAccessKeyGrants('AK1', [{ bucket: 'lab', access: 'owner' }]), true);
    assert.deepEqual(s.getAccessKey('AK1')?.grants, [{ bucket: 'lab', access: 'owner' }]);
    assert.ok(s.accessKeyRecord('AK1')!.updatedTs > before);
    assert.equal(s.setAccessKeyGrants('nope', []), false);
    assert.throws(() => s.setAccessKeyGrants('AK1', [{ bucket: 'lab', access: 'all' as 'read' }]), /grants\[0\]\.access/);
  });

  it('a revoked key stays revoked: its id cannot be created again and the node config does not bring it back', () => {
    const s = t.open();
    s.createAccessKey(key('AK1'));
    assert.equal(s.deleteAccessKey('AK1'), true);
    assert.equal(s.getAccessKey('AK1'), undefined);
    assert.equal(s.createAccessKey(key('AK1')), false);
    assert.equal(s.upsertAccessKey({ accessKeyId: 'AK1', secretAccessKey: 'from-config', name: 'c', createdMs: 2 }), false);
    assert.equal(s.getAccessKey('AK1'), undefined);
  });

  it('a config key keeps the grants and write time it was given through the admin API', () => {
    const s = t.open();
    s.upsertAccessKey({ accessKeyId: 'CFG', secretAccessKey: 'one', name: 'c', createdMs: 1 });
    s.setAccessKeyGrants('CFG', [{ bucket: 'x', access: 'write' }]);
    const ts = s.accessKeyRecord('CFG')!.updatedTs;
    s.upsertAccessKey({ accessKeyId: 'CFG', secretAccessKey: 'two', name: 'c', createdMs: 1 });
    assert.deepEqual(s.getAccessKey('CFG')?.grants, [{ bucket: 'x', access: 'write' }]);
    assert.equal(s.getAccessKey('CFG')?.secretAccessKey, 'two');
    assert.equal(s.accessKeyRecord('CFG')!.updatedTs, ts);
  });

  it('nodes converge on the newest record whatever the order, and a revocation wins a tie', () => {
    let now = 1000;
    const a = t.open();
    const b = t.open();
    a.enableReplication(() => ++now);
    b.enableReplication(() => ++now);
    a.createAccessKey(key('AK1'));
    const created = a.accessKeyRecord('AK1')!;
    a.setAccessKeyGrants('AK1', [{ bucket: 'lab', access: 'write' }]);
    const changed = a.accessKeyRecord('AK1')!;
    a.deleteAccessKey('AK1');
    const revoked = a.accessKeyRecord('AK1')!;
    assert.equal(revoked.key, undefined);
    // Out of order on b: the revocation first, then the older writes lose.
    assert.equal(b.applyAccessKey(revoked), true);
    assert.equal(b.applyAccessKey(changed), false);
    assert.equal(b.applyAccessKey(created), false);
    assert.equal(b.getAccessKey('AK1'), undefined);
    assert.deepEqual(b.accessKeyRecords(), a.accessKeyRecords());
    // Same time: the tombstone wins over the record, not the other way round.
    const c = t.open();
    c.applyAccessKey({ ...changed, updatedTs: 5000 });
    assert.equal(c.applyAccessKey({ accessKeyId: 'AK1', updatedTs: 5000 }), true);
    assert.equal(c.applyAccessKey({ ...changed, updatedTs: 5000 }), false);
    assert.equal(c.getAccessKey('AK1'), undefined);
  });

  it('a bucket keeps its bound policy through a write, a replica record and a reopen', () => {
    const d = t.dir();
    const s = t.open(`${d}/m.db`);
    s.createBucket(bucket('scans', { policy: 'two-sites' }));
    s.updateBucket('scans', { versioning: 'Suspended' });
    assert.equal(s.getBucket('scans')?.policy, 'two-sites');
    const other = t.open();
    other.applyBucket(s.bucketRecord('scans')!);
    assert.equal(other.getBucket('scans')?.policy, 'two-sites');
    s.close();
    assert.equal(t.open(`${d}/m.db`).getBucket('scans')?.policy, 'two-sites');
  });
});
