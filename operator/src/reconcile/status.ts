/**
 * Status of the custom resources, computed from what the reconcilers observed: conditions that keep
 * their lastTransitionTime while their status does not change, rebalance progress summed over the
 * nodes, a NodePool's and a Grid's status. Pure: the same input gives the same status, so a
 * reconcile that changes nothing writes nothing (and triggers no new watch event).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type {
  Condition, ConditionStatus, ConditionType, Grid, GridPhase, GridStatus, NodePool, NodePoolStatus, RebalanceProgress,
  ReplicationPolicyResource, ReplicationPolicyStatus, Site, SiteStatus,
} from '../api/types';
import type { Layout, RebalanceStatus } from '../../../storage-node/src/admin/api-types';
import { LABELS, poolPodSelector, selectorString } from '../builders/common';

/** A condition message is kept short enough to read (the CRDs allow 32 KiB). */
export const MAX_MESSAGE_CHARS = 4_096;

export interface ConditionInput {
  type: ConditionType;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * `previous` with each of `wanted` set: a condition whose status is unchanged keeps its
 * lastTransitionTime; conditions not in `wanted` are kept as they were. Sorted by type.
 */
export function setConditions(previous: readonly Condition[] | undefined, wanted: readonly ConditionInput[], generation: number | undefined, nowIso: string): Condition[] {
  const byType = new Map<string, Condition>((previous ?? []).map((c) => [c.type, c]));
  for (const w of wanted) {
    const old = byType.get(w.type);
    const lastTransitionTime = old && old.status === w.status ? old.lastTransitionTime : nowIso;
    const message = w.message.length > MAX_MESSAGE_CHARS ? `${w.message.slice(0, MAX_MESSAGE_CHARS - 1)}…` : w.message;
    byType.set(w.type, { type: w.type, status: w.status, reason: w.reason, message, lastTransitionTime, ...(generation !== undefined ? { observedGeneration: generation } : {}) });
  }
  return [...byType.values()].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

/** Degraded: True with the problems (and `reason`), or False when there is none. */
export function degradedCondition(problems: readonly string[], reason = 'ReconcileProblems'): ConditionInput {
  return problems.length > 0
    ? { type: 'Degraded', status: 'True', reason, message: problems.join('; ') }
    : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no problem found' };
}

/** True when the pod's Ready condition is True (its node serves S3). */
export function podReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** A transition is open on a node while it has older versions in use or is not idle. */
export function transitionOpen(r: RebalanceStatus | undefined): boolean {
  return r !== undefined && (r.openVersions.length > 0 || r.phase !== 'idle');
}

/** Rebalance progress summed over nodes' statuses; undefined when no node reports any. */
export function summarizeRebalance(statuses: readonly (RebalanceStatus | undefined)[]): RebalanceProgress | undefined {
  const known = statuses.filter((s): s is RebalanceStatus => s !== undefined);
  if (known.length === 0) return undefined;
  const sum = (f: (s: RebalanceStatus) => number): number => known.reduce((acc, s) => acc + (Number.isFinite(f(s)) ? f(s) : 0), 0);
  const partitionsToMove = sum((s) => s.partitionsToMove);
  const partitionsMoved = Math.min(sum((s) => s.partitionsMoved), partitionsToMove);
  const bytesToMove = sum((s) => s.bytesToMove);
  const bytesMoved = Math.min(sum((s) => s.bytesMoved), bytesToMove);
  const open = known.some(transitionOpen);
  // Bytes when known (they weigh partitions by size), else partitions; 100% when nothing is open.
  const ratio = !open ? 1 : bytesToMove > 0 ? bytesMoved / bytesToMove : partitionsToMove > 0 ? partitionsMoved / partitionsToMove : 0;
  return { partitionsToMove, partitionsMoved, bytesToMove, bytesMoved, progress: `${Math.floor(ratio * 100)}%` };
}

/** What the layout step saw of one node (a pod answering its admin API). */
export interface NodeObservation {
  id: string;
  pool: string;
  /** The admin API answered. */
  up: boolean;
  layoutVersion?: number;
  rebalance?: RebalanceStatus;
  /** Copies this node owes to others (repair), from GET /v1/status. */
  owedItems?: number;
}

export interface PoolStatusInput {
  grid: Grid;
  pool: NodePool;
  pods: readonly V1Pod[];
  /** The layout the nodes hold now (after this reconcile's apply), if any. */
  layout?: Layout;
  nodes: readonly NodeObservation[];
  /** The scale decision's phase and the nodes still draining. */
  phase: 'Steady' | 'ScalingOut' | 'Draining' | 'Removing';
  draining: readonly string[];
  /** Readable problems that concern this pool (build errors, refused scale-ins, apply failures). */
  problems: readonly string[];
  nowIso: string;
}

/** A NodePool's status: the scale subresource's replicas and selector, nodes, rebalance, conditions. */
export function poolStatus(input: PoolStatusInput): NodePoolStatus {
  const { grid, pool, layout } = input;
  const pods = input.pods.filter((p) => p.metadata?.labels?.[LABELS.pool] === pool.metadata.name);
  const readyIds = new Set(pods.filter(podReady).map((p) => p.metadata!.name!));
  const layoutNodes = (layout?.nodes ?? []).filter((n) => n.pool === pool.metadata.name);
  const nodes = layoutNodes.map((n) => ({ id: n.id, state: n.state, ready: readyIds.has(n.id) }));
  const mine = input.nodes.filter((n) => n.pool === pool.metadata.name);
  const rebalance = summarizeRebalance(mine.map((n) => n.rebalance));
  const rebalancing = mine.some((n) => transitionOpen(n.rebalance));
  const desired = pool.spec.replicas;
  const activeReady = nodes.filter((n) => n.state === 'active' && n.ready).length;
  const ready = activeReady >= desired && input.draining.length === 0 && input.phase !== 'Draining' && !rebalancing && input.problems.length === 0;
  const conditions: ConditionInput[] = [
    ready
      ? { type: 'Ready', status: 'True', reason: 'NodesReady', message: `${activeReady}/${desired} nodes ready and in layout version ${layout?.version ?? 0}` }
      : { type: 'Ready', status: 'False', reason: input.problems.length > 0 ? 'Degraded' : rebalancing ? 'Rebalancing' : 'NodesNotReady', message: `${activeReady}/${desired} nodes ready and in the layout${input.draining.length > 0 ? `; draining ${input.draining.join(', ')}` : ''}` },
    input.phase === 'Steady' && activeReady >= desired
      ? { type: 'Progressing', status: 'False', reason: 'Steady', message: `${desired} node${desired === 1 ? '' : 's'} as asked` }
      : { type: 'Progressing', status: 'True', reason: input.phase === 'Steady' ? 'NodesStarting' : input.phase, message: progressMessage(input.phase, activeReady, desired, input.draining) },
    rebalancing
      ? { type: 'Rebalancing', status: 'True', reason: 'TransitionOpen', message: `moving data to the layout version ${layout?.version ?? 0}: ${rebalance?.progress ?? '0%'} (${rebalance?.partitionsMoved ?? 0}/${rebalance?.partitionsToMove ?? 0} partitions)` }
      : { type: 'Rebalancing', status: 'False', reason: 'Idle', message: 'no data to move' },
    degradedCondition(input.problems),
  ];
  return {
    observedGeneration: pool.metadata.generation,
    replicas: pods.length,
    readyReplicas: readyIds.size,
    selector: selectorString(poolPodSelector(grid, pool)),
    nodes,
    ...(rebalance ? { rebalance } : {}),
    conditions: setConditions(pool.status?.conditions, conditions, pool.metadata.generation, input.nowIso),
  };
}

function progressMessage(phase: PoolStatusInput['phase'], ready: number, desired: number, draining: readonly string[]): string {
  switch (phase) {
    case 'ScalingOut': return `scaling out to ${desired} nodes (${ready} ready and in the layout)`;
    case 'Draining': return `draining ${draining.join(', ')} before scaling in to ${desired}`;
    case 'Removing': return `removing drained nodes, scaling in to ${desired}`;
    default: return `${ready}/${desired} nodes ready and in the layout`;
  }
}

export interface GridStatusInput {
  grid: Grid;
  sites: readonly Site[];
  pools: readonly NodePool[];
  pods: readonly V1Pod[];
  layout?: Layout;
  nodes: readonly NodeObservation[];
  /** Readable problems of the grid (build errors, plan problems, refused scale-ins, admin failures). */
  problems: readonly string[];
  /** Policies that cannot be met now, with why (see policyStatus). */
  degradedPolicies?: readonly { name: string; reason: string }[];
  nowIso: string;
}

export function gridStatus(input: GridStatusInput): GridStatus {
  const { grid, layout } = input;
  const readyIds = new Set(input.pods.filter(podReady).map((p) => p.metadata!.name!));
  const inLayout = new Set((layout?.nodes ?? []).filter((n) => n.state === 'active').map((n) => n.id));
  const desiredNodes = input.pools.reduce((acc, p) => acc + p.spec.replicas, 0);
  const readyNodes = [...readyIds].filter((id) => inLayout.has(id)).length;
  const sites = [...input.sites].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1)).map((s) => {
    const pools = input.pools.filter((p) => p.spec.site === s.metadata.name);
    const poolNames = new Set(pools.map((p) => p.metadata.name));
    const ready = input.pods.filter((p) => poolNames.has(p.metadata?.labels?.[LABELS.pool] ?? '') && podReady(p) && inLayout.has(p.metadata!.name!)).length;
    const desired = pools.reduce((acc, p) => acc + p.spec.replicas, 0);
    return { name: s.metadata.name, role: s.spec.role, readyNodes: ready, desiredNodes: desired, available: s.spec.state !== 'Failed' && ready > 0 };
  });
  const rebalance = summarizeRebalance(input.nodes.map((n) => n.rebalance));
  const rebalancing = input.nodes.some((n) => transitionOpen(n.rebalance));
  const unavailable = sites.filter((s) => !s.available && s.desiredNodes > 0 && layout !== undefined);
  const ready = layout !== undefined && desiredNodes > 0 && readyNodes >= desiredNodes && input.problems.length === 0 && !rebalancing;
  const phase: GridPhase = input.problems.length > 0 || unavailable.length > 0 ? 'Degraded' : rebalancing ? 'Rebalancing' : ready ? 'Ready' : 'Pending';
  const conditions: ConditionInput[] = [
    ready
      ? { type: 'Ready', status: 'True', reason: 'GridReady', message: `${readyNodes}/${desiredNodes} nodes ready in layout version ${layout!.version}` }
      : { type: 'Ready', status: 'False', reason: phase === 'Pending' ? 'NodesNotReady' : phase, message: layout ? `${readyNodes}/${desiredNodes} nodes ready in layout version ${layout.version}` : `waiting for the storage pods to start (${desiredNodes} asked) before the first layout` },
    ready || (input.problems.length > 0 && readyNodes >= desiredNodes)
      ? { type: 'Progressing', status: 'False', reason: 'Steady', message: 'nothing to do' }
      : { type: 'Progressing', status: 'True', reason: rebalancing ? 'Rebalancing' : 'NodesStarting', message: rebalancing ? `moving data: ${rebalance?.progress ?? '0%'}` : `${readyNodes}/${desiredNodes} nodes ready` },
    rebalancing
      ? { type: 'Rebalancing', status: 'True', reason: 'TransitionOpen', message: `moving data to layout version ${layout?.version ?? 0}: ${rebalance?.progress ?? '0%'}` }
      : { type: 'Rebalancing', status: 'False', reason: 'Idle', message: 'no data to move' },
    unavailable.length > 0
      ? { type: 'SiteUnavailable', status: 'True', reason: 'NoReadyNode', message: `no Ready node in site ${unavailable.map((s) => s.name).join(', ')}` }
      : { type: 'SiteUnavailable', status: 'False', reason: 'AllSitesAvailable', message: 'every site has a Ready node' },
    degradedCondition(input.problems),
  ];
  return {
    observedGeneration: grid.metadata.generation,
    phase,
    ...(layout ? { layoutVersion: layout.version } : {}),
    readyNodes,
    desiredNodes,
    sites,
    ...(rebalance ? { rebalance } : {}),
    degradedPolicies: [...(input.degradedPolicies ?? [])],
    owedCopies: input.nodes.reduce((acc, n) => acc + (n.owedItems ?? 0), 0),
    conditions: setConditions(grid.status?.conditions, conditions, grid.metadata.generation, input.nowIso),
  };
}

