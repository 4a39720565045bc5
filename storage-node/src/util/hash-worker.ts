import { Transform, TransformCallback } from 'node:stream';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createHasher, ChecksumAlgorithm, Hasher } from './checksum';

/**
 * Hashing of large request bodies on a worker thread, so that the MD5 of the ETag (and the client's
 * checksum, and the payload's SHA-256) run beside the event loop instead of on it: on a small machine the
 * event loop then has a core's time for parsing, writes and metadata while the worker hashes.
 *
 * The body still flows through the event loop to the blob writer; the transform copies it in batches into
 * buffers it owns and transfers them to the worker (the caller's buffers are still being written). At most
 * MAX_IN_FLIGHT_BYTES per body are copied and not yet hashed: beyond that the transform holds its callback,
 * which is backpressure on the socket. The stream ends only once the worker has returned the digests, so a
 * consumer that waits for the end (the store, before its metadata commit) can verify them.
 */

export type HashAlgorithm = ChecksumAlgorithm | 'MD5';

/** Bodies are copied to the worker in buffers of this size: one message per batch, not per socket read. */
const BATCH_BYTES = 256 * 1024;
/** Copied but not yet hashed, per body. */
const MAX_IN_FLIGHT_BYTES = 4 * BATCH_BYTES;
const WORKER_MARK = 'archipelHashWorker';
/** Batch buffers come back from the worker with its acknowledgement and are reused (no allocation, no page faults); at most this many wait. */
const MAX_FREE_BATCHES = 64;

type ToWorker =
  | { t: 'start'; id: number; algorithms: HashAlgorithm[] }
  | { t: 'data'; id: number; buf: ArrayBuffer; length: number }
  | { t: 'end'; id: number }
  | { t: 'abort'; id: number };

type FromWorker =
  | { t: 'ack'; id: number; length: number; buf: ArrayBuffer }
  | { t: 'done'; id: number; digests: [HashAlgorithm, Uint8Array][] }
  | { t: 'error'; id: number; message: string };

interface Job {
  onAck(length: number): void;
  onDone(digests: Map<HashAlgorithm, Buffer>): void;
  onError(e: Error): void;
}

/** One worker thread shared by every body of the process, started on first use. */
class HashWorkerPool {
  private worker: Worker | undefined;
  private readonly jobs = new Map<number, Job>();
  private readonly freeBatches: Buffer[] = [];
  private nextId = 1;

  /** A batch buffer that owns its ArrayBuffer, as data() requires. */
  takeBatch(): Buffer {
    return this.freeBatches.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES);
  }

  start(algorithms: HashAlgorithm[], job: Job): number {
    const id = this.nextId++;
    this.jobs.set(id, job);
    this.post({ t: 'start', id, algorithms });
    return id;
  }

  /** Transfers `buf`'s memory (it must own its ArrayBuffer, from allocUnsafeSlow); its first `length` bytes are hashed. */
  data(id: number, buf: Buffer, length: number): void {
    const ab = buf.buffer as ArrayBuffer;
    if (buf.byteOffset !== 0 || length > ab.byteLength) throw new Error('hash worker: a batch must own its ArrayBuffer');
    this.post({ t: 'data', id, buf: ab, length }, [ab]);
  }

  end(id: number): void {
    this.post({ t: 'end', id });
  }

  abort(id: number): void {
    if (!this.jobs.delete(id)) return;
    this.post({ t: 'abort', id });
  }

  private post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.ensureWorker().postMessage(m, transfer);
  }

  private ensureWorker(): Worker {
    if (this.worker !== undefined) return this.worker;
    const w = new Worker(__filename, { workerData: { [WORKER_MARK]: true } });
    // An idle worker does not keep the process alive.
    w.unref();
    w.on('message', (m: FromWorker) => this.onMessage(m));
    const fail = (e: Error): void => {
      if (this.worker === w) this.worker = undefined;
      const jobs = [...this.jobs.values()];
      this.jobs.clear();
      for (const j of jobs) j.onError(e);
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`hash worker exited with code ${code}`)));
    this.worker = w;
    return w;
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'ack' && m.buf.byteLength === BATCH_BYTES && this.freeBatches.length < MAX_FREE_BATCHES) this.freeBatches.push(Buffer.from(m.buf));
    const job = this.jobs.get(m.id);
    if (job === undefined) return; // aborted meanwhile
    if (m.t === 'ack') {
      job.onAck(m.length);
    } else if (m.t === 'done') {
      this.jobs.delete(m.id);
      job.onDone(new Map(m.digests.map(([a, d]) => [a, Buffer.from(d.buffer, d.byteOffset, d.byteLength)])));
    } else {
      this.jobs.delete(m.id);
      job.onError(new Error(`hash worker: ${m.message}`));
    }
  }
}

