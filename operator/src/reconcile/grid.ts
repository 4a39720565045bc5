/**
 * One pass over a grid, in phases: its objects from the cache; the grid Secret (created once,
 * then read back, never overwritten); the layout (observe pods, plan, push); how far each
 * StatefulSet may follow its NodePool; server-side apply of the desired objects; the status of the
 * Grid and of its NodePools. Grid, Site, NodePool and ReplicationPolicy reconciles all come here,
 * one at a time per grid (a lock), so two layouts of one version never meet.
 */
import crypto from 'node:crypto';
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import type { Grid, GridStatus, NodePool, ReplicationPolicyResource, Site } from '../api/types';
import type { Layout } from '../../../storage-node/src/admin/api-types';
import { buildGridObjects, buildGridSecret, gridSecretName, LABELS, SECRET_KEYS, statefulSetName, type GridSecretValues } from '../builders';
import type { Informers } from '../runtime/informers';
import { isConflict } from '../runtime/kube-api';
import type { ReconcileOutcome } from '../runtime/manager';
import { KubeWrites } from './kube-writes';
import { AdminFactory, decideLayout, decideReplicas, GridParts, LayoutDecision, observePods, PodObservation, pushLayout } from './layout';
import type { ScaleDecision } from './observe';
import { canonicalJson, gridStatus, policyStatus, poolStatus, siteStatus, transitionOpen } from './status';

/** While pods start or data moves, the grid is looked at again this often (admin state has no watch). */
export const PROGRESS_REQUEUE_MS = 3_000;
/** While the grid is Degraded by a problem nothing watched will change. */
export const PROBLEM_REQUEUE_MS = 30_000;
/** While a grid is not Ready (a site down, nodes starting). */
export const NOT_READY_REQUEUE_MS = 5_000;

export interface ReconcileDeps {
  informers: Pick<Informers, 'get' | 'list'>;
  writes: KubeWrites;
  admin: AdminFactory;
  log: Logger;
  now?: () => Date;
}

const inNs = (ns: string) => (o: { metadata: { namespace?: string } }): boolean => (o.metadata.namespace ?? '') === ns;

/** The grid and what belongs to it, from the informer cache. */
export function gridParts(informers: Pick<Informers, 'list'>, grid: Grid): GridParts {
  const ns = grid.metadata.namespace ?? '';
  const name = grid.metadata.name;
  const sites = (informers.list('Site') as unknown as Site[]).filter(inNs(ns)).filter((s) => s.spec?.grid === name);
  const siteNames = new Set(sites.map((s) => s.metadata.name));
  const pools = (informers.list('NodePool') as unknown as NodePool[]).filter(inNs(ns)).filter((p) => siteNames.has(p.spec?.site));
  const policies = (informers.list('ReplicationPolicy') as unknown as ReplicationPolicyResource[]).filter(inNs(ns)).filter((p) => p.spec?.grid === name);
  const pods = (informers.list('Pod') as unknown as V1Pod[])
    .filter((p) => (p.metadata?.namespace ?? '') === ns && p.metadata?.labels?.[LABELS.grid] === name);
  return { grid, sites, pools, policies, pods };
}

/** Random values for a new grid Secret: base64url, printable and long enough for the node. */
export function newGridSecretValues(): GridSecretValues {
  return { gridSecret: crypto.randomBytes(32).toString('base64url'), adminToken: crypto.randomBytes(24).toString('base64url') };
}

export function readGridSecretValues(secret: V1Secret, where: string): GridSecretValues {
  const get = (k: string): string => {
    const v = secret.data?.[k];
    if (!v) throw new Error(`${where}: Secret ${secret.metadata?.name} has no key ${k}; add it or delete the Secret so that the operator creates a new one`);
    return Buffer.from(v, 'base64').toString('utf8').trim();
  };
  return { gridSecret: get(SECRET_KEYS.gridSecret), adminToken: get(SECRET_KEYS.adminToken) };
}

