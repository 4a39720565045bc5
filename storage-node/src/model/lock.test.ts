import assert from 'node:assert/strict';
import { assertDeletable, assertRetentionChange, defaultRetention } from './lock';
import { S3Error } from '../s3/error';
import type { BucketRecord, ObjectVersion } from '../meta/types';

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

function version(p: Partial<ObjectVersion>): ObjectVersion {
  return {
    bucket: 'b', key: 'k', versionId: 'v', ts: 1, isLatest: true, deleteMarker: false, size: 1, etag: 'e',
    lastModifiedMs: NOW, headers: {}, userMeta: {}, blobs: [], tags: [], legalHold: false, owner: 'o', ...p,
  };
}

function code(fn: () => void): string {
  try {
    fn();
    return 'allowed';
  } catch (e) {
    assert.ok(e instanceof S3Error);
    return e.code;
  }
}

describe('object lock rules', () => {
  it('COMPLIANCE protects a version from everyone until it expires', () => {
    const v = version({ retention: { mode: 'COMPLIANCE', untilMs: NOW + DAY } });
    assert.equal(code(() => assertDeletable(v, false, NOW)), 'AccessDenied');
    assert.equal(code(() => assertDeletable(v, true, NOW)), 'AccessDenied');
    assert.equal(code(() => assertDeletable(v, false, NOW + DAY + 1)), 'allowed');
  });

  it('GOVERNANCE yields only to an explicit bypass', () => {
    const v = version({ retention: { mode: 'GOVERNANCE', untilMs: NOW + DAY } });
    assert.equal(code(() => assertDeletable(v, false, NOW)), 'AccessDenied');
    assert.equal(code(() => assertDeletable(v, true, NOW)), 'allowed');
  });

  it('a legal hold blocks deletion whatever the retention', () => {
    assert.equal(code(() => assertDeletable(version({ legalHold: true }), true, NOW)), 'AccessDenied');
  });

  it('COMPLIANCE retention can be extended but never shortened, removed or weakened', () => {
    const cur = { mode: 'COMPLIANCE' as const, untilMs: NOW + DAY };
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'COMPLIANCE', untilMs: NOW + 2 * DAY }, false, NOW)), 'allowed');
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'COMPLIANCE', untilMs: NOW + DAY / 2 }, true, NOW)), 'AccessDenied');
    assert.equal(code(() => assertRetentionChange(cur, undefined, true, NOW)), 'AccessDenied');
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'GOVERNANCE', untilMs: NOW + 3 * DAY }, true, NOW)), 'AccessDenied');
  });

  it('GOVERNANCE retention can be shortened only with bypass, and tightened to COMPLIANCE freely', () => {
    const cur = { mode: 'GOVERNANCE' as const, untilMs: NOW + DAY };
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'GOVERNANCE', untilMs: NOW + 1000 }, false, NOW)), 'AccessDenied');
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'GOVERNANCE', untilMs: NOW + 1000 }, true, NOW)), 'allowed');
    assert.equal(code(() => assertRetentionChange(cur, { mode: 'COMPLIANCE', untilMs: NOW + DAY }, false, NOW)), 'allowed');
  });

  it('a retain-until date in the past is refused', () => {
    assert.equal(code(() => assertRetentionChange(undefined, { mode: 'GOVERNANCE', untilMs: NOW - 1 }, false, NOW)), 'InvalidArgument');
  });

  it('default retention follows the bucket rule in days or years', () => {
    const b: BucketRecord = { name: 'b', owner: 'o', createdMs: 0, region: 'r', versioning: 'Enabled', objectLockEnabled: true, lockDefault: { mode: 'COMPLIANCE', days: 3 } };
    assert.deepEqual(defaultRetention(b, NOW), { mode: 'COMPLIANCE', untilMs: NOW + 3 * DAY });
    assert.deepEqual(defaultRetention({ ...b, lockDefault: { mode: 'GOVERNANCE', years: 1 } }, NOW), { mode: 'GOVERNANCE', untilMs: NOW + 365 * DAY });
    assert.equal(defaultRetention({ ...b, objectLockEnabled: false }, NOW), undefined);
  });
});
