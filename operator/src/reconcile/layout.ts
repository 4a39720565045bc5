/**
 * The layout step of a grid: ask every storage pod that is up for its layout and status, plan the
 * next layout from the newest one any pod holds (so versions only go up), push it to the pods that
 * do not hold it yet, and say how far each NodePool's StatefulSet may follow its spec (drain before
 * shrink). The decisions are pure functions (below); `observePods` and `pushLayout` do the I/O.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { Grid, NodePool, ReplicationPolicyResource, Site } from '../api/types';
import type { Layout } from '../../../storage-node/src/admin/api-types';
import { AdminApi } from '../admin/client';
import { LABELS } from '../builders/common';
import { planLayout, PlanResult } from '../planner/plan';
import { decideScale, observeNodes, podCanJoin, PoolNodeState, ScaleDecision } from './observe';
import { newestLayout, NodeObservation } from './status';

export interface PodObservation extends NodeObservation {
  pod: V1Pod;
  layout?: Layout | null;
  error?: string;
}

export type AdminFactory = (host: string, port: number, token: string) => Pick<AdminApi, 'layout' | 'status' | 'applyLayout'>;

export const defaultAdminFactory: AdminFactory = (host, port, token) => new AdminApi(host, port, token);

/** Layout and status of every pod that can join (its node process is up), in parallel. */
export async function observePods(grid: Grid, pods: readonly V1Pod[], token: string, admin: AdminFactory): Promise<PodObservation[]> {
  const joinable = pods.filter(podCanJoin);
  return Promise.all(joinable.map(async (pod): Promise<PodObservation> => {
    const id = pod.metadata!.name!;
    const pool = pod.metadata?.labels?.[LABELS.pool] ?? '';
    const api = admin(pod.status!.podIP!, grid.spec.admin.port, token);
    try {
      const [layout, status] = await Promise.all([api.layout(), api.status()]);
      return { id, pool, pod, up: true, layout, layoutVersion: layout?.version ?? 0, rebalance: status.rebalance, owedItems: status.repair?.owedItems };
    } catch (err) {
      return { id, pool, pod, up: false, error: (err as Error).message };
    }
  }));
}

export interface LayoutDecision {
  /** Undefined while the grid waits for its first pods (see firstLayoutReady). */
  plan?: PlanResult;
  previous?: Layout;
  /** Why no plan was made, for status. */
  waiting?: string;
  /** Pods to push plan.layout to (they hold an older version, or none). */
  pushTo: PodObservation[];
}

/**
 * The first layout waits until every pool has all the pods it asks for up, so that the first
 * version already gives every site of every policy its nodes (a layout with one site would place
 * every copy there, and the grid would move it all again a moment later).
 */
export function firstLayoutReady(pools: readonly NodePool[], observations: readonly NodeObservation[]): string | undefined {
  const up = new Set(observations.filter((o) => o.up).map((o) => o.id));
  const missing: string[] = [];
  for (const pool of pools) {
    for (let i = 0; i < pool.spec.replicas; i++) if (!up.has(`${pool.metadata.name}-${i}`)) missing.push(`${pool.metadata.name}-${i}`);
  }
  if (pools.length === 0) return 'the grid has no NodePool';
  return missing.length > 0 ? `waiting for ${missing.length} storage node${missing.length === 1 ? '' : 's'} to start (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''})` : undefined;
}

/** Draining nodes that report themselves drained under the newest layout: they leave the layout. */
export function drainedNodeIds(previous: Layout | undefined, observations: readonly PodObservation[]): string[] {
  if (!previous) return [];
  const draining = new Set(previous.nodes.filter((n) => n.state === 'draining').map((n) => n.id));
  return observations
    .filter((o) => draining.has(o.id) && o.rebalance?.drained === true && o.rebalance.layoutVersion >= previous.version)
    .map((o) => o.id)
    .sort();
}

export interface GridParts {
  grid: Grid;
  sites: Site[];
  pools: NodePool[];
  policies: ReplicationPolicyResource[];
  pods: V1Pod[];
}

/** What layout to hold next and whom to tell. Pure. */
export function decideLayout(parts: GridParts, observations: readonly PodObservation[]): LayoutDecision {
  const up = observations.filter((o) => o.up);
  const previous = newestLayout(up.map((o) => o.layout));
  if (!previous) {
    const waiting = firstLayoutReady(parts.pools, observations);
    if (waiting) return { previous, waiting, pushTo: [] };
  }
  const plan = planLayout({
    grid: parts.grid, sites: parts.sites, pools: parts.pools, policies: parts.policies,
    nodes: observeNodes(parts.grid, parts.pods), previous, drainedNodeIds: drainedNodeIds(previous, up),
  });
  if (plan.problems.some((p) => p.startsWith('layout: '))) return { plan, previous, pushTo: [] };
  const version = plan.layout.version;
  return { plan, previous, pushTo: up.filter((o) => (o.layoutVersion ?? 0) < version || plan.changed) };
}

/** The StatefulSet size of each pool, given the layout the nodes now hold. Pure. */
export function decideReplicas(
  pools: readonly NodePool[],
  currentReplicas: (pool: NodePool) => number | undefined,
  held: Layout | undefined,
  observations: readonly PodObservation[],
  refused: readonly string[],
): Map<string, ScaleDecision> {
  const out = new Map<string, ScaleDecision>();
  for (const pool of pools) {
    const name = pool.metadata.name;
    const ids = new Set<string>([
      ...observations.filter((o) => o.pool === name).map((o) => o.id),
      ...(held?.nodes ?? []).filter((n) => n.pool === name).map((n) => n.id),
    ]);
    const nodes: PoolNodeState[] = [...ids].sort().map((id) => ({
      id,
      inLayout: (held?.nodes ?? []).some((n) => n.id === id),
      drained: observations.some((o) => o.id === id && o.rebalance?.drained === true),
    }));
    const isRefused = refused.some((m) => m.startsWith(`NodePool ${name}:`));
    out.set(name, decideScale(pool, currentReplicas(pool), nodes, isRefused));
  }
  return out;
}

/** PUT the layout on each pod; the messages of those that failed. */
export async function pushLayout(layout: Layout, to: readonly PodObservation[], token: string, grid: Grid, admin: AdminFactory): Promise<{ applied: string[]; failed: string[] }> {
  const applied: string[] = [];
  const failed: string[] = [];
  await Promise.all(to.map(async (o) => {
    try {
      await admin(o.pod.status!.podIP!, grid.spec.admin.port, token).applyLayout(layout);
      applied.push(o.id);
    } catch (err) {
      failed.push(`${o.id}: ${(err as Error).message}`);
    }
  }));
  return { applied: applied.sort(), failed: failed.sort() };
}