/** The newest of the layouts the nodes report (versions only go up). */
export function newestLayout(layouts: readonly (Layout | null | undefined)[]): Layout | undefined {
  let best: Layout | undefined;
  for (const l of layouts) if (l && (!best || l.version > best.version)) best = l;
  return best;
}

/** JSON with sorted keys, to compare a status with the one in the cache. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) => {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      const o = value as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
    }
    return value;
  });
}

/** A Site's status from the Grid's per-site summary. Pure. */
export function siteStatus(site: Site, summary: { readyNodes: number; desiredNodes: number; available: boolean } | undefined, layoutHeld: boolean, nowIso: string): SiteStatus {
  const ready = summary?.readyNodes ?? 0;
  const desired = summary?.desiredNodes ?? 0;
  const failed = site.spec.state === 'Failed';
  const phase: SiteStatus['phase'] = failed ? 'Failed' : summary?.available ? 'Available' : 'Unavailable';
  const unavailable = failed || (layoutHeld && desired > 0 && !summary?.available);
  const conditions: ConditionInput[] = [
    phase === 'Available'
      ? { type: 'Ready', status: 'True', reason: 'NodesReady', message: `${ready}/${desired} nodes ready` }
      : { type: 'Ready', status: 'False', reason: failed ? 'SiteFailed' : desired === 0 ? 'NoNodePool' : 'NodesNotReady', message: failed ? 'spec.state is Failed: the site\'s nodes are out of the layout' : desired === 0 ? 'no NodePool names this site' : `${ready}/${desired} nodes ready` },
    unavailable
      ? { type: 'SiteUnavailable', status: 'True', reason: failed ? 'SiteFailed' : 'NoReadyNode', message: failed ? 'declared Failed' : 'no node of this site is Ready' }
      : { type: 'SiteUnavailable', status: 'False', reason: 'Available', message: desired === 0 ? 'no node asked' : `${ready} node${ready === 1 ? '' : 's'} ready` },
  ];
  return {
    observedGeneration: site.metadata.generation,
    phase,
    readyNodes: ready,
    desiredNodes: desired,
    conditions: setConditions(site.status?.conditions, conditions, site.metadata.generation, nowIso),
  };
}

