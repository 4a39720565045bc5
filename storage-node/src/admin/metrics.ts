import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Request durations from 1 ms to 60 s: small GETs and HEADs at the bottom, multi-GB uploads at the top. */
const DURATION_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Operation names come from our router, but a label is a time series: cap them in case a caller passes raw input. */
const MAX_OPERATIONS = 128;
const OPERATION_RE = /^[A-Za-z][A-Za-z0-9]{0,63}$/;

/**
 * The metrics of one storage node, on a registry of its own (never prom-client's global one, so that two
 * nodes in one process, as in tests, do not mix their counts).
 */
export class NodeMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<'operation' | 'status'>;
  private readonly duration: Histogram<'operation'>;
  private readonly bytesIn: Counter<'operation'>;
  private readonly bytesOut: Counter<'operation'>;
  private readonly scrubBytes: Counter;
  private readonly scrubBlobs: Counter;
  private readonly scrubCorruptBlobs: Counter;
  private readonly scrubLastPass: Gauge;
  private readonly corruptReads: Counter;
  private readonly operations = new Set<string>();
  private readonly scrubSeen = { bytes: 0, blobs: 0 };

  constructor(opts: { defaultLabels?: Record<string, string>; processMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (opts.defaultLabels) this.registry.setDefaultLabels(opts.defaultLabels);
    const registers = [this.registry];
    this.requests = new Counter({ name: 'archipel_s3_requests_total', help: 'S3 requests answered, by operation and HTTP status.', labelNames: ['operation', 'status'], registers });
    this.duration = new Histogram({ name: 'archipel_s3_request_duration_seconds', help: 'S3 request duration, from first byte in to last byte out.', labelNames: ['operation'], buckets: DURATION_BUCKETS_SECONDS, registers });
    this.bytesIn = new Counter({ name: 'archipel_s3_bytes_in_total', help: 'Payload bytes received by S3 requests.', labelNames: ['operation'], registers });
    this.bytesOut = new Counter({ name: 'archipel_s3_bytes_out_total', help: 'Payload bytes sent by S3 responses.', labelNames: ['operation'], registers });
    this.scrubBytes = new Counter({ name: 'archipel_scrub_bytes_total', help: 'Bytes read and checked by the scrubber.', registers });
    this.scrubBlobs = new Counter({ name: 'archipel_scrub_blobs_total', help: 'Blobs checked by the scrubber.', registers });
    this.scrubCorruptBlobs = new Counter({ name: 'archipel_scrub_corrupt_blobs_total', help: 'Blobs the scrubber found corrupt.', registers });
    this.scrubLastPass = new Gauge({ name: 'archipel_scrub_last_pass_timestamp_seconds', help: 'Unix time at which the last full scrub pass finished.', registers });
    this.corruptReads = new Counter({ name: 'archipel_chunk_corrupt_reads_total', help: 'Chunks that failed their checksum when read for a client (the read moved on).', registers });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** One answered S3 request. */
  observeRequest(operation: string, status: number, durationMs: number, bytesIn: number, bytesOut: number): void {
    const op = this.operationLabel(operation);
    this.requests.inc({ operation: op, status: Number.isInteger(status) && status >= 0 && status < 1000 ? String(status) : 'other' });
    if (Number.isFinite(durationMs) && durationMs >= 0) this.duration.observe({ operation: op }, durationMs / 1000);
    if (isCount(bytesIn)) this.bytesIn.inc({ operation: op }, bytesIn);
    if (isCount(bytesOut)) this.bytesOut.inc({ operation: op }, bytesOut);
  }

  /**
   * The scrubber's running totals (bytes and blobs checked since it started), as its onProgress reports
   * them. The counters grow by the difference; totals going down mean a new scrubber, counted from zero.
   */
  scrubProgress(bytes: number, blobs: number): void {
    this.scrubBytes.inc(growth(this.scrubSeen.bytes, bytes));
    this.scrubBlobs.inc(growth(this.scrubSeen.blobs, blobs));
    if (Number.isFinite(bytes) && bytes >= 0) this.scrubSeen.bytes = bytes;
    if (Number.isFinite(blobs) && blobs >= 0) this.scrubSeen.blobs = blobs;
  }

  scrubCorrupt(n: number): void {
    if (isCount(n)) this.scrubCorruptBlobs.inc(n);
  }

  /** A full pass ended at `atMs` (Unix ms). */
  scrubPassFinished(atMs: number): void {
    this.scrubLastPass.set(atMs / 1000);
  }

  corruptRead(): void {
    this.corruptReads.inc();
  }

  /** Prometheus text exposition of everything above plus process metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private operationLabel(operation: string): string {
    if (!OPERATION_RE.test(operation)) return 'Other';
    if (this.operations.has(operation)) return operation;
    if (this.operations.size >= MAX_OPERATIONS) return 'Other';
    this.operations.add(operation);
    return operation;
  }
}

function isCount(n: number): boolean {
  return Number.isFinite(n) && n > 0;
}

/** How much a running total grew since `seen`; a total below `seen` restarted from zero. */
function growth(seen: number, total: number): number {
  if (!Number.isFinite(total) || total < 0) return 0;
  return total >= seen ? total - seen : total;
}
