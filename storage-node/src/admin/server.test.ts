import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { NodeMetrics } from './metrics';
import { AdminError, AdminRoute, readJsonBody, sendJson, startAdminServer } from './server';

const TOKEN = 'test-admin-token-5f0c1e';

interface Started {
  url: string;
  port: number;
  close(): Promise<void>;
}

function captureLogger(): { logger: winston.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (d: Buffer) => lines.push(d.toString('utf8')));
  const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { logger, lines };
}

async function waitUntil(what: string, cond: () => boolean, deadlineMs = 5_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return ((await res.json()) as { error: { code: string; message: string } }).error;
}

describe('admin server', () => {
  let servers: Started[] = [];
  let ready: { ready: boolean; reason?: string };
  let metrics: NodeMetrics;
  let logs: ReturnType<typeof captureLogger>;

  const extraRoutes: AdminRoute[] = [
    { method: 'POST', path: '/v1/echo', auth: true, handler: async (req, res) => sendJson(res, 200, { got: await readJsonBody(req) }) },
    { method: 'GET', path: /^\/v1\/buckets\/([a-z0-9-]+)$/, auth: true, handler: async (_req, res, m) => sendJson(res, 200, { bucket: m?.[1] }) },
    { method: 'GET', path: '/v1/missing', auth: true, handler: async () => { throw new AdminError(404, 'NoSuchBucket', 'no such bucket'); } },
    { method: 'GET', path: '/v1/crash', auth: false, handler: async () => { throw new Error('secret internal detail'); } },
  ];

  async function start(token: string | undefined = TOKEN): Promise<Started> {
    const s = await startAdminServer({ host: '127.0.0.1', port: 0, token, metrics, isReady: () => ready, logger: logs.logger, routes: extraRoutes });
    const started = { url: `http://127.0.0.1:${s.port}`, port: s.port, close: () => s.close() };
    servers.push(started);
    return started;
  }

  beforeEach(() => {
    ready = { ready: true };
    metrics = new NodeMetrics();
    logs = captureLogger();
  });
  afterEach(async () => {
    for (const s of servers) await s.close();
    servers = [];
  });

  it('answers /health with ok and a request id', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
    assert.match(res.headers.get('x-request-id') ?? '', /^[0-9a-f]{16}$/);
  });

  it('keeps a well-formed x-request-id from the caller', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/health`, { headers: { 'x-request-id': 'op-42.abc' } });
    await res.arrayBuffer();
    assert.equal(res.headers.get('x-request-id'), 'op-42.abc');
  });

  it('answers /ready with 503 and the reason while not ready, 200 once ready', async () => {
    const s = await start();
    ready = { ready: false, reason: 'audit log behind' };
    const notReady = await fetch(`${s.url}/ready`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { status: 'not ready', reason: 'audit log behind' });
    ready = { ready: true };
    const res = await fetch(`${s.url}/ready`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ready' });
  });

  it('serves Prometheus text with the request counters after observeRequest', async () => {
    const s = await start();
    metrics.observeRequest('PutObject', 200, 12, 1000, 0);
    metrics.observeRequest('PutObject', 200, 8, 24, 0);
    metrics.observeRequest('GetObject', 404, 1, 0, 300);
    const res = await fetch(`${s.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^archipel_s3_requests_total\{operation="PutObject",status="200"\} 2$/m);
    assert.match(text, /^archipel_s3_requests_total\{operation="GetObject",status="404"\} 1$/m);
    assert.match(text, /^archipel_s3_bytes_in_total\{operation="PutObject"\} 1024$/m);
    assert.match(text, /^archipel_s3_request_duration_seconds_count\{operation="PutObject"\} 2$/m);
    assert.match(text, /^process_resident_memory_bytes \d+/m);
  });

  it('refuses a protected route with 401 without a token or with a wrong one', async () => {
    const s = await start();
    const none = await fetch(`${s.url}/v1/buckets/b1`);
    assert.equal(none.status, 401);
    assert.equal((await errorOf(none)).code, 'Unauthorized');
    const wrong = await fetch(`${s.url}/v1/buckets/b1`, { headers: { authorization: `Bearer ${TOKEN}x` } });
    assert.equal(wrong.status, 401);
    await wrong.arrayBuffer();
    const basic = await fetch(`${s.url}/v1/buckets/b1`, { headers: { authorization: `Basic ${TOKEN}` } });
    assert.equal(basic.status, 401);
    await basic.arrayBuffer();
    const ok = await fetch(`${s.url}/v1/buckets/b1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { bucket: 'b1' });
  });

  it('refuses every protected route when no token is configured', async () => {
    const s = await start(undefined);
    const res = await fetch(`${s.url}/v1/buckets/b1`, { headers: { authorization: 'Bearer ' } });
    assert.equal(res.status, 401);
    await res.arrayBuffer();
  });

  it('reads JSON bodies up to 1 MiB and answers 413 above', async () => {
    const s = await start();
    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const small = await fetch(`${s.url}/v1/echo`, { method: 'POST', headers: auth, body: JSON.stringify({ a: 1 }) });
    assert.equal(small.status, 200);
    assert.deepEqual(await small.json(), { got: { a: 1 } });
    const big = JSON.stringify({ blob: 'x'.repeat(2 * 1024 * 1024) });
    const res = await fetch(`${s.url}/v1/echo`, { method: 'POST', headers: auth, body: big });
    assert.equal(res.status, 413);
    assert.equal((await errorOf(res)).code, 'BodyTooLarge');
  });

  it('answers 413 for an over-large body sent without a length', async () => {
    const s = await start();
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 6; i++) c.enqueue(chunk);
        c.close();
      },
    });
    const res = await fetch(`${s.url}/v1/echo`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 413);
    await res.arrayBuffer();
  });

  it('answers 400 for a body that is not JSON', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/v1/echo`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(res.status, 400);
    assert.equal((await errorOf(res)).code, 'InvalidJson');
  });

  it('answers 404 for an unknown route and 405 with Allow for a wrong method', async () => {
    const s = await start();
    const missing = await fetch(`${s.url}/nowhere`);
    assert.equal(missing.status, 404);
    assert.equal((await errorOf(missing)).code, 'NotFound');
    const wrong = await fetch(`${s.url}/health`, { method: 'DELETE' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'GET');
    assert.equal((await errorOf(wrong)).code, 'MethodNotAllowed');
  });

  it('renders an AdminError thrown by a handler with its own status and code', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/v1/missing`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 404);
    assert.deepEqual(await errorOf(res), { code: 'NoSuchBucket', message: 'no such bucket' });
  });

  it('answers 500 without internal detail when a handler fails', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/v1/crash`);
    assert.equal(res.status, 500);
    const err = await errorOf(res);
    assert.equal(err.code, 'InternalError');
    assert.doesNotMatch(err.message, /secret internal detail/);
  });

  it('logs one debug line per request and never the token', async () => {
    const s = await start();
    for (const t of [TOKEN, `${TOKEN}-wrong`]) {
      const res = await fetch(`${s.url}/v1/buckets/b2?token=${t}`, { headers: { authorization: `Bearer ${t}` } });
      await res.arrayBuffer();
    }
    await waitUntil('two request log lines', () => logs.lines.filter((l) => l.includes('admin request')).length === 2);
    const lines = logs.lines.filter((l) => l.includes('admin request')).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.map((l) => [l.level, l.path, l.status]), [['debug', '/v1/buckets/b2', 200], ['debug', '/v1/buckets/b2', 401]]);
    for (const l of logs.lines) assert.equal(l.includes(TOKEN), false, `token in log line ${l}`);
  });

  it('frees its port on close()', async () => {
    const s = await start();
    const res = await fetch(`${s.url}/health`); // leaves a keep-alive connection open
    await res.arrayBuffer();
    await s.close();
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.listen(s.port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => again.close(() => resolve()));
  });
});
