import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Logger, silentLogger } from '../util/logger';
import { dirSync, fsyncFile } from '../util/fsync';
import { AuditRecord, GENESIS_HASH, encodeRecord, segmentIndexes, segmentName } from './record';
import { readTail } from './tail';

export type { AuditRecord } from './record';

export interface AuditLogOptions {
  logger?: Logger;
  /** Group commit: at most one fsync per this interval (flush() and rotation excepted). Default 100. */
  fsyncIntervalMs?: number;
  /** A segment file is closed and the next one started before it would exceed this. Default 64 MiB. */
  segmentMaxBytes?: number;
  /** Above this many bytes not yet written, `overloaded` is true. Default 8 MiB. */
  maxPendingBytes?: number;
  /** The fsync to run; tests inject a counting one. Default: fsyncFile. */
  fsync?: (fh: FileHandle) => Promise<void>;
}

const DEFAULT_FSYNC_INTERVAL_MS = 100;
const DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** Queued bytes above which they are written at once (not fsynced) instead of at the next tick. */
const EAGER_WRITE_BYTES = 256 * 1024;
/** Largest single write(2). */
const MAX_BATCH_BYTES = 1024 * 1024;

interface Pending {
  seq: number;
  line: Buffer;
}

/** FIFO of encoded lines; shift() on a large array copies it, so a head index is moved instead. */
class LineQueue {
  private items: Pending[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  peek(): Pending | undefined {
    return this.items[this.head];
  }

  push(p: Pending): void {
    this.items.push(p);
  }

  take(): Pending {
    if (this.head >= this.items.length) throw new Error('audit queue is empty');
    const p = this.items[this.head++];
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return p;
  }

  drain(): Pending[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * The append-only, hash-chained audit log of one node. append() is synchronous: the record gets its seq
 * and hash at once, so the order of calls is the order in the file. One background pump writes queued
 * lines through one FileHandle and fsyncs at most every fsyncIntervalMs.
 */
export class AuditLog {
  private readonly log: Logger;
  private readonly fsyncIntervalMs: number;
  private readonly segmentMaxBytes: number;
  private readonly maxPendingBytes: number;
  private readonly fsyncFn: (fh: FileHandle) => Promise<void>;

  private seq: number;
  private head: string;
  private segIndex: number;
  private segBytes: number;
  private fh: FileHandle;

  private readonly queue = new LineQueue();
  private queueBytes = 0;
  private writingBytes = 0;
  private writtenSeq: number;
  private syncedSeq: number;
  private lastSyncMs = 0;
  private readonly waiters: Waiter[] = [];
  private flushSeq = 0;
  private pumping: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private closed = false;
  private unpersisted = 0;

  private constructor(private readonly dir: string, opts: AuditLogOptions, st: { seq: number; head: string; segIndex: number; segBytes: number; fh: FileHandle }) {
    this.log = opts.logger ?? silentLogger();
    this.fsyncIntervalMs = opts.fsyncIntervalMs ?? DEFAULT_FSYNC_INTERVAL_MS;
    this.segmentMaxBytes = opts.segmentMaxBytes ?? DEFAULT_SEGMENT_MAX_BYTES;
    this.maxPendingBytes = opts.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.fsyncFn = opts.fsync ?? fsyncFile;
    if (!(this.fsyncIntervalMs >= 0)) throw new Error('fsyncIntervalMs must be >= 0');
    if (!(this.segmentMaxBytes >= 1)) throw new Error('segmentMaxBytes must be >= 1');
    if (!(this.maxPendingBytes >= 1)) throw new Error('maxPendingBytes must be >= 1');
    this.seq = st.seq;
    this.head = st.head;
    this.segIndex = st.segIndex;
    this.segBytes = st.segBytes;
    this.fh = st.fh;
    this.writtenSeq = st.seq;
    this.syncedSeq = st.seq;
  }

  /**
   * Opens (or creates) the log in `dir`. A torn last line left by a crash is cut away and an
   * 'AuditRecovered' record says so (key: the segment, bytesIn: the bytes cut), then made durable.
   */
  static async open(dir: string, opts: AuditLogOptions = {}): Promise<AuditLog> {
    const log = opts.logger ?? silentLogger();
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const indexes = segmentIndexes(await fsp.readdir(dir));
    let seq = 0;
    let head = GENESIS_HASH;
    const torn: { file: string; bytes: number }[] = [];
    // Walk back over empty segments (a crash just after rotation leaves one) to the last record.
    for (let i = indexes.length - 1; i >= 0; i--) {
      const file = path.join(dir, segmentName(indexes[i]));
      const tail = await readTail(file);
      if (tail.tornBytes > 0) {
        await truncateTo(file, tail.sizeBytes - tail.tornBytes);
        torn.push({ file: path.basename(file), bytes: tail.tornBytes });
        log.warn('audit log torn record truncated', { file, bytes: tail.tornBytes });
      }
      if (tail.last !== undefined) {
        seq = tail.last.seq;
        head = tail.last.hash;
        if (!tail.lastHashOk) log.warn('audit log last record does not match its hash; chaining on, verify will report it', { file, seq });
        break;
      }
    }
    const segIndex = indexes.length > 0 ? indexes[indexes.length - 1] : 1;
    const fh = await openSegment(dir, segIndex, indexes.length === 0);
    const segBytes = (await fh.stat()).size;
    const audit = new AuditLog(dir, opts, { seq, head, segIndex, segBytes, fh });
    for (const t of torn) {
      audit.append({
        time: new Date().toISOString(), requestId: `audit-recovery-${seq + 1}`, sourceIp: '', operation: 'AuditRecovered',
        key: t.file, status: 0, errorCode: 'TornRecordTruncated', bytesIn: t.bytes, bytesOut: 0, durationMs: 0,
      });
    }
    if (torn.length > 0) await audit.flush();
    log.info('audit log open', { dir, seq, segment: segmentName(segIndex), recovered: torn.length > 0 });
    return audit;
  }

  /** Hash of the last record appended (GENESIS_HASH for an empty log). */
  get headHash(): string {
    return this.head;
  }

  /** True while more than maxPendingBytes wait to be written, or after a write failure. */
  get overloaded(): boolean {
    return this.failure !== undefined || this.queueBytes + this.writingBytes > this.maxPendingBytes;
  }

  /** Enqueues one record; its place in the chain is fixed now. Never throws for a record's content. */
  append(rec: AuditRecord): void {
    if (this.closed || this.failure !== undefined) {
      // Nothing can reach the file any more: the record goes to the process log as a last trace.
      this.unpersisted++;
      this.log.error('audit record not persisted', { record: rec, reason: this.closed ? 'closed' : this.failure?.message, unpersisted: this.unpersisted });
      return;
    }
    const seq = this.seq + 1;
    const enc = encodeRecord(rec, seq, this.head);
    if (enc.fixedFields.length > 0) this.log.warn('audit record had non-finite numbers', { requestId: rec.requestId, fields: enc.fixedFields });
    this.seq = seq;
    this.head = enc.hash;
    this.queue.push({ seq, line: enc.line });
    this.queueBytes += enc.line.length;
    if (this.queueBytes >= EAGER_WRITE_BYTES) this.wakePump();
    this.kick();
  }

  /** Resolves once every record appended before the call is written and fsynced. */
  flush(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const target = this.seq;
    if (this.syncedSeq >= target) return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ seq: target, resolve, reject }));
    this.flushSeq = Math.max(this.flushSeq, target);
    this.kick();
    this.wakePump();
    return done;
  }

