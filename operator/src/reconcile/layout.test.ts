import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import type { Layout } from '../../../storage-node/src/admin/api-types';
import { threeSites } from '../builders/fixtures';
import { LABELS } from '../builders/common';
import type { NodePool } from '../api/types';
import { decideLayout, decideReplicas, drainedNodeIds, firstLayoutReady, GridParts, PodObservation } from './layout';
import { STORAGE_CONTAINER } from './observe';
import { rb } from './fixtures';

let ipSeq = 1;
function pod(name: string): V1Pod {
  return {
    metadata: { name, namespace: 'storage', labels: { [LABELS.pool]: name.replace(/-[0-9]+$/, ''), [LABELS.grid]: 'demo' } },
    status: {
      phase: 'Running', podIP: `10.0.0.${ipSeq++}`,
      containerStatuses: [{ name: STORAGE_CONTAINER, started: true, ready: false, restartCount: 0, image: 'x', imageID: 'x', state: { running: {} } }],
    },
  } as V1Pod;
}

function parts(replicas = 1): GridParts {
  const { grid, sites, pools } = threeSites();
  const ps = pools.map((p) => ({ ...p, spec: { ...p.spec, replicas } }));
  const pods = ps.flatMap((p) => Array.from({ length: replicas }, (_, i) => pod(`${p.metadata.name}-${i}`)));
  return { grid, sites, pools: ps, policies: [], pods };
}

const obs = (p: V1Pod, layout: Layout | null, over: Partial<PodObservation> = {}): PodObservation => ({
  id: p.metadata!.name!, pool: p.metadata!.labels![LABELS.pool], pod: p, up: true, layout, layoutVersion: layout?.version ?? 0, rebalance: rb({ layoutVersion: layout?.version ?? 0 }), ...over,
});

describe('operator: the layout step', () => {
  it('waits for every pool\'s pods before the first layout, and says which', () => {
    const pools = parts(2).pools;
    const msg = firstLayoutReady(pools, [{ id: 'dc1-pool-0', pool: 'dc1-pool', up: true }]);
    assert.match(msg!, /waiting for 5 storage nodes to start \(dc1-pool-1, dc2-pool-0/);
    assert.equal(firstLayoutReady([], []), 'the grid has no NodePool');
  });

  it('plans version 1 from no layout once every pod is up, and pushes it to every pod', () => {
    const p = parts();
    const o = p.pods.map((x) => obs(x, null));
    const d = decideLayout(p, o);
    assert.equal(d.waiting, undefined);
    assert.equal(d.plan!.layout.version, 1);
    assert.deepEqual(d.plan!.layout.nodes.map((n) => n.id), ['dc1-pool-0', 'dc2-pool-0', 'dc3-pool-0']);
    assert.deepEqual(d.pushTo.map((x) => x.id), ['dc1-pool-0', 'dc2-pool-0', 'dc3-pool-0']);
  });

  it('plans from the newest layout any pod holds, so versions only go up; pushes to the pods behind only when nothing changed', () => {
    const p = parts();
    const v1 = decideLayout(p, p.pods.map((x) => obs(x, null))).plan!.layout;
    const v7 = { ...v1, version: 7 };
    const d = decideLayout(p, [obs(p.pods[0], v1), obs(p.pods[1], v7), obs(p.pods[2], null)]);
    assert.equal(d.plan!.changed, false);
    assert.equal(d.plan!.layout.version, 7);
    assert.deepEqual(d.pushTo.map((x) => x.id), ['dc1-pool-0', 'dc3-pool-0']);
  });

  it('adds a pod that starts after the first layout with a new version', () => {
    const p = parts();
    const v1 = decideLayout(p, p.pods.map((x) => obs(x, null))).plan!.layout;
    const grown: GridParts = { ...p, pools: p.pools.map((x) => (x.metadata.name === 'dc1-pool' ? { ...x, spec: { ...x.spec, replicas: 2 } } : x)), pods: [...p.pods, pod('dc1-pool-1')] };
    const d = decideLayout(grown, [...p.pods.map((x) => obs(x, v1)), obs(grown.pods[3], null)]);
    assert.equal(d.plan!.changed, true);
    assert.equal(d.plan!.layout.version, 2);
    assert.ok(d.plan!.layout.nodes.some((n) => n.id === 'dc1-pool-1' && n.state === 'active'));
    assert.equal(d.pushTo.length, 4);
  });

  it('takes out of the layout only the draining nodes that say they are drained under the newest version', () => {
    const layout = { version: 5, nodes: [{ id: 'a-1', state: 'draining' }, { id: 'a-2', state: 'draining' }, { id: 'a-0', state: 'active' }] } as unknown as Layout;
    const p = pod('a-1');
    const o = [
      obs(p, layout, { id: 'a-1', rebalance: rb({ drained: true, layoutVersion: 5 }) }),
      obs(p, layout, { id: 'a-2', rebalance: rb({ drained: true, layoutVersion: 4 }) }),
      obs(p, layout, { id: 'a-0', rebalance: rb({ drained: true, layoutVersion: 5 }) }),
    ];
    assert.deepEqual(drainedNodeIds(layout, o), ['a-1']);
    assert.deepEqual(drainedNodeIds(undefined, o), []);
  });

  it('shrinks a StatefulSet only once its drained nodes are out of the layout the nodes hold', () => {
    const p = parts(2);
    const v1 = decideLayout(p, p.pods.map((x) => obs(x, null))).plan!.layout;
    const shrink = (pool: NodePool): NodePool => (pool.metadata.name === 'dc1-pool' ? { ...pool, spec: { ...pool.spec, replicas: 1 } } : pool);
    const pools = p.pools.map(shrink);
    const o = p.pods.map((x) => obs(x, v1));
    const draining = decideReplicas(pools, () => 2, v1, o, []);
    assert.equal(draining.get('dc1-pool')!.statefulSetReplicas, 2);
    assert.equal(draining.get('dc1-pool')!.phase, 'Draining');
    const without = { ...v1, version: 3, nodes: v1.nodes.filter((n) => n.id !== 'dc1-pool-1') };
    assert.equal(decideReplicas(pools, () => 2, without, o, []).get('dc1-pool')!.statefulSetReplicas, 1);
    assert.equal(decideReplicas(pools, () => 2, v1, o, ['NodePool dc1-pool: scaling to 1 leaves site dc1 with 1 active node']).get('dc1-pool')!.statefulSetReplicas, 2, 'refused');
    assert.equal(draining.get('dc2-pool')!.statefulSetReplicas, 2);
  });
});
