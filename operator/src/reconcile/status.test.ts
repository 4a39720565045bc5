import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import type { Layout } from '../../../storage-node/src/admin/api-types';
import { rb } from './fixtures';
import type { Condition } from '../api/types';
import { threeSites } from '../builders/fixtures';
import { LABELS } from '../builders/common';
import { canonicalJson, gridStatus, newestLayout, policyStatus, poolStatus, setConditions, siteStatus, summarizeRebalance } from './status';
import type { ReplicationPolicyResource } from '../api/types';

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:01:00.000Z';

function readyPod(name: string, pool: string, ready = true): V1Pod {
  return {
    metadata: { name, namespace: 'storage', labels: { [LABELS.pool]: pool, [LABELS.grid]: 'demo' } },
    status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  } as V1Pod;
}

function layoutOf(version: number, ids: string[], draining: string[] = []): Layout {
  return {
    version, partitionCount: 256, defaultPolicy: 'default', policies: [],
    sites: [{ name: 'dc1', role: 'primary', state: 'active' }],
    nodes: ids.map((id) => ({ id, site: id.split('-')[0], pool: id.replace(/-[0-9]+$/, ''), rpcAddress: 'x:1', s3Address: 'x:2', capacityBytes: 1, state: draining.includes(id) ? 'draining' : 'active' })),
  } as unknown as Layout;
}

