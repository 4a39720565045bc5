import assert from 'node:assert/strict';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { META_PATHS } from '../../storage-node/src/cluster/meta-replica';
import { RpcClient, RpcError } from '../../storage-node/src/rpc';
import { applyLayout, layoutOf, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, waitFor } from '../helpers/node-process';
import { errorCode, send } from '../helpers/signed-http';

describe('grid: layout applied through the admin API and passed on between nodes', function () {
  this.timeout(120_000);
  let grid: TestGrid;

  before(async () => {
    grid = await startGridNodes([
      { site: 'dc1', host: '127.0.0.41' },
      { site: 'dc2', host: '127.0.0.42' },
      { site: 'dc3', host: '127.0.0.43' },
    ], { log: { level: 'info', format: 'json' } });
  });
  after(cleanupAllNodes);

  const versions = async (): Promise<number[]> => Promise.all(grid.nodes.map(async (n) => (await layoutOf(n))?.version ?? 0));

  it('refuses S3 requests with 503 ServiceUnavailable until the node has a layout', async () => {
    const [a] = grid.nodes;
    const s3 = a.s3Client({ maxAttempts: 1, credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } });
    const err = await s3.send(new ListBucketsCommand({})).then(() => undefined, (e: { name: string; $metadata?: { httpStatusCode?: number }; message: string }) => e);
    assert.ok(err, 'ListBuckets must fail without a layout');
    assert.equal(err.$metadata?.httpStatusCode, 503);
    assert.equal(err.name, 'ServiceUnavailable');
    assert.match(err.message, /layout/);
  });

  it('refuses to serve data to its peers too until it has a layout, and says why', async () => {
    const [a] = grid.nodes;
    const rpc = new RpcClient({ nodeId: grid.nodes[1].nodeId, secrets: { current: grid.secret } });
    try {
      await assert.rejects(rpc.call({ id: a.nodeId, address: `${a.host}:${a.rpcPort}` }, 'POST', META_PATHS.key, { bucket: 'b', key: 'k' }),
        (e: unknown) => e instanceof RpcError && e.status === 503 && e.code === 'NoLayout' && /no layout/.test(e.message));
    } finally {
      rpc.close();
    }
  });

  it('refuses a broken layout with 422 and a readable reason, and an unauthenticated one with 401', async () => {
    const [a] = grid.nodes;
    const broken = grid.layout(1);
    broken.nodes[1].site = 'nowhere';
    const r = await applyLayout(a, broken);
    assert.equal(r.status, 422);
    assert.match(JSON.stringify(r.body), /unknown site \\"nowhere\\"/);
    const denied = await applyLayout(a, grid.layout(1), 'wrong-token');
    assert.equal(denied.status, 401);
    assert.deepEqual(await versions(), [0, 0, 0], 'nothing was applied anywhere');
  });

  it('applies a layout on one node and every node has it shortly after', async () => {
    const [a] = grid.nodes;
    const r = await applyLayout(a, grid.layout(1));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { version: 1, applied: true });
    await waitFor('every node at layout version 1', async () => (await versions()).every((v) => v === 1), 10_000);
    // Now S3 answers (no bucket yet).
    const s3 = grid.nodes[2].s3Client({ maxAttempts: 1, credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } });
    const out = await s3.send(new ListBucketsCommand({}));
    assert.equal(out.$metadata.httpStatusCode, 200);
  });

  it('ignores an older or equal version, and keeps the newest', async () => {
    const [, b] = grid.nodes;
    const r = await applyLayout(b, grid.layout(1));
    assert.deepEqual(r.body, { version: 1, applied: false });
  });

  it('keeps its layout across a SIGKILL, and catches up on versions applied while it was down', async () => {
    const [a, b, c] = grid.nodes;
    await b.kill9();
    assert.equal((await applyLayout(c, grid.layout(2))).status, 200);
    await waitFor('node a at version 2', async () => (await layoutOf(a))?.version === 2, 10_000);
    await b.restart();
    // b comes back with version 1 from its disk, then gets version 2 from a peer (gossip), not from us.
    await waitFor('restarted node b at version 2', async () => (await layoutOf(b))?.version === 2, 15_000);
    assert.deepEqual(await versions(), [2, 2, 2]);
  });

  it('accepts nothing on the RPC port that is not signed with the grid secret', async () => {
    const [a] = grid.nodes;
    const r = await send(a.host, a.rpcPort, 'GET', '/_rpc/layout', {}, undefined);
    assert.equal(r.status, 401);
    assert.equal(errorCode(r.body), undefined, 'an RPC error is JSON, not S3 XML');
    assert.match(r.body, /Unauthorized/);
  });

  it('reports the layout version and its peers in the admin status', async () => {
    const [a] = grid.nodes;
    const r = await send(a.host, a.adminPort, 'GET', '/v1/status', { authorization: `Bearer ${a.adminToken}` }, undefined);
    assert.equal(r.status, 200);
    const st = JSON.parse(r.body) as {
      grid: { layoutVersion: number; inLayout: boolean; peers: { id: string; up: boolean }[] };
      repair: { owedItems: number; owedBytes: number };
    };
    assert.deepEqual([st.repair.owedItems, st.repair.owedBytes], [0, 0], 'nothing is owed in a grid that has stored nothing');
    assert.equal(st.grid.layoutVersion, 2);
    assert.equal(st.grid.inLayout, true);
    assert.deepEqual(st.grid.peers.map((p) => p.id).sort(), grid.nodes.slice(1).map((n) => n.nodeId).sort());
  });
});
