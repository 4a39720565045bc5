import assert from 'node:assert/strict';
import { FakeClock, flushMicrotasks } from './clock';
import { QueueFullError, RunReport, WorkQueue, WorkQueueOptions, backoffDelayMs, TokenBucket } from './work-queue';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Waits (in real time, bounded) until `condition` holds; event-loop turns let the workers move. */
async function until(what: string, condition: () => boolean, deadlineMs = 2_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await flushMicrotasks();
  }
}

/**
 * A handler whose runs the test finishes by hand: `runs` records every start, `finish(key)` settles
 * the oldest open run of key (ok or failing), `maxConcurrent` tracks overlap per key.
 */
function scriptedHandler() {
  const open = new Map<string, Deferred[]>();
  const runs: string[] = [];
  const active = new Map<string, number>();
  const maxConcurrent = new Map<string, number>();
  const signals = new Map<string, AbortSignal>();
  let totalActive = 0;
  let maxTotalActive = 0;
  const handler = async (key: string, signal: AbortSignal): Promise<void> => {
    runs.push(key);
    signals.set(key, signal);
    active.set(key, (active.get(key) ?? 0) + 1);
    maxConcurrent.set(key, Math.max(maxConcurrent.get(key) ?? 0, active.get(key)!));
    totalActive++;
    maxTotalActive = Math.max(maxTotalActive, totalActive);
    const d = deferred();
    open.set(key, [...(open.get(key) ?? []), d]);
    try {
      await d.promise;
    } finally {
      active.set(key, active.get(key)! - 1);
      totalActive--;
    }
  };
  const settle = (key: string, err?: Error): void => {
    const list = open.get(key) ?? [];
    const d = list.shift();
    if (!d) throw new Error(`no open run of ${key}`);
    if (err) d.reject(err);
    else d.resolve();
  };
  return {
    handler,
    runs,
    maxConcurrent,
    signals,
    maxTotalActive: () => maxTotalActive,
    openRuns: (key: string) => (open.get(key) ?? []).length,
    finish: (key: string) => settle(key),
    fail: (key: string, message = 'boom') => settle(key, new Error(message)),
    count: (key: string) => runs.filter((k) => k === key).length,
  };
}