describe('operator: status conditions and progress', () => {
  it('keeps lastTransitionTime while a condition keeps its status, and moves it when the status changes', () => {
    const first = setConditions(undefined, [{ type: 'Ready', status: 'False', reason: 'NodesNotReady', message: '0/3' }], 1, T0);
    assert.deepEqual(first, [{ type: 'Ready', status: 'False', reason: 'NodesNotReady', message: '0/3', lastTransitionTime: T0, observedGeneration: 1 }]);
    const same = setConditions(first, [{ type: 'Ready', status: 'False', reason: 'NodesNotReady', message: '1/3' }], 2, T1);
    assert.equal(same[0].lastTransitionTime, T0);
    assert.equal(same[0].message, '1/3');
    assert.equal(same[0].observedGeneration, 2);
    const flipped = setConditions(same, [{ type: 'Ready', status: 'True', reason: 'GridReady', message: '3/3' }], 2, T1);
    assert.equal(flipped[0].lastTransitionTime, T1);
  });

  it('cuts a very long message', () => {
    const [c] = setConditions(undefined, [{ type: 'Degraded', status: 'True', reason: 'ReconcileProblems', message: 'x'.repeat(10_000) }], 1, T0);
    assert.equal(c.message.length, 4_096);
    assert.ok(c.message.endsWith('…'));
  });

  it('keeps conditions it is not told about and sorts them by type', () => {
    const prev: Condition[] = [{ type: 'Ready', status: 'True', reason: 'r', message: 'm', lastTransitionTime: T0 }];
    const out = setConditions(prev, [{ type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'ok' }], 1, T1);
    assert.deepEqual(out.map((c) => c.type), ['Degraded', 'Ready']);
  });

  it('sums rebalance progress over nodes, by bytes when known, 100% when no transition is open', () => {
    assert.equal(summarizeRebalance([undefined]), undefined);
    assert.deepEqual(summarizeRebalance([rb(), rb()]), { partitionsToMove: 0, partitionsMoved: 0, bytesToMove: 0, bytesMoved: 0, progress: '100%' });
    const moving = summarizeRebalance([
      rb({ phase: 'copying', openVersions: [1], partitionsToMove: 10, partitionsMoved: 5, bytesToMove: 1000, bytesMoved: 250 }),
      rb({ phase: 'synced', openVersions: [1], partitionsToMove: 10, partitionsMoved: 10, bytesToMove: 1000, bytesMoved: 1000 }),
    ]);
    assert.deepEqual(moving, { partitionsToMove: 20, partitionsMoved: 15, bytesToMove: 2000, bytesMoved: 1250, progress: '62%' });
    assert.equal(summarizeRebalance([rb({ phase: 'copying', openVersions: [1], partitionsToMove: 4, partitionsMoved: 1 })])!.progress, '25%', 'partitions when bytes are unknown');
  });

  it('picks the newest layout any node holds', () => {
    assert.equal(newestLayout([null, undefined]), undefined);
    assert.equal(newestLayout([layoutOf(3, []), null, layoutOf(5, []), layoutOf(4, [])])!.version, 5);
  });

  it('compares statuses whatever the key order', () => {
    assert.equal(canonicalJson({ a: 1, b: { d: 2, c: [1, { y: 1, x: 2 }] } }), canonicalJson({ b: { c: [1, { x: 2, y: 1 }], d: 2 }, a: 1 }));
    assert.notEqual(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
  });
});

describe('operator: NodePool and Grid status', () => {
  it('gives the scale subresource its replicas and selector and lists the nodes of the layout', () => {
    const { grid, pools } = threeSites();
    const pool = { ...pools[0], metadata: { ...pools[0].metadata, generation: 4 } };
    const pods = [readyPod('dc1-pool-0', 'dc1-pool'), readyPod('dc1-pool-1', 'dc1-pool', false), readyPod('dc2-pool-0', 'dc2-pool')];
    const status = poolStatus({
      grid, pool, pods, layout: layoutOf(3, ['dc1-pool-0', 'dc1-pool-1', 'dc2-pool-0']), nodes: [], phase: 'Steady', draining: [], problems: [], nowIso: T0,
    });
    assert.equal(status.replicas, 2);
    assert.equal(status.readyReplicas, 1);
    assert.equal(status.observedGeneration, 4);
    assert.equal(status.selector, 'app.kubernetes.io/component=storage-node,app.kubernetes.io/name=archipel,storage.archipel.io/grid=demo,storage.archipel.io/pool=dc1-pool');
    assert.deepEqual(status.nodes, [{ id: 'dc1-pool-0', state: 'active', ready: true }, { id: 'dc1-pool-1', state: 'active', ready: false }]);
    const ready = status.conditions!.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.match(ready.message, /1\/2 nodes ready/);
  });

  it('says Rebalancing with progress while a node of the pool has a transition open, and is not Ready meanwhile', () => {
    const { grid, pools } = threeSites();
    const pods = [readyPod('dc1-pool-0', 'dc1-pool'), readyPod('dc1-pool-1', 'dc1-pool')];
    const nodes = [
      { id: 'dc1-pool-0', pool: 'dc1-pool', up: true, rebalance: rb({ phase: 'copying', openVersions: [2], partitionsToMove: 8, partitionsMoved: 2 }) },
      { id: 'dc1-pool-1', pool: 'dc1-pool', up: true, rebalance: rb() },
    ];
    const status = poolStatus({ grid, pool: pools[0], pods, layout: layoutOf(3, ['dc1-pool-0', 'dc1-pool-1']), nodes, phase: 'ScalingOut', draining: [], problems: [], nowIso: T0 });
    const byType = Object.fromEntries(status.conditions!.map((c) => [c.type, c]));
    assert.equal(byType.Rebalancing.status, 'True');
    assert.match(byType.Rebalancing.message, /25%/);
    assert.equal(byType.Ready.status, 'False');
    assert.equal(byType.Progressing.status, 'True');
    assert.equal(status.rebalance!.progress, '25%');
  });

  it('reports draining nodes and problems as Degraded with the message', () => {
    const { grid, pools } = threeSites();
    const pool = { ...pools[0], spec: { ...pools[0].spec, replicas: 1 } };
    const status = poolStatus({
      grid, pool, pods: [readyPod('dc1-pool-0', 'dc1-pool'), readyPod('dc1-pool-1', 'dc1-pool')], layout: layoutOf(4, ['dc1-pool-0', 'dc1-pool-1'], ['dc1-pool-1']),
      nodes: [], phase: 'Draining', draining: ['dc1-pool-1'], problems: ['NodePool dc1-pool: scaling to 1 leaves site dc1 with 0 active nodes'], nowIso: T0,
    });
    const byType = Object.fromEntries(status.conditions!.map((c) => [c.type, c]));
    assert.equal(byType.Degraded.status, 'True');
    assert.match(byType.Degraded.message, /leaves site dc1/);
    assert.match(byType.Progressing.message, /draining dc1-pool-1/);
    assert.deepEqual(status.nodes!.map((n) => n.state), ['active', 'draining']);
  });

  it('makes the Grid Ready once every asked node is Ready in the layout, and Pending before the first layout', () => {
    const { grid, sites, pools } = threeSites();
    const ids = ['dc1-pool-0', 'dc1-pool-1', 'dc2-pool-0', 'dc2-pool-1', 'dc3-pool-0', 'dc3-pool-1'];
    const pods = ids.map((id) => readyPod(id, id.replace(/-[0-9]+$/, '')));
    const before = gridStatus({ grid, sites, pools, pods, nodes: [], problems: [], nowIso: T0 });
    assert.equal(before.phase, 'Pending');
    assert.equal(before.conditions!.find((c) => c.type === 'Ready')!.status, 'False');
    const after = gridStatus({ grid, sites, pools, pods, layout: layoutOf(1, ids), nodes: [], problems: [], nowIso: T1 });
    assert.equal(after.phase, 'Ready');
    assert.equal(after.layoutVersion, 1);
    assert.equal(after.readyNodes, 6);
    assert.equal(after.desiredNodes, 6);
    assert.deepEqual(after.sites!.map((s) => [s.name, s.readyNodes, s.available]), [['dc1', 2, true], ['dc2', 2, true], ['dc3', 2, true]]);
    assert.equal(after.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
    assert.deepEqual(after.degradedPolicies, []);
    assert.equal(after.owedCopies, 0);
    const owing = gridStatus({
      grid, sites, pools, pods, layout: layoutOf(1, ids), nowIso: T1, problems: [],
      nodes: [{ id: 'dc1-pool-0', pool: 'dc1-pool', up: true, owedItems: 3 }, { id: 'dc2-pool-0', pool: 'dc2-pool', up: true, owedItems: 4 }],
      degradedPolicies: [{ name: 'p', reason: 'site dc1 has 2 active nodes for 3 copies' }],
    });
    assert.equal(owing.owedCopies, 7);
    assert.deepEqual(owing.degradedPolicies, [{ name: 'p', reason: 'site dc1 has 2 active nodes for 3 copies' }]);
  });

  it('reports a site without a Ready node as SiteUnavailable and the Grid Degraded', () => {
    const { grid, sites, pools } = threeSites();
    const ids = ['dc1-pool-0', 'dc1-pool-1', 'dc2-pool-0', 'dc2-pool-1', 'dc3-pool-0', 'dc3-pool-1'];
    const pods = ids.map((id) => readyPod(id, id.replace(/-[0-9]+$/, ''), !id.startsWith('dc2')));
    const status = gridStatus({ grid, sites, pools, pods, layout: layoutOf(2, ids), nodes: [], problems: [], nowIso: T0 });
    assert.equal(status.phase, 'Degraded');
    const unavailable = status.conditions!.find((c) => c.type === 'SiteUnavailable')!;
    assert.equal(unavailable.status, 'True');
    assert.match(unavailable.message, /dc2/);
  });
});

describe('operator: Site and ReplicationPolicy status', () => {
  it('makes a Site Available with a Ready node, SiteUnavailable without one once the grid has a layout, Failed when declared so', () => {
    const { sites } = threeSites();
    assert.equal(siteStatus(sites[0], { readyNodes: 2, desiredNodes: 2, available: true }, true, T0).phase, 'Available');
    const down = siteStatus(sites[0], { readyNodes: 0, desiredNodes: 2, available: false }, true, T0);
    assert.equal(down.phase, 'Unavailable');
    assert.equal(down.conditions!.find((c) => c.type === 'SiteUnavailable')!.status, 'True');
    const starting = siteStatus(sites[0], { readyNodes: 0, desiredNodes: 2, available: false }, false, T0);
    assert.equal(starting.conditions!.find((c) => c.type === 'SiteUnavailable')!.status, 'False', 'not before the first layout');
    const failed = siteStatus({ ...sites[0], spec: { ...sites[0].spec, state: 'Failed' } }, undefined, true, T0);
    assert.equal(failed.phase, 'Failed');
  });

  it('reports a policy that asks more copies than a site has active nodes, or names a missing site, as PolicyUnsatisfiable', () => {
    const { sites } = threeSites();
    const policy = (rules: { site: string; copies: number }[]): ReplicationPolicyResource => ({
      apiVersion: 'storage.archipel.io/v1alpha1', kind: 'ReplicationPolicy', metadata: { name: 'p', namespace: 'storage', generation: 1 },
      spec: { grid: 'demo', priority: 0, match: { buckets: ['*'] }, rules, ingest: 'balanced' },
    });
    const layout = layoutOf(2, ['dc1-pool-0', 'dc1-pool-1']);
    (layout.nodes as any[]).forEach((n) => (n.site = 'dc1'));
    const ok = policyStatus(policy([{ site: 'dc1', copies: 2 }]), sites, layout, T0);
    assert.equal(ok.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
    const short = policyStatus(policy([{ site: 'dc1', copies: 3 }, { site: 'dc9', copies: 1 }]), sites, layout, T0);
    const u = short.conditions!.find((c) => c.type === 'PolicyUnsatisfiable')!;
    assert.equal(u.status, 'True');
    assert.match(u.message, /site dc1 has 2 active nodes for 3 copies/);
    assert.match(u.message, /"dc9" does not name a Site/);
  });
});
