import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startNode, cleanupAllNodes, StartedNode, bin } from '../helpers/node-process';

/** Deterministic content per key, so any listed object can be checked even if its PUT was never acknowledged. */
function contentFor(key: string): Buffer {
  const seed = crypto.createHash('sha256').update(key).digest();
  const size = 1 + (seed.readUInt32BE(0) % (3 * 1024 * 1024));
  const out = Buffer.allocUnsafe(size);
  let block = seed;
  for (let off = 0; off < size; off += 32) {
    block = crypto.createHash('sha256').update(block).digest();
    block.copy(out, off, 0, Math.min(32, size - off));
  }
  return out;
}

async function readAll(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

describe('crash safety: SIGKILL during concurrent uploads', function () {
  this.timeout(300_000);
  let node: StartedNode;
  after(() => cleanupAllNodes());

  it('keeps every acknowledged object byte for byte and lists no partial object', async () => {
    node = await startNode();
    let s3 = node.s3Client({ maxAttempts: 1 });
    await s3.send(new CreateBucketCommand({ Bucket: 'crash' }));
    const acked = new Set<string>();
    let attempts = 0;
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      let stop = false;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop && i < 10_000; i++) {
          const key = `r${round}/w${w}/obj-${i}`;
          attempts++;
          try {
            await s3.send(new PutObjectCommand({ Bucket: 'crash', Key: key, Body: contentFor(key) }));
            acked.add(key);
          } catch {
            return; // the node died under us: this upload was never acknowledged
          }
        }
      });
      // Let uploads run, then kill the node in the middle of them (a random moment, always with writes in flight).
      await new Promise((r) => setTimeout(r, 400 + Math.floor(Math.random() * 800)));
      await node.kill9();
      stop = true;
      await Promise.all(writers);
      s3.destroy();
      await node.restart();
      s3 = node.s3Client({ maxAttempts: 1 });
    }
    assert.ok(acked.size > 20, `too few acknowledged uploads to mean anything (${acked.size} of ${attempts})`);

    // Every acknowledged object is there, byte for byte.
    for (const key of acked) {
      const got = await readAll(s3, 'crash', key);
      assert.ok(got.equals(contentFor(key)), `acknowledged object ${key} differs after crash`);
    }
    // Every listed object is complete: listed means committed, and committed means whole.
    let token: string | undefined;
    let listed = 0;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: 'crash', ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        listed++;
        const expected = contentFor(o.Key!);
        assert.equal(o.Size, expected.length, `listed object ${o.Key} has a partial size`);
        const got = await readAll(s3, 'crash', o.Key!);
        assert.ok(got.equals(expected), `listed object ${o.Key} is not what was written`);
      }
      token = page.NextContinuationToken;
    } while (token);
    assert.ok(listed >= acked.size, 'every acknowledged object is listed');
    s3.destroy();

    // The audit chain survived the crashes (a torn last record is recovered, not hidden).
    await node.stop();
    const out = execFileSync(process.execPath, [bin(), 'audit', 'verify', node.dataDir], { encoding: 'utf8' });
    assert.match(out, /ok|OK|verified/i);
  });
});
