import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { FakeClock, flushMicrotasks } from './clock';
import type { Target, TargetHandler } from './informers';
import { KubeApiError, KubeObject } from './kube-api';
import { ControllerManager, Reconciler } from './manager';
import { OperatorMetrics } from './metrics';

const silent = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

async function until(what: string, condition: () => boolean, deadlineMs = 2_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await flushMicrotasks();
  }
}

class FakeInformers {
  handler: TargetHandler | undefined;
  synced = false;
  private waiters: Array<() => void> = [];
  readonly objects = new Map<string, KubeObject[]>();

  onTarget(handler: TargetHandler): void {
    this.handler = handler;
  }

  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      signal?.addEventListener('abort', () => resolve(false), { once: true });
      this.waiters.push(() => resolve(true));
    });
  }

  sync(): void {
    this.synced = true;
    for (const w of this.waiters.splice(0)) w();
  }

  list(kind: string): KubeObject[] {
    return this.objects.get(kind) ?? [];
  }

  emit(target: Target): void {
    this.handler?.(target, { type: 'update', resource: target.kind, key: target.key });
  }
}

const obj = (namespace: string, name: string): KubeObject => ({ metadata: { namespace, name } });

describe('ControllerManager', () => {
  let clock: FakeClock;
  let informers: FakeInformers;
  let calls: string[];
  let manager: ControllerManager;
  let metrics: OperatorMetrics;

  const make = (reconcilers: Record<string, Reconciler>, resyncPeriodMs = 0): ControllerManager => {
    metrics = new OperatorMetrics({ processMetrics: false });
    manager = new ControllerManager({
      reconcilers,
      informers,
      log: silent,
      metrics,
      clock,
      resyncPeriodMs,
      shutdownTimeoutMs: 1_000,
      queue: { workers: 2, baseDelayMs: 1_000, maxDelayMs: 60_000 },
    });
    metrics.setSources({ queues: () => manager.queueStats(), informers: () => [], leader: () => manager.isLeading });
    return manager;
  };

  const recording = (kind: string): Reconciler => async (key) => {
    calls.push(`${kind} ${key}`);
  };

  beforeEach(() => {
    clock = new FakeClock();
    informers = new FakeInformers();
    calls = [];
  });

  afterEach(async () => {
    const stopping = manager?.stopLeading('test over', { abort: true });
    await clock.advance(1_000);
    await stopping;
  });

  it('reconciles nothing while standby; once leading and synced, every cached object, then events, per kind', async () => {
    informers.objects.set('Grid', [obj('ns', 'g1')]);
    informers.objects.set('Bucket', [obj('ns', 'b1'), obj('ns', 'b2')]);
    make({ Grid: recording('Grid'), Bucket: recording('Bucket') });
    informers.emit({ kind: 'Grid', key: 'ns/g0' });
    await flushMicrotasks();
    assert.deepEqual(calls, [], 'standby');
    manager.startLeading();
    informers.emit({ kind: 'Grid', key: 'ns/g1' });
    await flushMicrotasks();
    assert.deepEqual(calls, [], 'leading, but the caches are not synced yet');
    assert.equal(manager.isReconciling, false);
    informers.sync();
    await until('resync done', () => calls.length === 3);
    assert.deepEqual([...calls].sort(), ['Bucket ns/b1', 'Bucket ns/b2', 'Grid ns/g1'], 'g1 once, though an event also queued it');
    assert.equal(manager.isReconciling, true);
    informers.emit({ kind: 'Bucket', key: 'ns/b3' });
    informers.emit({ kind: 'Site', key: 'ns/s1' }); // no reconciler registered for Site
    await until('b3', () => calls.includes('Bucket ns/b3'));
    assert.equal(calls.length, 4);
  });

  it('aborts the runs in flight when leadership is lost and ignores events after', async () => {
    let signal: AbortSignal | undefined;
    let release!: () => void;
    make({
      Grid: async (key, s) => {
        calls.push(key);
        signal = s;
        await new Promise<void>((resolve) => (release = resolve));
      },
    });
    informers.sync();
    manager.startLeading();
    informers.emit({ kind: 'Grid', key: 'ns/g1' });
    await until('running', () => calls.length === 1);
    const stopping = manager.stopLeading('lease lost', { abort: true });
    assert.equal(signal!.aborted, true);
    informers.emit({ kind: 'Grid', key: 'ns/g2' });
    release();
    await stopping;
    await flushMicrotasks();
    assert.deepEqual(calls, ['ns/g1']);
    assert.equal(manager.isLeading, false);
  });

  it('does not start a key in a new term while its run from the previous term is still settling', async () => {
    let active = 0;
    let maxActive = 0;
    const releases: Array<() => void> = [];
    make({
      Grid: async (key) => {
        calls.push(key);
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise<void>((resolve) => releases.push(resolve));
        active--;
      },
    });
    informers.objects.set('Grid', [obj('ns', 'g1')]);
    informers.sync();
    manager.startLeading();
    await until('first run', () => calls.length === 1);
    void manager.stopLeading('lease lost', { abort: true });
    manager.startLeading();
    await flushMicrotasks();
    assert.equal(calls.length, 1, 'the new term waits for the old run');
    releases[0]();
    await until('run in the new term', () => calls.length === 2);
    releases[1]();
    assert.equal(maxActive, 1);
  });

  it('counts results by kind: success, error (retried with back-off) and conflict', async () => {
    let attempt = 0;
    make({
      Grid: async () => {
        attempt++;
        if (attempt === 1) throw new Error('admin API unreachable');
        if (attempt === 2) throw new KubeApiError(409, 'Conflict', 'the object has been modified');
      },
    });
    informers.sync();
    manager.startLeading();
    informers.emit({ kind: 'Grid', key: 'ns/g1' });
    await until('first failure', () => attempt === 1);
    await clock.advance(1_000);
    await until('conflict', () => attempt === 2);
    await clock.advance(2_000);
    await until('success', () => attempt === 3);
    await flushMicrotasks();
    const text = await metrics.registry.metrics();
    assert.match(text, /archipel_operator_reconcile_total\{kind="Grid",result="error"\} 1/);
    assert.match(text, /archipel_operator_reconcile_total\{kind="Grid",result="conflict"\} 1/);
    assert.match(text, /archipel_operator_reconcile_total\{kind="Grid",result="success"\} 1/);
    assert.match(text, /archipel_operator_reconcile_errors_total\{kind="Grid"\} 1/);
    assert.match(text, /archipel_operator_workqueue_retries_total\{kind="Grid"\} 2/);
    assert.match(text, /archipel_operator_reconcile_duration_seconds_count\{kind="Grid"\} 3/);
    assert.match(text, /archipel_operator_workqueue_depth\{kind="Grid"\} 0/);
    assert.match(text, /archipel_operator_leader 1/);
  });

  it('refuses keys past the queue cap with a metric and one log line per interval, not one per event', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = winston.createLogger({
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: new Writable({ write: (chunk, _enc, done) => { lines.push(JSON.parse(String(chunk))); done(); } }) })],
    });
    metrics = new OperatorMetrics({ processMetrics: false });
    manager = new ControllerManager({ reconcilers: { Grid: async () => new Promise<void>(() => undefined) }, informers, log, metrics, clock, resyncPeriodMs: 0, shutdownTimeoutMs: 1_000, queue: { workers: 1, maxKeys: 2 } });
    informers.sync();
    manager.startLeading();
    await flushMicrotasks();
    for (let i = 0; i < 50; i++) informers.emit({ kind: 'Grid', key: `ns/g${i}` });
    await flushMicrotasks();
    const full = lines.filter((l) => l.message === 'work queue full');
    assert.equal(full.length, 1);
    assert.equal(full[0].kind, 'Grid');
    assert.match(String(full[0].error), /work queue Grid is full \(2 distinct keys\): ns\/g2 was not queued; it comes back with the next resync/);
    assert.match(await metrics.registry.metrics(), /archipel_operator_workqueue_rejected_total\{kind="Grid"\} 48/);
    await clock.advance(10_000);
    informers.emit({ kind: 'Grid', key: 'ns/late' });
    const again = lines.filter((l) => l.message === 'work queue full');
    assert.equal(again.length, 2);
    assert.equal(again[1].refused, 48, 'says how many were refused since the last line');
  });

  it('queues every cached object again each resync period', async () => {
    informers.objects.set('Grid', [obj('ns', 'g1')]);
    make({ Grid: recording('Grid') }, 60_000);
    informers.sync();
    manager.startLeading();
    await until('first', () => calls.length === 1);
    await clock.advance(60_000);
    await until('resync', () => calls.length === 2);
    await clock.advance(60_000);
    await until('resync again', () => calls.length === 3);
  });
});
