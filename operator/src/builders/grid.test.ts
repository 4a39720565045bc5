import assert from 'node:assert/strict';
import type { V1StatefulSet } from '@kubernetes/client-node';
import { selectorString, LABELS, poolPodSelector } from './common';
import { bucket, deepFreeze, grid, NS, pool, SECRETS, site, threeSites } from './fixtures';
import { buildGridObjects } from './grid';
import { buildBucketSecret } from './secrets';

const ids = (objects: { kind?: string; metadata?: { name?: string } }[]): string[] => objects.map((o) => `${o.kind}/${o.metadata?.name}`);

describe('builders: every object of a grid', () => {
  it('builds the ConfigMap, Secret, Services, a PDB per site and a StatefulSet per pool, in a fixed order', () => {
    const { objects, problems } = buildGridObjects({ ...threeSites(), secrets: SECRETS });
    assert.deepEqual(problems, []);
    assert.deepEqual(ids(objects), [
      'ConfigMap/demo-config', 'Secret/demo-admin', 'Service/demo-nodes', 'Service/demo-s3',
      'Service/demo-dc1-s3', 'PodDisruptionBudget/demo-dc1',
      'Service/demo-dc2-s3', 'PodDisruptionBudget/demo-dc2',
      'Service/demo-dc3-s3', 'PodDisruptionBudget/demo-dc3',
      'StatefulSet/dc1-pool', 'StatefulSet/dc2-pool', 'StatefulSet/dc3-pool',
    ]);
  });

  it('labels every object as managed by the operator, part of archipel, instance of the grid, in its namespace, with one controller owner', () => {
    const { objects } = buildGridObjects({ ...threeSites(), secrets: SECRETS });
    const all = [...objects, buildBucketSecret(bucket('records'), grid(), { accessKeyId: 'AK0001', secretAccessKey: 'secret-key-01' })];
    for (const o of all) {
      const what = `${o.kind}/${o.metadata?.name}`;
      assert.ok(o.apiVersion && o.kind, `${what}: apiVersion and kind, for server-side apply`);
      assert.equal(o.metadata?.namespace, NS, what);
      assert.equal(o.metadata?.labels?.[LABELS.managedBy], 'archipel-operator', what);
      assert.equal(o.metadata?.labels?.[LABELS.partOf], 'archipel', what);
      assert.equal(o.metadata?.labels?.[LABELS.instance], 'demo', what);
      assert.equal(o.metadata?.labels?.[LABELS.grid], 'demo', what);
      const owners = o.metadata?.ownerReferences ?? [];
      assert.equal(owners.length, 1, what);
      assert.equal(owners[0].controller, true, what);
      assert.equal(owners[0].blockOwnerDeletion, true, what);
      assert.ok(owners[0].uid, what);
    }
  });

  it('is deterministic: same input in any order gives deep-equal plain JSON, and the input is not touched', () => {
    const a = buildGridObjects({ ...threeSites(), secrets: SECRETS });
    const input = threeSites();
    const shuffled = deepFreeze({ grid: input.grid, sites: [...input.sites].reverse(), pools: [input.pools[1], input.pools[2], input.pools[0]], secrets: SECRETS });
    const b = buildGridObjects(shuffled);
    assert.deepStrictEqual(b, a);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(a.objects)), a.objects, 'no undefined fields, no class instances');
    assert.equal(JSON.stringify(b.objects), JSON.stringify(a.objects), 'same key order too');
  });

  it('builds the other objects when one NodePool names a missing Site, and says why', () => {
    const { grid: g, sites, pools } = threeSites();
    const { objects, problems } = buildGridObjects({ grid: g, sites, pools: [...pools, pool('dc7-pool')], secrets: SECRETS });
    assert.deepEqual(problems, ['NodePool dc7-pool: spec.site "dc7" does not name a Site in namespace "storage"']);
    assert.equal(objects.filter((o) => o.kind === 'StatefulSet').length, 3);
  });

  it('leaves out the Sites and NodePools of another grid or namespace', () => {
    const { grid: g, sites, pools } = threeSites();
    const foreignSite = site('dc9', { grid: 'other' });
    const foreignPool = pool('dc9-pool');
    const elsewhere = pool('dc1-pool');
    elsewhere.metadata.namespace = 'team-b';
    const { objects, problems } = buildGridObjects({ grid: g, sites: [...sites, foreignSite], pools: [...pools, foreignPool, elsewhere], secrets: SECRETS });
    assert.deepEqual(problems, []);
    assert.ok(!ids(objects).some((id) => id.includes('dc9')), ids(objects).join(' '));
    assert.equal(objects.filter((o) => o.kind === 'StatefulSet').length, 3);
  });

  it('reports a bad grid secret and still builds the rest', () => {
    const { objects, problems } = buildGridObjects({ ...threeSites(), secrets: { ...SECRETS, gridSecret: 'short' } });
    assert.deepEqual(problems, ['Grid demo: the grid secret must be at least 32 bytes']);
    assert.ok(!ids(objects).includes('Secret/demo-admin'));
    assert.equal(objects.length, 12);
  });

  it('runs the replicas the reconciler asks for a pool that is still draining, spec.replicas for the others', () => {
    const { objects } = buildGridObjects({ ...threeSites(), secrets: SECRETS, replicas: { 'dc2-pool': 3 } });
    const replicas = objects.filter((o) => o.kind === 'StatefulSet').map((o) => [o.metadata?.name, (o as V1StatefulSet).spec?.replicas]);
    assert.deepEqual(replicas, [['dc1-pool', 2], ['dc2-pool', 3], ['dc3-pool', 2]]);
  });

  it('gives the scale subresource the same selector as the StatefulSet', () => {
    const { grid: g, pools } = threeSites();
    assert.equal(selectorString(poolPodSelector(g, pools[0])),
      'app.kubernetes.io/component=storage-node,app.kubernetes.io/name=archipel,storage.archipel.io/grid=demo,storage.archipel.io/pool=dc1-pool');
  });
});
