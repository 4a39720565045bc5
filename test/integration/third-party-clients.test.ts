import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { writePatternFile, sha256File } from '../helpers/data';
import { mustRun, isolatedEnv } from '../helpers/run-command';

/**
 * The S3 clients people already use, installed from Debian (.ci/run): each creates a bucket, uploads
 * (including multipart), lists, downloads and compares bytes, deletes the object and the bucket.
 */

const MIB = 1024 * 1024;
// Debian's binaries, named explicitly: a pyenv `aws` shim may come first on PATH.
const AWS = '/usr/bin/aws';
const S3CMD = '/usr/bin/s3cmd';
const RCLONE = '/usr/bin/rclone';

/** Skips when the client is missing on a developer machine; in CI (.ci/run installs them) a missing client fails. */
function requireBinary(ctx: Mocha.Context, bin: string, pkg: string): void {
  if (fs.existsSync(bin)) return;
  if (process.env.CI) assert.fail(`${bin} is missing: .ci/run must install the Debian package ${pkg}`);
  process.stdout.write(`      skipping ${pkg} tests: ${bin} is not installed (apt-get install ${pkg}; in CI this fails)\n`);
  ctx.skip();
}

describe('third-party S3 clients against a real node', function () {
  this.timeout(300_000);
  let node: StartedNode;
  let work: string;

  before(async () => {
    node = await startNode();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-clients-'));
  });

  after(async () => {
    await cleanupAllNodes();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** Runs a client command; a failure carries the node's recent warnings and errors next to the client's stderr. */
  async function client(bin: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
    try {
      return await mustRun(bin, args, { env, timeoutMs });
    } catch (e) {
      const nodeLines = node.logs().split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).slice(-20);
      (e as Error).message += `\n--- node warnings and errors (last ${nodeLines.length}) ---\n${nodeLines.join('\n')}`;
      throw e;
    }
  }

  /** The ETag as the node reports it (multipart uploads end in -<parts>), read with the SDK. */
  async function etagOf(bucket: string, key: string): Promise<string> {
    const s3 = node.s3Client({ maxAttempts: 1 });
    try {
      return (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ETag ?? '';
    } finally {
      s3.destroy();
    }
  }

  /** Asserts a download equals the uploaded file, byte for byte. */
  async function assertSameBytes(uploaded: string, downloaded: string, what: string): Promise<void> {
    assert.equal(fs.statSync(downloaded).size, fs.statSync(uploaded).size, `${what}: size differs`);
    assert.equal(await sha256File(downloaded), await sha256File(uploaded), `${what}: content differs`);
  }

  describe('AWS CLI (awscli)', () => {
    let env: NodeJS.ProcessEnv;
    const aws = (args: string[], timeoutMs = 60_000): Promise<string> =>
      client(AWS, ['--endpoint-url', node.s3Url, ...args], env, timeoutMs);

    before(function () {
      requireBinary(this, AWS, 'awscli');
      const dir = path.join(work, 'aws');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config'), [
        // One attempt per request: an intermittent server error must fail the test, not be retried away.
        '[default]', `region = ${node.region}`, 'output = json', 'max_attempts = 1', 'retry_mode = standard',
        's3 =', '    addressing_style = path', '    multipart_threshold = 8MB', '    multipart_chunksize = 8MB', '',
      ].join('\n'));
      fs.writeFileSync(path.join(dir, 'credentials'), [
        '[default]', `aws_access_key_id = ${node.accessKeyId}`, `aws_secret_access_key = ${node.secretAccessKey}`, '',
      ].join('\n'), { mode: 0o600 });
      env = isolatedEnv(path.join(dir, 'home'), {
        AWS_CONFIG_FILE: path.join(dir, 'config'),
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'credentials'),
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_PAGER: '',
        AWS_CLI_AUTO_PROMPT: 'off',
      });
    });

    it('aws s3: copies a 100 MiB file up in multipart and back byte for byte, lists it, deletes it and the bucket', async () => {
      const src = path.join(work, 'aws-100m.bin');
      await writePatternFile(src, 100 * MIB, 'aws-cli');
      await aws(['s3', 'mb', 's3://cli-aws']);
      await aws(['s3', 'cp', src, 's3://cli-aws/dir/big.bin'], 180_000);
      const listing = await aws(['s3', 'ls', 's3://cli-aws/dir/']);
      assert.match(listing, new RegExp(`\\s${100 * MIB}\\s+big\\.bin`), `listing: ${listing}`);
      // 100 MiB in 8 MiB parts: 13 parts, and S3's multipart ETag "<md5 of md5s>-13".
      const head = JSON.parse(await aws(['s3api', 'head-object', '--bucket', 'cli-aws', '--key', 'dir/big.bin'])) as { ContentLength: number; ETag: string };
      assert.equal(head.ContentLength, 100 * MIB);
      assert.match(head.ETag, /^"[0-9a-f]{32}-13"$/, 'the upload went through multipart (13 parts)');
      const dst = path.join(work, 'aws-100m.out');
      await aws(['s3', 'cp', 's3://cli-aws/dir/big.bin', dst], 180_000);
      await assertSameBytes(src, dst, 'aws s3 cp round trip');
      await aws(['s3', 'rm', 's3://cli-aws/dir/big.bin']);
      assert.doesNotMatch(await aws(['s3', 'ls', 's3://cli-aws/', '--recursive']), /big\.bin/);
      await aws(['s3', 'rb', 's3://cli-aws']);
      assert.doesNotMatch(await aws(['s3', 'ls']), /cli-aws/, 'the bucket is gone');
    });

    it('aws s3api: put/head/list/get/delete an object and a hand-made multipart upload', async () => {
      const bucket = 'cli-s3api';
      await aws(['s3api', 'create-bucket', '--bucket', bucket]);
      const small = path.join(work, 's3api-small.bin');
      await writePatternFile(small, 123_457, 's3api');
      await aws(['s3api', 'put-object', '--bucket', bucket, '--key', 'a/small.bin', '--body', small,
        '--content-type', 'application/x-test', '--metadata', 'origin=aws-cli']);
      const head = JSON.parse(await aws(['s3api', 'head-object', '--bucket', bucket, '--key', 'a/small.bin'])) as { ContentLength: number; ContentType: string; Metadata: Record<string, string> };
      assert.equal(head.ContentLength, 123_457);
      assert.equal(head.ContentType, 'application/x-test');
      assert.deepEqual(head.Metadata, { origin: 'aws-cli' });

      // Multipart by hand: a 5 MiB part (the minimum) and a short last part.
      const p1 = path.join(work, 's3api-p1.bin');
      const p2 = path.join(work, 's3api-p2.bin');
      await writePatternFile(p1, 5 * MIB, 'part-1');
      await writePatternFile(p2, 1 * MIB + 7, 'part-2');
      const { UploadId } = JSON.parse(await aws(['s3api', 'create-multipart-upload', '--bucket', bucket, '--key', 'a/multi.bin'])) as { UploadId: string };
      const parts = [];
      for (const [n, file] of [[1, p1], [2, p2]] as const) {
        const r = JSON.parse(await aws(['s3api', 'upload-part', '--bucket', bucket, '--key', 'a/multi.bin', '--upload-id', UploadId, '--part-number', String(n), '--body', file])) as { ETag: string };
        parts.push({ PartNumber: n, ETag: r.ETag });
      }
      const partsFile = path.join(work, 's3api-parts.json');
      fs.writeFileSync(partsFile, JSON.stringify({ Parts: parts }));
      const done = JSON.parse(await aws(['s3api', 'complete-multipart-upload', '--bucket', bucket, '--key', 'a/multi.bin', '--upload-id', UploadId, '--multipart-upload', `file://${partsFile}`])) as { ETag: string };
      assert.match(done.ETag, /-2"$/);

      const list = JSON.parse(await aws(['s3api', 'list-objects-v2', '--bucket', bucket, '--prefix', 'a/'])) as { Contents: { Key: string; Size: number }[] };
      assert.deepEqual(list.Contents.map((c) => [c.Key, c.Size]), [['a/multi.bin', 6 * MIB + 7], ['a/small.bin', 123_457]]);

      const got = path.join(work, 's3api-small.out');
      await aws(['s3api', 'get-object', '--bucket', bucket, '--key', 'a/small.bin', got]);
      await assertSameBytes(small, got, 's3api get-object');
      const gotMulti = path.join(work, 's3api-multi.out');
      await aws(['s3api', 'get-object', '--bucket', bucket, '--key', 'a/multi.bin', gotMulti]);
      const joined = path.join(work, 's3api-joined.bin');
      fs.writeFileSync(joined, Buffer.concat([fs.readFileSync(p1), fs.readFileSync(p2)]));
      await assertSameBytes(joined, gotMulti, 's3api multipart object');

      for (const key of ['a/small.bin', 'a/multi.bin']) await aws(['s3api', 'delete-object', '--bucket', bucket, '--key', key]);
      const empty = await aws(['s3api', 'list-objects-v2', '--bucket', bucket]);
      assert.doesNotMatch(empty, /"Key"/, `bucket should be empty: ${empty}`);
      await aws(['s3api', 'delete-bucket', '--bucket', bucket]);
    });
  });

  describe('s3cmd', () => {
    let cfg: string;
    let env: NodeJS.ProcessEnv;
    const s3cmd = (args: string[], timeoutMs = 60_000): Promise<string> => client(S3CMD, ['-c', cfg, ...args], env, timeoutMs);

    before(function () {
      requireBinary(this, S3CMD, 's3cmd');
      const dir = path.join(work, 's3cmd');
      fs.mkdirSync(dir, { recursive: true });
      cfg = path.join(dir, 's3cfg');
      const hostPort = `${node.host}:${node.s3Port}`;
      fs.writeFileSync(cfg, [
        '[default]', `access_key = ${node.accessKeyId}`, `secret_key = ${node.secretAccessKey}`,
        `host_base = ${hostPort}`, `host_bucket = ${hostPort}`, // no %(bucket)s: path-style addressing
        'use_https = False', 'signature_v2 = False', `bucket_location = ${node.region}`,
        'check_ssl_certificate = False', 'proxy_host =', 'proxy_port = 0', 'max_retries = 0', '',
      ].join('\n'), { mode: 0o600 });
      env = isolatedEnv(path.join(dir, 'home'));
    });

    it('makes a bucket, puts a 12 MiB file in multipart and a small one, lists, gets back identical bytes, deletes', async () => {
      const big = path.join(work, 's3cmd-12m.bin');
      const small = path.join(work, 's3cmd-small.bin');
      await writePatternFile(big, 12 * MIB, 's3cmd-big');
      await writePatternFile(small, 1000, 's3cmd-small');
      await s3cmd(['mb', 's3://cli-s3cmd']);
      await s3cmd(['put', '--multipart-chunk-size-mb=5', big, 's3://cli-s3cmd/big.bin'], 120_000);
      assert.match(await etagOf('cli-s3cmd', 'big.bin'), /-3"$/, '12 MiB in 5 MiB parts went up as a 3-part multipart upload');
      await s3cmd(['put', small, 's3://cli-s3cmd/sub/small.bin']);
      const listing = await s3cmd(['ls', '--recursive', 's3://cli-s3cmd']);
      assert.match(listing, new RegExp(`${12 * MIB}\\s+s3://cli-s3cmd/big\\.bin`), listing);
      assert.match(listing, /1000\s+s3:\/\/cli-s3cmd\/sub\/small\.bin/, listing);
      const info = await s3cmd(['info', 's3://cli-s3cmd/big.bin']);
      assert.match(info, /File size:\s+12582912/, info);
      for (const [key, file] of [['big.bin', big], ['sub/small.bin', small]]) {
        const out = `${file}.out`;
        await s3cmd(['get', '--force', `s3://cli-s3cmd/${key}`, out], 120_000);
        await assertSameBytes(file, out, `s3cmd get ${key}`);
        await s3cmd(['del', `s3://cli-s3cmd/${key}`]);
      }
      assert.doesNotMatch(await s3cmd(['ls', '--recursive', 's3://cli-s3cmd']), /s3:\/\/cli-s3cmd\//);
      await s3cmd(['rb', 's3://cli-s3cmd']);
      assert.doesNotMatch(await s3cmd(['ls']), /cli-s3cmd/, 'the bucket is gone');
    });
  });

  describe('rclone', () => {
    let cfg: string;
    let env: NodeJS.ProcessEnv;
    const rclone = (args: string[], timeoutMs = 60_000): Promise<string> =>
      client(RCLONE, ['--config', cfg, '--retries', '1', '--low-level-retries', '1', '--stats', '0', ...args], env, timeoutMs);

    before(function () {
      requireBinary(this, RCLONE, 'rclone');
      const dir = path.join(work, 'rclone');
      fs.mkdirSync(dir, { recursive: true });
      cfg = path.join(dir, 'rclone.conf');
      fs.writeFileSync(cfg, [
        '[archipel]', 'type = s3', 'provider = Other', `access_key_id = ${node.accessKeyId}`, `secret_access_key = ${node.secretAccessKey}`,
        `endpoint = ${node.s3Url}`, 'force_path_style = true', `region = ${node.region}`, '',
      ].join('\n'), { mode: 0o600 });
      env = isolatedEnv(path.join(dir, 'home'));
    });

    it('makes a bucket, copies a 12 MiB file in multipart and a small one, lists, copies back identical bytes, deletes', async () => {
      const big = path.join(work, 'rclone-12m.bin');
      const small = path.join(work, 'rclone-small.bin');
      await writePatternFile(big, 12 * MIB, 'rclone-big');
      await writePatternFile(small, 4321, 'rclone-small');
      await rclone(['mkdir', 'archipel:cli-rclone']);
      await rclone(['copyto', '--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M', big, 'archipel:cli-rclone/big.bin'], 120_000);
      assert.match(await etagOf('cli-rclone', 'big.bin'), /-3"$/, '12 MiB in 5 MiB parts went up as a 3-part multipart upload');
      await rclone(['copyto', small, 'archipel:cli-rclone/sub/small.bin']);
      const listing = JSON.parse(await rclone(['lsjson', '--recursive', '--files-only', 'archipel:cli-rclone'])) as { Path: string; Size: number }[];
      assert.deepEqual(listing.map((e) => [e.Path, e.Size]).sort(), [['big.bin', 12 * MIB], ['sub/small.bin', 4321]]);
      // rclone checks the MD5 of what it downloads against what it uploaded (ETag or its own metadata).
      for (const [key, file] of [['big.bin', big], ['sub/small.bin', small]]) {
        const out = `${file}.out`;
        await rclone(['copyto', `archipel:cli-rclone/${key}`, out], 120_000);
        await assertSameBytes(file, out, `rclone copyto ${key}`);
        await rclone(['deletefile', `archipel:cli-rclone/${key}`]);
      }
      assert.equal((await rclone(['lsf', '--recursive', 'archipel:cli-rclone'])).trim(), '', 'bucket is empty');
      await rclone(['rmdir', 'archipel:cli-rclone']);
      assert.doesNotMatch(await rclone(['lsd', 'archipel:']), /cli-rclone/, 'the bucket is gone');
    });
  });
});