  /** Flushes and closes the file. Later appends only reach the process log. */
  async close(): Promise<void> {
    if (this.closed) return;
    let err: unknown;
    await this.flush().catch((e) => (err = e));
    this.closed = true;
    while (this.pumping !== undefined) await this.pumping;
    await this.fh.close();
    if (err !== undefined) throw err;
  }

  private kick(): void {
    if (this.pumping !== undefined || this.failure !== undefined) return;
    this.pumping = this.pump()
      .catch((e: Error) => this.fail(e))
      .finally(() => {
        this.pumping = undefined;
        // Work may have arrived between the pump's last check and here.
        if (this.syncedSeq < this.seq && this.failure === undefined) this.kick();
      });
  }

  private wakePump(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async pump(): Promise<void> {
    while (this.syncedSeq < this.seq) {
      const urgent = this.flushSeq > this.syncedSeq;
      const waitMs = this.lastSyncMs + this.fsyncIntervalMs - Date.now();
      if (!urgent && waitMs > 0) {
        // Before the fsync is due, a large backlog is written early so that memory stays low.
        if (this.queueBytes >= EAGER_WRITE_BYTES) await this.writeQueued(this.seq);
        else await this.sleep(waitMs);
        continue;
      }
      // A fixed target: under a steady stream of appends the pump still reaches its fsync when due.
      await this.writeQueued(this.seq);
      await this.syncNow();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Writes queued lines up to `targetSeq`, in batches, rotating segments at line boundaries. */
  private async writeQueued(targetSeq: number): Promise<void> {
    for (let first = this.queue.peek(); first !== undefined && first.seq <= targetSeq; first = this.queue.peek()) {
      if (this.segBytes > 0 && this.segBytes + first.line.length > this.segmentMaxBytes) await this.rotate();
      const room = Math.max(this.segmentMaxBytes - this.segBytes, first.line.length);
      const batch: Buffer[] = [];
      let batchBytes = 0;
      let lastSeq = 0;
      for (let next = this.queue.peek(); next !== undefined && next.seq <= targetSeq; next = this.queue.peek()) {
        const n = next.line.length;
        if (batch.length > 0 && (batchBytes + n > room || batchBytes + n > MAX_BATCH_BYTES)) break;
        lastSeq = this.queue.take().seq;
        batch.push(next.line);
        batchBytes += n;
      }
      this.queueBytes -= batchBytes;
      this.writingBytes = batchBytes;
      await writeAll(this.fh, batch.length === 1 ? batch[0] : Buffer.concat(batch, batchBytes));
      this.writingBytes = 0;
      this.segBytes += batchBytes;
      if (lastSeq !== this.writtenSeq + batch.length) throw new Error(`audit write order broken: wrote up to ${lastSeq} after ${this.writtenSeq}`);
      this.writtenSeq = lastSeq;
    }
  }

  private async syncNow(): Promise<void> {
    const upTo = this.writtenSeq;
    this.lastSyncMs = Date.now();
    await this.fsyncFn(this.fh);
    this.syncedSeq = upTo;
    while (this.waiters.length > 0 && this.waiters[0].seq <= upTo) this.waiters.shift()!.resolve();
  }

  /** The full segment is made durable before the next exists, so only the last segment can be torn. */
  private async rotate(): Promise<void> {
    await this.syncNow();
    await this.fh.close();
    this.segIndex++;
    this.fh = await openSegment(this.dir, this.segIndex, true);
    this.segBytes = 0;
    this.log.info('audit segment started', { segment: segmentName(this.segIndex), seq: this.writtenSeq + 1 });
  }

  private fail(e: Error): void {
    // Sticky: after a failed write or fsync the file's state is unknown; retrying could claim durability it lacks.
    this.failure = e;
    this.log.error('audit log write failed; node must stop serving', { error: e.message, seq: this.seq, syncedSeq: this.syncedSeq });
    for (const w of this.waiters.splice(0)) w.reject(e);
    for (const p of this.queue.drain()) this.log.error('audit record not persisted', { line: p.line.toString('utf8').trimEnd() });
    this.queueBytes = 0;
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw new Error('audit write made no progress');
    off += bytesWritten;
  }
}

async function openSegment(dir: string, index: number, create: boolean): Promise<FileHandle> {
  // 'ax': a new segment must not exist yet; appending to someone else's file would break the chain.
  const fh = await fsp.open(path.join(dir, segmentName(index)), create ? 'ax' : 'a', 0o600);
  if (create) await dirSync(dir);
  return fh;
}

async function truncateTo(file: string, sizeBytes: number): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.truncate(sizeBytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