/** The grid Secret's values: created once with random values if absent, else read back as they are. */
export async function ensureGridSecret(deps: ReconcileDeps, grid: Grid, signal?: AbortSignal): Promise<GridSecretValues> {
  const ns = grid.metadata.namespace!;
  const name = gridSecretName(grid);
  const where = `Grid ${grid.metadata.name}`;
  let secret = (await deps.writes.get('v1', 'Secret', ns, name, signal)) as V1Secret | undefined;
  if (!secret) {
    try {
      secret = (await deps.writes.create(buildGridSecret(grid, newGridSecretValues()), signal)) as V1Secret;
      deps.log.info('grid secret created', { namespace: ns, grid: grid.metadata.name, secret: name });
      void deps.writes.event(grid, 'Normal', 'SecretCreated', `created Secret ${name} with a new grid secret and admin token`);
    } catch (err) {
      if (!isConflict(err)) throw err;
      secret = (await deps.writes.get('v1', 'Secret', ns, name, signal)) as V1Secret | undefined;
      if (!secret) throw new Error(`${where}: Secret ${name} was created and deleted meanwhile`);
    }
  }
  return readGridSecretValues(secret, where);
}

/** Serializes the passes of one grid. */
export class GridLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.tails.set(key, next);
    void next.catch(() => undefined).finally(() => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    });
    return next;
  }
}

/** One pass over a grid, phase by phase; requeues while pods start or a transition is open. */
export async function syncGrid(deps: ReconcileDeps, grid: Grid, signal: AbortSignal): Promise<void | ReconcileOutcome> {
  const parts = gridParts(deps.informers, grid);
  const secrets = await ensureGridSecret(deps, grid, signal);
  const layout = await layoutPhase(deps, parts, secrets.adminToken);
  const scale = decideReplicas(parts.pools, (pool) => {
    const sts = deps.informers.get('StatefulSet', grid.metadata.namespace, statefulSetName(pool));
    return sts?.spec?.replicas as number | undefined;
  }, layout.held, layout.observations, layout.decision.plan?.refused ?? []);
  const problems = [...layout.problems, ...(await applyPhase(deps, parts, secrets, scale, signal))];
  const status = await statusPhase(deps, parts, layout, scale, [...new Set(problems)], signal);

  // Pods and StatefulSets changing come back as watch events; what the nodes do (a transition, a
  // drain) and admin calls that failed do not, so those are looked at again after a while.
  const moving = layout.observations.some((o) => o.up && transitionOpen(o.rebalance))
    || [...scale.values()].some((d) => d.phase === 'Draining' || d.phase === 'Removing')
    || (parts.pods.length > 0 && status.phase === 'Pending');
  if (moving) return { requeueAfterMs: PROGRESS_REQUEUE_MS };
  // A grid that is not Ready is looked at again soon whatever else happens: its way back (a site
  // returning, a node catching up) may bring no watch event after the pass that saw it not ready.
  if (status.phase !== 'Ready') return { requeueAfterMs: NOT_READY_REQUEUE_MS };
  // A problem that needs a person (or a node that does not answer) is looked at less often.
  if (problems.length > 0) return { requeueAfterMs: PROBLEM_REQUEUE_MS };
  return undefined;
}

interface LayoutOutcome {
  observations: PodObservation[];
  decision: LayoutDecision;
  /** The layout the nodes hold after this phase. */
  held?: Layout;
  problems: string[];
}

/** Observe the pods, plan, push the layout to those that lack it. */
async function layoutPhase(deps: ReconcileDeps, parts: GridParts, token: string): Promise<LayoutOutcome> {
  const { grid } = parts;
  const observations = await observePods(grid, parts.pods, token, deps.admin);
  const decision = decideLayout(parts, observations);
  const problems: string[] = [];
  let held = decision.previous;
  if (decision.plan) {
    problems.push(...decision.plan.problems, ...decision.plan.refused);
    if (decision.pushTo.length > 0) {
      const { applied, failed } = await pushLayout(decision.plan.layout, decision.pushTo, token, grid, deps.admin);
      if (applied.length > 0) {
        held = decision.plan.layout;
        if (decision.plan.changed) {
          deps.log.info('layout applied', { namespace: grid.metadata.namespace, grid: grid.metadata.name, version: held.version, nodes: held.nodes.length, to: applied });
          void deps.writes.event(grid, 'Normal', 'LayoutApplied', `layout version ${held.version} with ${held.nodes.length} nodes applied to ${applied.join(', ')}`);
        }
      }
      for (const f of failed) problems.push(`layout version ${decision.plan.layout.version} not applied to ${f}`);
    }
  } else if (decision.waiting) {
    deps.log.debug('layout waits', { namespace: grid.metadata.namespace, grid: grid.metadata.name, reason: decision.waiting });
  }
  for (const o of observations) if (!o.up) problems.push(`storage node ${o.id} does not answer its admin API: ${o.error}`);
  return { observations, decision, held, problems };
}

