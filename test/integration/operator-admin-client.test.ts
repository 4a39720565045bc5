import assert from 'node:assert/strict';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AdminApi, AdminApiError } from '../../operator/src/admin/client';
import { cleanupAllNodes, startNode, StartedNode } from '../helpers/node-process';

/**
 * The operator's admin client against a real storage node: what the Bucket reconciler will do
 * (a bucket, a key with grants, credentials that work with @aws-sdk/client-s3), and the refusals it
 * must tell apart (already there, absent, not empty, unreachable).
 */
describe('operator admin client: buckets and keys on a real node', function () {
  this.timeout(60_000);
  let node: StartedNode;
  let api: AdminApi;
  const clients: S3Client[] = [];

  before(async () => {
    node = await startNode({});
    api = new AdminApi(node.host, node.adminPort, node.adminToken);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await cleanupAllNodes();
  });

  it('creates a bucket and a key granted on it whose credentials work with an S3 client', async () => {
    assert.equal(await api.up(), true);
    assert.equal(await api.ready(), true);
    const b = await api.createBucket({ name: 'patients', versioning: 'Enabled', objectLock: true });
    assert.deepEqual([b.name, b.versioning, b.objectLock], ['patients', 'Enabled', true]);
    const k = await api.createKey({ name: 'app', grants: [{ bucket: 'patients', access: 'write' }] });
    assert.ok(k.secretAccessKey.length >= 20);
    const s3 = node.s3Client({ maxAttempts: 1, credentials: { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey } });
    clients.push(s3);
    await s3.send(new PutObjectCommand({ Bucket: 'patients', Key: 'scan-1', Body: 'bytes' }));
    assert.equal(await (await s3.send(new GetObjectCommand({ Bucket: 'patients', Key: 'scan-1' }))).Body!.transformToString(), 'bytes');
    assert.deepEqual((await api.key(k.accessKeyId))?.grants, [{ bucket: 'patients', access: 'write' }]);
    assert.equal((await api.bucket('patients'))?.objectLock, true);
  });

  it('tells the refusals apart: already there, absent, not empty, revoked, unreachable', async () => {
    await assert.rejects(api.createBucket({ name: 'patients' }), (e: AdminApiError) => e.status === 409 && e.code === 'BucketAlreadyExists');
    assert.equal(await api.bucket('nobody-here'), undefined);
    assert.equal(await api.key('AKNOTAKEY000'), undefined);
    await assert.rejects(api.deleteBucket('patients'), (e: AdminApiError) => e.status === 409 && /NotEmpty/.test(e.code));
    const k = await api.createKey({ name: 'temp' });
    await api.revokeKey(k.accessKeyId);
    assert.equal(await api.key(k.accessKeyId), undefined, 'a revoked key is gone');
    const wrong = new AdminApi(node.host, node.adminPort, 'not-the-token');
    await assert.rejects(wrong.status(), (e: AdminApiError) => e.status === 401);
    const closed = new AdminApi('127.0.0.1', 1, 'x', 500);
    await assert.rejects(closed.status(), (e: AdminApiError) => e.status === 0 && e.code === 'Unreachable');
    assert.equal(await closed.up(), false);
  });
});
