import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { blobVerifyPathOf, BlobVerifyReply } from '../../storage-node/src/cluster/blob-replica';
import { RpcClient } from '../../storage-node/src/rpc';
import { applyLayout, blobFileOf, blobIds, flipByte, nodeStatus, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, StartedNode, waitFor } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

const status = (n: StartedNode) => nodeStatus<{ repair: { owedItems: number; copiesMade: number; badCopiesReplaced: number } }>(n);

/**
 * Data placement, site loss, strict refusal, repair of owed and corrupt copies, through the S3 API of
 * one gateway (node a; until metadata is replicated between gateways, one gateway serves the test).
 */
describe('grid: object data placed per policy, kept through a site loss, repaired', function () {
  this.timeout(180_000);
  let grid: TestGrid;
  let a: StartedNode;
  let s3: S3Client;
  const objects = new Map<string, Buffer>();

  before(async () => {
    grid = await startGridNodes([
      { site: 'dc1', host: '127.0.0.71' },
      { site: 'dc2', host: '127.0.0.72' },
      { site: 'dc3', host: '127.0.0.73' },
    ], { scrub: { enabled: false } });
    const sites = ['dc1', 'dc2', 'dc3'];
    const layout = grid.layout(1, {
      policies: [
        { name: 'records', match: { buckets: ['strict-*'] }, rules: sites.map((site) => ({ site, copies: 1 })), ingest: 'strict' },
        // Matches no bucket by name: only buckets bound to it through the admin API use it.
        { name: 'dc1-only', match: { buckets: ['unmatched-*'] }, rules: [{ site: 'dc1', copies: 1 }], ingest: 'balanced' },
        { name: 'default', match: { buckets: ['*'] }, rules: sites.map((site) => ({ site, copies: 1 })), ingest: 'balanced' },
      ],
    });
    for (const n of grid.nodes) assert.equal((await applyLayout(n, layout)).status, 200);
    a = grid.nodes[0];
    s3 = a.s3Client({ maxAttempts: 1, credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } });
    await s3.send(new CreateBucketCommand({ Bucket: 'scans' }));
    await s3.send(new CreateBucketCommand({ Bucket: 'strict-records' }));
  });
  afterEach(function () {
    // The gateway's own account of a failure is the fastest way to its cause.
    if (this.currentTest?.state === 'failed') {
      const lines = a.logs().split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-15);
      console.log(`--- last warnings and errors of ${a.nodeId} ---\n${lines.join('\n')}`);
    }
  });
  after(cleanupAllNodes);

  const put = async (bucket: string, key: string, size: number): Promise<void> => {
    const body = crypto.randomBytes(size);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    objects.set(`${bucket}/${key}`, body);
  };
  const get = async (bucket: string, key: string): Promise<Buffer> =>
    Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());

  it('puts one copy of every object on one node of each site, as the policy asks', async () => {
    for (let i = 0; i < 12; i++) await put('scans', `patient-${i}.dcm`, 1 + ((i * 397_123) % (2 * 1024 * 1024)));
    for (const n of grid.nodes) assert.equal(blobIds(n).length, 12, `${n.nodeId} holds one copy of each object`);
    assert.deepEqual(blobIds(grid.nodes[1]), blobIds(a), 'the same blob ids everywhere');
    for (const [k, body] of objects) assert.ok((await get('scans', k.split('/')[1])).equals(body), k);
  });

  it('with a whole site killed, balanced writes are acknowledged with two copies and the third is owed', async () => {
    await grid.nodes[2].kill9();
    for (let i = 12; i < 20; i++) await put('scans', `patient-${i}.dcm`, 100_000 + i);
    for (const [k, body] of objects) assert.ok((await get('scans', k.split('/')[1])).equals(body), k);
    assert.equal((await status(a)).repair.owedItems, 8);
    assert.equal(blobIds(grid.nodes[1]).length, 20);
  });

  it('with a site down, a strict policy refuses the write with 503 and acknowledges nothing; reads go on', async () => {
    const err = await s3.send(new PutObjectCommand({ Bucket: 'strict-records', Key: 'r1', Body: Buffer.alloc(1000, 1) }))
      .then(() => undefined, (e: { name: string; $metadata?: { httpStatusCode?: number } }) => e);
    assert.ok(err, 'the strict write must fail');
    assert.equal(err.$metadata?.httpStatusCode, 503);
    assert.equal(err.name, 'ServiceUnavailable');
    await assert.rejects(get('strict-records', 'r1'), (e: { name: string }) => e.name === 'NoSuchKey');
    assert.ok((await get('scans', 'patient-3.dcm')).equals(objects.get('scans/patient-3.dcm')!));
  });

  it('when the site returns, every owed copy is made and all replicas hold the same blobs', async () => {
    const c = grid.nodes[2];
    await c.restart();
    await waitFor('owed copies made', async () => (await status(a)).repair.owedItems === 0, 60_000, 250);
    assert.deepEqual(blobIds(c), blobIds(a));
    assert.deepEqual(blobIds(grid.nodes[1]), blobIds(a));
    const made = (await status(a)).repair.copiesMade;
    assert.ok(made >= 8, `copies made: ${made}`);
  });

  it('serves correct bytes when its own copies are corrupt, and replaces them with good ones', async () => {
    const ids = blobIds(a);
    for (const id of ids) {
      flipByte(blobFileOf(a, id), 32 + 7); // the first data chunk (the footer of a tiny blob)
    }
    for (const [k, body] of objects) assert.ok((await get('scans', k.split('/')[1])).equals(body), `${k} read around the corrupt copy`);
    const rpc = new RpcClient({ nodeId: 'test-auditor', secrets: { current: grid.secret } });
    try {
      await waitFor('every corrupt copy replaced', async () => {
        if ((await status(a)).repair.owedItems !== 0) return false;
        for (const id of ids) {
          const v = await rpc.call<BlobVerifyReply>({ id: a.nodeId, address: `${a.host}:${a.rpcPort}` }, 'POST', blobVerifyPathOf(id), {});
          if (!v.ok) return false;
        }
        return true;
      }, 60_000, 250);
    } finally {
      rpc.close();
    }
    const replaced = (await status(a)).repair.badCopiesReplaced;
    assert.ok(replaced >= ids.length, `bad copies replaced: ${replaced} of ${ids.length}`);
  });
  it('a bucket bound to a policy through the admin API has its data placed by that policy', async () => {
    const r = await send(a.host, a.adminPort, 'POST', '/v1/buckets', { authorization: `Bearer ${a.adminToken}`, 'content-type': 'application/json' },
      JSON.stringify({ name: 'local-only', owner: grid.key.accessKeyId, policy: 'dc1-only' }));
    assert.equal(r.status, 201, r.body);
    const before = grid.nodes.map((n) => blobIds(n).length);
    for (let i = 0; i < 5; i++) await put('local-only', `doc-${i}`, 10_000 + i);
    const after = grid.nodes.map((n) => blobIds(n).length);
    assert.deepEqual(after.map((x, i) => x - before[i]), [5, 0, 0], 'only the dc1 node got copies');
    for (let i = 0; i < 5; i++) assert.ok((await get('local-only', `doc-${i}`)).equals(objects.get(`local-only/doc-${i}`)!));
  });
});
