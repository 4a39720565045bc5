import assert from 'node:assert/strict';
import { Gate, GateFullError } from './gate';
import { PeerHealth } from './health';

describe('rpc peer health', () => {
  let nowMs = 1_000;
  const clock = () => nowMs;
  beforeEach(() => (nowMs = 1_000));

  it('marks a peer down after three consecutive failures, not before', () => {
    const h = new PeerHealth({ now: clock });
    assert.equal(h.recordFailure('p', 'timeout', 't'), false);
    assert.equal(h.recordFailure('p', 'error', 'e'), false);
    assert.equal(h.isUp('p'), true);
    assert.equal(h.recordFailure('p', 'timeout', 't'), true);
    assert.equal(h.isUp('p'), false);
  });

  it('forgives failures once an exchange succeeds', () => {
    const h = new PeerHealth({ now: clock });
    h.recordFailure('p', 'timeout', 't');
    h.recordFailure('p', 'timeout', 't');
    h.recordSuccess('p');
    h.recordFailure('p', 'timeout', 't');
    assert.equal(h.isUp('p'), true);
  });

  it('marks a peer down at once when its connection is refused', () => {
    const h = new PeerHealth({ now: clock });
    const changes: [string, boolean][] = [];
    h.onChange((p, up) => changes.push([p, up]));
    assert.equal(h.recordFailure('p', 'refused', 'ECONNREFUSED'), true);
    assert.equal(h.isUp('p'), false);
    h.recordSuccess('p');
    assert.equal(h.isUp('p'), true);
    assert.deepEqual(changes, [['p', false], ['p', true]]);
  });

  it('allows one probe per interval while down', () => {
    const h = new PeerHealth({ now: clock, probeIntervalMs: 1000 });
    assert.equal(h.takeProbe('p'), false, 'an up peer needs no probe');
    h.recordFailure('p', 'refused', 'x');
    assert.equal(h.takeProbe('p'), false);
    assert.equal(h.msUntilProbe('p'), 1000);
    nowMs += 1000;
    assert.equal(h.takeProbe('p'), true);
    assert.equal(h.takeProbe('p'), false);
    nowMs += 999;
    assert.equal(h.takeProbe('p'), false);
    nowMs += 1;
    assert.equal(h.takeProbe('p'), true);
  });

  it('reports every tracked peer in its snapshot', () => {
    const h = new PeerHealth({ now: clock });
    h.recordSuccess('a');
    h.recordFailure('b', 'refused', 'ECONNREFUSED');
    const s = h.snapshot().sort((x, y) => x.peerId.localeCompare(y.peerId));
    assert.equal(s.length, 2);
    assert.deepEqual([s[0].peerId, s[0].up, s[1].peerId, s[1].up], ['a', true, 'b', false]);
    assert.deepEqual(s[1].lastFailure, { kind: 'refused', message: 'ECONNREFUSED', atMs: 1000 });
  });

  it('bounds the number of tracked peers', () => {
    const h = new PeerHealth({ maxPeers: 2 });
    h.recordSuccess('a');
    h.recordSuccess('b');
    assert.throws(() => h.recordSuccess('c'), RangeError);
  });
});

describe('rpc gate', () => {
  it('queues beyond the in-flight bound and refuses beyond the queue bound', async () => {
    const g = new Gate(1, 1);
    const r1 = await g.acquire(1000);
    const second = g.acquire(1000);
    await assert.rejects(g.acquire(1000), GateFullError);
    assert.equal(g.queued, 1);
    r1();
    r1(); // idempotent
    const r2 = await second;
    assert.equal(g.inFlight, 1);
    r2();
    assert.equal(g.inFlight, 0);
  });

  it('gives up on a slot after the wait bound', async () => {
    const g = new Gate(1, 4);
    const r1 = await g.acquire(1000);
    await assert.rejects(g.acquire(20), GateFullError);
    assert.equal(g.queued, 0);
    r1();
    assert.equal(g.inFlight, 0);
  });
});
