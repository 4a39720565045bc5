import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { signedRequest, errorCode, rawExchange, send } from '../helpers/signed-http';

/** Every file below a folder, with its size: to prove nothing appears outside the data directory. */
function snapshot(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, fs.statSync(p).size);
    }
  };
  walk(dir);
  return out;
}

describe('hostile input gets the right error and changes nothing', function () {
  this.timeout(120_000);
  let node: StartedNode;
  let s3: S3Client;
  let outside: string;
  let baseline: Map<string, number>;

  before(async () => {
    node = await startNode();
    s3 = node.s3Client({ maxAttempts: 1 });
    await s3.send(new CreateBucketCommand({ Bucket: 'hostile' }));
    // The data directory's parent: nothing may be created there, whatever the key says.
    outside = path.dirname(node.dataDir);
    baseline = new Map([...snapshot(outside)].filter(([p]) => !p.startsWith(node.dataDir + path.sep)));
  });
  after(async () => {
    s3?.destroy();
    await cleanupAllNodes();
  });

  const expectRaw = async (p: Promise<{ status: number; body: string }>, code: string, status: number): Promise<void> => {
    const r = await p;
    assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.body}`);
    assert.equal(errorCode(r.body), code, r.body);
  };

  it('keys with ../ are plain keys: stored, read back, and never a path', async () => {
    for (const key of ['../../escape.txt', 'a/../../../b', '..', './x', '/leading-slash', 'dir//double']) {
      await s3.send(new PutObjectCommand({ Bucket: 'hostile', Key: key, Body: `content of ${key}` }));
      const got = await s3.send(new GetObjectCommand({ Bucket: 'hostile', Key: key }));
      assert.equal(await got.Body!.transformToString(), `content of ${key}`);
    }
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'hostile' }));
    assert.ok(listed.Contents!.some((o) => o.Key === '../../escape.txt'));
  });

  it('a NUL in a key is refused', async () => {
    await expectRaw(signedRequest(node, { method: 'PUT', path: '/hostile/a%00b', body: 'x' }), 'InvalidArgument', 400);
  });

  it('a key that is not valid UTF-8 is refused', async () => {
    // No signer can sign such a path (it cannot be decoded): the URI is refused before authentication.
    await expectRaw(send(node.host, node.s3Port, 'PUT', '/hostile/bad%FF%FEkey', { 'content-length': 1 }, 'x'), 'InvalidURI', 400);
    await expectRaw(send(node.host, node.s3Port, 'PUT', '/hostile/half%E2%82', { 'content-length': 1 }, 'x'), 'InvalidURI', 400);
    const raw = await rawExchange(node.host, node.s3Port, Buffer.concat([Buffer.from('GET /hostile/raw'), Buffer.from([0xff, 0xfe]), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
    assert.equal(raw.status, 400, raw.raw);
  });

  it('bucket names that break the rules are refused', async () => {
    for (const name of ['UPPER', 'a', 'x'.repeat(64), 'under_score', '-leading', 'trailing-', 'double..dot', '192.168.1.1', 'xn--punycode', 'dot.-dash']) {
      await expectRaw(signedRequest(node, { method: 'PUT', path: `/${encodeURIComponent(name)}` }), 'InvalidBucketName', 400);
    }
  });

  it('malformed XML bodies are MalformedXML and change nothing', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'hostile', Key: 'keep', Body: 'keep me' }));
    const bodies = [
      '<Delete><Object><Key>keep</Key></Object>',
      'not xml at all',
      '<Wrong><Object><Key>keep</Key></Object></Wrong>',
      '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>',
      '',
    ];
    for (const body of bodies) {
      await expectRaw(signedRequest(node, { method: 'POST', path: '/hostile?delete', body }), 'MalformedXML', 400);
    }
    await expectRaw(signedRequest(node, { method: 'PUT', path: '/hostile?versioning', body: '<VersioningConfiguration><Status>Sometimes</Status></VersioningConfiguration>' }), 'MalformedXML', 400);
    const still = await s3.send(new GetObjectCommand({ Bucket: 'hostile', Key: 'keep' }));
    assert.equal(await still.Body!.transformToString(), 'keep me');
  });

  it('a truncated body stores nothing', async () => {
    const head = [
      'PUT /hostile/truncated HTTP/1.1',
      `Host: ${node.host}:${node.s3Port}`,
      'Content-Length: 100000',
      'x-amz-content-sha256: UNSIGNED-PAYLOAD',
    ];
    // Sign a real request, then send only part of its body and hang up.
    const signed = await import('aws4').then((m) => m.default.sign(
      { host: `${node.host}:${node.s3Port}`, path: '/hostile/truncated', method: 'PUT', service: 's3', region: node.region, headers: { 'Content-Length': '100000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
      { accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey },
    ));
    const lines = [head[0], ...Object.entries(signed.headers as Record<string, string>).map(([k, v]) => `${k}: ${v}`)];
    await rawExchange(node.host, node.s3Port, Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), Buffer.alloc(5000, 7)]), { endAfterWrite: true, timeoutMs: 3000 });
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: 'hostile', Key: 'truncated' })), (e: Error & { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 404);
  });

  it('a body longer than its signed hash says is refused and not stored', async () => {
    await expectRaw(signedRequest(node, {
      method: 'PUT', path: '/hostile/wrong-length', body: 'twenty bytes of body',
      headers: { 'x-amz-content-sha256': require('node:crypto').createHash('sha256').update('ten bytes!').digest('hex') },
    }), 'XAmzContentSHA256Mismatch', 400);
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: 'hostile', Key: 'wrong-length' })));
  });

  it('oversized headers get an S3 error, not a hang', async () => {
    const r = await rawExchange(node.host, node.s3Port, `GET /hostile/keep HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    assert.equal(r.status, 400);
    assert.equal(errorCode(r.body), 'RequestHeaderSectionTooLarge');
  });

  it('an internal failure is InternalError with no internal detail', async () => {
    // Make the blob folder unusable (a file where the folder was): the node cannot create blobs.
    const blobs = path.join(node.dataDir, 'blobs');
    assert.ok(fs.statSync(blobs).isDirectory(), 'the blob store keeps its blobs under blobs/');
    const away = `${blobs}.away`;
    fs.renameSync(blobs, away);
    fs.writeFileSync(blobs, 'not a folder');
    try {
      const r = await signedRequest(node, { method: 'PUT', path: '/hostile/internal', body: 'x', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
      assert.equal(r.status, 500);
      assert.equal(errorCode(r.body), 'InternalError');
      assert.doesNotMatch(r.body, /ENOTDIR|ENOENT|EEXIST|\/tmp|blobs|archipel-|at \w+ \(|Error:/, 'no internal detail leaks');
      assert.match(r.body, /<Message>We encountered an internal error. Please try again.<\/Message>/);
    } finally {
      fs.rmSync(blobs);
      fs.renameSync(away, blobs);
    }
  });

  it('wrote nothing outside the data directory', () => {
    const after = new Map([...snapshot(outside)].filter(([p]) => !p.startsWith(node.dataDir + path.sep)));
    const added = [...after.keys()].filter((p) => !baseline.has(p) && !p.endsWith('.yaml') && !p.endsWith('.log'));
    assert.deepEqual(added, []);
  });
});
