import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AuditLog, AuditRecord } from './audit-log';
import { runAuditVerify, verifyAuditDir } from './verify';
import { segmentName } from './record';

function rec(i: number): AuditRecord {
  return {
    time: new Date(1_790_000_000_000 + i).toISOString(), requestId: `req-${i}`, accessKey: 'AKIDEXAMPLE', sourceIp: '10.0.0.7',
    operation: i % 2 ? 'GetObject' : 'PutObject', bucket: 'patients', key: `records/${i}.json`, status: 200, bytesIn: 0, bytesOut: i,
    durationMs: 2,
  };
}

async function writeLog(dir: string, count: number, segmentMaxBytes?: number): Promise<void> {
  const a = await AuditLog.open(dir, { segmentMaxBytes });
  for (let i = 1; i <= count; i++) a.append(rec(i));
  await a.close();
}

async function verifyOutput(dir: string): Promise<{ code: number; out: string }> {
  const stream = new PassThrough();
  let out = '';
  stream.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const code = await runAuditVerify(dir, stream);
  stream.end();
  return { code, out };
}

describe('audit verify', () => {
  let dir: string;
  let file: string;
  let lines: string[];
  const rewrite = (ls: string[]): void => fs.writeFileSync(file, ls.join('\n') + '\n');

  beforeEach(async () => {
    dir = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    await writeLog(dir, 50);
    file = path.join(dir, segmentName(1));
    lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('names the line of a record whose field was altered', async () => {
    const ls = [...lines];
    ls[24] = ls[24].replace('"status":200', '"status":404');
    assert.notEqual(ls[24], lines[24]);
    rewrite(ls);
    const v = await verifyAuditDir(dir);
    assert.equal(v.ok, false);
    assert.deepEqual(v.problems.map((p) => [p.file, p.line, p.kind]), [[segmentName(1), 25, 'altered']]);
  });

  it('detects an alteration that keeps the values but changes the bytes', async () => {
    const ls = [...lines];
    const o = JSON.parse(ls[3]) as Record<string, unknown>;
    const { hash, ...rest } = o;
    ls[3] = JSON.stringify({ hash, ...rest }); // same fields, another order
    rewrite(ls);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[4, 'altered']]);
  });

  it('reports a deleted line where the gap is', async () => {
    rewrite(lines.filter((_, i) => i !== 10));
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[11, 'removed-or-inserted']]);
    assert.match(v.problems[0].message, /removed/);
    assert.equal(v.records, 49);
  });

  it('reports an inserted copy of a line', async () => {
    rewrite([...lines.slice(0, 8), lines[6], ...lines.slice(8)]);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[9, 'removed-or-inserted']]);
    assert.match(v.problems[0].message, /inserted/);
  });

  it('reports two swapped lines', async () => {
    const ls = [...lines];
    [ls[5], ls[6]] = [ls[6], ls[5]];
    rewrite(ls);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[6, 'removed-or-inserted'], [7, 'removed-or-inserted']]);
  });

  it('reports a line that is not JSON as malformed', async () => {
    const ls = [...lines];
    ls[30] = '{"seq": 31, oops';
    rewrite(ls);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[31, 'malformed']]);
  });

  it('reports a record with an added field as malformed', async () => {
    const ls = [...lines];
    ls[2] = ls[2].replace(/}$/, ',"note":"x"}');
    rewrite(ls);
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[3, 'malformed']]);
  });

  it('reports a missing first record', async () => {
    rewrite(lines.slice(1));
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.line, p.kind]), [[1, 'removed-or-inserted']]);
  });

  it('reports a removed middle segment file', async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    await writeLog(dir, 150, 4096);
    const files = fs.readdirSync(dir).sort();
    assert.ok(files.length >= 4, `expected several segments, got ${files.length}`);
    assert.equal((await verifyAuditDir(dir)).ok, true);
    fs.rmSync(path.join(dir, files[2]));
    const v = await verifyAuditDir(dir);
    assert.equal(v.ok, false);
    assert.equal(v.problems.length, 1, JSON.stringify(v.problems));
    assert.deepEqual([v.problems[0].file, v.problems[0].line, v.problems[0].kind], [files[3], 1, 'removed-or-inserted']);
    assert.match(v.problems[0].message, new RegExp(files[2].replace('.', '\\.')));
  });

  it('reports a renumbered segment whose records do not follow', async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    await writeLog(dir, 150, 4096);
    const files = fs.readdirSync(dir).sort();
    const n = files.length;
    // Remove segment 2 and close the numbering gap: only the seq/prev link can show it.
    fs.rmSync(path.join(dir, files[1]));
    for (let i = 2; i < n; i++) fs.renameSync(path.join(dir, files[i]), path.join(dir, files[i - 1]));
    const v = await verifyAuditDir(dir);
    assert.deepEqual(v.problems.map((p) => [p.file, p.line, p.kind]), [[files[1], 1, 'removed-or-inserted']]);
  });

  it('exits 0 and says verified for an intact log', async () => {
    const r = await verifyOutput(dir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /OK: 50 records in 1 file\(s\) verified/);
  });

  it('exits 1 and prints file, line and kind of each problem for a tampered log', async () => {
    const ls = [...lines];
    ls[9] = ls[9].replace('"bytesOut":10', '"bytesOut":11');
    rewrite(ls.filter((_, i) => i !== 40));
    const r = await verifyOutput(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /audit-000001\.jsonl line 10: altered/);
    assert.match(r.out, /audit-000001\.jsonl line 41: removed-or-inserted/);
    assert.match(r.out, /NOT intact: 2 problem/);
  });

  it('exits 2 when the folder cannot be read or holds no segments', async () => {
    const missing = await verifyOutput(path.join(dir, 'nope'));
    assert.equal(missing.code, 2, missing.out);
    assert.match(missing.out, /unreadable/);
    const empty = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    try {
      const r = await verifyOutput(empty);
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /no audit segments/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});
