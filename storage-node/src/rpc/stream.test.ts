import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { RpcError } from './errors';
import { RpcRoute } from './server';
import { SECRET_C, client, closeAll, peerOf, serve, waitFor } from './test-helpers';

const CHUNK = Buffer.alloc(64 * 1024);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = (i * 31 + 7) & 0xff;
const TOTAL_BYTES = 100 * 1024 * 1024;

/** 100 MiB made of one reused chunk, so the test itself holds no big buffers. */
function source(totalBytes = TOTAL_BYTES): Readable {
  let sent = 0;
  return new Readable({
    highWaterMark: CHUNK.length,
    read() {
      if (sent >= totalBytes) return void this.push(null);
      sent += CHUNK.length;
      this.push(CHUNK);
    },
  });
}

function expectedSha256(totalBytes = TOTAL_BYTES): string {
  const h = createHash('sha256');
  for (let n = 0; n < totalBytes; n += CHUNK.length) h.update(CHUNK);
  return h.digest('hex');
}

async function hashStream(s: AsyncIterable<Buffer>): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of s) {
    bytes += c.length;
    h.update(c);
  }
  return { bytes, sha256: h.digest('hex') };
}

/** Samples RSS while `work` runs and returns the peak growth over the starting value. */
async function rssGrowthBytes(work: () => Promise<void>): Promise<number> {
  global.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, process.memoryUsage.rss()) - base;
}

const MAX_RSS_GROWTH_BYTES = 48 * 1024 * 1024;

const routes: RpcRoute[] = [
  { method: 'PUT', path: /^\/blobs\/([a-z0-9]+)$/, stream: true, handler: async (req) => ({ id: req.params[0], ...(await hashStream(req.stream!)) }) },
  { method: 'GET', path: '/blobs/big', handler: async (_req, res) => res.stream(source(), { headers: { 'x-blob-size': String(TOTAL_BYTES) } }) },
  { method: 'GET', path: '/blobs/missing', handler: () => { throw new RpcError(404, 'NoSuchBlob', 'no such blob'); } },
];

describe('rpc streams', () => {
  const expected = expectedSha256();
  afterEach(closeAll);

  it('uploads a 100 MiB stream intact with bounded memory', async () => {
    const s = await serve({ routes });
    const c = client();
    let result: { status: number; json: unknown } | undefined;
    const growth = await rssGrowthBytes(async () => {
      result = await c.stream(peerOf(s), 'PUT', '/blobs/b1', source());
    });
    assert.deepEqual(result, { status: 200, json: { id: 'b1', bytes: TOTAL_BYTES, sha256: expected } });
    assert.ok(growth < MAX_RSS_GROWTH_BYTES, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
  });

  it('downloads a 100 MiB stream intact with bounded memory', async () => {
    const s = await serve({ routes });
    const c = client();
    let got: { bytes: number; sha256: string } | undefined;
    let size: string | string[] | undefined;
    const growth = await rssGrowthBytes(async () => {
      const r = await c.fetchStream(peerOf(s), 'GET', '/blobs/big');
      assert.equal(r.status, 200);
      size = r.headers['x-blob-size'];
      got = await hashStream(r.body);
    });
    assert.equal(size, String(TOTAL_BYTES));
    assert.deepEqual(got, { bytes: TOTAL_BYTES, sha256: expected });
    assert.ok(growth < MAX_RSS_GROWTH_BYTES, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
    assert.deepEqual(c.stats().map((p) => p.inFlight), [0], 'the slot is released once the body is read');
  });

  it('frees the peer slot when a download is abandoned half way', async () => {
    const s = await serve({ routes });
    const c = client({ maxInFlightPerPeer: 1, maxQueuedPerPeer: 0 });
    const r = await c.fetchStream(peerOf(s), 'GET', '/blobs/big');
    await new Promise((resolve) => r.body.once('data', resolve));
    r.body.destroy();
    await waitFor(() => c.stats()[0].inFlight === 0, 2000, 'slot released');
    await waitFor(() => s.inFlight() === 0, 2000, 'server request ended');
    assert.equal(c.health.snapshot()[0].consecutiveFailures, 0, 'giving up on a body is not a peer failure');
    const again = await c.fetchStream(peerOf(s), 'GET', '/blobs/big');
    assert.equal((await hashStream(again.body)).bytes, TOTAL_BYTES);
  });

  it('turns an error status on a download into RpcError', async () => {
    const s = await serve({ routes });
    await assert.rejects(client().fetchStream(peerOf(s), 'GET', '/blobs/missing'), (e: unknown) => e instanceof RpcError && e.status === 404 && e.code === 'NoSuchBlob');
  });

  it('refuses a streamed upload signed with another secret', async () => {
    const s = await serve({ routes });
    const c = client({ secrets: { current: SECRET_C } });
    const small = source(256 * 1024);
    await assert.rejects(c.stream(peerOf(s), 'PUT', '/blobs/b2', small), (e: unknown) => e instanceof RpcError && e.status === 401);
    assert.ok(small.destroyed || small.readableEnded, 'the source is not left hanging');
  });
});
