import assert from 'node:assert/strict';
import { version } from '../meta/testing';
import { majority, mergeKeyRecords, newer, untilEnough } from './records';

describe('cluster/records: merging replica answers', () => {
  it('takes the newest record per version id, a tombstone winning a tie', () => {
    assert.equal(newer({ updatedTs: 2 }, { updatedTs: 1, version: {} }), true);
    assert.equal(newer({ updatedTs: 1, version: {} }, { updatedTs: 2 }), false);
    assert.equal(newer({ updatedTs: 5 }, { updatedTs: 5, version: {} }), true, 'tombstone wins a tie');
    assert.equal(newer({ updatedTs: 5, version: {} }, { updatedTs: 5 }), false);
    assert.equal(newer({ updatedTs: 5, version: {} }, { updatedTs: 5, version: {} }), false, 'equal records: keep the first');
  });

  it('merges replicas that each missed something, newest version first and latest flagged', () => {
    const v1 = version('b', 'k', 'v1', 100);
    const v2 = version('b', 'k', 'v2', 200);
    const v3 = version('b', 'k', 'v3', 300);
    const a = [{ versionId: 'v1', updatedTs: 100, version: v1 }, { versionId: 'v3', updatedTs: 300, version: v3 }];
    const b = [{ versionId: 'v1', updatedTs: 100, version: v1 }, { versionId: 'v2', updatedTs: 200, version: v2 }, { versionId: 'v3', updatedTs: 350 }];
    const { versions, winners } = mergeKeyRecords([a, b]);
    assert.deepEqual(versions.map((v) => [v.versionId, v.isLatest]), [['v2', true], ['v1', false]], 'v3 was deleted after it was written');
    assert.deepEqual(winners.map((w) => [w.versionId, w.updatedTs]).sort(), [['v1', 100], ['v2', 200], ['v3', 350]]);
  });

  it('orders versions with equal ts by version id, descending, as one replica would', () => {
    const x = version('b', 'k', 'aaa', 100);
    const y = version('b', 'k', 'bbb', 100);
    const { versions } = mergeKeyRecords([[{ versionId: 'aaa', updatedTs: 100, version: x }], [{ versionId: 'bbb', updatedTs: 100, version: y }]]);
    assert.deepEqual(versions.map((v) => v.versionId), ['bbb', 'aaa']);
  });

  it('needs a strict majority', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map(majority), [1, 2, 2, 3, 3]);
  });
  it('untilEnough resolves at the needed count, rejects once it cannot be had, and reports late failures', async () => {
    const gates = new Map<string, { ok: () => void; ko: (e: Error) => void }>();
    const run = (t: string) => new Promise<void>((ok, ko) => gates.set(t, { ok, ko }));
    const late: string[] = [];
    const fail = (acked: string[], failed: { target: string }[]) => new Error(`acked ${acked.join()} failed ${failed.map((f) => f.target).join()}`);
    const p = untilEnough(['a', 'b', 'c'], 2, run, fail, (t) => late.push(t));
    gates.get('b')!.ok();
    gates.get('a')!.ko(new Error('down'));
    gates.get('c')!.ok();
    assert.deepEqual(await p, { acked: ['b', 'c'], failed: [{ target: 'a', error: new Error('down') }] });
    const q = untilEnough(['a', 'b', 'c'], 2, run, fail, (t) => late.push(t));
    gates.get('a')!.ko(new Error('x'));
    gates.get('b')!.ko(new Error('y'));
    await assert.rejects(q, /acked  failed a,b/);
    gates.get('c')!.ko(new Error('z'));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(late, ['c']);
    assert.deepEqual(await untilEnough([], 0, run, fail), { acked: [], failed: [] });
    await assert.rejects(untilEnough([], 1, run, fail), /acked  failed/);
  });
});
