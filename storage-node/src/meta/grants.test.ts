import assert from 'node:assert/strict';
import { accessIncludes, grantedAccess, grantProblems, MAX_GRANTS } from './grants';

describe('meta/grants', () => {
  it('a key gets the highest access any matching grant gives, by name or glob', () => {
    const grants = [{ bucket: 'med-*', access: 'read' as const }, { bucket: 'med-cardio', access: 'write' as const }, { bucket: 'lab', access: 'owner' as const }];
    assert.equal(grantedAccess(grants, 'med-neuro'), 'read');
    assert.equal(grantedAccess(grants, 'med-cardio'), 'write');
    assert.equal(grantedAccess(grants, 'lab'), 'owner');
    assert.equal(grantedAccess(grants, 'labs'), undefined);
    assert.equal(grantedAccess([], 'lab'), undefined);
  });

  it('write implies read and owner implies write; no access includes nothing', () => {
    assert.ok(accessIncludes('write', 'read'));
    assert.ok(accessIncludes('owner', 'write'));
    assert.ok(!accessIncludes('read', 'write'));
    assert.ok(!accessIncludes('write', 'owner'));
    assert.ok(!accessIncludes(undefined, 'read'));
  });

  it('says what is wrong with a grant list in readable sentences', () => {
    assert.deepEqual(grantProblems([{ bucket: 'med-*', access: 'read' }]), []);
    assert.deepEqual(grantProblems('x'), ['grants must be a list of {bucket, access}']);
    assert.match(grantProblems([{ bucket: 'Med', access: 'read' }])[0], /grants\[0\]\.bucket must be a bucket name or a glob/);
    assert.match(grantProblems([{ bucket: 'med', access: 'admin' }])[0], /grants\[0\]\.access must be read, write or owner/);
    assert.match(grantProblems([{ bucket: 'med', access: 'read', extra: 1 }])[0], /unknown fields: extra/);
    assert.match(grantProblems([null])[0], /must be an object/);
    assert.match(grantProblems(Array.from({ length: MAX_GRANTS + 1 }, () => ({ bucket: 'a', access: 'read' })))[0], /at most/);
  });
});