/**
 * A ReplicationPolicy's status: unsatisfiable when a rule names a site that is not one of the
 * grid's, that is Failed, or that has fewer active nodes in the layout than the copies it asks. Pure.
 */
export function policyStatus(policy: ReplicationPolicyResource, sites: readonly Site[], layout: Layout | undefined, nowIso: string): ReplicationPolicyStatus {
  const why: string[] = [];
  policy.spec.rules.forEach((r, i) => {
    const site = sites.find((s) => s.metadata.name === r.site);
    if (!site) return void why.push(`spec.rules[${i}].site ${JSON.stringify(r.site)} does not name a Site of grid ${policy.spec.grid}`);
    if (site.spec.state === 'Failed') return void why.push(`site ${r.site} is declared Failed`);
    if (!layout) return;
    const active = layout.nodes.filter((n) => n.site === r.site && n.state === 'active').length;
    if (active < r.copies) why.push(`site ${r.site} has ${active} active node${active === 1 ? '' : 's'} for ${r.copies} cop${r.copies === 1 ? 'y' : 'ies'}`);
  });
  const conditions: ConditionInput[] = why.length > 0
    ? [
      { type: 'Ready', status: 'False', reason: 'PolicyUnsatisfiable', message: why.join('; ') },
      { type: 'PolicyUnsatisfiable', status: 'True', reason: 'NotEnoughNodes', message: why.join('; ') },
    ]
    : [
      { type: 'Ready', status: layout ? 'True' : 'False', reason: layout ? 'InLayout' : 'NoLayoutYet', message: layout ? `in layout version ${layout.version}` : 'waiting for the grid\'s first layout' },
      { type: 'PolicyUnsatisfiable', status: 'False', reason: 'Satisfiable', message: 'every rule can be met' },
    ];
  return { observedGeneration: policy.metadata.generation, conditions: setConditions(policy.status?.conditions, conditions, policy.metadata.generation, nowIso) };
}
