import assert from 'node:assert/strict';
import { parseResources } from './parse';
import { resolveGrid, type ResolvedGrid } from './resolve';
import { planLayout, type ObservedNode, type PlanInput } from './plan';
import { validateLayout, type Layout } from '../../../storage-node/src/layout/types';
import { movedPartitions, policyFor } from '../../../storage-node/src/layout/placement';
import { seededRandom, shuffle } from '../../../storage-node/src/layout/testing';

const API = 'apiVersion: storage.archipel.io/v1alpha1';

function doc(kind: string, name: string, spec: string): string {
  return `${API}\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec.split('\n').map((l) => `  ${l}`).join('\n')}\n`;
}

/** Three sites (dc3 fallback), a pool of `replicas[i]` per site, one copy per site by default. */
function crs(opts: { replicas?: number[]; extra?: string[]; failed?: string[]; defaultPolicy?: boolean; defaultSites?: string[] } = {}): ResolvedGrid {
  const replicas = opts.replicas ?? [2, 2, 2];
  const docs = [doc('Grid', 'demo', 'partitionCount: 256')];
  ['dc1', 'dc2', 'dc3'].forEach((s, i) => {
    const state = opts.failed?.includes(s) ? '\nstate: Failed' : '';
    docs.push(doc('Site', s, `grid: demo\nrole: ${i === 2 ? 'fallback' : 'primary'}${state}`));
    docs.push(doc('NodePool', `${s}-pool`, `site: ${s}\nreplicas: ${replicas[i]}\nstorage:\n  size: 1Ti`));
  });
  if (opts.defaultPolicy !== false) {
    const rules = (opts.defaultSites ?? ['dc1', 'dc2', 'dc3']).map((s) => `  - site: ${s}`).join('\n');
    docs.push(doc('ReplicationPolicy', 'default', `grid: demo\nrules:\n${rules}`));
  }
  docs.push(...(opts.extra ?? []));
  const parsed = parseResources(docs.join('---\n'));
  assert.deepEqual(parsed.errors, []);
  const r = resolveGrid(parsed);
  assert.ok(r.grid, JSON.stringify(r.errors));
  return r as ResolvedGrid;
}

function observed(pool: string, ordinal: number, opts: Partial<ObservedNode> = {}): ObservedNode {
  const site = Number(pool.slice(2, 3));
  return {
    id: `${pool}-${ordinal}`, pool, rpcAddress: `127.0.0.${site}:${7000 + ordinal}`, s3Address: `127.0.0.${site}:${9000 + ordinal}`,
    capacityBytes: 0, ready: true, ...opts,
  };
}

function allNodes(replicas = [2, 2, 2]): ObservedNode[] {
  return ['dc1', 'dc2', 'dc3'].flatMap((s, i) => Array.from({ length: replicas[i] }, (_, j) => observed(`${s}-pool`, j)));
}

function plan(r: ResolvedGrid, nodes: ObservedNode[], more: Partial<PlanInput> = {}): ReturnType<typeof planLayout> {
  return planLayout({ grid: r.grid, sites: r.sites, pools: r.pools, policies: r.policies, nodes, ...more });
}

function ids(l: Layout, state?: string): string[] {
  return l.nodes.filter((n) => !state || n.state === state).map((n) => n.id);
}

