import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode, waitFor } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

async function metric(node: StartedNode, name: string, labels = ''): Promise<number> {
  const r = await send(node.host, node.adminPort, 'GET', '/metrics', {}, undefined);
  assert.equal(r.status, 200);
  let total = 0;
  for (const line of r.body.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{') && line.includes(labels)) total += Number(line.split(' ').pop());
  }
  return total;
}

/** The blob files of the node, found on disk (the test must not depend on the layout beyond "files under blobs/"). */
function blobFiles(dataDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'tmp') walk(p);
      } else out.push(p);
    }
  };
  walk(path.join(dataDir, 'blobs'));
  return out;
}

describe('observability: health, readiness, metrics, scrubbing', function () {
  this.timeout(90_000);
  let node: StartedNode;
  let s3: S3Client;

  before(async () => {
    node = await startNode({ configOverrides: { scrub: { intervalSeconds: 1, bytesPerSecond: 64 * 1024 * 1024 } } });
    s3 = node.s3Client({ maxAttempts: 1 });
    await s3.send(new CreateBucketCommand({ Bucket: 'watched' }));
  });
  after(async () => {
    s3?.destroy();
    await cleanupAllNodes();
  });

  it('answers /health and /ready on the admin port', async () => {
    const h = await send(node.host, node.adminPort, 'GET', '/health', {}, undefined);
    assert.equal(h.status, 200);
    const r = await send(node.host, node.adminPort, 'GET', '/ready', {}, undefined);
    assert.equal(r.status, 200);
  });

  it('reports node status with the audit head hash to the admin token only', async () => {
    const refused = await send(node.host, node.adminPort, 'GET', '/v1/status', {}, undefined);
    assert.equal(refused.status, 401);
    const r = await send(node.host, node.adminPort, 'GET', '/v1/status', { authorization: `Bearer ${node.adminToken}` }, undefined);
    assert.equal(r.status, 200, r.body);
    const st = JSON.parse(r.body) as { nodeId: string; volumeId: string; audit: { headHash: string } };
    assert.equal(st.nodeId, node.nodeId);
    assert.match(st.audit.headHash, /^[0-9a-f]{64}$/);
    assert.ok(st.volumeId);
  });

  it('counts requests by operation and status, bytes, and latency', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'watched', Key: 'm', Body: Buffer.alloc(1000, 1) }));
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: 'watched', Key: 'absent' })));
    assert.ok(await metric(node, 'archipel_s3_requests_total', 'operation="PutObject",status="200"') >= 1);
    assert.ok(await metric(node, 'archipel_s3_requests_total', 'operation="GetObject",status="404"') >= 1);
    assert.ok(await metric(node, 'archipel_s3_bytes_in_total', 'operation="PutObject"') >= 1000);
    assert.ok(await metric(node, 'archipel_s3_request_duration_seconds_count', 'operation="PutObject"') >= 1);
    assert.ok(await metric(node, 'process_resident_memory_bytes') > 0);
  });

  it('scrubs stored data, reports a corrupt chunk, and never serves it', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 7);
    const before = new Set(blobFiles(node.dataDir));
    await s3.send(new PutObjectCommand({ Bucket: 'watched', Key: 'to-rot', Body: data }));
    const added = blobFiles(node.dataDir).filter((f) => !before.has(f));
    assert.equal(added.length, 1, 'one new blob for the object');
    await waitFor('the scrubber to check bytes', async () => (await metric(node, 'archipel_scrub_bytes_total')) >= data.length, 30_000);
    // Flip one byte in the middle of the second chunk.
    const fd = fs.openSync(added[0], 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 1024 * 1024 + 4096);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, 1024 * 1024 + 4096);
    fs.closeSync(fd);
    await waitFor('the scrubber to report the corrupt blob', async () => (await metric(node, 'archipel_scrub_corrupt_blobs_total')) >= 1, 30_000);
    assert.match(node.logs(), /corrupt/);
    assert.ok(await metric(node, 'archipel_scrub_last_pass_timestamp_seconds') > 0, 'the end of a full pass is reported');
    // The reader checks each chunk before sending it: the client gets the first chunk then a cut, never bad bytes.
    const got = await s3.send(new GetObjectCommand({ Bucket: 'watched', Key: 'to-rot' }));
    await assert.rejects(got.Body!.transformToByteArray());
    assert.ok(await metric(node, 'archipel_chunk_corrupt_reads_total') >= 1);
    // A range within good chunks still reads.
    const first = await s3.send(new GetObjectCommand({ Bucket: 'watched', Key: 'to-rot', Range: 'bytes=0-1023' }));
    assert.ok(Buffer.from(await first.Body!.transformToByteArray()).equals(data.subarray(0, 1024)));
  });
});
