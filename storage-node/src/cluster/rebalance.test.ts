import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { partitionOf } from '../layout/placement';
import { clone, makeLayout, node } from '../layout/testing';
import type { Layout } from '../layout/types';
import { BlobPlaces, nameHash16 } from './blob-places';
import { LayoutState, placementDiffers } from './layout-state';
import { gainedPartitions, Throttle } from './rebalance';
import { majorityOfEach, untilEnough } from './records';
import { WriteEpochs } from './write-epochs';

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-rebalance-'));

describe('cluster/rebalance: what moves in a layout transition', () => {
  it('a node added to a site of 2 gains about a third of its partitions, listed from their former owners', () => {
    const before = makeLayout([2, 1]);
    const after = clone(before);
    after.version = 2;
    after.nodes.push(node('new', 's0'));
    const gained = gainedPartitions(after, [before], after.nodes.find((n) => n.id === 'new')!);
    const share = gained.size / before.partitionCount;
    assert.ok(share > 0.3 && share < 0.37, `gained ${(share * 100).toFixed(1)}% of partitions`);
    for (const [p, sources] of gained) {
      assert.equal(sources[0].site, 's0', `partition ${p}: its former owner in the same site is asked first`);
      assert.ok(sources.some((n) => n.site === 's1'), `partition ${p}: the other site's holder is a source too`);
    }
    // The nodes already there gain nothing: rendezvous only inserts the new node into rankings.
    for (const n of before.nodes) assert.equal(gainedPartitions(after, [before], n).size, 0, `${n.id} gains nothing`);
  });

  it('draining a node hands each of its partitions to exactly one remaining node of its site', () => {
    const before = makeLayout([3]);
    const after = clone(before);
    after.version = 2;
    after.nodes[2].state = 'draining';
    const counts = after.nodes.slice(0, 2).map((n) => gainedPartitions(after, [before], n).size);
    assert.ok(Math.abs(counts[0] + counts[1] - before.partitionCount / 3) < before.partitionCount * 0.05, `the two nodes gain ${counts.join(' + ')} partitions, about a third`);
  });

  it('sees address changes alone as no transition, and node or policy changes as one', () => {
    const a = makeLayout([2, 1]);
    const moved = clone(a);
    moved.nodes[0].rpcAddress = 'elsewhere:7000';
    assert.equal(placementDiffers(a, moved), false);
    const drained = clone(a);
    drained.nodes[0].state = 'draining';
    assert.equal(placementDiffers(a, drained), true);
    const policy = clone(a);
    policy.policies[0].rules[0].copies = 2;
    assert.equal(placementDiffers(a, policy), true);
  });
});

describe('cluster/layout-state: the versions a transition keeps in use', () => {
  const layout = (version: number, nodes: number[]): Layout => ({ ...makeLayout(nodes), version });

  it('keeps the replaced version open across a restart, merges a peer\'s history, and retires', () => {
    const dir = tmp();
    const s = new LayoutState(dir, 'n0-s0-0');
    s.apply(layout(1, [1, 1]));
    assert.equal(s.open.length, 0);
    s.apply(layout(2, [2, 1]));
    assert.deepEqual(s.open.map((l) => l.version), [1]);
    assert.equal(s.oldest?.version, 1, 'metadata reads use the oldest version');
    const again = new LayoutState(dir, 'n0-s0-0');
    assert.deepEqual(again.open.map((l) => l.version), [1], 'kept on disk');
    // A node that joined at version 2 learns version 1 from a peer.
    const late = new LayoutState(tmp(), 'n0-s0-1');
    late.apply(layout(2, [2, 1]));
    assert.equal(late.mergeHistory(again.historyRecord), true);
    assert.deepEqual(late.open.map((l) => l.version), [1]);
    again.readCurrent();
    assert.equal(again.oldest?.version, 2, 'reads move to the current version once all have synced');
    again.retireBelow(2);
    assert.equal(again.open.length, 0);
    assert.equal(new LayoutState(dir, 'n0-s0-0').open.length, 0, 'retirement is kept on disk');
    assert.equal(late.mergeHistory(again.historyRecord), true, 'a peer\'s retirement is taken');
    assert.equal(late.open.length, 0);
  });
});

describe('cluster/records: a majority of each replica set', () => {
  it('needs a majority in every set and fails as soon as one set cannot have it', async () => {
    const [a, b, c, d] = ['a', 'b', 'c', 'd'];
    const q = majorityOfEach([[a, b, c], [d, b, c]]);
    assert.equal(q.reached([b, c]), true);
    assert.equal(q.reached([a, b]), false, 'b alone is not a majority of the second set');
    assert.equal(q.reached([a, b, d]), true);
    assert.equal(q.impossible([b, c]), true);
    const failing = new Set([c]);
    const out = await untilEnough([a, b, c, d], q, async (t) => {
      if (failing.has(t)) throw new Error('down');
    }, () => new Error('no quorum'));
    assert.deepEqual(out.acked.sort(), [a, b, d]);
    failing.add(d);
    await assert.rejects(untilEnough([a, b, c, d], q, async (t) => {
      if (failing.has(t)) throw new Error('down');
    }, () => new Error('no quorum')), /no quorum/);
  });
});

describe('cluster/write-epochs and the rebalance throttle', () => {
  it('acks the current version only once the writes started under older ones are over', () => {
    const e = new WriteEpochs();
    const end = e.begin(3);
    assert.equal(e.ack(4), 3);
    end();
    end();
    assert.equal(e.ack(4), 4);
  });

  it('lets bytes through no faster than its rate', async () => {
    const t = new Throttle(1_000_000);
    await t.take(1_000_000); // the bucket starts full
    const start = Date.now();
    await t.take(200_000);
    const ms = Date.now() - start;
    assert.ok(ms >= 150, `200 kB at 1 MB/s took ${ms} ms`);
  });
});

describe('cluster/blob-places: copies listed by partition', () => {
  it('lists the copies of some partitions in pages, and sums their sizes', () => {
    const places = BlobPlaces.open(path.join(tmp(), 'places.db'));
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    keys.forEach((k, i) => places.record(i.toString(16).padStart(32, '0'), { bucket: 'b', key: k }, 10 + i));
    const count = 64;
    const byPartition = new Map<number, string[]>();
    for (const k of keys) byPartition.set(partitionOf(`b/${k}`, count), [...(byPartition.get(partitionOf(`b/${k}`, count)) ?? []), k]);
    const parts = [...byPartition.keys()].slice(0, 5);
    const want = parts.flatMap((p) => byPartition.get(p)!).sort();
    const got: string[] = [];
    let after: { hash16: number; id: string } | undefined;
    for (;;) {
      const page = places.list(parts, count, after, 3);
      got.push(...page.map((r) => r.key));
      if (page.length < 3) break;
      after = { hash16: page[2].hash16, id: page[2].id };
    }
    assert.deepEqual(got.sort(), want);
    for (const r of places.list(parts, count, undefined, 1000)) assert.equal(r.hash16, nameHash16('b', r.key));
    const sizes = places.sizes(parts, count);
    assert.equal([...sizes.values()].reduce((n, s) => n + s.blobs, 0), want.length);
    assert.deepEqual(places.count().blobs, 300);
    places.close();
  });
});
