import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CoalescingSync, closeDirSyncs, dirSync, dirSyncOpenCount } from './fsync';

/** A fake fsync that logs its start and end on a logical clock and takes a few event-loop turns. */
function recordingFsync(clock: { t: number }, turns = 3) {
  const runs: { start: number; end: number }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fn = async (_fh: FileHandle): Promise<void> => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const run = { start: ++clock.t, end: Infinity };
    runs.push(run);
    for (let i = 0; i < turns; i++) await nextTurn();
    run.end = ++clock.t;
    inFlight--;
  };
  return { fn, runs, maxInFlight: () => maxInFlight };
}

describe('fsync coalescing', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    file = path.join(dir, 'wal');
    fs.writeFileSync(file, 'x');
  });

  afterEach(async () => {
    await closeDirSyncs();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves many concurrent callers with far fewer fsyncs, never more than one at a time', async () => {
    const clock = { t: 0 };
    const rec = recordingFsync(clock);
    const s = new CoalescingSync(file, { fsync: rec.fn });
    await Promise.all(Array.from({ length: 200 }, () => s.sync()));
    assert.ok(rec.runs.length <= 2, `${rec.runs.length} fsyncs for 200 callers`);
    assert.equal(rec.maxInFlight(), 1);
    await s.close();
  });

  it('resolves each caller only after an fsync that started after its call', async () => {
    const clock = { t: 0 };
    const rec = recordingFsync(clock, 2);
    const s = new CoalescingSync(file, { fsync: rec.fn });
    const checks: Promise<void>[] = [];
    // Callers arrive over many turns, so that some land while an fsync is in flight.
    for (let i = 0; i < 300; i++) {
      const calledAt = ++clock.t;
      checks.push(s.sync().then(() => {
        const resolvedAt = ++clock.t;
        const covering = rec.runs.find((r) => r.start > calledAt && r.end < resolvedAt);
        assert.ok(covering, `caller at ${calledAt} resolved at ${resolvedAt} without an fsync started after its call`);
      }));
      if (i % 7 === 0) await nextTurn();
    }
    await Promise.all(checks);
    assert.ok(rec.runs.length < 150, `${rec.runs.length} fsyncs for 300 callers`);
    assert.equal(rec.maxInFlight(), 1);
    await s.close();
  });

  it('makes the failure of an fsync stick, because a retry could falsely succeed', async () => {
    let calls = 0;
    const s = new CoalescingSync(file, {
      fsync: async () => {
        calls++;
        throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      },
    });
    const results = await Promise.allSettled([s.sync(), s.sync(), s.sync()]);
    for (const r of results) assert.equal(r.status, 'rejected');
    await assert.rejects(s.sync(), /EIO/);
    assert.equal(calls, 1);
    await s.close();
  });

  it('runs a real fsync on a file and on a directory, and refuses after close', async () => {
    const f = new CoalescingSync(file);
    const d = new CoalescingSync(dir, { isDirectory: true });
    await Promise.all([f.sync(), d.sync(), f.sync()]);
    await f.close();
    await d.close();
    await assert.rejects(f.sync(), /closed/);
  });

  it('refuses a file where a directory is expected', async () => {
    const d = new CoalescingSync(file, { isDirectory: true });
    await assert.rejects(d.sync(), /ENOTDIR/);
    await d.close();
  });

  it('retries opening a file that did not exist yet', async () => {
    const later = path.join(dir, 'later');
    const s = new CoalescingSync(later);
    await assert.rejects(s.sync(), /ENOENT/);
    fs.writeFileSync(later, 'y');
    await s.sync();
    await s.close();
  });

  it('coalesces directory fsyncs process-wide and keeps one fd per directory', async () => {
    const probe = await fs.promises.open(dir, 'r');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const original = proto.sync;
    let count = 0;
    proto.sync = async function (this: FileHandle) {
      count++;
      await nextTurn();
      return original.call(this);
    };
    try {
      const sub = path.join(dir, 'sub');
      fs.mkdirSync(sub);
      await Promise.all([...Array.from({ length: 100 }, () => dirSync(dir)), ...Array.from({ length: 100 }, () => dirSync(sub + '/'))]);
      assert.ok(count <= 4, `${count} fsyncs for 200 callers on 2 directories`);
      assert.equal(dirSyncOpenCount(), 2);
    } finally {
      proto.sync = original;
    }
    await assert.rejects(dirSync(path.join(dir, 'missing')), /ENOENT/);
    assert.equal(dirSyncOpenCount(), 2, 'a failed directory is not kept');
    await closeDirSyncs();
    assert.equal(dirSyncOpenCount(), 0);
  });
});
