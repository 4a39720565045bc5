import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, silentLogger } from '../util/logger';
import { BlobNotFoundError } from './blob-file';
import type { BlobStore } from './blob-store';

export interface ScrubProgress {
  scannedBytes: number;
  scannedBlobs: number;
  corruptBlobs: number;
}

export interface ScrubberOptions {
  /** Read rate limit, counting every byte read (data, header and footer). */
  bytesPerSecond: number;
  /** Pause between the end of one full pass and the start of the next. */
  intervalMs: number;
  logger?: Logger;
  onCorrupt?: (id: string, badChunks: number[]) => void;
  /** After each blob; totals since the scrubber was made (monotonic, so they suit counters). */
  onProgress?: (p: ScrubProgress) => void;
  /**
   * Whether metadata references the blob. A corrupt blob that nothing references is not reported: it is a
   * file a crash left without its footer (or garbage), which the orphan sweep removes. Default: all are.
   */
  isReferenced?: (id: string) => boolean;
  /** After each full pass (also a stopped one). */
  onPassFinished?: (r: ScrubPassResult & { finishedMs: number; stopped: boolean }) => void;
}

export interface ScrubPassResult {
  scannedBlobs: number;
  scannedBytes: number;
  /** Ids of the corrupt blobs found (at most MAX_REPORTED_CORRUPT; the log has every one). */
  corrupt: string[];
}

export interface ScrubberStats extends ScrubProgress {
  passes: number;
  /** A pass is in progress. */
  running: boolean;
  lastPass?: ScrubPassResult & { startedMs: number; durationMs: number; stopped: boolean };
}

const MAX_REPORTED_CORRUPT = 10_000;
/** The bucket holds this much time's worth of bytes: short bursts, no long catch-up after an idle spell. */
const BURST_SECONDS = 0.1;

/** Token bucket on bytes. Takes may overdraw; the debt is paid by sleeping, so any read size works. */
class ByteRateLimiter {
  private tokens: number;
  private lastMs = performance.now();

  constructor(private readonly bytesPerSecond: number) {
    this.tokens = this.capacity();
  }

  async take(bytes: number, signal: AbortSignal): Promise<void> {
    const nowMs = performance.now();
    this.tokens = Math.min(this.capacity(), this.tokens + ((nowMs - this.lastMs) * this.bytesPerSecond) / 1000);
    this.lastMs = nowMs;
    this.tokens -= bytes;
    if (this.tokens < 0) await sleep((-this.tokens / this.bytesPerSecond) * 1000, undefined, { signal });
  }

  private capacity(): number {
    return Math.max(1, this.bytesPerSecond * BURST_SECONDS);
  }
}

/**
 * Reads every blob at a bounded rate and checks each chunk, so that corruption at rest is found (and
 * repaired from a replica) before a client asks for the bytes. A blob deleted while scrubbed is skipped.
 */
export class Scrubber {
  private readonly store: BlobStore;
  private readonly opts: ScrubberOptions;
  private readonly log: Logger;
  private readonly limiter: ByteRateLimiter;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private currentPass: Promise<ScrubPassResult> | undefined;
  private readonly totals: ScrubberStats = { passes: 0, running: false, scannedBytes: 0, scannedBlobs: 0, corruptBlobs: 0 };

  constructor(store: BlobStore, opts: ScrubberOptions) {
    if (!(opts.bytesPerSecond > 0) || !Number.isFinite(opts.bytesPerSecond)) throw new RangeError('bytesPerSecond must be a positive number');
    if (!(opts.intervalMs >= 0) || !Number.isFinite(opts.intervalMs)) throw new RangeError('intervalMs must be a non-negative number');
    this.store = store;
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
    this.limiter = new ByteRateLimiter(opts.bytesPerSecond);
  }

  get stats(): Readonly<ScrubberStats> {
    return { ...this.totals, running: this.currentPass !== undefined };
  }

  /** Runs passes forever, intervalMs apart, until stop(). */
  start(): void {
    if (this.loop !== undefined) return;
    const signal = this.abort.signal;
    this.loop = (async () => {
      while (!signal.aborted) {
        try {
          await this.runPass();
        } catch (e) {
          this.log.error('scrub pass failed', { error: (e as Error).message });
        }
        await sleep(this.opts.intervalMs, undefined, { signal }).catch(() => undefined);
      }
    })();
  }

  /** Stops the loop and any pass in progress; resolves once no read is running. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await this.currentPass?.catch(() => undefined);
    this.loop = undefined;
    this.abort = new AbortController();
  }

  /** One full pass over the store; a call while one runs shares it. A stopped pass resolves with what it saw. */
  runPass(): Promise<ScrubPassResult> {
    this.currentPass ??= this.pass(this.abort.signal).finally(() => {
      this.currentPass = undefined;
    });
    return this.currentPass;
  }

  private async pass(signal: AbortSignal): Promise<ScrubPassResult> {
    const startedMs = Date.now();
    const res: ScrubPassResult = { scannedBlobs: 0, scannedBytes: 0, corrupt: [] };
    let corruptBlobs = 0;
    for await (const id of this.store.list()) {
      if (signal.aborted) break;
      const found = await this.scrubOne(id, signal);
      if (found === undefined) continue;
      res.scannedBlobs++;
      res.scannedBytes += found.sizeBytes;
      this.totals.scannedBlobs++;
      this.totals.scannedBytes += found.sizeBytes;
      if (found.badChunks.length > 0) {
        corruptBlobs++;
        this.totals.corruptBlobs++;
        if (res.corrupt.length < MAX_REPORTED_CORRUPT) res.corrupt.push(id);
        this.log.warn('blob corrupt', { blobId: id, chunkIndex: found.badChunks[0], badChunks: found.badChunks.slice(0, 100) });
        this.notify(() => this.opts.onCorrupt?.(id, found.badChunks));
      }
      this.notify(() => this.opts.onProgress?.({ scannedBytes: this.totals.scannedBytes, scannedBlobs: this.totals.scannedBlobs, corruptBlobs: this.totals.corruptBlobs }));
    }
    const durationMs = Date.now() - startedMs;
    this.totals.passes++;
    this.totals.lastPass = { ...res, startedMs, durationMs, stopped: signal.aborted };
    this.notify(() => this.opts.onPassFinished?.({ ...res, finishedMs: Date.now(), stopped: signal.aborted }));
    this.log.info('scrub pass finished', { scannedBlobs: res.scannedBlobs, scannedBytes: res.scannedBytes, corruptBlobs, durationMs, stopped: signal.aborted });
    return res;
  }

  /** Bad chunks and size of one blob; undefined if it went away, the pass was stopped, or it could not be read. */
  private async scrubOne(id: string, signal: AbortSignal): Promise<{ sizeBytes: number; badChunks: number[] } | undefined> {
    try {
      const r = await this.store.verify(id, { throttle: (bytes) => this.limiter.take(bytes, signal), signal });
      if (r.ok) return r;
      // An open fd outlives unlink, so a blob deleted mid-read was checked anyway: it is no longer ours to report.
      if ((await this.store.statTime(id)) === undefined) return undefined;
      if (this.opts.isReferenced !== undefined && !this.opts.isReferenced(id)) {
        this.log.debug('unreferenced blob skipped', { blobId: id });
        return undefined;
      }
      return r;
    } catch (e) {
      if (e instanceof BlobNotFoundError || signal.aborted) return undefined;
      this.log.warn('blob scrub failed', { blobId: id, error: (e as Error).message });
      return undefined;
    }
  }

  private notify(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.warn('scrub observer failed', { error: (e as Error).message });
    }
  }
}
