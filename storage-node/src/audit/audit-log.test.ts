import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { AuditLog, AuditRecord } from './audit-log';
import { verifyAuditDir } from './verify';
import { GENESIS_HASH, segmentName } from './record';

function rec(i: number, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    time: new Date(1_790_000_000_000 + i).toISOString(), requestId: `req-${i}`, accessKey: 'AKIDEXAMPLE', sourceIp: '10.0.0.7',
    operation: 'PutObject', bucket: 'patients', key: `records/${i}.json`, status: 200, bytesIn: i, bytesOut: 0, durationMs: 1.5,
    userAgent: 'aws-sdk-js/3', ...extra,
  };
}

function linesOf(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
}

function segments(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();
}

async function waitUntil(what: string, cond: () => boolean, deadlineMs = 5_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('audit log', () => {
  let dir: string;
  let open: AuditLog[] = [];
  const openLog = async (opts: Parameters<typeof AuditLog.open>[1] = {}): Promise<AuditLog> => {
    const a = await AuditLog.open(dir, opts);
    open.push(a);
    return a;
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(os.tmpdir() + '/archipel-');
  });
  afterEach(async () => {
    for (const a of open) await a.close().catch(() => undefined);
    open = [];
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps 10 000 appended records, in order, as a chain that verifies', async () => {
    const a = await openLog();
    assert.equal(a.headHash, GENESIS_HASH);
    for (let i = 1; i <= 10_000; i++) a.append(rec(i));
    await a.flush();
    const head = a.headHash;
    await a.close();
    const lines = linesOf(path.join(dir, segmentName(1)));
    assert.equal(lines.length, 10_000);
    const first = JSON.parse(lines[0]) as Record<string, unknown>;
    assert.equal(first.seq, 1);
    assert.equal(first.prev, GENESIS_HASH);
    assert.equal(first.requestId, 'req-1');
    const last = JSON.parse(lines[9_999]) as Record<string, unknown>;
    assert.equal(last.seq, 10_000);
    assert.equal(last.hash, head);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems, []);
    assert.equal(v.ok, true);
    assert.equal(v.records, 10_000);
    assert.equal(v.headHash, head);
  });

  it('resumes seq and chain after a clean reopen', async () => {
    const a = await openLog();
    for (let i = 1; i <= 5; i++) a.append(rec(i));
    await a.close();
    const head = a.headHash;
    const b = await openLog();
    assert.equal(b.headHash, head);
    b.append(rec(6));
    await b.close();
    const lines = linesOf(path.join(dir, segmentName(1)));
    assert.equal(lines.length, 6, 'no recovery record after a clean close');
    const six = JSON.parse(lines[5]) as Record<string, unknown>;
    assert.equal(six.seq, 6);
    assert.equal(six.prev, head);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('keeps the call order of many concurrent callers as seq order', async () => {
    const a = await openLog({ fsyncIntervalMs: 5 });
    const order: string[] = [];
    const caller = async (c: number): Promise<void> => {
      for (let i = 0; i < 50; i++) {
        await new Promise((r) => setImmediate(r));
        const r = rec(c * 1000 + i, { requestId: `c${c}-${i}` });
        order.push(r.requestId);
        a.append(r);
        if (i % 10 === 0) await a.flush();
      }
    };
    await Promise.all(Array.from({ length: 40 }, (_, c) => caller(c)));
    await a.close();
    const recs = linesOf(path.join(dir, segmentName(1))).map((l) => JSON.parse(l) as { seq: number; requestId: string });
    assert.deepEqual(recs.map((r) => r.requestId), order);
    assert.deepEqual(recs.map((r) => r.seq), order.map((_, i) => i + 1));
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('rotates into numbered segments whose chain continues across files', async () => {
    const a = await openLog({ segmentMaxBytes: 4096 });
    for (let i = 1; i <= 200; i++) a.append(rec(i));
    await a.close();
    const files = segments(dir);
    assert.ok(files.length >= 5, `expected several segments, got ${files.length}`);
    assert.equal(files[0], 'audit-000001.jsonl');
    for (const f of files) assert.ok(fs.statSync(path.join(dir, f)).size <= 4096, `${f} exceeds the segment size`);
    const second = JSON.parse(linesOf(path.join(dir, files[1]))[0]) as { prev: string };
    const firstLines = linesOf(path.join(dir, files[0]));
    assert.equal(second.prev, (JSON.parse(firstLines[firstLines.length - 1]) as { hash: string }).hash);
    const v = await verifyAuditDir(dir);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.equal(v.records, 200);
    assert.equal(v.files, files.length);
  });

  it('cuts a torn last line on reopen and records the recovery, keeping the chain verifiable', async () => {
    const a = await openLog();
    for (let i = 1; i <= 20; i++) a.append(rec(i));
    await a.close();
    const file = path.join(dir, segmentName(1));
    const size = fs.statSync(file).size;
    const lastLen = Buffer.byteLength(linesOf(file)[19]) + 1;
    const cut = Math.floor(lastLen / 2);
    fs.truncateSync(file, size - cut); // as if the process died in the middle of writing record 20
    assert.equal((await verifyAuditDir(dir)).problems[0]?.kind, 'truncated');

    const b = await openLog();
    await b.close();
    const lines = linesOf(file);
    assert.equal(lines.length, 20, '19 intact records plus the recovery record');
    const recovered = JSON.parse(lines[19]) as Record<string, unknown>;
    assert.equal(recovered.operation, 'AuditRecovered');
    assert.equal(recovered.seq, 20);
    assert.equal(recovered.bytesIn, lastLen - cut, 'the cut byte count is recorded');
    assert.equal(recovered.key, segmentName(1));
    const v = await verifyAuditDir(dir);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
  });

  it('verifies and continues after the writing process is killed with SIGKILL mid-stream', async () => {
    // The child appends as fast as it can (small segments, so rotations happen too) until killed.
    const script = `
      const { AuditLog } = require(${JSON.stringify(path.join(__dirname, 'audit-log.js'))});
      AuditLog.open(process.argv[1], { segmentMaxBytes: 64 * 1024, fsyncIntervalMs: 5 }).then(async (a) => {
        for (let i = 1; ; i++) {
          a.append({ time: new Date().toISOString(), requestId: 'child-' + i, sourceIp: '::1', operation: 'GetObject',
            key: 'k'.repeat(i % 500), status: 200, bytesIn: 0, bytesOut: i, durationMs: 0 });
          if (i % 200 === 0) { await a.flush(); process.stdout.write('flushed ' + i + '\\n'); }
        }
      });`;
    const child = spawn(process.execPath, ['-e', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let flushed = 0;
    child.stdout.on('data', (d: Buffer) => {
      const m = /flushed (\d+)\n$/.exec(d.toString());
      if (m) flushed = Number(m[1]);
    });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      await waitUntil('the child to have written several segments', () => flushed >= 2000 && segments(dir).length >= 3, 30_000);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const a = await openLog();
    a.append(rec(1, { requestId: 'after-crash' }));
    await a.close();
    const v = await verifyAuditDir(dir);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.ok(v.records > flushed, `${v.records} records, ${flushed} acknowledged by flush`);
  });

  it('resumes after a crash that left an empty new segment', async () => {
    const a = await openLog();
    for (let i = 1; i <= 3; i++) a.append(rec(i));
    await a.close();
    fs.writeFileSync(path.join(dir, segmentName(2)), '');
    const b = await openLog();
    b.append(rec(4));
    await b.close();
    assert.equal(linesOf(path.join(dir, segmentName(2))).length, 1);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });

  it('refuses to open when the last complete record is unreadable, rather than start a new chain', async () => {
    fs.writeFileSync(path.join(dir, segmentName(1)), 'not a record\n');
    await assert.rejects(AuditLog.open(dir), /last record unreadable/);
  });

  it('reports overload while unwritten bytes exceed the limit, and clears it once written', async () => {
    const a = await openLog({ maxPendingBytes: 1024, fsyncIntervalMs: 60_000 });
    a.append(rec(1)); // the first record is written at once (no fsync yet this interval)
    await a.flush();
    for (let i = 2; i <= 10; i++) a.append(rec(i));
    assert.equal(a.overloaded, true);
    await a.flush();
    assert.equal(a.overloaded, false);
  });

  it('fsyncs at most once per interval under a steady stream of appends', async () => {
    const syncsAtMs: number[] = [];
    const fsync = async (fh: FileHandle): Promise<void> => {
      syncsAtMs.push(Date.now());
      await fh.sync();
    };
    const a = await openLog({ fsyncIntervalMs: 50, fsync });
    const startMs = Date.now();
    let i = 0;
    while (Date.now() - startMs < 400) {
      a.append(rec(++i));
      await new Promise((r) => setTimeout(r, 2));
    }
    const file = path.join(dir, segmentName(1));
    await waitUntil('every record to be written without a flush', () => linesOf(file).length === i);
    const timerSyncs = syncsAtMs.length;
    await a.close(); // may add one forced fsync, not subject to the interval
    assert.ok(i > 50, 'enough appends to need group commit');
    assert.ok(timerSyncs <= 400 / 50 + 3, `${timerSyncs} fsyncs for ${i} appends`);
    for (let k = 1; k < timerSyncs; k++) assert.ok(syncsAtMs[k] - syncsAtMs[k - 1] >= 45, `fsyncs ${syncsAtMs[k] - syncsAtMs[k - 1]} ms apart`);
  });

  it('completes a flush while other callers keep appending', async () => {
    const a = await openLog({ fsyncIntervalMs: 20 });
    let stop = false;
    let n = 0;
    const writer = (async () => {
      while (!stop) {
        for (let k = 0; k < 200; k++) a.append(rec(++n));
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 50));
      const target = n;
      const timeout = new Promise<string>((r) => setTimeout(() => r('timeout'), 1_500).unref());
      assert.equal(await Promise.race([a.flush().then(() => 'flushed'), timeout]), 'flushed');
      assert.ok(linesOf(path.join(dir, segmentName(1))).length >= target, 'every record appended before flush() is on disk');
    } finally {
      stop = true;
      await writer;
    }
  });

  it('stores non-finite numbers and over-long strings in bounded form instead of dropping the record', async () => {
    const a = await openLog();
    a.append(rec(1, { durationMs: NaN, key: 'k'.repeat(10_000) }));
    await a.close();
    const r = JSON.parse(linesOf(path.join(dir, segmentName(1)))[0]) as { durationMs: number; key: string };
    assert.equal(r.durationMs, -1);
    assert.equal(r.key.length, 2048);
    assert.equal((await verifyAuditDir(dir)).ok, true);
  });
});
