import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  dataPlacement, globMatch, metaPlacement, movedPartitions, partitionOf, policyFor, rankNodes, readCandidates,
} from './placement';
import type { Layout, LayoutNode } from './types';
import { clone, makeLayout, node, onePerSite, randomLayout, seededRandom, shuffle, site } from './testing';

const SEEDS = Array.from({ length: 40 }, (_, i) => i + 1);

function keys(count: number, seed: number): string[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: count }, (_, i) => `obj/${i}/${Math.floor(rnd() * 1e9).toString(36)}`);
}

/** Worst relative deviation of each node's count from its capacity-weighted fair share. */
function worstSpread(counts: Map<string, number>, nodes: LayoutNode[], total: number): number {
  const weight = nodes.reduce((s, n) => s + n.capacityBytes, 0);
  let worst = 0;
  for (const n of nodes) {
    const fair = (total * n.capacityBytes) / weight;
    worst = Math.max(worst, Math.abs((counts.get(n.id) ?? 0) - fair) / fair);
  }
  return worst;
}

function firstOwners(layout: Layout, siteName: string, depth = 1): Map<string, number> {
  const counts = new Map<string, number>();
  for (let p = 0; p < layout.partitionCount; p++) {
    for (const n of rankNodes(layout, siteName, p).filter((x) => x.state === 'active').slice(0, depth)) {
      counts.set(n.id, (counts.get(n.id) ?? 0) + 1);
    }
  }
  return counts;
}

