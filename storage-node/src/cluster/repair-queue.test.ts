import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import {
  backoffDelayMs, RepairEntry, RepairExecutor, RepairItem, RepairOutcome, RepairQueue, RepairQueueFullError, RepairQueueOptions,
  RepairQueueStats,
} from './repair-queue';

/** Polls `cond` until it holds; fails with `what` after the deadline. */
async function waitFor(what: string, cond: () => boolean, deadlineMs = 10_000): Promise<void> {
  const endMs = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > endMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function blob(target: string, key: string, over: Partial<RepairItem> = {}): RepairItem {
  return { kind: 'blob', target, bucket: 'b', key, versionId: 'v1', blobId: `blob-${key}`, partition: 7, sizeBytes: 100, ...over };
}

async function all(q: RepairQueue, target?: string): Promise<RepairEntry[]> {
  const out: RepairEntry[] = [];
  for await (const e of q.list({ target, limit: 1_000_000 })) out.push(e);
  return out;
}

/** The stats the file implies; the in-memory ones must match them after every operation. */
async function assertStatsMatchFile(q: RepairQueue, totals: Partial<RepairQueueStats> = {}): Promise<RepairQueueStats> {
  const items = await all(q);
  const s = q.stats();
  const byTarget: RepairQueueStats['byTarget'] = {};
  for (const e of items) {
    byTarget[e.target] ??= { items: 0, bytes: 0 };
    byTarget[e.target].items++;
    byTarget[e.target].bytes += e.sizeBytes;
  }
  assert.equal(s.owedItems, items.length, 'owedItems');
  assert.equal(s.owedBytes, items.reduce((n, e) => n + e.sizeBytes, 0), 'owedBytes');
  assert.deepEqual(s.byTarget, byTarget, 'byTarget');
  for (const t of Object.keys(byTarget)) assert.deepEqual(q.pendingFor(t), byTarget[t]);
  assert.equal(s.oldestOwedMs, items.length === 0 ? undefined : Math.min(...items.map((e) => e.firstOwedMs)), 'oldestOwedMs');
  for (const [k, v] of Object.entries(totals)) assert.deepEqual(s[k as keyof RepairQueueStats], v, k);
  return s;
}

describe('cluster/repair-queue', () => {
  let dirs: string[] = [];
  let queues: RepairQueue[] = [];
  const tempDir = (): string => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-rq-'));
    dirs.push(d);
    return d;
  };
  const open = async (file: string, opts: RepairQueueOptions = {}): Promise<RepairQueue> => {
    const q = await RepairQueue.open(file, opts);
    queues.push(q);
    return q;
  };
  afterEach(async () => {
    for (const q of queues) await q.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    queues = [];
    dirs = [];
  });

  describe('owing', () => {
    it('keeps one item per (kind, target, bucket, key, version, blob), however often it is enqueued', async () => {
      const q = await open(path.join(tempDir(), 'repair.db'));
      assert.equal(q.enqueue([blob('n1', 'a'), blob('n1', 'a'), blob('n2', 'a')]), 2);
      assert.equal(q.enqueue([blob('n1', 'a', { sizeBytes: 999 })]), 0);
      // Any field of the identity makes another item.
      assert.equal(q.enqueue([
        blob('n1', 'a', { blobId: 'other' }), blob('n1', 'a', { versionId: 'v2' }), blob('n1', 'a', { bucket: 'c' }),
        blob('n1', 'a', { kind: 'corrupt' }), { kind: 'meta', target: 'n1', bucket: 'b', key: 'a', versionId: 'v1', partition: 3, sizeBytes: 0 },
      ]), 5);
      assert.equal(q.enqueue([{ kind: 'meta', target: 'n1', bucket: 'b', key: 'a', versionId: 'v1', partition: 3, sizeBytes: 0 }]), 0);
      await q.sync();
      const items = await all(q);
      assert.equal(items.length, 7);
      assert.equal(items[0].sizeBytes, 100, 'the first enqueue wins');
      assert.equal(items.find((e) => e.kind === 'meta')?.blobId, undefined);
      await assertStatsMatchFile(q, { madeTotal: 0, droppedTotal: 0, failedAttemptsTotal: 0 });
    });

    it('refuses malformed items before writing anything', async () => {
      const q = await open(path.join(tempDir(), 'repair.db'));
      assert.throws(() => q.enqueue([blob('n1', 'a'), blob('', 'b')]), /target must be a non-empty string/);
      assert.throws(() => q.enqueue([blob('n1', 'a', { blobId: undefined })]), /blobId must be/);
      assert.throws(() => q.enqueue([{ ...blob('n1', 'a'), kind: 'meta' }]), /a meta repair item has no blobId/);
      assert.throws(() => q.enqueue([blob('n1', 'a', { sizeBytes: -1 })]), /sizeBytes/);
      assert.throws(() => q.enqueue([blob('n1', 'a', { kind: 'other' as 'blob' })]), /kind must be one of/);
      assert.equal(q.stats().owedItems, 0);
    });

    it('keeps every item and every total across close and reopen', async () => {
      const file = path.join(tempDir(), 'repair.db');
      const outcomes: Record<string, RepairOutcome> = { a: 'done', b: 'drop', c: 'retry' };
      const execute: RepairExecutor = async (e) => outcomes[e.key] ?? 'retry';
      const a = await open(file, { execute, initialBackoffMs: 60_000 });
      a.enqueue([blob('n1', 'a'), blob('n1', 'b'), blob('n2', 'c'), blob('n2', 'd', { sizeBytes: 5 })]);
      a.start();
      await waitFor('a made, b dropped, c and d failed', () => a.stats().madeTotal === 1 && a.stats().droppedTotal === 1 && a.stats().failedAttemptsTotal === 2);
      const before = await assertStatsMatchFile(a, { owedItems: 2, owedBytes: 105 });
      const itemsBefore = await all(a);
      assert.ok(before.lastMadeMs !== undefined);
      await a.close();
      const b = await open(file);
      assert.deepEqual(await all(b), itemsBefore);
      assert.equal(itemsBefore.find((e) => e.key === 'c')?.lastError, 'executor asked for a retry');
      await assertStatsMatchFile(b, {
        madeTotal: 1, droppedTotal: 1, failedAttemptsTotal: 2, lastMadeMs: before.lastMadeMs, oldestOwedMs: before.oldestOwedMs,
        byTarget: { n2: { items: 2, bytes: 105 } },
      });
    });

    it('keeps every synced item when the process is killed with SIGKILL', async function () {
      this.timeout(30_000);
      const dir = tempDir();
      const file = path.join(dir, 'repair.db');
      const script = path.join(dir, 'writer.js');
      // Batch i holds 10 items; "synced i" is printed only after sync() resolved. After 100 batches the child
      // says "synced" and goes on enqueueing without syncing, so the kill lands in the middle of writes.
      fs.writeFileSync(script, `
        const { RepairQueue } = require(${JSON.stringify(path.join(__dirname, 'repair-queue.js'))});
        (async () => {
          const q = await RepairQueue.open(${JSON.stringify(file)});
          const batch = (i) => Array.from({ length: 10 }, (_, j) => ({ kind: 'blob', target: 'n' + (j % 3), bucket: 'b',
            key: 'k' + i + '-' + j, versionId: 'v', blobId: 'x' + i + '-' + j, partition: j, sizeBytes: i }));
          for (let i = 1; i <= 100; i++) {
            q.enqueue(batch(i));
            await q.sync();
            process.stdout.write('synced ' + i + '\\n');
          }
          process.stdout.write('synced\\n');
          for (let i = 101; ; i++) {
            q.enqueue(batch(i));
            if (i % 50 === 0) await new Promise((r) => setImmediate(r));
          }
        })();
      `);
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let acked = 0;
      await new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error('writer did not finish syncing')), 20_000);
        let buf = '';
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop() ?? '';
          for (const l of lines) {
            const m = /^synced (\d+)$/.exec(l);
            if (m) acked = Math.max(acked, Number(m[1]));
            if (l === 'synced') {
              clearTimeout(deadline);
              resolve();
            }
          }
        });
        child.on('exit', (code) => reject(new Error(`writer exited early (${code})`)));
      });
      child.removeAllListeners('exit');
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
      assert.equal(acked, 100);
      const q = await open(file);
      const keys = new Set((await all(q)).map((e) => e.key));
      for (let i = 1; i <= acked; i++) for (let j = 0; j < 10; j++) assert.ok(keys.has(`k${i}-${j}`), `synced item k${i}-${j} survives`);
      await assertStatsMatchFile(q);
    });

    it('throws RepairQueueFullError at the size bound and adds nothing of that batch', async () => {
      const q = await open(path.join(tempDir(), 'repair.db'), { maxItems: 5, maxEnqueueBatch: 4 });
      assert.equal(q.enqueue([blob('n1', 'a'), blob('n1', 'b'), blob('n1', 'c')]), 3);
      assert.throws(() => q.enqueue([blob('n1', 'd'), blob('n1', 'e'), blob('n1', 'f')]), (e: unknown) => {
        assert.ok(e instanceof RepairQueueFullError);
        assert.match(e.message, /repair queue is full: 3 copies are owed and 3 more would pass the maximum of 5/);
        return true;
      });
      await assertStatsMatchFile(q, { owedItems: 3 });
      // Items already owed do not count against the bound.
      assert.equal(q.enqueue([blob('n1', 'a'), blob('n1', 'b'), blob('n1', 'd'), blob('n1', 'e')]), 2);
      assert.throws(() => q.enqueue([blob('n1', 'f')]), RepairQueueFullError);
      assert.throws(() => q.enqueue([1, 2, 3, 4, 5].map((i) => blob('n9', `x${i}`))), /at most 4 repair items per enqueue, got 5/);
      await assertStatsMatchFile(q, { owedItems: 5 });
    });
  });

  describe('the worker', () => {
    it('removes done and dropped items and counts them', async () => {
      const q = await open(path.join(tempDir(), 'repair.db'), { execute: async (e) => (e.key.startsWith('drop') ? 'drop' : 'done') });
      q.enqueue([blob('n1', 'made1'), blob('n2', 'made2', { sizeBytes: 7 }), blob('n1', 'drop1')]);
      await assertStatsMatchFile(q, { owedItems: 3, owedBytes: 207 });
      const beforeMs = Date.now();
      q.start();
      await waitFor('queue empty', () => q.stats().owedItems === 0);
      const s = await assertStatsMatchFile(q, { madeTotal: 2, droppedTotal: 1, failedAttemptsTotal: 0, byTarget: {} });
      assert.ok(s.lastMadeMs !== undefined && s.lastMadeMs >= beforeMs);
      assert.deepEqual(await all(q), []);
    });

    it('retries with a back-off that doubles and is capped, and stores the error of an executor that throws', async () => {
      const calls: { atMs: number; entry: RepairEntry }[] = [];
      const q = await open(path.join(tempDir(), 'repair.db'), {
        initialBackoffMs: 100, maxBackoffMs: 400, random: () => 0,
        execute: async (entry) => {
          calls.push({ atMs: Date.now(), entry });
          throw new Error(`refused #${calls.length}`);
        },
      });
      q.enqueue([blob('n1', 'a')]);
      q.start();
      await waitFor('six attempts', () => calls.length >= 6);
      await q.stop();
      const expectedMs = [100, 200, 400, 400, 400];
      for (let k = 1; k < 6; k++) {
        const seen = calls[k].entry;
        assert.equal(seen.attempts, k);
        assert.equal(seen.lastError, `refused #${k}`);
        // The attempt's start, as the loop saw it just before calling the executor.
        assert.ok(seen.lastAttemptMs !== undefined && seen.lastAttemptMs <= calls[k - 1].atMs && seen.lastAttemptMs >= calls[k - 1].atMs - 50);
        const delayMs = seen.nextAttemptMs - (seen.lastAttemptMs ?? 0);
        // next = failure time + back-off; the executor fails at once, so the failure time is the start (+ a little).
        assert.ok(delayMs >= expectedMs[k - 1] && delayMs < expectedMs[k - 1] + 100, `back-off ${k}: ${delayMs} ms, expected ${expectedMs[k - 1]}`);
        assert.ok(calls[k].atMs - calls[k - 1].atMs >= expectedMs[k - 1] - 1, `attempt ${k + 1} waited its back-off`);
      }
      await assertStatsMatchFile(q, { failedAttemptsTotal: calls.length, owedItems: 1 });
    });

    it('computes back-off delays that grow, stop at the cap and keep at least half with jitter', () => {
      assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelayMs(n, 1000, 60_000, () => 0)), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
      assert.equal(backoffDelayMs(10_000, 1000, 60_000, () => 0), 60_000);
      for (let n = 1; n < 12; n++) {
        const r = Math.random();
        const capped = Math.min(60_000, 1000 * 2 ** (n - 1));
        const d = backoffDelayMs(n, 1000, 60_000, () => r);
        assert.ok(d > capped / 2 - 1 && d <= capped, `attempt ${n}: ${d}`);
        // Never shorter than the longest delay of the attempt before it.
        if (n > 1) assert.ok(d >= Math.min(60_000, 1000 * 2 ** (n - 2)) / 2);
      }
      assert.throws(() => backoffDelayMs(0, 1000, 60_000), /attempts is a positive integer/);
    });

    it('skips targets that are down without counting attempts, and runs them at once after kick()', async () => {
      const up = new Set(['A', 'B']);
      let failA = true;
      const calls: string[] = [];
      const q = await open(path.join(tempDir(), 'repair.db'), {
        initialBackoffMs: 60_000, maxBackoffMs: 60_000, pollIntervalMs: 60_000,
        isTargetUp: (t) => up.has(t),
        execute: async (e) => {
          calls.push(e.key);
          if (e.target === 'A' && failA) throw new Error('connection refused');
          return 'done';
        },
      });
      q.enqueue([blob('A', 'a1')]);
      q.start();
      await waitFor('a1 failed once', () => q.stats().failedAttemptsTotal === 1);
      up.delete('A');
      q.enqueue([blob('A', 'a2'), blob('B', 'b1')]);
      await waitFor('b1 made', () => q.stats().madeTotal === 1);
      assert.deepEqual(calls, ['a1', 'b1'], 'nothing was tried on the target that is down');
      const a2 = (await all(q, 'A')).find((e) => e.key === 'a2');
      assert.equal(a2?.attempts, 0);
      await assertStatsMatchFile(q, { failedAttemptsTotal: 1, owedItems: 2 });

      failA = false;
      up.add('A');
      const kickedMs = Date.now();
      q.kick('A');
      // a1 is in a 60 s back-off and the poll is 60 s: only the kick can make this quick.
      await waitFor('A repaired after the kick', () => q.stats().owedItems === 0, 5000);
      assert.ok(Date.now() - kickedMs < 5000);
      assert.deepEqual(calls.slice(2).sort(), ['a1', 'a2']);
      await assertStatsMatchFile(q, { madeTotal: 3, failedAttemptsTotal: 1, byTarget: {} });
    });

    it('never runs more than the global and per-target bounds at once, and reaches them', async () => {
      let inFlight = 0;
      let maxInFlight = 0;
      const perTarget = new Map<string, number>();
      let maxPerTarget = 0;
      const q = await open(path.join(tempDir(), 'repair.db'), {
        concurrency: 4, perTargetConcurrency: 2,
        execute: async (e) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          perTarget.set(e.target, (perTarget.get(e.target) ?? 0) + 1);
          maxPerTarget = Math.max(maxPerTarget, perTarget.get(e.target) ?? 0);
          // The copy takes a while, so that attempts overlap.
          await new Promise((r) => setTimeout(r, 3));
          perTarget.set(e.target, (perTarget.get(e.target) ?? 0) - 1);
          inFlight--;
          return 'done';
        },
      });
      const items: RepairItem[] = [];
      for (const t of ['n1', 'n2', 'n3']) for (let i = 0; i < 40; i++) items.push(blob(t, `k${i}`));
      q.enqueue(items);
      q.start();
      await waitFor('all 120 made', () => q.stats().madeTotal === 120, 20_000);
      assert.equal(maxInFlight, 4);
      assert.equal(maxPerTarget, 2);

      // One target alone is held to its own bound even with global room.
      maxInFlight = 0;
      q.enqueue(Array.from({ length: 20 }, (_, i) => blob('solo', `s${i}`)));
      await waitFor('solo made', () => q.stats().madeTotal === 140, 20_000);
      assert.equal(maxInFlight, 2);
    });

    it('stop() aborts running executions and resolves; they are not failed attempts', async () => {
      let inFlight = 0;
      const reasons: string[] = [];
      const q = await open(path.join(tempDir(), 'repair.db'), {
        execute: (_e, signal) => new Promise<RepairOutcome>((_resolve, reject) => {
          inFlight++;
          signal.addEventListener('abort', () => {
            reasons.push(String((signal.reason as Error).message));
            inFlight--;
            reject(signal.reason);
          });
        }),
      });
      q.enqueue([blob('n1', 'a'), blob('n2', 'b'), blob('n3', 'c')]);
      q.start();
      await waitFor('three running', () => inFlight === 3);
      await q.stop();
      assert.equal(inFlight, 0);
      assert.deepEqual(reasons, ['repair queue stopping', 'repair queue stopping', 'repair queue stopping']);
      assert.deepEqual((await all(q)).map((e) => e.attempts), [0, 0, 0]);
      await assertStatsMatchFile(q, { owedItems: 3, failedAttemptsTotal: 0 });
    });

    it('keeps an item enqueued again while its attempt runs, due at once', async () => {
      let release: (() => void) | undefined;
      let calls = 0;
      const q = await open(path.join(tempDir(), 'repair.db'), {
        execute: async () => {
          calls++;
          if (calls === 1) await new Promise<void>((r) => (release = r));
          return 'done';
        },
      });
      const item: RepairItem = { kind: 'meta', target: 'n1', bucket: 'b', key: 'k', versionId: 'v1', partition: 1, sizeBytes: 0 };
      q.enqueue([item]);
      q.start();
      await waitFor('first attempt running', () => release !== undefined);
      assert.equal(q.enqueue([item]), 0);
      release?.();
      await waitFor('made twice', () => q.stats().madeTotal === 2);
      await waitFor('empty', () => q.stats().owedItems === 0);
      assert.equal(calls, 2);
    });

    it('forgetTarget and forgetVersion remove what is no longer owed and abort its attempts', async () => {
      const aborted: string[] = [];
      let started = 0;
      const q = await open(path.join(tempDir(), 'repair.db'), {
        isTargetUp: (t) => t === 'gone',
        execute: (e, signal) => new Promise<RepairOutcome>((_resolve, reject) => {
          started++;
          signal.addEventListener('abort', () => {
            aborted.push(e.key);
            reject(signal.reason);
          });
        }),
      });
      q.enqueue([blob('gone', 'g1'), blob('gone', 'g2'), blob('gone', 'g3'), blob('n2', 'v', { versionId: 'dead' }), blob('n3', 'v', { versionId: 'dead' }),
        blob('n3', 'v', { versionId: 'dead', blobId: 'second' }), blob('n3', 'v', { versionId: 'live' })]);
      q.start();
      await waitFor('two attempts on the target that leaves', () => started === 2);
      assert.equal(await q.forgetTarget('gone'), 3);
      await waitFor('attempts aborted', () => aborted.length === 2);
      await assertStatsMatchFile(q, { droppedTotal: 3, failedAttemptsTotal: 0 });
      assert.equal(q.forgetVersion('b', 'v', 'dead'), 3);
      assert.equal(q.forgetVersion('b', 'v', 'dead'), 0);
      assert.deepEqual((await all(q)).map((e) => [e.target, e.versionId]), [['n3', 'live']]);
      await assertStatsMatchFile(q, { droppedTotal: 6, owedItems: 1, byTarget: { n3: { items: 1, bytes: 100 } } });
      assert.deepEqual(q.pendingFor('gone'), { items: 0, bytes: 0 });
    });

    it('forgets a large target in several transactions', async function () {
      this.timeout(30_000);
      const q = await open(path.join(tempDir(), 'repair.db'), { maxEnqueueBatch: 10_000 });
      for (let b = 0; b < 3; b++) q.enqueue(Array.from({ length: 10_000 }, (_, i) => blob('big', `k${b}-${i}`, { sizeBytes: 1 })));
      q.enqueue([blob('other', 'x')]);
      assert.equal(await q.forgetTarget('big'), 30_000);
      await assertStatsMatchFile(q, { owedItems: 1, droppedTotal: 30_000 });
    });
  });

  describe('the file', () => {
    it('refuses a queue file written by a newer format, and a missing folder, with a clear error', async () => {
      const dir = tempDir();
      const file = path.join(dir, 'repair.db');
      await (await RepairQueue.open(file)).close();
      const raw = new Database(file);
      raw.prepare("UPDATE meta SET v = '7' WHERE k = 'formatVersion'").run();
      raw.close();
      await assert.rejects(RepairQueue.open(file), /repair queue .*repair\.db: .*format version 7 is newer than this software supports \(1\)/);
      await assert.rejects(RepairQueue.open(path.join(dir, 'no', 'repair.db')), /repair queue folder .* does not exist/);
    });

    it('refuses work after close', async () => {
      const q = await RepairQueue.open(path.join(tempDir(), 'repair.db'));
      await q.close();
      assert.throws(() => q.enqueue([blob('n1', 'a')]), /closed/);
      await assert.rejects(q.sync(), /closed/);
      assert.throws(() => q.start(), /closed/);
    });
  });
});