/** Server-side apply of the desired objects (the Secret was created before and is never applied over). */
async function applyPhase(deps: ReconcileDeps, parts: GridParts, secrets: GridSecretValues, scale: Map<string, ScaleDecision>, signal: AbortSignal): Promise<string[]> {
  const replicas: Record<string, number> = {};
  for (const [pool, d] of scale) replicas[pool] = d.statefulSetReplicas;
  const desired = buildGridObjects({ grid: parts.grid, sites: parts.sites, pools: parts.pools, secrets, replicas });
  const problems = [...desired.problems];
  for (const obj of desired.objects) {
    if (obj.kind === 'Secret') continue;
    try {
      await deps.writes.apply(obj, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      problems.push(`${obj.kind} ${obj.metadata?.name}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** The problems that concern one pool: those naming it or one of its nodes. */
export function poolProblems(problems: readonly string[], pool: string): string[] {
  const node = new RegExp(`(^|[^a-z0-9-])${pool}-[0-9]+([^a-z0-9-]|$)`);
  return problems.filter((p) => [`NodePool ${pool}:`, `NodePool ${pool} `, `StatefulSet ${pool}:`].some((x) => p.includes(x)) || node.test(p));
}

/** Status of the NodePools, Sites, ReplicationPolicies and the Grid; an Event when the Grid's phase changes. */
async function statusPhase(deps: ReconcileDeps, parts: GridParts, layout: LayoutOutcome, scale: Map<string, ScaleDecision>, problems: string[], signal: AbortSignal): Promise<GridStatus> {
  const { grid } = parts;
  const nowIso = (deps.now?.() ?? new Date()).toISOString();
  const { held } = layout;
  const upNodes = layout.observations.filter((o) => o.up);
  for (const pool of parts.pools) {
    const d = scale.get(pool.metadata.name)!;
    const status = poolStatus({ grid, pool, pods: parts.pods, layout: held, nodes: upNodes, phase: d.phase, draining: d.draining, problems: poolProblems(problems, pool.metadata.name), nowIso });
    await writeStatus(deps, 'NodePool', pool, status, signal);
  }
  const degradedPolicies: { name: string; reason: string }[] = [];
  for (const policy of parts.policies) {
    const ps = policyStatus(policy, parts.sites, held, nowIso);
    const unsatisfiable = ps.conditions!.find((c) => c.type === 'PolicyUnsatisfiable' && c.status === 'True');
    if (unsatisfiable) degradedPolicies.push({ name: policy.metadata.name, reason: unsatisfiable.message });
    await writeStatus(deps, 'ReplicationPolicy', policy, ps, signal);
  }
  const status = gridStatus({ grid, sites: parts.sites, pools: parts.pools, pods: parts.pods, layout: held, nodes: upNodes, problems, degradedPolicies, nowIso });
  const waiting = layout.decision.waiting;
  if (waiting && !held) {
    const ready = status.conditions!.find((c) => c.type === 'Ready');
    if (ready && ready.status === 'False') ready.message = waiting;
  }
  for (const site of parts.sites) {
    await writeStatus(deps, 'Site', site, siteStatus(site, status.sites?.find((x) => x.name === site.metadata.name), held !== undefined, nowIso), signal);
  }
  const before = grid.status?.phase;
  await writeStatus(deps, 'Grid', grid, status, signal);
  if (before !== status.phase) {
    const degraded = status.conditions!.find((c) => c.type === 'Degraded' && c.status === 'True');
    void deps.writes.event(grid, degraded ? 'Warning' : 'Normal', `Phase${status.phase}`, degraded ? degraded.message : `grid is ${status.phase}: ${status.readyNodes}/${status.desiredNodes} nodes ready`);
  }
  return status;
}

/** Writes status through /status when it differs from the cached one (a no-op pass writes nothing). */
export async function writeStatus(deps: ReconcileDeps, kind: string, obj: { metadata: { name: string; namespace?: string }; status?: unknown }, status: object, signal: AbortSignal): Promise<void> {
  if (canonicalJson(obj.status ?? {}) === canonicalJson(status)) return;
  try {
    // A merge patch keeps keys it does not name: those that went away are sent as null.
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys((obj.status ?? {}) as object)) if (!(k in patch)) patch[k] = null;
    await deps.writes.patchStatus(kind, obj.metadata.namespace!, obj.metadata.name, patch, signal);
    deps.log.debug('status written', { kind, namespace: obj.metadata.namespace, name: obj.metadata.name });
  } catch (err) {
    if (isConflict(err)) return; // the next event brings a fresh object
    throw err;
  }
}
