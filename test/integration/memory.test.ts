import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode } from '../helpers/node-process';
import { PatternStream, hashStream } from '../helpers/data';
import { RssSampler } from '../helpers/proc';

/**
 * Memory stays bounded whatever the object size: a 2 GiB object goes up and comes back through
 * @aws-sdk/client-s3 (default settings: aws-chunked body with a CRC32 trailer) while the node's
 * resident memory is sampled every 100 ms. Data is generated and hashed as a stream on the test side,
 * so the test process never holds the object either.
 */

const GIB = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;
const OBJECT_BYTES = 2 * GIB;
const RSS_LIMIT_BYTES = 256 * MIB;
const PART_BYTES = 64 * MIB;

describe('memory: a 2 GiB object through one node', function () {
  this.timeout(10 * 60_000);
  let node: StartedNode;
  let s3: S3Client;

  before(async () => {
    node = await startNode();
    s3 = node.s3Client();
    await s3.send(new CreateBucketCommand({ Bucket: 'memory' }));
  });

  after(async () => {
    s3?.destroy();
    await cleanupAllNodes();
  });

  /** Downloads the object and checks size and sha256 while the sampler is still running. */
  async function download(key: string): Promise<{ sizeBytes: number; sha256: string }> {
    const r = await s3.send(new GetObjectCommand({ Bucket: 'memory', Key: key }));
    assert.equal(r.ContentLength, OBJECT_BYTES);
    return hashStream(r.Body as Readable);
  }

  function assertBounded(sampler: RssSampler, what: string): void {
    assert.ok(sampler.samples > 10, `too few RSS samples (${sampler.samples}) to mean anything`);
    assert.ok(sampler.maxBytes < RSS_LIMIT_BYTES, `${what}: node RSS reached ${(sampler.maxBytes / MIB).toFixed(1)} MiB, limit 256 MiB; ${sampler.describe()}`);
    assert.ok(node.running(), `the node died during ${what}:\n${node.logs().slice(-4000)}`);
  }

  it('a streamed PutObject and GetObject of 2 GiB keep the node under 256 MiB resident and return the same bytes', async () => {
    const sampler = new RssSampler(node.pid, 100).start();
    try {
      const src = new PatternStream(OBJECT_BYTES, 'memory-put');
      await s3.send(new PutObjectCommand({ Bucket: 'memory', Key: 'put-2g', Body: src, ContentLength: OBJECT_BYTES }));
      const head = await s3.send(new HeadObjectCommand({ Bucket: 'memory', Key: 'put-2g' }));
      assert.equal(head.ContentLength, OBJECT_BYTES);
      const got = await download('put-2g');
      assert.equal(got.sizeBytes, OBJECT_BYTES);
      assert.equal(got.sha256, src.sha256(), 'downloaded bytes differ from uploaded bytes');
    } finally {
      sampler.stop();
    }
    assertBounded(sampler, 'PutObject + GetObject of 2 GiB');
    await s3.send(new DeleteObjectCommand({ Bucket: 'memory', Key: 'put-2g' }));
  });

  it('a 2 GiB multipart upload (32 parts of 64 MiB) and its download keep the node under 256 MiB resident', async () => {
    const sampler = new RssSampler(node.pid, 100).start();
    const whole = crypto.createHash('sha256');
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'memory', Key: 'multi-2g' }));
    assert.ok(UploadId);
    try {
      const parts: { PartNumber: number; ETag: string }[] = [];
      for (let n = 1; n * PART_BYTES <= OBJECT_BYTES; n++) {
        // Each part is its own pattern; the whole object's hash is taken as the parts stream out, in order.
        const tap = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            whole.update(chunk);
            cb(null, chunk);
          },
        });
        const body = new PatternStream(PART_BYTES, `memory-part-${n}`).pipe(tap);
        const r = await s3.send(new UploadPartCommand({ Bucket: 'memory', Key: 'multi-2g', UploadId, PartNumber: n, Body: body, ContentLength: PART_BYTES }));
        assert.ok(r.ETag, `part ${n} has an ETag`);
        parts.push({ PartNumber: n, ETag: r.ETag });
      }
      await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'memory', Key: 'multi-2g', UploadId, MultipartUpload: { Parts: parts } }));
      const got = await download('multi-2g');
      assert.equal(got.sizeBytes, OBJECT_BYTES);
      assert.equal(got.sha256, whole.digest('hex'), 'downloaded bytes differ from the uploaded parts');
    } catch (e) {
      await s3.send(new AbortMultipartUploadCommand({ Bucket: 'memory', Key: 'multi-2g', UploadId })).catch(() => undefined);
      throw e;
    } finally {
      sampler.stop();
    }
    assertBounded(sampler, 'multipart upload + GetObject of 2 GiB');
  });
});
