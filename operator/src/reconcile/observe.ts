/**
 * What the operator sees of its storage pods, as the layout planner's input, and how a NodePool's
 * StatefulSet follows its `spec.replicas` without ever removing a node that still holds data.
 * Pure functions (docs/decisions/0016-layout-transitions.md; ARCHITECTURE §2 "Change without downtime").
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { Grid, NodePool } from '../api/types';
import type { ObservedNode } from '../planner/plan';
import { LABELS } from '../builders/common';

/** The storage node's container in a pod (the StatefulSet builder's name). */
export const STORAGE_CONTAINER = 'storage-node';

/**
 * A pod can join the layout once it runs, has an IP and its node process is up (the startup probe on
 * /health passed: `started`). Not Ready: a storage pod becomes Ready (GET /ready) only once it holds a
 * layout that lists it, so waiting for Ready before adding it would never end. A pod being deleted
 * does not join.
 */
export function podCanJoin(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  if (pod.status?.phase !== 'Running' || !pod.status.podIP) return false;
  const c = pod.status.containerStatuses?.find((s) => s.name === STORAGE_CONTAINER);
  return c?.started === true && c.state?.running !== undefined;
}

/** The pods of a grid's pools as the planner's observed nodes: id = pod name, addresses = pod IP. */
export function observeNodes(grid: Grid, pods: readonly V1Pod[]): ObservedNode[] {
  const out: ObservedNode[] = [];
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    const pool = labels[LABELS.pool];
    const name = pod.metadata?.name;
    if (!pool || !name || labels[LABELS.grid] !== grid.metadata.name) continue;
    const ip = pod.status?.podIP ?? '';
    const host = ip.includes(':') ? `[${ip}]` : ip;
    out.push({
      id: name,
      pool,
      rpcAddress: ip ? `${host}:${grid.spec.rpc.port}` : '',
      s3Address: ip ? `${host}:${grid.spec.s3.port}` : '',
      capacityBytes: 0, // the planner takes the pool's storage size
      ready: podCanJoin(pod),
    });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** What the operator knows of a node of the pool: is it in the layout, and does it say it is drained. */
export interface PoolNodeState {
  id: string;
  inLayout: boolean;
  drained: boolean;
}

export interface ScaleDecision {
  /** The StatefulSet's replicas to apply now. */
  statefulSetReplicas: number;
  /** Draining nodes that report themselves drained: the next layout leaves them out. */
  drainedNodeIds: string[];
  /** Nodes still draining (the StatefulSet keeps them until they are out of the layout). */
  draining: string[];
  phase: 'Steady' | 'ScalingOut' | 'Draining' | 'Removing';
}

const ORDINAL = /-(0|[1-9][0-9]*)$/;

/**
 * How far the StatefulSet may follow `spec.replicas` now. Growing: at once (new pods join the layout
 * when they can, see podCanJoin). Shrinking: the nodes beyond the new count are drained first (the
 * planner marks them `draining`); one that reports itself drained leaves the layout; the StatefulSet
 * shrinks only once none of them is in the layout any more, so no pod is deleted while it holds data.
 * `current`: the StatefulSet's replicas now (undefined before it exists). `refused`: the planner
 * refused the scale-in (it would break a policy): the StatefulSet keeps its size.
 */
export function decideScale(pool: NodePool, current: number | undefined, nodes: readonly PoolNodeState[], refused: boolean): ScaleDecision {
  const desired = pool.spec.replicas;
  if (current === undefined || desired >= current) {
    return { statefulSetReplicas: desired, drainedNodeIds: [], draining: [], phase: current !== undefined && desired > current ? 'ScalingOut' : 'Steady' };
  }
  if (refused) return { statefulSetReplicas: current, drainedNodeIds: [], draining: [], phase: 'Steady' };
  const leaving = nodes.filter((n) => {
    const m = ORDINAL.exec(n.id);
    return m !== null && Number(m[1]) >= desired && Number(m[1]) < current;
  });
  const stillIn = leaving.filter((n) => n.inLayout);
  if (stillIn.length === 0) return { statefulSetReplicas: desired, drainedNodeIds: [], draining: [], phase: 'Removing' };
  const drained = stillIn.filter((n) => n.drained).map((n) => n.id);
  return {
    statefulSetReplicas: current,
    drainedNodeIds: drained,
    draining: stillIn.filter((n) => !n.drained).map((n) => n.id),
    phase: drained.length === stillIn.length ? 'Removing' : 'Draining',
  };
}