describe('planner: layout planning', () => {
  it('plans the three-site grid: version 1, every ready node active, a valid layout', () => {
    const out = plan(crs(), allNodes());
    assert.deepEqual(out.problems, []);
    assert.equal(out.changed, true);
    assert.equal(out.layout.version, 1);
    assert.equal(out.layout.partitionCount, 256);
    assert.deepEqual(ids(out.layout, 'active'), ['dc1-pool-0', 'dc1-pool-1', 'dc2-pool-0', 'dc2-pool-1', 'dc3-pool-0', 'dc3-pool-1']);
    assert.deepEqual(out.layout.sites.map((s) => [s.name, s.role, s.state]), [['dc1', 'primary', 'active'], ['dc2', 'primary', 'active'], ['dc3', 'fallback', 'active']]);
    assert.equal(out.layout.nodes[0].capacityBytes, 2 ** 40, 'capacity from the pool size when the node does not report it');
    assert.equal(out.layout.nodes[0].rpcAddress, '127.0.0.1:7000');
    assert.deepEqual(validateLayout(out.layout), []);
  });

  it('keeps the version when nothing changed, whatever the input order', () => {
    const r = crs();
    const first = plan(r, allNodes()).layout;
    const again = plan({ ...r, sites: [...r.sites].reverse(), pools: [...r.pools].reverse() }, allNodes().reverse(), { previous: first });
    assert.equal(again.changed, false);
    assert.equal(again.layout.version, 1);
    assert.deepEqual(again.layout, first);
  });

  it('goes up by exactly one version when a ready node changes address', () => {
    const r = crs();
    const v1 = plan(r, allNodes()).layout;
    const moved = allNodes().map((n) => (n.id === 'dc2-pool-1' ? { ...n, rpcAddress: '10.0.0.9:7000' } : n));
    const v2 = plan(r, moved, { previous: v1 });
    assert.equal(v2.changed, true);
    assert.equal(v2.layout.version, 2);
    assert.equal(v2.layout.nodes.find((n) => n.id === 'dc2-pool-1')?.rpcAddress, '10.0.0.9:7000');
  });

  it('adds a node only once it is Ready, and keeps a known node that is restarting', () => {
    const r = crs();
    const v1 = plan(r, allNodes().map((n) => (n.id === 'dc1-pool-1' ? { ...n, ready: false } : n)));
    assert.ok(!ids(v1.layout).includes('dc1-pool-1'));
    const v2 = plan(r, allNodes(), { previous: v1.layout });
    assert.ok(ids(v2.layout, 'active').includes('dc1-pool-1'));
    const restarting = allNodes().map((n) => (n.id === 'dc1-pool-1' ? { ...n, ready: false, rpcAddress: '' } : n))
      .filter((n) => n.id !== 'dc2-pool-0'); // one pod gone entirely, one without an IP yet
    const v3 = plan(r, restarting, { previous: v2.layout });
    assert.equal(v3.changed, false, 'a restarting pod does not trigger a new layout');
    assert.equal(v3.layout.version, v2.layout.version);
  });

  it('scales out: the new node joins and takes about a third of its site', () => {
    const v1 = plan(crs(), allNodes()).layout;
    const v2 = plan(crs({ replicas: [3, 2, 2] }), allNodes([3, 2, 2]), { previous: v1 });
    assert.deepEqual(v2.problems, []);
    assert.equal(v2.layout.version, 2);
    const moves = movedPartitions(v1, v2.layout);
    assert.ok(moves.every((m) => m.site === 'dc1' && m.to[0] === 'dc1-pool-2'));
    assert.ok(Math.abs(moves.length / 256 - 1 / 3) < 0.1, `${moves.length} of 256 moved`);
  });

  it('scales in by draining first, and drops a node only once it is drained', () => {
    const v1 = plan(crs(), allNodes()).layout;
    const r = crs({ replicas: [1, 2, 2] });
    const v2 = plan(r, allNodes(), { previous: v1 });
    assert.deepEqual(ids(v2.layout, 'draining'), ['dc1-pool-1']);
    assert.equal(v2.layout.version, 2);
    const v3 = plan(r, allNodes(), { previous: v2.layout });
    assert.equal(v3.changed, false, 'still draining: nothing new');
    const v4 = plan(r, allNodes(), { previous: v3.layout, drainedNodeIds: ['dc1-pool-1'] });
    assert.ok(!ids(v4.layout).includes('dc1-pool-1'));
    assert.equal(v4.layout.version, 3);
    const back = plan(crs(), allNodes(), { previous: v2.layout });
    assert.deepEqual(ids(back.layout, 'draining'), [], 'scaling back up cancels the drain');
  });

  it('drains the nodes of a deleted pool, and never adds a pod beyond replicas', () => {
    const v1 = plan(crs({ defaultSites: ['dc1', 'dc2'] }), allNodes()).layout;
    const r = crs({ defaultSites: ['dc1', 'dc2'] }); // no policy needs dc3
    const withoutDc3Pool = { ...r, pools: r.pools.filter((p) => p.metadata.name !== 'dc3-pool') };
    const v2 = plan(withoutDc3Pool, allNodes(), { previous: v1 });
    assert.deepEqual(ids(v2.layout, 'draining'), ['dc3-pool-0', 'dc3-pool-1']);
    assert.deepEqual(v2.refused, []);
    const extra = plan(crs({ defaultSites: ['dc1', 'dc2'] }), [...allNodes(), observed('dc1-pool', 2)], { previous: v1 });
    assert.equal(extra.changed, false);
  });

  describe('refuses a scale-in that would leave a policy unsatisfiable', () => {
    const med = doc('ReplicationPolicy', 'med', 'grid: demo\nmatch:\n  buckets: ["med-*"]\nrules:\n  - site: dc1\n    copies: 2\ningest: strict');

    it('refuses emptying a site a policy needs, and keeps its nodes active so applying the layout changes nothing', () => {
      const v1 = plan(crs(), allNodes()).layout;
      const r = crs();
      r.pools.find((p) => p.metadata.name === 'dc1-pool')!.spec.replicas = 0; // parse refuses 0; the operator may see it from an edit
      const out = plan(r, allNodes(), { previous: v1 });
      assert.deepEqual(out.refused, ['NodePool dc1-pool: scaling to 0 leaves site dc1 with 0 active nodes; policy default asks 1 copy there']);
      assert.deepEqual(ids(out.layout, 'active'), ids(v1, 'active'));
      assert.equal(out.changed, false);
      assert.equal(out.layout.version, 1);
      assert.deepEqual(out.problems, [], 'no degraded-policy warning: nothing is taken away');
    });

    it('refuses going below the copies a policy keeps in the site, site by site: another site\'s scale-in goes on', () => {
      const v1 = plan(crs({ extra: [med] }), allNodes()).layout;
      const out = plan(crs({ extra: [med], replicas: [1, 1, 2] }), allNodes(), { previous: v1 });
      assert.deepEqual(out.refused, ['NodePool dc1-pool: scaling to 1 leaves site dc1 with 1 active node; policy med asks 2 copies there']);
      assert.deepEqual(ids(out.layout, 'draining'), ['dc2-pool-1'], 'dc2 keeps its one copy with one node');
      assert.ok(ids(out.layout, 'active').includes('dc1-pool-1'));
      assert.equal(out.layout.version, 2);
    });

    it('names every policy the scale-in would break', () => {
      const v1 = plan(crs({ extra: [med] }), allNodes()).layout;
      const r = crs({ extra: [med] });
      r.pools.find((p) => p.metadata.name === 'dc1-pool')!.spec.replicas = 0;
      const out = plan(r, allNodes(), { previous: v1 });
      assert.deepEqual(out.refused, ['NodePool dc1-pool: scaling to 0 leaves site dc1 with 0 active nodes; policy med asks 2 copies there; policy default asks 1 copy there']);
    });

    it('refuses deleting the only pool of a needed site', () => {
      const v1 = plan(crs(), allNodes()).layout;
      const r = crs();
      const out = plan({ ...r, pools: r.pools.filter((p) => p.metadata.name !== 'dc3-pool') }, allNodes(), { previous: v1 });
      assert.deepEqual(out.refused, ['NodePool dc3-pool: removing it leaves site dc3 with 0 active nodes; policy default asks 1 copy there']);
      assert.deepEqual(ids(out.layout, 'draining'), []);
      assert.equal(out.changed, false);
    });

    it('allows a scale-in when another pool of the site keeps enough nodes', () => {
      const extraPool = doc('NodePool', 'dc1-extra', 'site: dc1\nreplicas: 1\nstorage:\n  size: 1Ti');
      const nodes = [...allNodes(), observed('dc1-extra', 0, { rpcAddress: '127.0.0.1:7100', s3Address: '127.0.0.1:9100' })];
      const v1 = plan(crs({ extra: [med, extraPool] }), nodes).layout;
      const out = plan(crs({ extra: [med, extraPool], replicas: [1, 2, 2] }), nodes, { previous: v1 });
      assert.deepEqual(out.refused, []);
      assert.deepEqual(ids(out.layout, 'draining'), ['dc1-pool-1']);
    });

    it('does not refuse what the previous layout could not meet either (a degraded policy stays a warning)', () => {
      const big = doc('ReplicationPolicy', 'big', 'grid: demo\nmatch:\n  buckets: ["big-*"]\nrules:\n  - site: dc1\n    copies: 3');
      const v1 = plan(crs({ extra: [big] }), allNodes()).layout;
      const out = plan(crs({ extra: [big], replicas: [1, 2, 2] }), allNodes(), { previous: v1 });
      assert.deepEqual(out.refused, []);
      assert.deepEqual(ids(out.layout, 'draining'), ['dc1-pool-1']);
      assert.deepEqual(out.problems, ['layout: policy big: asks for 3 copies in site dc1, which has 1 active node(s)']);
    });

    it('lets a drained node leave, and a Failed site\'s nodes go, without a refusal', () => {
      const v1 = plan(crs(), allNodes()).layout;
      const v2 = plan(crs({ replicas: [1, 2, 2] }), allNodes(), { previous: v1 }).layout;
      const v3 = plan(crs({ replicas: [1, 2, 2] }), allNodes(), { previous: v2, drainedNodeIds: ['dc1-pool-1'] });
      assert.deepEqual(v3.refused, []);
      assert.ok(!ids(v3.layout).includes('dc1-pool-1'));
      const failed = plan(crs({ failed: ['dc3'] }), allNodes(), { previous: v1 });
      assert.deepEqual(failed.refused, []);
    });
  });

  it('takes the nodes of a Failed site out of the layout and says which copies are not made', () => {
    const v1 = plan(crs(), allNodes()).layout;
    const v2 = plan(crs({ failed: ['dc3'] }), allNodes(), { previous: v1 });
    assert.ok(ids(v2.layout).every((id) => !id.startsWith('dc3')));
    assert.equal(v2.layout.sites.find((s) => s.name === 'dc3')?.state, 'failed');
    assert.deepEqual(v2.problems, ['ReplicationPolicy default: site dc3 is Failed; its 1 copy is not made']);
  });

  it('reports a policy asking for more copies than a site has, and still produces the layout', () => {
    const r = crs({ extra: [doc('ReplicationPolicy', 'med', 'grid: demo\nmatch:\n  buckets: ["med-*"]\nrules:\n  - site: dc1\n    copies: 3\ningest: strict')] });
    const out = plan(r, allNodes());
    assert.deepEqual(out.problems, ['layout: policy med: asks for 3 copies in site dc1, which has 2 active node(s)']);
    assert.equal(out.layout.nodes.length, 6);
    assert.equal(out.layout.version, 1);
  });

  it('orders policies by priority then name, with the default last', () => {
    const r = crs({
      extra: [
        doc('ReplicationPolicy', 'zeta', 'grid: demo\npriority: 5\nmatch:\n  buckets: ["z*"]\nrules:\n  - site: dc1'),
        doc('ReplicationPolicy', 'alpha', 'grid: demo\nmatch:\n  buckets: ["a*"]\nrules:\n  - site: dc2'),
        doc('ReplicationPolicy', 'beta', 'grid: demo\nmatch:\n  buckets: ["*"]\n  prefixes: ["logs/"]\nrules:\n  - site: dc3'),
      ],
    });
    const l = plan(r, allNodes()).layout;
    assert.deepEqual(l.policies.map((p) => p.name), ['zeta', 'alpha', 'beta', 'default']);
    assert.equal(policyFor(l, 'zoo', 'x').name, 'zeta');
    assert.equal(policyFor(l, 'other', 'logs/1').name, 'beta');
    assert.equal(policyFor(l, 'other', 'x').name, 'default', 'the catch-all default does not shadow others');
  });

  it('falls back to one copy per site when the default policy is missing, and says so', () => {
    const out = plan(crs({ defaultPolicy: false }), allNodes());
    assert.deepEqual(out.problems, ['Grid demo: default policy default not found; using one copy per site (dc1, dc2, dc3) with balanced ingest']);
    assert.deepEqual(out.layout.policies, [{ name: 'default', match: { buckets: [] }, rules: [{ site: 'dc1', copies: 1 }, { site: 'dc2', copies: 1 }, { site: 'dc3', copies: 1 }], ingest: 'balanced' }]);
    assert.deepEqual(validateLayout(out.layout), []);
  });

  it('ignores nodes with a foreign pool or a malformed id, with a message', () => {
    const out = plan(crs(), [...allNodes(), observed('dc1-pool', 0, { id: 'dc1-pool-x' }), observed('dc9-pool', 0)]);
    assert.deepEqual(out.problems.sort(), [
      'node dc1-pool-x: id must be <pool>-<ordinal> for pool dc1-pool; ignored',
      'node dc9-pool-0: pool dc9-pool is not a NodePool of grid demo; ignored',
    ]);
    assert.equal(out.layout.nodes.length, 6);
  });

  it('never changes the partition count of a running grid', () => {
    const v1 = plan(crs(), allNodes()).layout;
    const r = crs();
    r.grid.spec.partitionCount = 4096;
    const v2 = plan(r, allNodes(), { previous: v1 });
    assert.equal(v2.layout.partitionCount, 256);
    assert.match(v2.problems[0], /spec.partitionCount cannot change/);
    assert.equal(v2.changed, false);
  });

  it('reports two nodes claiming one address (a reused pod IP)', () => {
    const nodes = allNodes().map((n) => (n.id === 'dc1-pool-1' ? { ...n, rpcAddress: '127.0.0.1:7000' } : n));
    const out = plan(crs(), nodes);
    assert.deepEqual(out.problems, ['layout: node dc1-pool-1: rpcAddress 127.0.0.1:7000 is also used by dc1-pool-0']);
  });

  it('plans the same layout for any order of its inputs (20 seeded shuffles)', () => {
    const r = crs({ extra: [doc('ReplicationPolicy', 'med', 'grid: demo\nmatch:\n  buckets: ["med-*"]\nrules:\n  - site: dc1\n  - site: dc2')] });
    const want = JSON.stringify(plan(r, allNodes()).layout);
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = seededRandom(seed);
      const out = plan(
        { ...r, sites: shuffle([...r.sites], rnd), pools: shuffle([...r.pools], rnd), policies: shuffle([...r.policies], rnd) },
        shuffle(allNodes(), rnd),
      );
      assert.equal(JSON.stringify(out.layout), want, `seed ${seed}`);
    }
  });

  it('uses the capacity a node reports over the pool size', () => {
    const nodes = allNodes().map((n) => (n.id === 'dc2-pool-0' ? { ...n, capacityBytes: 5e12 } : n));
    assert.equal(plan(crs(), nodes).layout.nodes.find((n) => n.id === 'dc2-pool-0')?.capacityBytes, 5e12);
  });
});
