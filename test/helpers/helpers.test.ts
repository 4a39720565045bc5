import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import aws4 from 'aws4';
import { waitFor, startNode, cleanupAllNodes, bin } from './node-process';
import { PatternStream, patternBuffer, hashStream, writePatternFile, sha256File } from './data';
import { readCpuMs, readRssBytes, RssSampler } from './proc';
import { runCommand, mustRun } from './run-command';
import { SigV4Signer, uriEncode } from '../../bench/signed-client';

/** The test and benchmark helpers: a wrong helper makes every test that uses it meaningless. */

describe('test helpers', () => {
  describe('waitFor', () => {
    it('returns the first value the condition produces', async () => {
      let n = 0;
      assert.equal(await waitFor('n to reach 3', async () => (++n >= 3 ? n : undefined), 2_000, 1), 3);
    });

    it('fails after the deadline, naming what it waited for and the last error', async () => {
      const started = Date.now();
      await assert.rejects(
        waitFor('the moon', async () => {
          throw new Error('not yet');
        }, 100, 10),
        /timed out after 100 ms waiting for the moon \(last error: not yet\)/,
      );
      assert.ok(Date.now() - started < 1_000);
    });
  });

  describe('pattern data', () => {
    it('is deterministic per seed, differs between seeds, and streams what patternBuffer holds', async () => {
      const a = new PatternStream(3 * 1024 * 1024 + 5, 'x');
      const got = await hashStream(a);
      assert.equal(got.sizeBytes, 3 * 1024 * 1024 + 5);
      assert.equal(got.sha256, a.sha256());
      assert.equal(got.sha256, crypto.createHash('sha256').update(patternBuffer(3 * 1024 * 1024 + 5, 'x')).digest('hex'));
      assert.notEqual((await hashStream(new PatternStream(1024, 'y'))).sha256, (await hashStream(new PatternStream(1024, 'x'))).sha256);
    });

    it('writes files whose sha256 is the one returned', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-'));
      try {
        const file = path.join(dir, 'f');
        const h = await writePatternFile(file, 100_000, 'file');
        assert.equal(fs.statSync(file).size, 100_000);
        assert.equal(await sha256File(file), h);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('/proc readers', () => {
    it('read this process RSS and CPU time, and sample a maximum', () => {
      const rss = readRssBytes(process.pid);
      assert.ok(rss !== undefined && rss > 10 * 1024 * 1024 && rss < 8 * 1024 * 1024 * 1024, `rss ${rss}`);
      const cpu0 = readCpuMs(process.pid);
      const until = Date.now() + 60;
      while (Date.now() < until) crypto.createHash('sha256').update('spin').digest();
      assert.ok(readCpuMs(process.pid) >= cpu0);
      const s = new RssSampler(process.pid, 10).start();
      s.stop();
      assert.ok(s.samples >= 2 && s.maxBytes > 0);
      assert.equal(readRssBytes(2 ** 22 + 12345), undefined, 'a process that does not exist has no RSS');
    });
  });

  describe('commands', () => {
    it('reports the exit status and stderr of a failing command, and kills one past its deadline', async () => {
      await assert.rejects(mustRun(process.execPath, ['-e', 'console.error("boom"); process.exit(3)'], { timeoutMs: 10_000 }), /exit code 3[\s\S]*boom/);
      const r = await runCommand(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { timeoutMs: 200 });
      assert.equal(r.timedOut, true);
    });
  });

  describe('SigV4 signer of the benchmark client', () => {
    it('produces the same Authorization header as the aws4 library', () => {
      const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
      const when = new Date('2026-11-29T10:20:30Z');
      const cases = [
        { method: 'PUT', path: `/bucket/${['dir', 'a b+c(1)*.txt'].map(uriEncode).join('/')}`, query: '', hash: 'UNSIGNED-PAYLOAD' },
        { method: 'GET', path: '/bucket', query: 'list-type=2&max-keys=100&prefix=p%2Fq', hash: crypto.createHash('sha256').update('').digest('hex') },
      ];
      const signer = new SigV4Signer(creds.accessKeyId, creds.secretAccessKey, 'us-east-1');
      for (const c of cases) {
        const ours = signer.sign(c.method, c.path, c.query, '127.0.0.1:9000', c.hash, when);
        const ref = aws4.sign({
          host: '127.0.0.1:9000', method: c.method, path: c.query ? `${c.path}?${c.query}` : c.path, service: 's3', region: 'us-east-1',
          headers: { 'X-Amz-Date': ours['x-amz-date'], 'X-Amz-Content-Sha256': c.hash },
        }, creds);
        assert.equal(ours.authorization, (ref.headers as Record<string, string>).Authorization, `${c.method} ${c.path}`);
      }
    });
  });

  describe('startNode (needs the built CLI)', function () {
    this.timeout(90_000);
    after(() => cleanupAllNodes());

    it('starts a node, restarts it on the same ports after SIGKILL, and stops it gracefully with exit code 0', async function () {
      if (!fs.existsSync(bin())) this.skip();
      const node = await startNode();
      const { s3Port, adminPort, pid } = node;
      assert.ok(s3Port > 0 && adminPort > 0 && s3Port !== adminPort);
      assert.equal((await fetch(`${node.adminUrl}/ready`)).status, 200);
      assert.ok(readRssBytes(pid) !== undefined, 'the pid is the node process');
      await node.kill9();
      assert.equal(node.exitStatus()?.signal, 'SIGKILL');
      await node.restart();
      assert.notEqual(node.pid, pid);
      assert.deepEqual([node.s3Port, node.adminPort], [s3Port, adminPort]);
      await node.stop();
      assert.deepEqual(node.exitStatus(), { code: 0, signal: null }, `graceful stop:\n${node.logs().slice(-3000)}`);
      assert.match(node.logs(), /\{.*\}/, 'the node logs JSON lines');
    });

    it('fails to start with the node output in the error when the config is invalid', async function () {
      if (!fs.existsSync(bin())) this.skip();
      await assert.rejects(startNode({ configOverrides: { s3: { port: 'not-a-port' } } }), /node exited during start: code [1-9][\s\S]*--- node output ---[\s\S]*port/);
    });
  });
});
