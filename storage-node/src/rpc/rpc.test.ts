import assert from 'node:assert/strict';
import net from 'node:net';
import { EMPTY_BODY_SHA256, sha256Hex, signRequest } from './auth';
import { PeerBusyError, PeerTimeoutError, PeerUnavailableError, RpcError } from './errors';
import { RpcRoute, startRpcServer } from './server';
import { SECRET_A, SECRET_B, SECRET_C, client, closeAll, latch, peerOf, rawRequest, serve, waitFor } from './test-helpers';

const echoRoutes: RpcRoute[] = [
  { method: 'POST', path: '/echo', handler: (req) => ({ from: req.peerId, body: req.body, x: req.query.get('x') }) },
  { method: 'GET', path: /^\/items\/([a-z0-9]+)$/, handler: (req) => ({ item: req.params[0] }) },
  { method: 'POST', path: '/conflict', handler: () => { throw new RpcError(409, 'VersionConflict', 'newer version exists'); } },
  { method: 'POST', path: '/crash', handler: () => { throw new Error('db password is hunter2'); } },
  { method: 'POST', path: '/nothing', handler: () => undefined },
];

function isRpcError(status: number, code: string) {
  return (err: unknown) => err instanceof RpcError && err.status === status && err.code === code;
}

describe('rpc server and client', () => {
  afterEach(closeAll);

  it('answers signed calls with JSON, query and path parameters', async () => {
    const s = await serve({ routes: echoRoutes });
    const c = client();
    assert.deepEqual(await c.call(peerOf(s), 'POST', '/echo?x=7', { a: [1, 'two'] }), { from: 'cli', body: { a: [1, 'two'] }, x: '7' });
    assert.deepEqual(await c.call(peerOf(s), 'GET', '/items/abc9'), { item: 'abc9' });
    assert.equal(await c.call(peerOf(s), 'POST', '/nothing', {}), undefined);
  });

  it('refuses a reserved header as the caller\'s mistake, without marking the peer down', async () => {
    const s = await serve({ routes: echoRoutes });
    const c = client();
    const { Readable } = await import('node:stream');
    await assert.rejects(c.stream(peerOf(s), 'POST', '/echo', Readable.from([Buffer.from('x')]), { 'X-Archipel-Node': 'spoof' }),
      (e: unknown) => e instanceof RangeError && /reserved/.test((e as Error).message));
    assert.equal(c.health.isUp(peerOf(s).id), true);
    assert.deepEqual(await c.call(peerOf(s), 'POST', '/echo', { ok: 1 }), { from: 'cli', body: { ok: 1 }, x: null });
  });

  it('refuses unsigned, forged, replayed-old and body-swapped requests with 401', async () => {
    const s = await serve({ routes: echoRoutes });
    const body = Buffer.from('{"a":1}');
    const sign = (over: { path?: string; dateMs?: number; secret?: string; bodySha256?: string } = {}) =>
      signRequest(over.secret ?? SECRET_A, {
        method: 'POST', pathAndQuery: over.path ?? '/echo', nodeId: 'intruder', bodySha256: over.bodySha256 ?? sha256Hex(body), dateMs: over.dateMs ?? Date.now(),
      });
    const ok = await rawRequest(s.address, 'POST', '/echo', sign(), body);
    assert.equal(ok.status, 200, 'the helper signs correctly');
    const cases: Record<string, Record<string, string>> = {
      unsigned: {},
      'signed for another path': sign({ path: '/other' }),
      'six minutes old': sign({ dateMs: Date.now() - 6 * 60 * 1000 }),
      'other secret': sign({ secret: SECRET_C }),
      'hash of another body': sign({ bodySha256: EMPTY_BODY_SHA256 }),
      'streaming claim on a JSON route': sign({ bodySha256: 'STREAMING' }),
    };
    for (const [name, headers] of Object.entries(cases)) {
      const r = await rawRequest(s.address, 'POST', '/echo', headers, body);
      assert.equal(r.status, 401, name);
      assert.equal(r.json.error.code, 'Unauthorized', name);
    }
    const outsider = client({ secrets: { current: SECRET_C } });
    await assert.rejects(outsider.call(peerOf(s), 'POST', '/echo', {}), isRpcError(401, 'Unauthorized'));
    assert.equal(outsider.health.isUp('srv'), true, 'a 401 is an answer: the peer is up');
  });

  it('accepts the previous secret during a rotation and refuses it once dropped', async () => {
    const s = await serve({ routes: echoRoutes, secrets: { current: SECRET_B, previous: SECRET_A } });
    const oldC = client({ secrets: { current: SECRET_A } });
    const newC = client({ secrets: { current: SECRET_B } });
    assert.equal((await oldC.call<{ from: string }>(peerOf(s), 'POST', '/echo', {})).from, 'cli');
    assert.equal((await newC.call<{ from: string }>(peerOf(s), 'POST', '/echo', {})).from, 'cli');
    s.setSecrets({ current: SECRET_B });
    await assert.rejects(oldC.call(peerOf(s), 'POST', '/echo', {}), isRpcError(401, 'Unauthorized'));
    oldC.setSecrets({ current: SECRET_B, previous: SECRET_A });
    assert.equal((await oldC.call<{ from: string }>(peerOf(s), 'POST', '/echo', {})).from, 'cli');
  });

  it('maps errors to statuses and codes, hiding internal details', async () => {
    const s = await serve({ routes: echoRoutes });
    const c = client();
    await assert.rejects(c.call(peerOf(s), 'POST', '/conflict', {}), (e: unknown) => isRpcError(409, 'VersionConflict')(e) && (e as RpcError).message === 'newer version exists');
    await assert.rejects(c.call(peerOf(s), 'POST', '/crash', {}), (e: unknown) => isRpcError(500, 'InternalError')(e) && !(e as Error).message.includes('hunter2'));
    await assert.rejects(c.call(peerOf(s), 'GET', '/nowhere'), isRpcError(404, 'NoSuchRoute'));
    await assert.rejects(c.call(peerOf(s), 'GET', '/echo'), isRpcError(405, 'MethodNotAllowed'));
    const bad = Buffer.from('{not json');
    const headers = signRequest(SECRET_A, { method: 'POST', pathAndQuery: '/echo', nodeId: 'n', bodySha256: sha256Hex(bad), dateMs: Date.now() });
    assert.equal((await rawRequest(s.address, 'POST', '/echo', headers, bad)).json.error.code, 'BadJson');
  });

  it('takes JSON bodies up to 8 MiB and refuses larger ones with 413', async () => {
    const s = await serve({ routes: [{ method: 'POST', path: '/len', handler: (req) => ({ len: (req.body as string).length }) }] });
    const c = client();
    const big = 'x'.repeat(7 * 1024 * 1024);
    assert.deepEqual(await c.call(peerOf(s), 'POST', '/len', big), { len: big.length });
    const tooBig = Buffer.alloc(8 * 1024 * 1024 + 1, 0x20);
    const headers = signRequest(SECRET_A, { method: 'POST', pathAndQuery: '/len', nodeId: 'n', bodySha256: sha256Hex(tooBig), dateMs: Date.now() });
    const r = await rawRequest(s.address, 'POST', '/len', headers, tooBig);
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, 'BodyTooLarge');
  });

  it('reports the layout version each peer announces, on answers and errors alike', async () => {
    let version = 41;
    const s = await serve({ routes: echoRoutes, layoutVersion: () => version });
    const seen: [string, number][] = [];
    const c = client({ onLayoutVersion: (peerId, v) => seen.push([peerId, v]) });
    await c.call(peerOf(s, 'dc1-0'), 'POST', '/echo', {});
    version = 42;
    await assert.rejects(c.call(peerOf(s, 'dc1-0'), 'POST', '/conflict', {}), RpcError);
    assert.deepEqual(seen, [['dc1-0', 41], ['dc1-0', 42]]);
  });

  it('skips a dead peer fast and takes it back within two seconds of its return', async () => {
    const s1 = await startRpcServer({ host: '127.0.0.3', port: 0, secrets: { current: SECRET_A }, nodeId: 'srv', routes: echoRoutes });
    const port = s1.port;
    const c = client();
    const peer = peerOf(s1);
    await c.call(peer, 'POST', '/echo', {});
    await s1.close(1000);
    // The first call may land on the keep-alive socket the server just closed (a reset, one
    // failure); the next connect is refused, which marks the peer down at once.
    let attempts = 0;
    while (c.health.isUp(peer.id)) {
      attempts += 1;
      assert.ok(attempts <= 2, 'down after at most one reset and one refusal');
      await assert.rejects(c.call(peer, 'POST', '/echo', {}), PeerUnavailableError);
    }
    for (let i = 0; i < 20; i++) {
      const t0 = process.hrtime.bigint();
      await assert.rejects(c.call(peer, 'POST', '/echo', {}), PeerUnavailableError);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(ms < 5, `a call to a down peer took ${ms} ms`);
    }
    const s2 = await startRpcServer({ host: '127.0.0.3', port, secrets: { current: SECRET_A }, nodeId: 'srv', routes: echoRoutes });
    try {
      const upAfterMs = await waitFor(() => c.health.isUp(peer.id), 3000, 'peer marked up');
      assert.ok(upAfterMs < 2000, `marked up ${upAfterMs} ms after it came back`);
      assert.deepEqual(await c.call(peer, 'POST', '/echo?x=1', {}), { from: 'cli', body: {}, x: '1' });
    } finally {
      await s2.close(1000);
    }
  });

  it('times out on a peer that accepts connections but never answers', async () => {
    const sockets: net.Socket[] = [];
    const mute = net.createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.4', r));
    const address = `127.0.0.4:${(mute.address() as net.AddressInfo).port}`;
    try {
      const c = client();
      const t0 = Date.now();
      await assert.rejects(c.call({ id: 'mute', address }, 'POST', '/echo', {}, { timeoutMs: 300 }), PeerTimeoutError);
      const ms = Date.now() - t0;
      assert.ok(ms >= 250 && ms < 1500, `timed out after ${ms} ms`);
      await assert.rejects(c.call({ id: 'mute', address }, 'POST', '/echo', {}, { timeoutMs: 100 }), PeerTimeoutError);
      await assert.rejects(c.call({ id: 'mute', address }, 'POST', '/echo', {}, { timeoutMs: 100 }), PeerTimeoutError);
      assert.equal(c.health.isUp('mute'), false, 'three timeouts in a row mark the peer down');
      const s0 = Date.now();
      await assert.rejects(client({ headersTimeoutMs: 200 }).fetchStream({ id: 'mute', address }, 'GET', '/blobs/x'), PeerTimeoutError);
      assert.ok(Date.now() - s0 < 1500, 'downloads wait for headers no longer than headersTimeoutMs');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => mute.close(r));
    }
  });

  it('answers 503 Busy beyond its concurrency bound', async () => {
    const gate = latch();
    const s = await serve({ maxConcurrent: 2, routes: [{ method: 'POST', path: '/hold', handler: async () => { await gate.wait; return { ok: true }; } }] });
    const c = client();
    const held = [c.call(peerOf(s), 'POST', '/hold', {}), c.call(peerOf(s), 'POST', '/hold', {})];
    await waitFor(() => s.inFlight() === 2, 2000, 'two requests in flight');
    await assert.rejects(c.call(peerOf(s), 'POST', '/hold', {}), isRpcError(503, 'Busy'));
    gate.open();
    assert.deepEqual(await Promise.all(held), [{ ok: true }, { ok: true }]);
  });

  it('fails fast with PeerBusyError when the per-peer queue is full', async () => {
    const gate = latch();
    const s = await serve({ routes: [{ method: 'POST', path: '/hold', handler: async () => { await gate.wait; return { ok: true }; } }] });
    const c = client({ maxInFlightPerPeer: 1, maxQueuedPerPeer: 1 });
    const first = c.call(peerOf(s), 'POST', '/hold', {});
    const queued = c.call(peerOf(s), 'POST', '/hold', {});
    await waitFor(() => s.inFlight() === 1, 2000, 'one request in flight');
    const t0 = Date.now();
    await assert.rejects(c.call(peerOf(s), 'POST', '/hold', {}), PeerBusyError);
    // Refused at once, not after the queue wait (30 s): a loaded machine may still take a few hundred ms.
    assert.ok(Date.now() - t0 < 1_000, `refused after ${Date.now() - t0} ms`);
    assert.deepEqual(c.stats(), [{ peerId: 'srv', address: s.address, inFlight: 1, queued: 1 }]);
    gate.open();
    assert.deepEqual(await Promise.all([first, queued]), [{ ok: true }, { ok: true }]);
    assert.equal(c.health.isUp('srv'), true);
  });

  it('answers 504 when a handler overruns its deadline', async () => {
    const s = await serve({ routes: [{ method: 'POST', path: '/stuck', timeoutMs: 100, handler: () => new Promise(() => undefined) }] });
    await assert.rejects(client().call(peerOf(s), 'POST', '/stuck', {}), isRpcError(504, 'HandlerTimeout'));
  });

  it('lets in-flight requests finish on close, then refuses connections', async () => {
    const gate = latch();
    const s = await startRpcServer({
      host: '127.0.0.2', port: 0, secrets: { current: SECRET_A }, nodeId: 'srv',
      routes: [{ method: 'POST', path: '/hold', handler: async () => { await gate.wait; return { ok: true }; } }],
    });
    const c = client();
    const inFlight = c.call(peerOf(s), 'POST', '/hold', {});
    await waitFor(() => s.inFlight() === 1, 2000, 'request in flight');
    const closed = s.close(5000);
    setTimeout(gate.open, 100);
    assert.deepEqual(await inFlight, { ok: true });
    await closed;
    await assert.rejects(c.call(peerOf(s), 'POST', '/hold', {}), PeerUnavailableError);
  });

  it('cuts requests still running at the close deadline', async () => {
    const s = await startRpcServer({
      host: '127.0.0.2', port: 0, secrets: { current: SECRET_A }, nodeId: 'srv',
      routes: [{ method: 'POST', path: '/hold', handler: () => new Promise(() => undefined) }],
    });
    const c = client();
    const stuck = c.call(peerOf(s), 'POST', '/hold', {});
    await waitFor(() => s.inFlight() === 1, 2000, 'request in flight');
    const t0 = Date.now();
    await s.close(200);
    const ms = Date.now() - t0;
    assert.ok(ms >= 150 && ms < 1500, `close took ${ms} ms`);
    await assert.rejects(stuck, PeerUnavailableError);
  });
});
