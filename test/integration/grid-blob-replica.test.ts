import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { blobPathOf, blobUploadPathOf } from '../../storage-node/src/cluster/blob-replica';
import { RpcClient, RpcError, RpcPeer } from '../../storage-node/src/rpc';
import { applyLayout, blobFileOf, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

/** Blob copies between real nodes over the grid's signed RPC; the test process plays the gateway. */
describe('grid: blob copies stored, served and checked on replicas', function () {
  this.timeout(120_000);
  let grid: TestGrid;
  let rpc: RpcClient;
  const data = crypto.randomBytes(3 * 1024 * 1024 + 123);
  const id = crypto.randomBytes(16).toString('hex');

  before(async () => {
    grid = await startGridNodes([{ site: 'dc1', host: '127.0.0.61' }, { site: 'dc2', host: '127.0.0.62' }]);
    for (const n of grid.nodes) assert.equal((await applyLayout(n, grid.layout(1))).status, 200);
    rpc = new RpcClient({ nodeId: 'test-gateway', secrets: { current: grid.secret }, timeoutMs: 10_000 });
  });
  after(async () => {
    rpc?.close();
    await cleanupAllNodes();
  });

  const peer = (n: StartedNode): RpcPeer => ({ id: n.nodeId, address: `${n.host}:${n.rpcPort}` });
  const put = (n: StartedNode, blobId: string, body: Buffer, declared = body.length) =>
    rpc.stream(peer(n), 'PUT', blobUploadPathOf(blobId, declared), Readable.from([body.subarray(0, 1_000_000), body.subarray(1_000_000)]));
  const get = async (n: StartedNode, blobId: string, range?: [number, number]): Promise<Buffer> => {
    const res = await rpc.fetchStream(peer(n), 'GET', `${blobPathOf(blobId)}${range ? `?start=${range[0]}&end=${range[1]}` : ''}`);
    const parts: Buffer[] = [];
    for await (const c of res.body) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };

  it('stores a streamed copy under the gateway\'s blob id on each replica, durably, and says so', async () => {
    for (const n of grid.nodes) {
      const r = await put(n, id, data);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { size: data.length, existed: false });
      assert.ok(fs.existsSync(blobFileOf(n, id)));
    }
  });

  it('a retried copy is recognised, not written twice', async () => {
    const r = await put(grid.nodes[0], id, data);
    assert.deepEqual(r.json, { size: data.length, existed: true });
  });

  it('serves the whole blob and any byte range, identical to what was sent', async () => {
    assert.ok((await get(grid.nodes[1], id)).equals(data));
    const [s, e] = [1_048_570, 2_097_160];
    assert.ok((await get(grid.nodes[0], id, [s, e])).equals(data.subarray(s, e + 1)));
  });

  it('cuts the response at a corrupt chunk, so that a reader moves to another copy; the other copy is good', async () => {
    const a = grid.nodes[0];
    const file = blobFileOf(a, id);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 32 + 1024 * 1024 + 10); // inside chunk 1
    fs.closeSync(fd);
    await assert.rejects(get(a, id), 'the corrupt copy must not be delivered whole');
    assert.ok((await get(grid.nodes[1], id)).equals(data));
  });

  it('refuses a copy whose body is shorter than announced, and keeps nothing of it', async () => {
    const other = crypto.randomBytes(16).toString('hex');
    const r = await put(grid.nodes[1], other, data.subarray(0, 2_000_000), 2_500_000).then((x) => x, (e: RpcError) => e);
    assert.ok(r instanceof RpcError ? r.status === 400 : r.status === 400, `got ${r instanceof RpcError ? r.status : r.status}`);
    assert.equal(fs.existsSync(blobFileOf(grid.nodes[1], other)), false);
    await assert.rejects(get(grid.nodes[1], other), (e: unknown) => e instanceof RpcError && e.status === 404);
  });

  it('takes nothing from a sender without the grid secret', async () => {
    const n = grid.nodes[1];
    const r = await send(n.host, n.rpcPort, 'PUT', blobUploadPathOf(crypto.randomBytes(16).toString('hex'), 3), {}, 'abc');
    assert.equal(r.status, 401);
  });
});
