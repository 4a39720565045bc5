import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { LayoutState } from '../../storage-node/src/cluster/layout-state';
import { MetaQuorum, QuorumError } from '../../storage-node/src/cluster/meta-quorum';
import { META_PATHS, MetaReplica } from '../../storage-node/src/cluster/meta-replica';
import type { MetaStore } from '../../storage-node/src/meta/meta-store';
import { version } from '../../storage-node/src/meta/testing';
import { RpcClient } from '../../storage-node/src/rpc';
import { applyLayout, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, StartedNode, waitFor } from '../helpers/node-process';

/**
 * Quorum metadata against real nodes: the test process is a gateway outside the layout (every
 * replica is remote), speaking the grid's signed RPC.
 */
describe('grid: metadata written and read at a majority of replicas', function () {
  this.timeout(120_000);
  let grid: TestGrid;
  let rpc: RpcClient;
  let quorum: MetaQuorum;
  let dir: string;

  before(async () => {
    grid = await startGridNodes([
      { site: 'dc1', host: '127.0.0.51' },
      { site: 'dc2', host: '127.0.0.52' },
      { site: 'dc3', host: '127.0.0.53' },
    ]);
    const layout = grid.layout(1);
    assert.equal((await applyLayout(grid.nodes[0], layout)).status, 200);
    for (const n of grid.nodes) assert.equal((await applyLayout(n, layout)).status, 200);
    // Buckets live on every node: made through one, passed on to the others.
    await grid.nodes[0].s3Client({ credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } }).send(new CreateBucketCommand({ Bucket: 'med' }));
    await waitFor('bucket med on every node', async () => {
      for (const n of grid.nodes) {
        const r = await n.s3Client({ maxAttempts: 1, credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } })
          .send(new HeadBucketCommand({ Bucket: 'med' })).then(() => true, () => false);
        if (!r) return false;
      }
      return true;
    }, 10_000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-gw-'));
    const state = new LayoutState(dir, 'test-gateway');
    state.apply(layout);
    rpc = new RpcClient({ nodeId: 'test-gateway', secrets: { current: grid.secret }, timeoutMs: 5_000, connectTimeoutMs: 1_000 });
    // Never used: the gateway is not a replica. Any call to it would be a bug.
    const notLocal = new MetaReplica(undefined as unknown as MetaStore);
    quorum = new MetaQuorum(state, rpc, notLocal);
  });
  after(async () => {
    rpc?.close();
    await cleanupAllNodes();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const heldBy = async (n: StartedNode, key: string): Promise<{ versionId: string; updatedTs: number }[]> =>
    (await rpc.call<{ records: { versionId: string; updatedTs: number }[] }>({ id: n.nodeId, address: `${n.host}:${n.rpcPort}` }, 'POST', META_PATHS.key, { bucket: 'med', key })).records
      .map((r) => ({ versionId: r.versionId, updatedTs: r.updatedTs }));

  it('places the metadata of a bucket on one node per site', () => {
    const sites = quorum.replicas('med').map((n) => n.site).sort();
    assert.deepEqual(sites, ['dc1', 'dc2', 'dc3']);
  });

  it('writes to every replica when all are up, and reads the version back', async () => {
    const v = version('med', 'scan-1.dcm', 'v1', 1_000);
    const out = await quorum.write('med', [{ bucket: 'med', key: v.key, versionId: v.versionId, updatedTs: 1_000, version: v }]);
    // Acknowledged at the majority; the third replica completes in the background.
    assert.ok(out.acked.length >= 2, `acked by ${out.acked.join(', ')}`);
    assert.deepEqual(out.missed, []);
    const got = await quorum.readKey('med', 'scan-1.dcm');
    assert.deepEqual(got.map((x) => [x.versionId, x.isLatest]), [['v1', true]]);
    await waitFor('every replica holds scan-1.dcm', async () => {
      for (const n of grid.nodes) if ((await heldBy(n, 'scan-1.dcm')).length !== 1) return false;
      return true;
    }, 10_000);
    for (const n of grid.nodes) assert.deepEqual(await heldBy(n, 'scan-1.dcm'), [{ versionId: 'v1', updatedTs: 1_000 }]);
  });

  it('with one site down, a write succeeds at 2 of 3 and names the replica it missed; reads see it', async () => {
    const down = grid.nodes[2];
    await down.kill9();
    const v = version('med', 'scan-2.dcm', 'v1', 2_000);
    const out = await quorum.write('med', [{ bucket: 'med', key: v.key, versionId: 'v1', updatedTs: 2_000, version: v }]);
    assert.equal(out.acked.length, 2);
    assert.deepEqual(out.missed.map((m) => m.node.id), [down.nodeId]);
    const got = await quorum.readKey('med', 'scan-2.dcm');
    assert.deepEqual(got.map((x) => x.versionId), ['v1']);
    // A delete while the site is down is acknowledged too, and wins over the version it deletes.
    await quorum.write('med', [{ bucket: 'med', key: 'scan-1.dcm', versionId: 'v1', updatedTs: 2_500 }]);
    assert.deepEqual(await quorum.readKey('med', 'scan-1.dcm'), []);
  });

  it('with two sites down, a write fails with a quorum error instead of being acknowledged', async () => {
    const second = grid.nodes[1];
    await second.kill9();
    const v = version('med', 'scan-3.dcm', 'v1', 3_000);
    await assert.rejects(quorum.write('med', [{ bucket: 'med', key: v.key, versionId: 'v1', updatedTs: 3_000, version: v }]),
      (e: unknown) => e instanceof QuorumError && /of 3 replicas, 2 needed/.test(e.message));
    await assert.rejects(quorum.readKey('med', 'scan-2.dcm'), QuorumError);
    await second.restart();
  });

  it('a replica that comes back is brought up to date (read repair, and its own anti-entropy pass)', async () => {
    const back = grid.nodes[2];
    await back.restart();
    // The gateway marked it down; its health probe finds it up again within about a second.
    await waitFor('restarted replicas seen up', async () => rpc.health.isUp(back.nodeId) && rpc.health.isUp(grid.nodes[1].nodeId), 10_000);
    assert.deepEqual(await heldBy(back, 'scan-2.dcm'), [], 'it missed the write while down');
    // A read that asks the stale replica hands it the winners (read repair); the replica also pulls what
    // it missed from the others in its background pass.
    await waitFor('read repair of scan-2.dcm and the delete of scan-1.dcm on the restarted replica', async () => {
      await quorum.readKey('med', 'scan-2.dcm');
      await quorum.readKey('med', 'scan-1.dcm');
      const two = await heldBy(back, 'scan-2.dcm');
      const one = await heldBy(back, 'scan-1.dcm');
      return two.length === 1 && one.length === 1 && one[0].updatedTs === 2_500;
    }, 20_000, 200);
  });
});
