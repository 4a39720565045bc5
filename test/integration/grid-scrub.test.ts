import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { blobVerifyPathOf, BlobVerifyReply } from '../../storage-node/src/cluster/blob-replica';
import { RpcClient } from '../../storage-node/src/rpc';
import { applyLayout, blobFileOf, blobIds, flipByte, nodeStatus, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, waitFor } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

/** A copy nobody reads goes bad on disk: the scrubber finds it and the node replaces it from a good copy. */
describe('grid: the scrubber has corrupt copies replaced', function () {
  this.timeout(120_000);
  let grid: TestGrid;

  before(async () => {
    grid = await startGridNodes([{ site: 'dc1', host: '127.0.0.101' }, { site: 'dc2', host: '127.0.0.102' }],
      { scrub: { enabled: true, intervalSeconds: 1, bytesPerSecond: 256 * 1024 * 1024 } });
    for (const n of grid.nodes) assert.equal((await applyLayout(n, grid.layout(1))).status, 200);
  });
  after(cleanupAllNodes);

  it('finds the damaged copy, reports it, and makes it good again without any read', async () => {
    const [a, b] = grid.nodes;
    const s3 = a.s3Client({ maxAttempts: 1, credentials: { accessKeyId: grid.key.accessKeyId, secretAccessKey: grid.key.secretAccessKey } });
    await s3.send(new CreateBucketCommand({ Bucket: 'archive' }));
    await s3.send(new PutObjectCommand({ Bucket: 'archive', Key: 'report.pdf', Body: crypto.randomBytes(1_500_000) }));
    const ids = blobIds(b);
    assert.equal(ids.length, 1);
    const [id] = ids;
    flipByte(blobFileOf(b, id), 32 + 1_200_000); // in the second chunk
    const rpc = new RpcClient({ nodeId: 'test-auditor', secrets: { current: grid.secret } });
    try {
      await waitFor('the corrupt copy on b replaced by a good one', async () => {
        const st = await nodeStatus<{ repair: { badCopiesReplaced: number } }>(b);
        if (st.repair.badCopiesReplaced < 1) return false;
        const v = await rpc.call<BlobVerifyReply>({ id: b.nodeId, address: `${b.host}:${b.rpcPort}` }, 'POST', blobVerifyPathOf(id), {});
        return v.ok;
      }, 60_000, 250);
    } finally {
      rpc.close();
    }
    assert.match(b.logs(), /scrub found corrupt blob/);
  });
});
