import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { closeDirSyncs } from '../util/fsync';
import { HEADER_BYTES } from './blob-format';
import { BlobStore } from './blob-store';
import { Scrubber } from './scrubber';

const CHUNK = 4096;

async function put(store: BlobStore, data: Buffer): Promise<string> {
  const w = store.createWriter();
  w.end(data);
  return (await w.commit()).id;
}

function corruptChunk(store: BlobStore, id: string, chunkIndex: number): void {
  const file = path.join(store.dir, 'blobs', id.slice(0, 2), id);
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  const pos = HEADER_BYTES + chunkIndex * CHUNK + 7;
  fs.readSync(fd, b, 0, 1, pos);
  b[0] ^= 0x10;
  fs.writeSync(fd, b, 0, 1, pos);
  fs.closeSync(fd);
}

/** A logger whose lines land in an array, to check what an operator would see. */
function capturingLogger(): { logger: winston.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    objectMode: true,
    write(info: Record<string, unknown>, _enc, cb) {
      lines.push(info);
      cb();
    },
  });
  const logger = winston.createLogger({ level: 'debug', transports: [new winston.transports.Stream({ stream })] });
  return { logger, lines };
}

async function waitFor(cond: () => boolean, deadlineMs: number, what: string): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('scrubber', () => {
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

  it('does not report a blob being written, nor an unreferenced crash leftover, as corrupt', async () => {
    const good = await put(store, randomBytes(2 * CHUNK));
    const writing = store.createWriter();
    await new Promise<void>((resolve, reject) => writing.write(randomBytes(200 * 1024), (e) => (e ? reject(e) : resolve())));
    const leftover = 'abcdef0123456789abcdef0123456789';
    fs.writeFileSync(path.join(store.dir, 'blobs', leftover.slice(0, 2), leftover), randomBytes(HEADER_BYTES + 50));
    const found: string[] = [];
    const scrubber = new Scrubber(store, { bytesPerSecond: 1e9, intervalMs: 60_000, isReferenced: (id) => id === good, onCorrupt: (id) => found.push(id) });
    const res = await scrubber.runPass();
    assert.deepEqual(res.corrupt, []);
    assert.deepEqual(found, []);
    assert.equal(res.scannedBlobs, 1);
    await writing.abort();
  });

  it('finds a corrupt blob, reports its bad chunk and logs it', async () => {
    const good = await put(store, randomBytes(3 * CHUNK));
    const bad = await put(store, randomBytes(3 * CHUNK + 10));
    await put(store, Buffer.alloc(0));
    corruptChunk(store, bad, 1);
    const found: [string, number[]][] = [];
    const { logger, lines } = capturingLogger();
    const scrubber = new Scrubber(store, { bytesPerSecond: 1e9, intervalMs: 60_000, logger, onCorrupt: (id, chunks) => found.push([id, chunks]) });
    const res = await scrubber.runPass();
    assert.deepEqual(res.corrupt, [bad]);
    assert.equal(res.scannedBlobs, 3);
    assert.equal(res.scannedBytes, 6 * CHUNK + 10);
    assert.deepEqual(found, [[bad, [1]]]);
    assert.ok(lines.some((l) => l.message === 'blob corrupt' && l.level === 'warn' && l.blobId === bad && l.chunkIndex === 1));
    assert.ok(lines.some((l) => l.message === 'scrub pass finished' && l.scannedBlobs === 3 && l.corruptBlobs === 1));
    assert.equal(scrubber.stats.corruptBlobs, 1);
    assert.notEqual(good, bad);
  });

  it('keeps to its byte rate', async function () {
    this.timeout(20_000);
    const blobs = 8;
    const blobBytes = 8 * CHUNK;
    for (let i = 0; i < blobs; i++) await put(store, randomBytes(blobBytes));
    const bytesPerSecond = 256 * 1024;
    const scrubber = new Scrubber(store, { bytesPerSecond, intervalMs: 60_000 });
    const startedMs = Date.now();
    const res = await scrubber.runPass();
    const elapsedMs = Date.now() - startedMs;
    assert.equal(res.scannedBytes, blobs * blobBytes);
    // The bucket starts with 0.1 s worth of bytes; everything after that is paced.
    const minMs = ((blobs * blobBytes - bytesPerSecond * 0.1) / bytesPerSecond) * 1000;
    assert.ok(elapsedMs >= minMs * 0.95, `pass took ${elapsedMs} ms, expected at least ${minMs.toFixed(0)} ms`);
    assert.ok(elapsedMs < minMs + 5000, `pass took ${elapsedMs} ms`);
  });

  it('stops within a second, even in the middle of a slow pass', async () => {
    await put(store, randomBytes(64 * CHUNK));
    const scrubber = new Scrubber(store, { bytesPerSecond: 1024, intervalMs: 60_000 });
    scrubber.start();
    await waitFor(() => scrubber.stats.running, 5000, 'the pass to start');
    const t0 = Date.now();
    await scrubber.stop();
    assert.ok(Date.now() - t0 < 1000, `stop took ${Date.now() - t0} ms`);
    assert.equal(scrubber.stats.running, false);
    assert.equal(scrubber.stats.lastPass?.stopped, true);
  });

  it('runs passes again after its interval until stopped', async () => {
    await put(store, randomBytes(100));
    const scrubber = new Scrubber(store, { bytesPerSecond: 1e9, intervalMs: 10 });
    scrubber.start();
    await waitFor(() => scrubber.stats.passes >= 3, 5000, 'three passes');
    await scrubber.stop();
    const passes = scrubber.stats.passes;
    await sleep(50);
    assert.equal(scrubber.stats.passes, passes, 'no pass after stop()');
  });

  it('skips a corrupt blob that is deleted while it is being scrubbed', async () => {
    const id = await put(store, randomBytes(4 * CHUNK));
    corruptChunk(store, id, 2);
    const original = store.verify.bind(store);
    store.verify = (blobId, opts) =>
      original(blobId, {
        ...opts,
        throttle: async (bytes) => {
          await store.delete(blobId); // the file is open already: the read goes on, on an unlinked file
          await opts?.throttle?.(bytes);
        },
      });
    const found: string[] = [];
    const scrubber = new Scrubber(store, { bytesPerSecond: 1e9, intervalMs: 60_000, onCorrupt: (i) => found.push(i) });
    const res = await scrubber.runPass();
    assert.deepEqual(res.corrupt, []);
    assert.equal(res.scannedBlobs, 0);
    assert.deepEqual(found, []);
  });
});
