import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32c } from '@node-rs/crc32';
import { closeDirSyncs } from '../util/fsync';
import { HEADER_BYTES } from './blob-format';
import { BlobCorruptError, BlobNotFoundError, BlobStore, FRAMING_CHUNK_INDEX } from './blob-store';

const CHUNK = 4096;

async function put(store: BlobStore, data: Buffer, pieceBytes = 1000): Promise<string> {
  const w = store.createWriter();
  const pieces: Buffer[] = [];
  for (let off = 0; off < data.length; off += pieceBytes) pieces.push(data.subarray(off, off + pieceBytes));
  await pipeline(Readable.from(pieces), w);
  const ref = await w.commit();
  assert.equal(ref.size, data.length);
  assert.equal(ref.id, w.id);
  return ref.id;
}

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/**
 * Collects what a reader emits before it fails, in flowing mode or through async iteration. The consumer
 * is slow on purpose, so that a reader that reads ahead into its buffer would lose what it had buffered.
 */
async function readUntilError(r: Readable, mode: 'flowing' | 'iterator'): Promise<{ data: Buffer; error: unknown }> {
  const parts: Buffer[] = [];
  try {
    if (mode === 'iterator') {
      for await (const c of r) {
        parts.push(c as Buffer);
        await sleep(3);
      }
    } else {
      await new Promise<void>((resolve, reject) => {
        r.on('data', (c: Buffer) => {
          parts.push(c);
          r.pause();
          setTimeout(() => r.resume(), 3);
        });
        r.on('end', resolve);
        r.on('error', reject);
      });
    }
    return { data: Buffer.concat(parts), error: undefined };
  } catch (e) {
    return { data: Buffer.concat(parts), error: e };
  }
}

function blobFile(store: BlobStore, id: string): string {
  return path.join(store.dir, 'blobs', id.slice(0, 2), id);
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => d.name);
}

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function whenClosed(r: Readable): Promise<void> {
  return r.closed ? Promise.resolve() : new Promise((resolve) => r.once('close', () => resolve()));
}

