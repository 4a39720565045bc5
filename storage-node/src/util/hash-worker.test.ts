import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { createHasher } from './checksum';
import { HashAlgorithm, WorkerDigestTransform } from './hash-worker';

const ALL: HashAlgorithm[] = ['MD5', 'SHA256', 'SHA1', 'CRC32', 'CRC32C', 'CRC64NVME'];

async function run(t: WorkerDigestTransform, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks, { objectMode: false }).pipe(t)) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('util/hash-worker', () => {
  it('passes the bytes through unchanged and gives the same digests as hashing on the event loop', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 12345);
    const chunks: Buffer[] = [];
    for (let off = 0; off < body.length; off += 65536 + 17) chunks.push(body.subarray(off, off + 65536 + 17));
    const t = new WorkerDigestTransform(ALL, body.length, () => new Error('too large'));
    assert.deepEqual(await run(t, chunks), body);
    assert.equal(t.bytes, body.length);
    for (const a of ALL) {
      const h = createHasher(a);
      h.update(body);
      assert.deepEqual(t.digest(a), h.digest(), a);
    }
  });

  it('keeps concurrent bodies apart', async () => {
    const bodies = [randomBytes(700_000), randomBytes(300_001), randomBytes(1)];
    const ts = bodies.map((b) => new WorkerDigestTransform(['MD5'], b.length, () => new Error('too large')));
    await Promise.all(ts.map((t, i) => run(t, [bodies[i]])));
    ts.forEach((t, i) => {
      const h = createHasher('MD5');
      h.update(bodies[i]);
      assert.deepEqual(t.digest('MD5'), h.digest());
    });
  });

  it('digests an empty body', async () => {
    const t = new WorkerDigestTransform(['MD5'], 10, () => new Error('too large'));
    await run(t, []);
    assert.equal(t.digest('MD5').toString('hex'), 'd41d8cd98f00b204e9800998ecf8427e');
  });

  it('fails a body that crosses its bound, and the next body still hashes', async () => {
    const t = new WorkerDigestTransform(['MD5'], 1000, () => new Error('too large'));
    await assert.rejects(run(t, [randomBytes(600), randomBytes(600)]), /too large/);
    const ok = new WorkerDigestTransform(['MD5'], 1000, () => new Error('too large'));
    await run(ok, [Buffer.from('abc')]);
    assert.equal(ok.digest('MD5').toString('hex'), '900150983cd24fb0d6963f7d28e17f72');
  });
});
