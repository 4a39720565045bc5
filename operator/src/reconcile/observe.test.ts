import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { grid, pool } from '../builders/fixtures';
import { LABELS } from '../builders/common';
import { decideScale, observeNodes, podCanJoin, STORAGE_CONTAINER } from './observe';

function pod(name: string, poolName: string, opts: { ip?: string; started?: boolean; phase?: string; deleting?: boolean; gridName?: string } = {}): V1Pod {
  return {
    metadata: {
      name, labels: { [LABELS.pool]: poolName, [LABELS.grid]: opts.gridName ?? 'demo' },
      deletionTimestamp: opts.deleting ? new Date() : undefined,
    },
    status: {
      phase: opts.phase ?? 'Running',
      podIP: opts.ip,
      containerStatuses: [{ name: STORAGE_CONTAINER, started: opts.started ?? true, ready: false, restartCount: 0, image: 'x', imageID: 'x', state: { running: {} } }],
    },
  } as V1Pod;
}

describe('operator: storage pods as the planner sees them', () => {
  it('lets a running pod whose node is up join, without waiting for Ready (it is Ready only once in the layout)', () => {
    assert.equal(podCanJoin(pod('p-0', 'p', { ip: '10.0.0.1' })), true);
    assert.equal(podCanJoin(pod('p-0', 'p', { ip: '10.0.0.1', started: false })), false, 'the node process is not up yet');
    assert.equal(podCanJoin(pod('p-0', 'p')), false, 'no IP yet');
    assert.equal(podCanJoin(pod('p-0', 'p', { ip: '10.0.0.1', phase: 'Pending' })), false);
    assert.equal(podCanJoin(pod('p-0', 'p', { ip: '10.0.0.1', deleting: true })), false, 'a pod being deleted does not join');
  });

  it('names nodes after their pods and addresses them by pod IP and the grid ports; other grids are left out', () => {
    const g = grid();
    const nodes = observeNodes(g, [pod('dc1-pool-1', 'dc1-pool', { ip: '10.0.0.2' }), pod('dc1-pool-0', 'dc1-pool', { ip: 'fd00::1' }), pod('x-0', 'x', { ip: '10.9.9.9', gridName: 'other' })]);
    assert.deepEqual(nodes.map((n) => [n.id, n.pool, n.rpcAddress, n.s3Address, n.ready]), [
      ['dc1-pool-0', 'dc1-pool', `[fd00::1]:${g.spec.rpc.port}`, `[fd00::1]:${g.spec.s3.port}`, true],
      ['dc1-pool-1', 'dc1-pool', `10.0.0.2:${g.spec.rpc.port}`, `10.0.0.2:${g.spec.s3.port}`, true],
    ]);
  });
});

describe('operator: a NodePool\'s StatefulSet follows spec.replicas without removing a node that holds data', () => {
  const p = (replicas: number) => pool('dc1-pool', { site: 'dc1', replicas });
  const n = (id: string, inLayout: boolean, drained = false) => ({ id, inLayout, drained });

  it('grows at once', () => {
    assert.deepEqual(decideScale(p(3), 2, [], false), { statefulSetReplicas: 3, drainedNodeIds: [], draining: [], phase: 'ScalingOut' });
    assert.equal(decideScale(p(2), undefined, [], false).statefulSetReplicas, 2, 'a new StatefulSet takes the spec');
  });

  it('shrinks only after the nodes beyond the count are drained and out of the layout', () => {
    const nodes = [n('dc1-pool-0', true), n('dc1-pool-1', true), n('dc1-pool-2', true)];
    assert.deepEqual(decideScale(p(1), 3, nodes, false), { statefulSetReplicas: 3, drainedNodeIds: [], draining: ['dc1-pool-1', 'dc1-pool-2'], phase: 'Draining' });
    const half = [n('dc1-pool-0', true), n('dc1-pool-1', true, true), n('dc1-pool-2', true)];
    assert.deepEqual(decideScale(p(1), 3, half, false), { statefulSetReplicas: 3, drainedNodeIds: ['dc1-pool-1'], draining: ['dc1-pool-2'], phase: 'Draining' });
    const drained = [n('dc1-pool-0', true), n('dc1-pool-1', true, true), n('dc1-pool-2', true, true)];
    assert.deepEqual(decideScale(p(1), 3, drained, false).phase, 'Removing');
    assert.equal(decideScale(p(1), 3, drained, false).statefulSetReplicas, 3, 'still in the layout: not yet');
    const gone = [n('dc1-pool-0', true), n('dc1-pool-1', false), n('dc1-pool-2', false)];
    assert.equal(decideScale(p(1), 3, gone, false).statefulSetReplicas, 1, 'out of the layout: the pods may go');
  });

  it('keeps the StatefulSet when the planner refused the scale-in', () => {
    assert.equal(decideScale(p(1), 2, [n('dc1-pool-1', true)], true).statefulSetReplicas, 2);
  });
});