describe('blob store', () => {
  let tmp: string;
  let store: BlobStore;

  beforeEach(async () => {
    tmp = fs.mkdtempSync(os.tmpdir() + '/archipel-');
    store = await BlobStore.open(tmp, { chunkSizeBytes: CHUNK });
  });

  afterEach(async () => {
    await closeDirSyncs();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('returns exactly the bytes written, for sizes around chunk boundaries', async () => {
    for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3]) {
      const data = randomBytes(size);
      const id = await put(store, data, 777);
      assert.ok(/^[0-9a-f]{32}$/.test(id));
      assert.ok(fs.existsSync(blobFile(store, id)));
      assert.deepEqual(await readAll(store.openReader(id)), data, `size ${size}`);
      assert.deepEqual(await store.stat(id), { sizeBytes: size });
      assert.deepEqual(await store.verify(id), { ok: true, badChunks: [], sizeBytes: size });
    }
  });

  it('accepts writes of any size, including ones larger than a chunk', async () => {
    const data = randomBytes(3 * CHUNK + 100);
    const id = await put(store, data, 2 * CHUNK + 1);
    assert.deepEqual(await readAll(store.openReader(id)), data);
  });

  it('serves every byte range of a blob exactly', async () => {
    const small = await BlobStore.open(path.join(tmp, 'small'), { chunkSizeBytes: 16 });
    const data = randomBytes(60);
    const id = await put(small, data, 7);
    for (let start = 0; start < data.length; start++) {
      for (let end = start; end < data.length; end++) {
        const got = await readAll(small.openReader(id, { start, endInclusive: end }));
        if (!got.equals(data.subarray(start, end + 1))) assert.fail(`range [${start}, ${end}]`);
      }
    }
  });

  it('refuses a range past the end of the blob', async () => {
    const id = await put(store, randomBytes(10));
    await assert.rejects(readAll(store.openReader(id, { start: 5, endInclusive: 10 })), RangeError);
    assert.throws(() => store.openReader(id, { start: 5, endInclusive: 4 }), RangeError);
  });

  it('hands over the good chunks, then fails with BlobCorruptError at a flipped byte', async () => {
    const data = randomBytes(5 * CHUNK + 3);
    const id = await put(store, data);
    const file = blobFile(store, id);
    const raw = fs.readFileSync(file);
    raw[HEADER_BYTES + 2 * CHUNK + 100] ^= 0x04;
    fs.writeFileSync(file, raw);
    const reported: [string, number][] = [];
    store.onCorrupt = (blobId, chunkIndex) => reported.push([blobId, chunkIndex]);
    for (const mode of ['flowing', 'iterator'] as const) {
      const { data: got, error } = await readUntilError(store.openReader(id), mode);
      assert.ok(error instanceof BlobCorruptError, `${mode}: ${String(error)}`);
      assert.equal(error.blobId, id);
      assert.equal(error.chunkIndex, 2);
      assert.deepEqual(got, data.subarray(0, 2 * CHUNK), mode);
    }
    assert.deepEqual(reported, [[id, 2], [id, 2]]);
    // Ranges that avoid the bad chunk are still served.
    assert.deepEqual(await readAll(store.openReader(id, { start: 3 * CHUNK, endInclusive: 5 * CHUNK + 2 })), data.subarray(3 * CHUNK));
    assert.deepEqual(await store.verify(id), { ok: false, badChunks: [2], sizeBytes: data.length });
  });

  it('reports truncated, foreign and misplaced files as corrupt and serves none of their bytes', async () => {
    const data = randomBytes(2 * CHUNK);
    const truncated = await put(store, data);
    fs.truncateSync(blobFile(store, truncated), HEADER_BYTES + CHUNK);
    const foreign = await put(store, data);
    fs.writeFileSync(blobFile(store, foreign), randomBytes(3 * CHUNK));
    const misplaced = await put(store, data);
    const other = await put(store, data);
    fs.copyFileSync(blobFile(store, other), blobFile(store, misplaced));
    const empty = await put(store, data);
    fs.writeFileSync(blobFile(store, empty), '');

    const reported: number[] = [];
    store.onCorrupt = (_id, chunkIndex) => reported.push(chunkIndex);
    for (const id of [truncated, foreign, misplaced, empty]) {
      const { data: got, error } = await readUntilError(store.openReader(id), 'flowing');
      assert.ok(error instanceof BlobCorruptError, String(error));
      assert.equal(error.chunkIndex, FRAMING_CHUNK_INDEX);
      assert.equal(got.length, 0);
      assert.deepEqual(await store.verify(id), { ok: false, badChunks: [FRAMING_CHUNK_INDEX], sizeBytes: 0 });
      await assert.rejects(store.stat(id), BlobCorruptError);
    }
    assert.deepEqual(reported, [-1, -1, -1, -1]);
  });

  it('reports a missing blob as not found, and deleting it twice is fine', async () => {
    const id = await put(store, randomBytes(10));
    await store.delete(id);
    await store.delete(id);
    assert.equal(await store.stat(id), undefined);
    await assert.rejects(readAll(store.openReader(id)), BlobNotFoundError);
    await assert.rejects(store.verify(id), BlobNotFoundError);
    assert.throws(() => store.openReader('../../etc/passwd'), RangeError);
    await assert.rejects(store.delete('ab/../../x'), RangeError);
  });

  it('lists committed blobs only, not the ones being written in place', async () => {
    const ids = [await put(store, randomBytes(5)), await put(store, randomBytes(0)), await put(store, randomBytes(CHUNK * 2))];
    const pending = store.createWriter();
    await new Promise<void>((resolve, reject) => pending.write(randomBytes(300 * 1024), (e) => (e ? reject(e) : resolve())));
    const ended = store.createWriter();
    ended.end(randomBytes(100));
    await new Promise((resolve) => ended.once('finish', resolve));
    assert.ok(fs.existsSync(blobFile(store, pending.id)) && fs.existsSync(blobFile(store, ended.id)), 'both files exist');
    const listed: string[] = [];
    for await (const id of store.list()) listed.push(id);
    assert.deepEqual(listed.sort(), [...ids].sort());
    await pending.abort();
    const late = await ended.commit();
    const after: string[] = [];
    for await (const id of store.list()) after.push(id);
    assert.deepEqual(after.sort(), [...ids, late.id].sort());
  });

  it('leaves nothing behind when a writer is aborted midway, before writing, or twice', async () => {
    const w = store.createWriter();
    await new Promise<void>((resolve, reject) => w.write(randomBytes(200 * 1024), (e) => (e ? reject(e) : resolve())));
    assert.equal(filesUnder(path.join(tmp, 'blobs')).length, 1);
    await w.abort();
    await w.abort();
    const early = store.createWriter();
    await early.abort();
    const ended = store.createWriter();
    ended.end(randomBytes(10));
    await new Promise((resolve) => ended.once('finish', resolve));
    await ended.abort();
    await assert.rejects(ended.commit(), /failed or was aborted/);
    assert.deepEqual(filesUnder(path.join(tmp, 'blobs')), []);
    const listed: string[] = [];
    for await (const id of store.list()) listed.push(id);
    assert.deepEqual(listed, []);
  });

  it('removes the file when the body stream fails', async () => {
    const w = store.createWriter();
    async function* failing(): AsyncGenerator<Buffer> {
      yield randomBytes(CHUNK);
      throw new Error('client went away');
    }
    await assert.rejects(pipeline(Readable.from(failing()), w), /client went away/);
    await w.abort();
    assert.deepEqual(filesUnder(path.join(tmp, 'blobs')), []);
  });

  it('keeps a committed blob when abort() follows commit()', async () => {
    const w = store.createWriter();
    w.end(randomBytes(10));
    const ref = await w.commit();
    await w.abort();
    assert.deepEqual(await store.stat(ref.id), { sizeBytes: 10 });
  });

  it('refuses to commit before end()', async () => {
    const w = store.createWriter();
    w.write(randomBytes(10));
    await assert.rejects(w.commit(), /end\(\) first/);
    await w.abort();
  });

  it('removes the temp files an earlier version left (crash leftovers) at open', async () => {
    fs.mkdirSync(path.join(tmp, 'tmp'));
    fs.writeFileSync(path.join(tmp, 'tmp', 'aaaa.tmp'), randomBytes(100));
    fs.writeFileSync(path.join(tmp, 'tmp', 'bbbb.tmp'), '');
    const id = await put(store, randomBytes(10));
    const reopened = await BlobStore.open(tmp, { chunkSizeBytes: CHUNK });
    assert.equal(fs.existsSync(path.join(tmp, 'tmp')), false);
    assert.deepEqual(await reopened.stat(id), { sizeBytes: 10 });
  });

  it('lists a blob a crash left without its footer, for the orphan sweep, and reports it corrupt on read', async () => {
    const crashed = '0123456789abcdef0123456789abcdef';
    fs.writeFileSync(blobFile(store, crashed), randomBytes(HEADER_BYTES + 100));
    const reopened = await BlobStore.open(tmp, { chunkSizeBytes: CHUNK });
    const listed: string[] = [];
    for await (const id of reopened.list()) listed.push(id);
    assert.deepEqual(listed, [crashed]);
    await assert.rejects(readAll(reopened.openReader(crashed)), BlobCorruptError);
  });

  it('reads blobs written with another chunk size', async () => {
    const data = randomBytes(10 * 1024 + 5);
    const id = await put(store, data);
    const other = await BlobStore.open(tmp, { chunkSizeBytes: 64 * 1024 });
    assert.deepEqual(await readAll(other.openReader(id, { start: 5000, endInclusive: 9000 })), data.subarray(5000, 9001));
  });

  it('leaks no file descriptor across many reads, including abandoned and failed ones', async () => {
    const data = randomBytes(8 * CHUNK);
    const id = await put(store, data);
    const corrupt = await put(store, data);
    const raw = fs.readFileSync(blobFile(store, corrupt));
    raw[HEADER_BYTES + 3 * CHUNK] ^= 1;
    fs.writeFileSync(blobFile(store, corrupt), raw);
    const missing = '0'.repeat(32);
    await readAll(store.openReader(id)); // warm-up: lazily opened fds of the runtime
    const before = openFdCount();
    for (let i = 0; i < 100; i++) {
      const full = store.openReader(id);
      await readAll(full);
      const abandoned = store.openReader(id, { start: 10, endInclusive: 7 * CHUNK });
      await new Promise((resolve) => abandoned.once('data', resolve));
      abandoned.destroy();
      const never = store.openReader(id);
      never.destroy();
      const bad = store.openReader(corrupt);
      await readUntilError(bad, 'flowing');
      const gone = store.openReader(missing);
      await readUntilError(gone, 'flowing');
      await Promise.all([full, abandoned, never, bad, gone].map(whenClosed));
    }
    assert.equal(openFdCount(), before);
  });

  it('commits in place: file and directory fsynced, no rename, before it resolves', async () => {
    const events: string[] = [];
    const probe = await fs.promises.open(tmp, 'r');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const originalSync = proto.sync;
    const originalRename = fs.promises.rename;
    const fsp = fs.promises as unknown as { rename: typeof fs.promises.rename };
    proto.sync = async function (this: FileHandle) {
      const target = fs.readlinkSync(`/proc/self/fd/${this.fd}`);
      await originalSync.call(this);
      events.push(`fsync ${path.relative(tmp, target)}`);
    };
    fsp.rename = async (from, to) => {
      await originalRename(from, to);
      events.push(`rename ${path.relative(tmp, String(from))} ${path.relative(tmp, String(to))}`);
    };
    try {
      const w = store.createWriter();
      w.end(randomBytes(100));
      await w.commit();
      events.push('committed');
      const id = w.id;
      const fanout = `blobs/${id.slice(0, 2)}`;
      const mine = events.filter((e) => !e.startsWith('fsync blobs') || e === `fsync ${fanout}` || e === `fsync ${fanout}/${id}` || e === 'committed');
      assert.deepEqual([...mine].sort(), [`fsync ${fanout}`, `fsync ${fanout}/${id}`, 'committed'].sort());
      assert.equal(mine[mine.length - 1], 'committed');
      assert.equal(events.filter((e) => e.startsWith('rename')).length, 0);
    } finally {
      proto.sync = originalSync;
      fsp.rename = originalRename;
    }
  });

  it('commits many blobs concurrently, each readable afterwards', async () => {
    const datas = Array.from({ length: 64 }, (_, i) => randomBytes(i * 97));
    const ids = await Promise.all(datas.map((d) => put(store, d, 500)));
    assert.equal(new Set(ids).size, ids.length);
    for (let i = 0; i < ids.length; i++) assert.deepEqual(await readAll(store.openReader(ids[i])), datas[i]);
    assert.equal(filesUnder(path.join(tmp, 'blobs')).length, ids.length);
  });

  it('skips every fsync when fsync is off', async () => {
    const nosync = await BlobStore.open(path.join(tmp, 'nosync'), { chunkSizeBytes: CHUNK, fsync: false });
    const probe = await fs.promises.open(tmp, 'r');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const original = proto.sync;
    let count = 0;
    proto.sync = async function (this: FileHandle) {
      count++;
      return original.call(this);
    };
    try {
      const data = randomBytes(CHUNK + 1);
      const id = await put(nosync, data);
      assert.deepEqual(await readAll(nosync.openReader(id)), data);
    } finally {
      proto.sync = original;
    }
    assert.equal(count, 0);
  });

  it('writes and reads 256 MiB with bounded memory', async function () {
    this.timeout(120_000);
    const big = await BlobStore.open(path.join(tmp, 'big'));
    const totalBytes = 256 * 1024 * 1024;
    const pieceBytes = 256 * 1024;
    const seed = randomBytes(pieceBytes);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sample = (): void => {
      peak = Math.max(peak, process.memoryUsage().rss);
    };
    let writtenCrc = 0;
    async function* generate(): AsyncGenerator<Buffer> {
      for (let off = 0; off < totalBytes; off += pieceBytes) {
        const piece = Buffer.from(seed);
        piece.writeUInt32LE(off / pieceBytes, 0);
        writtenCrc = crc32c(piece, writtenCrc);
        if ((off / pieceBytes) % 16 === 0) sample();
        yield piece;
      }
    }
    const w = big.createWriter();
    await pipeline(Readable.from(generate()), w);
    const ref = await w.commit();
    assert.equal(ref.size, totalBytes);
    let readCrc = 0;
    let readBytes = 0;
    for await (const c of big.openReader(ref.id)) {
      readCrc = crc32c(c as Buffer, readCrc);
      readBytes += (c as Buffer).length;
      sample();
    }
    assert.equal(readBytes, totalBytes);
    assert.equal(readCrc, writtenCrc);
    const growthMiB = (peak - baseline) / (1024 * 1024);
    assert.ok(growthMiB < 64, `RSS grew by ${growthMiB.toFixed(1)} MiB`);
  });
});
