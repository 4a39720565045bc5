import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CreateBucketCommand, DeleteObjectsCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode, bin } from '../helpers/node-process';
import { send } from '../helpers/signed-http';

function verify(dir: string): { status: number; out: string } {
  const r = spawnSync(process.execPath, [bin(), 'audit', 'verify', dir], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

function auditFiles(dataDir: string): string[] {
  const dir = path.join(dataDir, 'audit');
  return fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(dir, f));
}

describe('audit log: every request recorded, tampering detected', function () {
  this.timeout(60_000);
  let node: StartedNode;
  let lines: string[];
  let file: string;

  before(async () => {
    node = await startNode();
    const s3 = node.s3Client();
    await s3.send(new CreateBucketCommand({ Bucket: 'audited' }));
    await s3.send(new PutObjectCommand({ Bucket: 'audited', Key: 'record-1', Body: 'patient data' }));
    await (await s3.send(new GetObjectCommand({ Bucket: 'audited', Key: 'record-1' }))).Body!.transformToString();
    await send(node.host, node.s3Port, 'GET', '/audited/record-1', {}, undefined); // anonymous: refused, still audited
    await s3.send(new PutObjectCommand({ Bucket: 'audited', Key: 'record-2', Body: 'x' }));
    await s3.send(new DeleteObjectsCommand({ Bucket: 'audited', Delete: { Objects: [{ Key: 'record-2' }, { Key: 'never-existed' }] } }));
    s3.destroy();
    await node.stop();
    file = auditFiles(node.dataDir)[0];
    lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
  });
  after(() => cleanupAllNodes());

  it('records allowed and refused requests with who, what and how much', () => {
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const put = recs.find((r) => r.operation === 'PutObject');
    assert.ok(put, 'PutObject recorded');
    assert.equal(put.bucket, 'audited');
    assert.equal(put.key, 'record-1');
    assert.equal(put.status, 200);
    assert.equal(put.accessKey, node.accessKeyId);
    assert.equal(put.bytesIn, 12);
    const get = recs.find((r) => r.operation === 'GetObject' && r.status === 200);
    assert.equal(get?.bytesOut, 12);
    const refused = recs.find((r) => r.operation === 'GetObject' && r.status === 403);
    assert.ok(refused, 'the refused anonymous GET is recorded');
    const batch = recs.filter((r) => r.operation === 'DeleteObjects.Object').map((r) => r.key).sort();
    assert.deepEqual(batch, ['never-existed', 'record-2'], 'a batch delete leaves one record per key');
    for (const r of recs) {
      assert.ok(r.requestId && r.time && typeof r.sourceIp === 'string', 'each record has a request id, time and source');
      assert.equal(JSON.stringify(r).includes(node.secretAccessKey), false, 'no secret in the audit log');
    }
  });

  it('verifies an untouched log', () => {
    const r = verify(node.dataDir);
    assert.equal(r.status, 0, r.out);
  });

  it('detects an altered record and names its line', () => {
    const i = lines.findIndex((l) => l.includes('"PutObject"'));
    const altered = [...lines];
    altered[i] = altered[i].replace('"status":200', '"status":404');
    assert.notEqual(altered[i], lines[i]);
    fs.writeFileSync(file, altered.join('\n') + '\n');
    const r = verify(node.dataDir);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, new RegExp(`line ${i + 1}\\b`));
    assert.match(r.out, /altered/);
  });

  it('detects a removed record', () => {
    const removed = lines.filter((_, j) => j !== 1);
    fs.writeFileSync(file, removed.join('\n') + '\n');
    const r = verify(node.dataDir);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /removed|inserted/);
  });

  it('detects an inserted record', () => {
    const inserted = [...lines.slice(0, 2), lines[1], ...lines.slice(2)];
    fs.writeFileSync(file, inserted.join('\n') + '\n');
    const r = verify(node.dataDir);
    assert.equal(r.status, 1, r.out);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    assert.equal(verify(node.dataDir).status, 0, 'restored log verifies again');
  });
});