let pool: HashWorkerPool | undefined;

/**
 * Passes bytes through unchanged, counting them, while a worker thread hashes them once per algorithm.
 * The same shape as model/digest's DigestTransform: `bytes`, and `digest(a)` once the stream has ended.
 */
export class WorkerDigestTransform extends Transform {
  bytes = 0;
  private readonly algorithms: HashAlgorithm[];
  private id: number | undefined;
  private batch: Buffer | undefined;
  private batchFill = 0;
  private inFlightBytes = 0;
  /** A transform callback held until the worker catches up (backpressure). */
  private waiting: (() => void) | undefined;
  private finished: ((e?: Error) => void) | undefined;
  private failure: Error | undefined;
  private digests: Map<HashAlgorithm, Buffer> | undefined;

  constructor(algorithms: Iterable<HashAlgorithm>, private readonly maxBytes: number, private readonly tooLarge: () => Error) {
    super();
    this.algorithms = [...new Set(algorithms)];
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(this.tooLarge());
      return;
    }
    if (this.failure) {
      cb(this.failure);
      return;
    }
    this.id ??= (pool ??= new HashWorkerPool()).start(this.algorithms, {
      onAck: (n) => this.onAck(n),
      onDone: (d) => {
        this.digests = d;
        this.finished?.();
      },
      onError: (e) => this.onError(e),
    });
    let off = 0;
    while (off < chunk.length) {
      this.batch ??= pool!.takeBatch();
      const n = chunk.copy(this.batch, this.batchFill, off);
      this.batchFill += n;
      off += n;
      if (this.batchFill === BATCH_BYTES) this.sendBatch();
    }
    if (this.inFlightBytes > MAX_IN_FLIGHT_BYTES) this.waiting = () => cb(null, chunk);
    else cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.failure) {
      cb(this.failure);
      return;
    }
    if (this.id === undefined) {
      // No byte came: hash the empty body here.
      this.digests = new Map(this.algorithms.map((a) => [a, createHasher(a).digest()]));
      cb();
      return;
    }
    if (this.batchFill > 0) this.sendBatch();
    this.finished = (e) => cb(e);
    pool!.end(this.id);
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    if (this.id !== undefined && this.digests === undefined) pool?.abort(this.id);
    this.batch = undefined;
    cb(error);
  }

  /** The digest of everything that passed; only after the stream ended. */
  digest(a: HashAlgorithm): Buffer {
    const d = this.digests?.get(a);
    if (!d) throw new Error(`digest ${a} not available (not requested or stream not ended)`);
    return d;
  }

  /** Hands the batch (its memory, no copy) to the worker; the next bytes go to a new one. */
  private sendBatch(): void {
    pool!.data(this.id!, this.batch!, this.batchFill);
    this.inFlightBytes += this.batchFill;
    this.batch = undefined;
    this.batchFill = 0;
  }

  private onAck(n: number): void {
    this.inFlightBytes -= n;
    if (this.waiting !== undefined && this.inFlightBytes <= MAX_IN_FLIGHT_BYTES) {
      const w = this.waiting;
      this.waiting = undefined;
      w();
    }
  }

  private onError(e: Error): void {
    this.failure = e;
    const f = this.finished;
    this.finished = undefined;
    if (f) f(e);
    else this.destroy(e);
  }
}

// ---- the worker side ----------------------------------------------------------------------------------

function runWorker(): void {
  const port = parentPort!;
  const jobs = new Map<number, [HashAlgorithm, Hasher][]>();
  const reply = (m: FromWorker): void => port.postMessage(m);
  port.on('message', (m: ToWorker) => {
    try {
      if (m.t === 'start') {
        jobs.set(m.id, m.algorithms.map((a) => [a, createHasher(a)]));
      } else if (m.t === 'data') {
        const hashers = jobs.get(m.id);
        if (hashers === undefined) return;
        const buf = Buffer.from(m.buf, 0, m.length);
        for (const [, h] of hashers) h.update(buf);
        port.postMessage({ t: 'ack', id: m.id, length: m.length, buf: m.buf } satisfies FromWorker, [m.buf]);
      } else if (m.t === 'end') {
        const hashers = jobs.get(m.id);
        if (hashers === undefined) return;
        jobs.delete(m.id);
        reply({ t: 'done', id: m.id, digests: hashers.map(([a, h]) => [a, h.digest()]) });
      } else {
        jobs.delete(m.id);
      }
    } catch (e) {
      jobs.delete(m.id);
      reply({ t: 'error', id: m.id, message: (e as Error).message });
    }
  });
}

// The pool starts its worker with this file and a mark; other workers that merely import the file do not serve.
if (!isMainThread && parentPort !== null && (workerData as Record<string, unknown> | null)?.[WORKER_MARK] === true) runWorker();
