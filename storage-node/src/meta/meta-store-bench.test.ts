import assert from 'node:assert/strict';
import { bucket, TempStores, version } from './testing';

/** Micro-benchmarks: timings are printed, not asserted (the machine is shared); only results are checked. */

interface Timing {
  /** Wall-clock minimum and median, µs. */
  min: number;
  median: number;
  /** Minimum CPU time (user + system), µs: on a shared, loaded machine the honest cost. */
  cpuMin: number;
}

function timeUs(fn: () => void, runs: number): Timing {
  fn(); // warm the statement cache and the page cache
  const samples: number[] = [];
  let cpuMin = Infinity;
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpuMin = Math.min(cpuMin, c.user + c.system);
  }
  samples.sort((a, b) => a - b);
  return { min: samples[0], median: samples[Math.floor(runs / 2)], cpuMin };
}

const fmtUs = (t: Timing): string => `${t.min.toFixed(1)} µs (median ${t.median.toFixed(1)})`;
const fmtMs = (t: Timing): string =>
  `${(t.min / 1000).toFixed(2)} ms (median ${(t.median / 1000).toFixed(2)}, cpu ${(t.cpuMin / 1000).toFixed(2)})`;

describe('meta/meta-store benchmark', function () {
  this.timeout(120_000);
  const temp = new TempStores();
  after(() => temp.cleanup());

  it('prints point get, 1000-key page and delimiter listing times over 100k keys under one prefix', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    const n = 100_000;
    const t0 = Date.now();
    s.transaction(() => {
      for (let i = 0; i < n; i++) {
        s.putVersion(version('b', `photos/2026/${String(i).padStart(6, '0')}.jpg`, 'null', i + 1, {
          contentType: 'image/jpeg', userMeta: { camera: 'x' }, checksum: { algorithm: 'CRC32', value: 'AAAAAA==', type: 'FULL_OBJECT' },
        }));
      }
      s.putVersion(version('b', 'readme.txt', 'null', n + 1));
    });
    const insertMs = Date.now() - t0;

    let got = 0;
    const getUs = timeUs(() => {
      got += s.getVersion('b', `photos/2026/${String(got % n).padStart(6, '0')}.jpg`) ? 1 : 0;
    }, 10_000);
    const pageUs = timeUs(() => {
      const r = s.listObjects('b', { prefix: 'photos/', after: 'photos/2026/050000.jpg', maxKeys: 1000 });
      assert.equal(r.contents.length, 1000);
    }, 20);
    const versionsPageUs = timeUs(() => {
      assert.equal(s.listVersions('b', { prefix: 'photos/', maxKeys: 1000 }).versions.length, 1000);
    }, 20);
    const delimUs = timeUs(() => {
      const r = s.listObjects('b', { prefix: '', delimiter: '/', maxKeys: 1000 });
      assert.deepEqual([r.commonPrefixes, r.contents.map((v) => v.key), r.isTruncated], [['photos/'], ['readme.txt'], false]);
    }, 200);
    const t1 = process.hrtime.bigint();
    const synced = s.sync();
    return synced.then(() => {
      const syncUs = Number(process.hrtime.bigint() - t1) / 1000;
      console.log(
        [
          `      meta bench: insert ${n} versions in one transaction: ${insertMs} ms`,
          `point get: ${fmtUs(getUs)}`,
          `1000-key page: ${fmtMs(pageUs)}`,
          `1000-version page: ${fmtMs(versionsPageUs)}`,
          `delimiter listing over ${n} keys under one prefix: ${fmtMs(delimUs)}`,
          `sync after the bulk insert: ${(syncUs / 1000).toFixed(2)} ms`,
        ].join('\n        '),
      );
    });
  });
});