describe('WorkQueue', () => {
  let clock: FakeClock;
  let queue: WorkQueue;
  let reports: RunReport[];
  let rejected: QueueFullError[];

  const make = (overrides: Partial<WorkQueueOptions> = {}): WorkQueue => {
    reports = [];
    rejected = [];
    queue = new WorkQueue({
      name: 'Grid',
      workers: 2,
      maxKeys: 100,
      baseDelayMs: 1_000,
      maxDelayMs: 300_000,
      rateLimit: { perSecond: 1_000, burst: 1_000 },
      clock,
      observer: { runDone: (r) => reports.push(r), rejected: (_k, e) => rejected.push(e) },
      ...overrides,
    });
    return queue;
  };

  beforeEach(() => {
    clock = new FakeClock();
  });

  afterEach(async () => {
    const stopping = queue?.shutdown({ timeoutMs: 0, abort: true });
    await clock.advance(0);
    await stopping;
  });

  it('never runs one key twice at once: an add during a run makes exactly one more run after it', async () => {
    const h = scriptedHandler();
    make({ workers: 4 }).start(h.handler);
    assert.equal(queue.add('ns/a'), 'queued');
    await until('first run', () => h.count('ns/a') === 1);
    for (let i = 0; i < 5; i++) assert.equal(queue.add('ns/a'), 'dirty');
    await flushMicrotasks();
    assert.equal(h.count('ns/a'), 1, 'no second run while the first is going');
    h.finish('ns/a');
    await until('the run after', () => h.count('ns/a') === 2);
    h.finish('ns/a');
    await until('idle', () => queue.stats().keys === 0);
    assert.equal(h.count('ns/a'), 2);
    assert.equal(h.maxConcurrent.get('ns/a'), 1);
  });

  it('claims a key in the same step it hands it to a worker, so an immediate second add cannot start a parallel run', async () => {
    const h = scriptedHandler();
    make({ workers: 3 }).start(h.handler);
    await flushMicrotasks(); // the workers are idle and waiting
    assert.equal(queue.add('ns/a'), 'queued');
    assert.equal(queue.add('ns/a'), 'dirty', 'already claimed by a worker before its continuation ran');
    await until('first run', () => h.count('ns/a') === 1);
    h.finish('ns/a');
    await until('second run', () => h.count('ns/a') === 2);
    h.finish('ns/a');
    await until('idle', () => queue.stats().keys === 0);
    assert.equal(h.maxConcurrent.get('ns/a'), 1);
  });

  it('keeps a waiting key once however many adds it gets', async () => {
    const h = scriptedHandler();
    make({ workers: 1 }).start(h.handler);
    queue.add('ns/busy');
    await until('busy runs', () => h.count('ns/busy') === 1);
    assert.equal(queue.add('ns/b'), 'queued');
    assert.equal(queue.add('ns/b'), 'merged');
    assert.equal(queue.add('ns/b'), 'merged');
    assert.equal(queue.stats().depth, 1);
    h.finish('ns/busy');
    await until('b runs', () => h.count('ns/b') === 1);
    h.finish('ns/b');
    await until('idle', () => queue.stats().keys === 0);
    assert.equal(h.count('ns/b'), 1);
  });

  it('uses a fixed number of workers', async () => {
    const h = scriptedHandler();
    make({ workers: 3 }).start(h.handler);
    for (let i = 0; i < 10; i++) queue.add(`ns/k${i}`);
    await until('three running', () => h.runs.length === 3);
    await flushMicrotasks();
    assert.equal(h.runs.length, 3);
    assert.deepEqual(queue.stats(), { depth: 7, delayed: 0, running: 3, keys: 10, retriesTotal: 0, rejectedTotal: 0, longestRunningMs: 0 });
    for (let i = 0; i < 10; i++) {
      await until(`k${i} running`, () => h.count(`ns/k${i}`) === 1);
      h.finish(`ns/k${i}`);
    }
    await until('idle', () => queue.stats().keys === 0);
    assert.equal(h.maxTotalActive(), 3);
    assert.deepEqual(h.runs, Array.from({ length: 10 }, (_, i) => `ns/k${i}`), 'first in, first out');
  });

  it('retries a failure with exponential back-off from base to max, and a success resets it', async () => {
    const h = scriptedHandler();
    make({ workers: 1, baseDelayMs: 1_000, maxDelayMs: 5_000 }).start(h.handler);
    queue.add('ns/a');
    const expectedDelays = [1_000, 2_000, 4_000, 5_000, 5_000];
    for (let i = 0; i < expectedDelays.length; i++) {
      await until(`run ${i + 1}`, () => h.count('ns/a') === i + 1);
      h.fail('ns/a');
      await until(`report ${i + 1}`, () => reports.length === i + 1);
      const r = reports[i];
      assert.equal(r.outcome, 'error');
      assert.equal(r.failures, i + 1);
      assert.equal(r.nextRunInMs, expectedDelays[i]);
      assert.equal(queue.stats().delayed, 1);
      await clock.advance(expectedDelays[i] - 1);
      assert.equal(h.count('ns/a'), i + 1, `not before ${expectedDelays[i]} ms`);
      await clock.advance(1);
    }
    await until('run after the last back-off', () => h.count('ns/a') === 6);
    h.finish('ns/a');
    await until('success reported', () => reports.length === 6);
    assert.equal(reports[5].outcome, 'success');
    assert.equal(queue.failuresOf('ns/a'), 0, 'forgotten on success');
    assert.equal(queue.stats().retriesTotal, 5);
    queue.add('ns/a');
    await until('run 7', () => h.count('ns/a') === 7);
    h.fail('ns/a');
    await until('report 7', () => reports.length === 7);
    assert.equal(reports[6].nextRunInMs, 1_000, 'back to the base delay after a success');
  });

  it('keeps back-off per key: one failing key does not slow another', async () => {
    const h = scriptedHandler();
    make({ workers: 2 }).start(h.handler);
    queue.add('ns/bad');
    await until('bad runs', () => h.count('ns/bad') === 1);
    h.fail('ns/bad');
    await until('bad waits', () => queue.stats().delayed === 1);
    queue.add('ns/good');
    await until('good runs at once', () => h.count('ns/good') === 1);
    h.finish('ns/good');
    await until('good done', () => reports.some((r) => r.key === 'ns/good'));
    assert.equal(queue.failuresOf('ns/good'), 0);
    assert.equal(queue.failuresOf('ns/bad'), 1);
  });

  it('spaces retries of many keys by the overall rate limit', async () => {
    const h = scriptedHandler();
    make({ workers: 4, baseDelayMs: 100, maxDelayMs: 1_000, rateLimit: { perSecond: 1, burst: 2 } }).start(h.handler);
    for (const k of ['a', 'b', 'c', 'd']) queue.add(`ns/${k}`);
    await until('four running', () => h.runs.length === 4);
    for (const k of ['a', 'b', 'c', 'd']) {
      h.fail(`ns/${k}`);
      await until(`${k} reported`, () => reports.some((r) => r.key === `ns/${k}`));
    }
    // Two tokens in the bucket, then one per second: the third and fourth retries wait for theirs.
    assert.deepEqual(reports.map((r) => r.nextRunInMs), [100, 100, 1_000, 2_000]);
  });

  it('refuses a key past the cap on distinct keys with a readable error, and counts it', async () => {
    const h = scriptedHandler();
    make({ workers: 1, maxKeys: 2 }).start(h.handler);
    assert.equal(queue.add('ns/a'), 'queued');
    assert.equal(queue.add('ns/b'), 'queued');
    assert.equal(queue.add('ns/c'), 'full');
    assert.equal(queue.addAfter('ns/d', 5_000), 'full');
    assert.equal(queue.add('ns/a'), 'dirty', 'a key already in the queue is always accepted');
    assert.equal(queue.stats().rejectedTotal, 2);
    assert.equal(rejected.length, 2);
    assert.match(rejected[0].message, /work queue Grid is full \(2 distinct keys\): ns\/c was not queued/);
    await until('a runs', () => h.count('ns/a') === 1);
    h.finish('ns/a');
    await until('b runs (it waited longer than the rerun of a)', () => h.count('ns/b') === 1);
    h.finish('ns/b');
    await until('a again', () => h.count('ns/a') === 2);
    h.finish('ns/a');
    await until('empty', () => queue.stats().keys === 0);
    assert.equal(queue.add('ns/c'), 'queued', 'room again once keys are done');
    await until('c runs', () => h.count('ns/c') === 1);
    h.finish('ns/c');
  });

  it('keeps the earliest of several delays and lets an add run a delayed key at once', async () => {
    const h = scriptedHandler();
    make({ workers: 1 }).start(h.handler);
    assert.equal(queue.addAfter('ns/a', 10_000), 'delayed');
    assert.equal(queue.addAfter('ns/a', 3_000), 'delayed');
    assert.equal(queue.addAfter('ns/a', 8_000), 'delayed');
    assert.deepEqual([queue.stats().delayed, queue.stats().keys], [1, 1]);
    await clock.advance(2_999);
    assert.equal(h.count('ns/a'), 0);
    await clock.advance(1);
    await until('a after 3 s', () => h.count('ns/a') === 1);
    h.finish('ns/a');
    await until('idle', () => queue.stats().keys === 0);

    queue.addAfter('ns/b', 60_000);
    assert.equal(queue.add('ns/b'), 'queued');
    await until('b at once', () => h.count('ns/b') === 1);
    h.finish('ns/b');
    await until('idle again', () => queue.stats().keys === 0);
    await clock.advance(60_000);
    assert.equal(h.count('ns/b'), 1, 'the superseded delay does not run it again');
  });

  it('runs a key again when its handler asks for a requeue, without counting a failure', async () => {
    const runs: number[] = [];
    make({ workers: 1 }).start(async () => {
      runs.push(clock.now());
      return runs.length < 3 ? { requeueAfterMs: 30_000 } : undefined;
    });
    const t0 = clock.now();
    queue.add('ns/poll');
    await until('first', () => runs.length === 1);
    await clock.advance(30_000);
    await until('second', () => runs.length === 2);
    await clock.advance(30_000);
    await until('third', () => runs.length === 3);
    assert.deepEqual(runs.map((t) => t - t0), [0, 30_000, 60_000]);
    assert.deepEqual(reports.map((r) => r.outcome), ['requeue', 'requeue', 'success']);
    assert.equal(queue.stats().retriesTotal, 0);
  });

  it('on shutdown stops taking keys, drops the waiting ones and waits for the runs in flight', async () => {
    const h = scriptedHandler();
    make({ workers: 1 }).start(h.handler);
    queue.add('ns/running');
    queue.add('ns/waiting');
    queue.addAfter('ns/later', 1_000);
    await until('running', () => h.count('ns/running') === 1);
    let done = false;
    const stopping = queue.shutdown({ timeoutMs: 60_000 }).then((left) => {
      done = true;
      return left;
    });
    assert.equal(queue.add('ns/new'), 'shutdown');
    await flushMicrotasks();
    assert.equal(done, false, 'waits for the run in flight');
    assert.equal(h.signals.get('ns/running')!.aborted, false, 'a graceful shutdown does not abort');
    h.finish('ns/running');
    assert.deepEqual(await stopping, []);
    await clock.advance(5_000);
    assert.deepEqual(h.runs, ['ns/running'], 'nothing else ran');
  });

  it('aborts the runs still going when the shutdown deadline passes, and names them', async () => {
    const h = scriptedHandler();
    make({ workers: 2 }).start(h.handler);
    queue.add('ns/slow');
    await until('slow runs', () => h.count('ns/slow') === 1);
    const stopping = queue.shutdown({ timeoutMs: 10_000 });
    await clock.advance(10_000);
    assert.deepEqual(await stopping, ['ns/slow']);
    assert.equal(h.signals.get('ns/slow')!.aborted, true);
    h.finish('ns/slow');
  });

  it('aborts runs at once when shut down with abort (leadership lost)', async () => {
    const h = scriptedHandler();
    make({ workers: 1 }).start(h.handler);
    queue.add('ns/a');
    await until('a runs', () => h.count('ns/a') === 1);
    const stopping = queue.shutdown({ timeoutMs: 10_000, abort: true });
    assert.equal(h.signals.get('ns/a')!.aborted, true);
    h.finish('ns/a');
    assert.deepEqual(await stopping, []);
  });

  it('aborts the signal of a run that exceeds its time limit, and keeps the key until it settles', async () => {
    const h = scriptedHandler();
    make({ workers: 2, runTimeoutMs: 5_000 }).start(h.handler);
    queue.add('ns/a');
    await until('a runs', () => h.count('ns/a') === 1);
    await clock.advance(5_000);
    assert.equal(h.signals.get('ns/a')!.aborted, true);
    assert.equal(queue.add('ns/a'), 'dirty', 'still running until its promise settles');
    assert.equal(queue.stats().longestRunningMs, 5_000);
    h.fail('ns/a', 'aborted');
    await until('a again', () => h.count('ns/a') === 2);
    h.finish('ns/a');
  });

  it('reports depth, delays, running keys and retries for metrics', async () => {
    const h = scriptedHandler();
    make({ workers: 1 }).start(h.handler);
    queue.add('ns/a');
    queue.add('ns/b');
    queue.addAfter('ns/c', 1_000);
    await until('a runs', () => h.count('ns/a') === 1);
    await clock.advance(250);
    assert.deepEqual(queue.stats(), { depth: 1, delayed: 1, running: 1, keys: 3, retriesTotal: 0, rejectedTotal: 0, longestRunningMs: 250 });
    h.fail('ns/a');
    await until('b runs', () => h.count('ns/b') === 1);
    assert.deepEqual({ ...queue.stats(), longestRunningMs: 0 }, { depth: 0, delayed: 2, running: 1, keys: 3, retriesTotal: 1, rejectedTotal: 0, longestRunningMs: 0 });
    h.finish('ns/b');
  });

  it('keeps the delay heap bounded when delayed keys are re-added over and over', async () => {
    const h = scriptedHandler();
    make({ workers: 11 }).start(h.handler);
    queue.add('ns/busy');
    await until('busy runs', () => h.count('ns/busy') === 1);
    for (let i = 0; i < 5_000; i++) {
      queue.addAfter(`ns/k${i % 10}`, 600_000 - i); // each one earlier than the last: a new entry every time
    }
    assert.equal(queue.stats().delayed, 10);
    assert.ok(queue.heapSize <= 2 * 10 + 1_024 + 1, `heap holds ${queue.heapSize} entries`);
    h.finish('ns/busy');
    await clock.advance(600_000);
    await until('the ten delayed keys ran', () => h.runs.length === 11);
    for (let i = 0; i < 10; i++) h.finish(`ns/k${i}`);
  });

  it('rejects invalid settings and keys', () => {
    assert.throws(() => make({ workers: 0 }), /workers/);
    assert.throws(() => make({ maxKeys: 0 }), /maxKeys/);
    assert.throws(() => make({ baseDelayMs: 10, maxDelayMs: 5 }), /baseDelayMs/);
    assert.throws(() => make({ rateLimit: { perSecond: 0, burst: 1 } }), /rate limit/);
    make();
    assert.throws(() => queue.add(''), /invalid work queue key/);
    assert.throws(() => queue.add('x'.repeat(600)), /invalid work queue key/);
  });
});

describe('backoffDelayMs and TokenBucket', () => {
  it('doubles from the base and stops at the max, without overflowing', () => {
    assert.deepEqual([1, 2, 3, 4, 9, 10].map((f) => backoffDelayMs(f, 1_000, 300_000)), [1_000, 2_000, 4_000, 8_000, 256_000, 300_000]);
    assert.equal(backoffDelayMs(10_000, 1_000, 300_000), 300_000);
    assert.equal(backoffDelayMs(0, 1_000, 300_000), 0);
  });

  it('hands out a burst, then one token per 1/rate seconds, refilling with time', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ perSecond: 2, burst: 3 }, clock);
    assert.deepEqual([bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()], [0, 0, 0, 500, 1_000]);
    await clock.advance(10_000);
    assert.deepEqual([bucket.reserve(), bucket.reserve(), bucket.reserve(), bucket.reserve()], [0, 0, 0, 500]);
  });
});
