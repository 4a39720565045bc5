import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { NodeMetrics } from './metrics';

async function text(m: NodeMetrics): Promise<string> {
  return (await m.render()).body;
}

describe('node metrics', () => {
  it('keeps two nodes in one process apart and leaves the global registry alone', async () => {
    const a = new NodeMetrics({ processMetrics: false });
    const b = new NodeMetrics({ processMetrics: false });
    a.observeRequest('GetObject', 200, 3, 0, 10);
    assert.match(await text(a), /^archipel_s3_requests_total\{operation="GetObject",status="200"\} 1$/m);
    assert.doesNotMatch(await text(b), /operation="GetObject"/);
    assert.doesNotMatch(await globalRegistry.metrics(), /archipel_/);
  });

  it('puts request durations in buckets from 1 ms to 60 s', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    m.observeRequest('PutObject', 200, 0.5, 1, 0);
    m.observeRequest('PutObject', 200, 45_000, 1, 0);
    const t = await text(m);
    assert.match(t, /archipel_s3_request_duration_seconds_bucket\{le="0\.001",operation="PutObject"\} 1$/m);
    assert.match(t, /archipel_s3_request_duration_seconds_bucket\{le="30",operation="PutObject"\} 1$/m);
    assert.match(t, /archipel_s3_request_duration_seconds_bucket\{le="60",operation="PutObject"\} 2$/m);
  });

  it('counts bytes in and out per operation and ignores nonsense values instead of throwing', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    m.observeRequest('UploadPart', 200, 10, 5_000_000, 0);
    m.observeRequest('UploadPart', 200, NaN, -3, Infinity);
    const t = await text(m);
    assert.match(t, /^archipel_s3_bytes_in_total\{operation="UploadPart"\} 5000000$/m);
    assert.match(t, /^archipel_s3_requests_total\{operation="UploadPart",status="200"\} 2$/m);
  });

  it('bounds the operation label so raw input cannot create unbounded series', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    m.observeRequest('../../etc/passwd', 400, 1, 0, 0);
    for (let i = 0; i < 500; i++) m.observeRequest(`Op${i}`, 200, 1, 0, 0);
    const t = await text(m);
    assert.match(t, /operation="Other",status="400"/);
    const ops = new Set([...t.matchAll(/archipel_s3_requests_total\{operation="([^"]+)"/g)].map((x) => x[1]));
    assert.ok(ops.size <= 129, `${ops.size} operation labels`);
  });

  it('reports scrubber progress, corruption and the last pass time, and corrupt reads', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    m.scrubProgress(4096, 2); // running totals, as the scrubber reports them
    m.scrubProgress(5120, 3);
    m.scrubCorrupt(1);
    m.scrubPassFinished(1_790_000_000_500);
    m.corruptRead();
    m.corruptRead();
    const t = await text(m);
    assert.match(t, /^archipel_scrub_bytes_total 5120$/m);
    assert.match(t, /^archipel_scrub_blobs_total 3$/m);
    assert.match(t, /^archipel_scrub_corrupt_blobs_total 1$/m);
    assert.match(t, /^archipel_scrub_last_pass_timestamp_seconds 1790000000\.5$/m);
    assert.match(t, /^archipel_chunk_corrupt_reads_total 2$/m);
  });

  it('restarts from zero when a new scrubber reports lower totals', async () => {
    const m = new NodeMetrics({ processMetrics: false });
    m.scrubProgress(10_000, 10);
    m.scrubProgress(300, 1);
    const t = await text(m);
    assert.match(t, /^archipel_scrub_bytes_total 10300$/m);
    assert.match(t, /^archipel_scrub_blobs_total 11$/m);
  });

  it('includes process metrics such as resident memory by default', async () => {
    const m = new NodeMetrics();
    assert.match(await text(m), /^process_resident_memory_bytes \d+$/m);
  });
});