describe('layout placement', () => {
  describe('partitionOf', () => {
    it('is the first two bytes of sha256 modulo the partition count', () => {
      for (const name of ['a', 'bucket/key', 'med-x/2026/ü.txt', '']) {
        const want = createHash('sha256').update(name, 'utf8').digest().readUInt16BE(0);
        assert.equal(partitionOf(name, 65536), want);
        assert.equal(partitionOf(name, 256), want % 256);
        assert.equal(partitionOf(name, 4096), want % 4096);
      }
    });

    it('spreads names over every partition', () => {
      const seen = new Set(keys(5000, 7).map((k) => partitionOf(k, 256)));
      assert.equal(seen.size, 256);
    });

    it('refuses a partition count outside 1..65536', () => {
      for (const bad of [0, -1, 1.5, 65537, NaN]) assert.throws(() => partitionOf('x', bad), RangeError);
    });
  });

  describe('rankNodes', () => {
    it('is deterministic and independent of the order of nodes in the layout', () => {
      for (const seed of SEEDS) {
        const a = randomLayout(seed);
        const b = clone(a);
        shuffle(b.nodes, seededRandom(seed + 1000));
        for (const s of a.sites) {
          for (let p = 0; p < a.partitionCount; p += 7) {
            const ra = rankNodes(a, s.name, p).map((n) => n.id);
            assert.deepEqual(rankNodes(b, s.name, p).map((n) => n.id), ra, `seed ${seed} site ${s.name} partition ${p}`);
            assert.deepEqual(rankNodes(a, s.name, p).map((n) => n.id), ra);
            assert.equal(ra.length, a.nodes.filter((n) => n.site === s.name).length);
          }
        }
      }
    });

    it('ranks only the nodes of the asked site', () => {
      const l = makeLayout([3, 4]);
      assert.ok(rankNodes(l, 's1', 5).every((n) => n.site === 's1'));
      assert.deepEqual(rankNodes(l, 'nowhere', 5), []);
    });
  });

  describe('dataPlacement', () => {
    it('gives every rule exactly its copies, in its site, and never one node twice', () => {
      for (const seed of SEEDS) {
        const l = randomLayout(seed);
        for (const [i, key] of keys(60, seed).entries()) {
          const bucket = i % 3 === 0 ? `med-${i}` : i % 3 === 1 ? 'logs' : 'other';
          const k = i % 2 === 0 ? `2026/${key}` : key;
          const placed = dataPlacement(l, bucket, k);
          assert.equal(placed.policy, policyFor(l, bucket, k));
          assert.equal(placed.copies.length, placed.policy.rules.length);
          const all = placed.copies.flatMap((c) => c.nodes.map((n) => n.id));
          assert.equal(new Set(all).size, all.length, `seed ${seed}: a node holds two copies`);
          placed.policy.rules.forEach((rule, r) => {
            const c = placed.copies[r];
            assert.equal(c.site, rule.site);
            assert.equal(c.wanted, rule.copies);
            assert.equal(c.nodes.length, rule.copies, `seed ${seed}: rule ${rule.site}×${rule.copies}`);
            assert.ok(c.nodes.every((n) => n.site === rule.site && n.state === 'active'));
          });
        }
      }
    });

    it('is the same for the same object, whatever the node order', () => {
      const l = randomLayout(3);
      const m = clone(l);
      m.nodes.reverse();
      for (const k of keys(200, 3)) {
        const ids = (x: Layout): string[][] => dataPlacement(x, 'med-a', k).copies.map((c) => c.nodes.map((n) => n.id));
        assert.deepEqual(ids(m), ids(l));
      }
    });

    it('places fewer copies (and says how many were wanted) when a site lacks active nodes', () => {
      const l = makeLayout([1, 2]);
      l.policies = [{ name: 'default', match: { buckets: ['*'] }, rules: [{ site: 's0', copies: 3 }, { site: 's1', copies: 2 }], ingest: 'strict' }];
      const placed = dataPlacement(l, 'b', 'k');
      assert.deepEqual(placed.copies.map((c) => [c.site, c.wanted, c.nodes.length]), [['s0', 3, 1], ['s1', 2, 2]]);
    });

    it('gives draining and failed nodes nothing new', () => {
      for (const seed of SEEDS) {
        const l = randomLayout(seed);
        const rnd = seededRandom(seed);
        const draining = l.nodes[Math.floor(rnd() * l.nodes.length)];
        const failed = l.nodes[Math.floor(rnd() * l.nodes.length)];
        draining.state = 'draining';
        failed.state = 'failed';
        for (const k of keys(100, seed)) {
          const ids = dataPlacement(l, 'other', k).copies.flatMap((c) => c.nodes.map((n) => n.id));
          assert.ok(!ids.includes(draining.id) && !ids.includes(failed.id), `seed ${seed}`);
          assert.ok(!metaPlacement(l, `b${k}`).some((n) => n.id === draining.id || n.id === failed.id));
        }
      }
    });

    it('skips failed sites', () => {
      const l = makeLayout([2, 2, 2]);
      l.sites[1].state = 'failed';
      for (const k of keys(200, 9)) {
        const placed = dataPlacement(l, 'b', k);
        assert.deepEqual(placed.copies.map((c) => c.site), ['s0', 's2']);
        assert.ok(metaPlacement(l, k).every((n) => n.site !== 's1'));
        assert.ok(readCandidates(l, 'b', k, 's1').every((n) => n.site !== 's1'));
      }
    });
  });

  describe('policyFor and globs', () => {
    it('matches bucket globs with * and ? and nothing else as a wildcard', () => {
      assert.ok(globMatch('med-*', 'med-a'));
      assert.ok(globMatch('med-*', 'med-'));
      assert.ok(!globMatch('med-*', 'xmed-a'));
      assert.ok(globMatch('*-logs', 'app-logs'));
      assert.ok(globMatch('b?', 'b1'));
      assert.ok(!globMatch('b?', 'b'));
      assert.ok(!globMatch('b?', 'b12'));
      assert.ok(globMatch('a.b', 'a.b'));
      assert.ok(!globMatch('a.b', 'axb'), 'a dot is literal');
      assert.ok(globMatch('*', 'anything'));
      assert.ok(globMatch('exact', 'exact') && !globMatch('exact', 'exact2'));
    });

    it('takes the first matching policy, with prefixes, else the default', () => {
      const l = makeLayout([1, 1]);
      l.policies = [
        onePerSite('scans', ['s0'], ['med-*'], ['scans/', 'mri/']),
        onePerSite('med', ['s0', 's1'], ['med-*']),
        onePerSite('logs', ['s1'], ['logs', 'audit-?']),
        onePerSite('default', ['s0', 's1'], []),
      ];
      assert.equal(policyFor(l, 'med-x', 'scans/1').name, 'scans');
      assert.equal(policyFor(l, 'med-x', 'mri/2').name, 'scans');
      assert.equal(policyFor(l, 'med-x', 'notes/1').name, 'med');
      assert.equal(policyFor(l, 'med-x').name, 'med', 'without a key, prefix rules do not claim the bucket');
      assert.equal(policyFor(l, 'logs', 'a').name, 'logs');
      assert.equal(policyFor(l, 'audit-1', 'a').name, 'logs');
      assert.equal(policyFor(l, 'audit-12', 'a').name, 'default');
      assert.equal(policyFor(l, 'photos', 'a').name, 'default');
    });

    it('uses the policy a bucket was created with, whatever its name matches', () => {
      const l = makeLayout([1, 1]);
      l.policies = [onePerSite('med', ['s0', 's1'], ['med-*']), onePerSite('single', ['s1'], []), onePerSite('default', ['s0'], [])];
      assert.equal(policyFor(l, 'med-x', 'k', 'single').name, 'single');
      assert.equal(policyFor(l, 'med-x', 'k', 'gone').name, 'med', 'an unknown bound policy falls back to matching');
      assert.deepEqual(dataPlacement(l, 'med-x', 'k', 'single').copies.map((c) => c.site), ['s1']);
      assert.deepEqual(readCandidates(l, 'med-x', 'k', 's0', { boundPolicy: 'single' }).map((c) => c.site), ['s1']);
    });

    it('fails loudly when the default policy is missing', () => {
      const l = makeLayout([1]);
      l.defaultPolicy = 'gone';
      l.policies[0].match.buckets = [];
      assert.throws(() => policyFor(l, 'b', 'k'), /default policy gone/);
    });
  });

  describe('metaPlacement', () => {
    it('puts a bucket on the top active node of each non-failed site', () => {
      for (const seed of SEEDS) {
        const l = randomLayout(seed);
        for (const b of ['a', 'med-1', 'logs', `x${seed}`]) {
          const p = partitionOf(b, l.partitionCount);
          const got = metaPlacement(l, b);
          assert.deepEqual(got.map((n) => n.site), l.sites.map((s) => s.name));
          for (const n of got) assert.equal(n.id, rankNodes(l, n.site, p)[0].id);
        }
      }
    });
  });

  describe('readCandidates', () => {
    it('tries the own site first, then primaries, then fallbacks', () => {
      const l = makeLayout([2, 2, 2]); // s2 is the fallback
      for (const k of keys(100, 4)) {
        assert.deepEqual(readCandidates(l, 'b', k, 's1').map((n) => n.site), ['s1', 's0', 's2']);
        assert.deepEqual(readCandidates(l, 'b', k, 's2').map((n) => n.site), ['s2', 's0', 's1']);
        assert.deepEqual(readCandidates(l, 'b', k, 'elsewhere').map((n) => n.site), ['s0', 's1', 's2']);
      }
    });

    it('still finds a copy on a draining node, after the new owner', () => {
      const l = makeLayout([3]);
      const k = 'some/key';
      const owner = dataPlacement(l, 'b', k).copies[0].nodes[0];
      const drained = clone(l);
      drained.nodes.find((n) => n.id === owner.id)!.state = 'draining';
      const ids = readCandidates(drained, 'b', k, 's0').map((n) => n.id);
      assert.equal(ids.length, 2);
      assert.notEqual(ids[0], owner.id);
      assert.equal(ids[1], owner.id);
    });

    it('puts the previous layout holders first during a transition (they hold every copy), then the new owners, without duplicates', () => {
      const before = makeLayout([2]);
      const after = clone(before);
      after.version = 2;
      after.nodes.push(node('n0-s0-new', 's0', 1e14)); // large: takes most partitions
      let checked = 0;
      for (const k of keys(100, 5)) {
        const oldOwner = dataPlacement(before, 'b', k).copies[0].nodes[0].id;
        const newOwner = dataPlacement(after, 'b', k).copies[0].nodes[0].id;
        const ids = readCandidates(after, 'b', k, 's0', { previous: before }).map((n) => n.id);
        assert.equal(ids[0], oldOwner);
        assert.ok(ids.includes(newOwner));
        assert.equal(new Set(ids).size, ids.length);
        if (oldOwner !== newOwner) checked++;
      }
      assert.ok(checked > 50, 'the test moved enough objects to mean something');
    });
  });

  describe('movement when nodes are added or drained', () => {
    it('moves about 1/(N+1) of a site, only to the new node, never between old nodes', () => {
      const summary: string[] = [];
      for (const n of [1, 2, 3, 4, 5, 7]) {
        let movedTotal = 0;
        const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
        for (const seed of seeds) {
          const before = makeLayout([n, 2], { partitionCount: 256, seed });
          const after = clone(before);
          after.version = 2;
          after.nodes.push(node(`n${seed}-s0-new`, 's0'));
          const moves = movedPartitions(before, after);
          assert.ok(moves.every((m) => m.site === 's0'), 'the other site does not move');
          for (const m of moves) {
            assert.deepEqual(m.to, [`n${seed}-s0-new`], `partition ${m.partition} went to an old node`);
            assert.equal(m.from.length, 1);
          }
          const fraction = moves.length / 256;
          assert.ok(Math.abs(fraction - 1 / (n + 1)) < 0.5 / (n + 1), `N=${n} seed ${seed}: moved ${fraction}`);
          movedTotal += moves.length;
        }
        const mean = movedTotal / (256 * seeds.length);
        assert.ok(Math.abs(mean - 1 / (n + 1)) < 0.15 / (n + 1), `N=${n}: moved ${mean} on average, want ${1 / (n + 1)}`);
        summary.push(`N=${n}: ${(mean * 100).toFixed(1)}% (ideal ${(100 / (n + 1)).toFixed(1)}%)`);
      }
      console.log(`      moved on adding one node: ${summary.join(', ')}`);
    });

    it('with two copies per site, a new node only takes a place in the top two', () => {
      for (const seed of [1, 2, 3, 4]) {
        const before = makeLayout([4], { partitionCount: 256, seed });
        before.policies[0].rules[0].copies = 2;
        const after = clone(before);
        after.nodes.push(node('added', 's0'));
        const moves = movedPartitions(before, after);
        for (const m of moves) {
          assert.ok(m.to.includes('added'));
          assert.equal(m.to.filter((x) => !m.from.includes(x)).length, 1);
          assert.equal(m.from.filter((x) => !m.to.includes(x)).length, 1);
        }
        const fraction = moves.length / 256;
        assert.ok(Math.abs(fraction - 2 / 5) < 0.1, `seed ${seed}: ${fraction}`);
      }
    });

    it('moves exactly the partitions of a draining node, to the remaining nodes', () => {
      const before = makeLayout([4], { partitionCount: 256 });
      const after = clone(before);
      after.nodes[2].state = 'draining';
      const gone = after.nodes[2].id;
      const moves = movedPartitions(before, after);
      const owned = firstOwners(before, 's0').get(gone) ?? 0;
      assert.equal(moves.length, owned);
      for (const m of moves) {
        assert.deepEqual(m.from, [gone]);
        assert.ok(!m.to.includes(gone) && m.to.length === 1);
      }
    });

    it('reports no moves between equal layouts, skips failed sites, and refuses a new partition count', () => {
      const l = makeLayout([3, 3]);
      assert.deepEqual(movedPartitions(l, clone(l)), []);
      const failed = clone(l);
      failed.sites[1].state = 'failed';
      failed.nodes.push(node('extra', 's1'));
      assert.deepEqual(movedPartitions(l, failed), []);
      const other = clone(l);
      other.partitionCount = 256;
      assert.throws(() => movedPartitions(l, other), /partition count/);
    });
  });

  describe('balance', () => {
    it('keeps every node within 15% of its fair share of partitions (equal capacities)', () => {
      let worst = 0;
      for (let n = 2; n <= 8; n++) {
        for (const seed of [1, 2, 3, 4, 5]) {
          const l = makeLayout([n], { seed });
          const spread = worstSpread(firstOwners(l, 's0'), l.nodes, l.partitionCount);
          assert.ok(spread < 0.15, `N=${n} seed ${seed}: ${spread}`);
          worst = Math.max(worst, spread);
        }
      }
      console.log(`      worst spread, equal capacities, 2-8 nodes, 4096 partitions: ${(worst * 100).toFixed(1)}%`);
    });

    it('keeps every node within 15% of its capacity-weighted share (unequal capacities)', () => {
      let worst = 0;
      for (let n = 2; n <= 6; n++) {
        for (const seed of [1, 2, 3, 4, 5]) {
          const l = makeLayout([n], { seed, capacities: (_s, i) => (1 + (i % 3)) * 1e12 });
          const spread = worstSpread(firstOwners(l, 's0'), l.nodes, l.partitionCount);
          assert.ok(spread < 0.15, `N=${n} seed ${seed}: ${spread}`);
          worst = Math.max(worst, spread);
        }
      }
      console.log(`      worst spread, capacities 1:2:3, 2-6 nodes, 4096 partitions: ${(worst * 100).toFixed(1)}%`);
    });

    it('keeps each node within 15% of its share of objects, for 20,000 objects', () => {
      let worst = 0;
      for (const caps of [() => 1e12, (_s: number, i: number) => (i % 2 === 0 ? 1e12 : 2e12)]) {
        const l = makeLayout([3, 4], { capacities: caps });
        const counts = new Map<string, number>();
        const objects = keys(20000, 11);
        for (const k of objects) {
          for (const c of dataPlacement(l, 'bucket', k).copies) for (const x of c.nodes) counts.set(x.id, (counts.get(x.id) ?? 0) + 1);
        }
        for (const s of ['s0', 's1']) {
          const spread = worstSpread(counts, l.nodes.filter((x) => x.site === s), objects.length);
          assert.ok(spread < 0.15, `site ${s}: ${spread}`);
          worst = Math.max(worst, spread);
        }
      }
      console.log(`      worst spread of 20,000 objects, sites of 3 and 4 nodes, equal and 1:2 capacities: ${(worst * 100).toFixed(1)}%`);
    });

    it('keeps equal nodes balanced with two copies per site', () => {
      const l = makeLayout([5]);
      const spread = worstSpread(firstOwners(l, 's0', 2), l.nodes, 2 * l.partitionCount);
      assert.ok(spread < 0.15, `${spread}`);
    });

    it('shows why 256 partitions are too few for the 15% bound (the measured spread is reported)', () => {
      let worst = 0;
      for (const seed of [1, 2, 3, 4, 5]) {
        const l = makeLayout([4], { seed, partitionCount: 256 });
        worst = Math.max(worst, worstSpread(firstOwners(l, 's0'), l.nodes, 256));
      }
      console.log(`      worst spread, 4 equal nodes, 256 partitions: ${(worst * 100).toFixed(1)}%`);
      assert.ok(worst > 0.05, 'binomial noise at 256 partitions is visible');
    });
  });

  it('a site built by hand behaves like a generated one', () => {
    const l: Layout = {
      version: 1, partitionCount: 16, sites: [site('a')], nodes: [node('x', 'a'), node('y', 'a')],
      policies: [onePerSite('default', ['a'])], defaultPolicy: 'default',
    };
    for (let p = 0; p < 16; p++) assert.equal(rankNodes(l, 'a', p).length, 2);
  });
});
