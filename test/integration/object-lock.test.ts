import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand,
  DeleteObjectsCommand, DeleteBucketCommand, CopyObjectCommand, PutBucketVersioningCommand, GetBucketVersioningCommand,
  PutObjectLockConfigurationCommand, GetObjectLockConfigurationCommand, PutObjectRetentionCommand,
  GetObjectRetentionCommand, PutObjectLegalHoldCommand, GetObjectLegalHoldCommand, ObjectLockRetentionMode,
} from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, waitFor, StartedNode } from '../helpers/node-process';

/**
 * Invariant 3 of the architecture, end to end: a version under retention or legal hold cannot be deleted or
 * overwritten by anyone, through any path the S3 API offers, until the protection ends.
 */

const DAY_MS = 86_400_000;
const sha = (b: Buffer | Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

interface SdkError {
  name: string;
  Code?: string;
  message: string;
  $metadata?: { httpStatusCode?: number };
}

async function expectS3Error(p: Promise<unknown>, code: string, status: number, why: string): Promise<void> {
  let result: unknown;
  try {
    result = await p;
  } catch (e) {
    const err = e as SdkError;
    assert.equal(err.Code ?? err.name, code, `${why}: expected ${code}, got ${err.Code ?? err.name} (${err.message})`);
    assert.equal(err.$metadata?.httpStatusCode, status, `${why}: ${code} must come with HTTP ${status}`);
    return;
  }
  assert.fail(`${why}: expected ${code}, but the request succeeded (${JSON.stringify((result as { $metadata?: unknown })?.$metadata)})`);
}

function assertStatus(r: { $metadata: { httpStatusCode?: number } }, status: number, why: string): void {
  assert.equal(r.$metadata.httpStatusCode, status, why);
}

describe('Object Lock (real node, @aws-sdk/client-s3)', function () {
  this.timeout(120_000);
  let node: StartedNode;
  let s3: S3Client;
  /** A second, valid access key that does not own the buckets. */
  let other: S3Client;
  let seq = 0;

  before(async () => {
    node = await startNode({ extraKeys: [{ accessKeyId: 'lock-other-key', secretAccessKey: 'lock-other-secret-key', name: 'other' }] });
    s3 = node.s3Client({ maxAttempts: 1 });
    other = node.s3Client({ maxAttempts: 1, credentials: { accessKeyId: 'lock-other-key', secretAccessKey: 'lock-other-secret-key' } });
  });
  after(async () => {
    await cleanupAllNodes();
  });

  async function lockBucket(): Promise<string> {
    const name = `lock-${++seq}-${crypto.randomBytes(3).toString('hex')}`;
    assertStatus(await s3.send(new CreateBucketCommand({ Bucket: name, ObjectLockEnabledForBucket: true })), 200, 'lock bucket created');
    return name;
  }

  async function read(bucket: string, key: string, versionId: string): Promise<Buffer> {
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
    assertStatus(r, 200, 'version readable');
    return Buffer.from(await r.Body!.transformToByteArray());
  }

  async function putRetained(bucket: string, key: string, data: Buffer, mode: ObjectLockRetentionMode, untilMs: number): Promise<string> {
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data, ObjectLockMode: mode, ObjectLockRetainUntilDate: new Date(untilMs) }));
    assertStatus(put, 200, 'retained put accepted');
    assert.ok(put.VersionId, 'a lock bucket is versioned');
    return put.VersionId;
  }

  it('a bucket created with Object Lock is versioned and reports lock enabled without a default rule', async () => {
    const b = await lockBucket();
    const conf = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: b }));
    assertStatus(conf, 200, 'configuration readable');
    assert.equal(conf.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
    assert.equal(conf.ObjectLockConfiguration?.Rule, undefined);
    const ver = await s3.send(new GetBucketVersioningCommand({ Bucket: b }));
    assert.equal(ver.Status, 'Enabled');
  });

  it('a COMPLIANCE version survives every delete, overwrite and weakening, by the owner and by another key', async () => {
    const b = await lockBucket();
    const data = crypto.randomBytes(256 * 1024 + 7);
    const until = Date.now() + DAY_MS;
    const vid = await putRetained(b, 'record', data, 'COMPLIANCE', until);

    const ret = await s3.send(new GetObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid }));
    assertStatus(ret, 200, 'retention readable');
    assert.equal(ret.Retention?.Mode, 'COMPLIANCE');
    assert.equal(Math.floor(ret.Retention!.RetainUntilDate!.getTime() / 1000), Math.floor(until / 1000));

    // Deleting the version itself, with and without the governance bypass, one by one and in a batch.
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'record', VersionId: vid })), 'AccessDenied', 403, 'DeleteObject by version');
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: true })), 'AccessDenied', 403, 'DeleteObject with bypass');
    for (const bypass of [false, true]) {
      const batch = await s3.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: [{ Key: 'record', VersionId: vid }] }, BypassGovernanceRetention: bypass }));
      assertStatus(batch, 200, 'a batch answers 200 with per-key results');
      assert.equal(batch.Deleted?.length ?? 0, 0, `batch (bypass ${bypass}) deleted nothing`);
      assert.equal(batch.Errors?.length, 1);
      assert.equal(batch.Errors![0].Key, 'record');
      assert.equal(batch.Errors![0].VersionId, vid);
      assert.equal(batch.Errors![0].Code, 'AccessDenied');
    }

    // Overwrites make new versions; a plain delete makes a delete marker; the retained version stays intact.
    const over = await s3.send(new PutObjectCommand({ Bucket: b, Key: 'record', Body: 'overwritten' }));
    assertStatus(over, 200, 'overwrite accepted as a new version');
    assert.notEqual(over.VersionId, vid);
    const copied = await s3.send(new CopyObjectCommand({ Bucket: b, Key: 'record', CopySource: `${b}/record?versionId=${encodeURIComponent(over.VersionId!)}`, MetadataDirective: 'REPLACE' }));
    assertStatus(copied, 200, 'copy onto the key accepted as a new version');
    assert.notEqual(copied.VersionId, vid);
    const marker = await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'record' }));
    assertStatus(marker, 204, 'a delete without version id adds a delete marker');
    assert.equal(marker.DeleteMarker, true);
    assert.equal(sha(await read(b, 'record', vid)), sha(data), 'the retained version reads back byte for byte');

    // Retention can be extended, never shortened, removed or turned into GOVERNANCE.
    const later = new Date(until + DAY_MS);
    for (const bypass of [false, true]) {
      await expectS3Error(s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: bypass, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(until - 3_600_000) } })),
        'AccessDenied', 403, `shortening (bypass ${bypass})`);
      await expectS3Error(s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: bypass, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: later } })),
        'AccessDenied', 403, `COMPLIANCE to GOVERNANCE (bypass ${bypass})`);
      await expectS3Error(s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: bypass, Retention: {} })),
        'AccessDenied', 403, `removal (bypass ${bypass})`);
    }
    assertStatus(await s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: later } })), 200, 'extending is allowed');
    const extended = await s3.send(new GetObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid }));
    assert.equal(Math.floor(extended.Retention!.RetainUntilDate!.getTime() / 1000), Math.floor(later.getTime() / 1000));

    // Another valid key gets nowhere either.
    await expectS3Error(other.send(new DeleteObjectCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: true })), 'AccessDenied', 403, 'other key: DeleteObject');
    await expectS3Error(other.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: [{ Key: 'record', VersionId: vid }] }, BypassGovernanceRetention: true })), 'AccessDenied', 403, 'other key: DeleteObjects');
    await expectS3Error(other.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'record', VersionId: vid, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60_000) } })),
      'AccessDenied', 403, 'other key: shortening');
    await expectS3Error(other.send(new PutObjectCommand({ Bucket: b, Key: 'record', Body: 'intruder' })), 'AccessDenied', 403, 'other key: overwrite');

    assert.equal(sha(await read(b, 'record', vid)), sha(data), 'after all attempts the retained version is unchanged');
    const head = await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'record', VersionId: vid }));
    assert.equal(head.ObjectLockMode, 'COMPLIANCE');
  });

  it('a GOVERNANCE version yields only to the bypass header', async () => {
    const b = await lockBucket();
    const until = Date.now() + DAY_MS;
    const vid = await putRetained(b, 'gov', Buffer.from('governed'), 'GOVERNANCE', until);
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'gov', VersionId: vid })), 'AccessDenied', 403, 'delete without bypass');
    const batch = await s3.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: [{ Key: 'gov', VersionId: vid }] } }));
    assertStatus(batch, 200, 'batch answered');
    assert.equal(batch.Errors?.[0]?.Code, 'AccessDenied');
    await expectS3Error(s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'gov', VersionId: vid, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(until - 3_600_000) } })),
      'AccessDenied', 403, 'shortening without bypass');
    assertStatus(await s3.send(new PutObjectRetentionCommand({ Bucket: b, Key: 'gov', VersionId: vid, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(until - 3_600_000) } })),
      200, 'shortening with bypass');
    const del = await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'gov', VersionId: vid, BypassGovernanceRetention: true }));
    assertStatus(del, 204, 'delete with bypass');
    await expectS3Error(s3.send(new GetObjectCommand({ Bucket: b, Key: 'gov', VersionId: vid })), 'NoSuchVersion', 404, 'the version is gone');
  });

  it('a legal hold blocks deletion, whatever the bypass, until it is removed', async () => {
    const b = await lockBucket();
    const put = await s3.send(new PutObjectCommand({ Bucket: b, Key: 'held', Body: 'evidence' }));
    const vid = put.VersionId!;
    await expectS3Error(s3.send(new GetObjectRetentionCommand({ Bucket: b, Key: 'held', VersionId: vid })), 'NoSuchObjectLockConfiguration', 404, 'no retention yet');
    assertStatus(await s3.send(new PutObjectLegalHoldCommand({ Bucket: b, Key: 'held', VersionId: vid, LegalHold: { Status: 'ON' } })), 200, 'hold set');
    const hold = await s3.send(new GetObjectLegalHoldCommand({ Bucket: b, Key: 'held', VersionId: vid }));
    assert.equal(hold.LegalHold?.Status, 'ON');
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'held', VersionId: vid })), 'AccessDenied', 403, 'delete under hold');
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'held', VersionId: vid, BypassGovernanceRetention: true })), 'AccessDenied', 403, 'delete under hold with bypass');
    const batch = await s3.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: [{ Key: 'held', VersionId: vid }] }, BypassGovernanceRetention: true }));
    assert.equal(batch.Errors?.[0]?.Code, 'AccessDenied');
    await expectS3Error(other.send(new PutObjectLegalHoldCommand({ Bucket: b, Key: 'held', VersionId: vid, LegalHold: { Status: 'OFF' } })), 'AccessDenied', 403, 'other key cannot lift the hold');
    assert.equal((await read(b, 'held', vid)).toString(), 'evidence');

    assertStatus(await s3.send(new PutObjectLegalHoldCommand({ Bucket: b, Key: 'held', VersionId: vid, LegalHold: { Status: 'OFF' } })), 200, 'hold lifted');
    assert.equal((await s3.send(new GetObjectLegalHoldCommand({ Bucket: b, Key: 'held', VersionId: vid }))).LegalHold?.Status, 'OFF');
    assertStatus(await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'held', VersionId: vid })), 204, 'deletable once lifted');
  });

  it('the default retention of the bucket applies to new objects, copies included', async () => {
    const b = await lockBucket();
    await expectS3Error(s3.send(new PutObjectLockConfigurationCommand({ Bucket: b, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1, Years: 1 } } } })),
      'MalformedXML', 400, 'Days and Years together');
    await expectS3Error(s3.send(new PutObjectLockConfigurationCommand({ Bucket: b, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 0 } } } })),
      'InvalidArgument', 400, 'zero days');
    const set = await s3.send(new PutObjectLockConfigurationCommand({ Bucket: b, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } } } }));
    assertStatus(set, 200, 'default rule set');
    const conf = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: b }));
    assert.deepEqual(conf.ObjectLockConfiguration?.Rule?.DefaultRetention, { Mode: 'COMPLIANCE', Days: 1 });

    const before = Date.now();
    const put = await s3.send(new PutObjectCommand({ Bucket: b, Key: 'auto', Body: 'defaulted' }));
    const after = Date.now();
    const head = await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'auto', VersionId: put.VersionId }));
    assert.equal(head.ObjectLockMode, 'COMPLIANCE');
    const untilMs = head.ObjectLockRetainUntilDate!.getTime();
    assert.ok(untilMs >= before + DAY_MS - 1000 && untilMs <= after + DAY_MS + 1000, `retain-until ${head.ObjectLockRetainUntilDate!.toISOString()} is one day after the write`);
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'auto', VersionId: put.VersionId, BypassGovernanceRetention: true })), 'AccessDenied', 403, 'defaulted version protected');

    const plain = `plain-src-${crypto.randomBytes(3).toString('hex')}`;
    await s3.send(new CreateBucketCommand({ Bucket: plain }));
    await s3.send(new PutObjectCommand({ Bucket: plain, Key: 'src', Body: 'unlocked source' }));
    const copy = await s3.send(new CopyObjectCommand({ Bucket: b, Key: 'copied', CopySource: `${plain}/src` }));
    assertStatus(copy, 200, 'copy into the lock bucket');
    const ch = await s3.send(new HeadObjectCommand({ Bucket: b, Key: 'copied', VersionId: copy.VersionId }));
    assert.equal(ch.ObjectLockMode, 'COMPLIANCE', 'the copy gets the destination default');
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'copied', VersionId: copy.VersionId })), 'AccessDenied', 403, 'copied version protected');
    assertStatus(await s3.send(new DeleteObjectCommand({ Bucket: plain, Key: 'src' })), 204, 'the unlocked source stays deletable');
  });

  it('a COMPLIANCE retention ends on its date, and the version becomes deletable', async () => {
    const b = await lockBucket();
    const untilMs = Date.now() + 3_000;
    const vid = await putRetained(b, 'short', Buffer.from('short-lived'), 'COMPLIANCE', untilMs);
    await expectS3Error(s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'short', VersionId: vid })), 'AccessDenied', 403, 'protected before its date');
    const del = await waitFor('the retention to expire and the delete to succeed', async () => {
      const r = await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'short', VersionId: vid }));
      return r.$metadata.httpStatusCode === 204 ? r : undefined;
    }, 20_000, 200);
    assert.ok(Date.now() >= untilMs - 1000, 'not deletable well before its date');
    assertStatus(del, 204, 'deleted after expiry');
    await expectS3Error(s3.send(new GetObjectCommand({ Bucket: b, Key: 'short', VersionId: vid })), 'NoSuchVersion', 404, 'gone after expiry');
  });

  it('versioning cannot be suspended on a lock bucket', async () => {
    const b = await lockBucket();
    await expectS3Error(s3.send(new PutBucketVersioningCommand({ Bucket: b, VersioningConfiguration: { Status: 'Suspended' } })), 'InvalidBucketState', 409, 'suspend');
    assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: b }))).Status, 'Enabled');
  });

  it('a plain bucket has no lock configuration and refuses object lock calls', async () => {
    const plain = `plain-${crypto.randomBytes(3).toString('hex')}`;
    await s3.send(new CreateBucketCommand({ Bucket: plain }));
    await expectS3Error(s3.send(new GetObjectLockConfigurationCommand({ Bucket: plain })), 'ObjectLockConfigurationNotFoundError', 404, 'no configuration');
    await expectS3Error(s3.send(new PutObjectLockConfigurationCommand({ Bucket: plain, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled' } })), 'InvalidBucketState', 409, 'lock needs versioning');
    await s3.send(new PutObjectCommand({ Bucket: plain, Key: 'k', Body: 'x' }));
    await expectS3Error(s3.send(new PutObjectRetentionCommand({ Bucket: plain, Key: 'k', Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + DAY_MS) } })), 'InvalidRequest', 400, 'retention');
    await expectS3Error(s3.send(new GetObjectRetentionCommand({ Bucket: plain, Key: 'k' })), 'InvalidRequest', 400, 'get retention');
    await expectS3Error(s3.send(new PutObjectLegalHoldCommand({ Bucket: plain, Key: 'k', LegalHold: { Status: 'ON' } })), 'InvalidRequest', 400, 'legal hold');
    await expectS3Error(s3.send(new GetObjectLegalHoldCommand({ Bucket: plain, Key: 'k' })), 'InvalidRequest', 400, 'get legal hold');
    await expectS3Error(s3.send(new PutObjectCommand({ Bucket: plain, Key: 'k2', Body: 'x', ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: new Date(Date.now() + DAY_MS) })), 'InvalidRequest', 400, 'put with lock headers');
  });

  it('a bucket holding retained versions cannot be deleted', async () => {
    const b = await lockBucket();
    const vid = await putRetained(b, 'kept', Buffer.from('kept'), 'COMPLIANCE', Date.now() + DAY_MS);
    // Even with the current object hidden behind a delete marker, the retained version keeps the bucket.
    await s3.send(new DeleteObjectCommand({ Bucket: b, Key: 'kept' }));
    await expectS3Error(s3.send(new DeleteBucketCommand({ Bucket: b })), 'BucketNotEmpty', 409, 'delete bucket');
    assert.equal((await read(b, 'kept', vid)).toString(), 'kept');
  });
});
