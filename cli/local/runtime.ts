/**
 * The local runtime's operations on node processes and the layout, shared by the commands:
 * start what is missing and wait until it serves, plan the layout with the operator's planner and
 * apply it to every running node, stop nodes. Every wait has a deadline.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from '../../storage-node/src/admin/api-types';
import { checkLayout } from '../../storage-node/src/layout/types';
import type { RuntimeInfo } from '../../storage-node/src/main';
import { parseResources } from '../../operator/src/planner/parse';
import { planLayout, type ObservedNode, type PlanResult } from '../../operator/src/planner/plan';
import { resolveGrid, type ResolvedGrid } from '../../operator/src/planner/resolve';
import { portsFor, type Ports } from './addresses';
import { AdminClient } from './admin-client';
import { nodeConfigYaml } from './node-config';
import { isNodeProcess, portProblem, sleep, spawnNode, stopNode, tail } from './processes';
import { LocalError, paths, writeState, type LocalNode, type LocalSecrets, type LocalState } from './state';

export const START_TIMEOUT_MS = 30_000;
export const LAYOUT_TIMEOUT_MS = 15_000;
export const STOP_GRACE_MS = 15_000; // a node drains in-flight requests for up to 10 s
export const KILL_TIMEOUT_MS = 5_000;
const POLL_MS = 100;

export interface Runtime {
  /** Absolute data folder. */
  data: string;
  state: LocalState;
  secrets: LocalSecrets;
  /** Progress lines (stderr), so that stdout holds only the result. */
  say: (line: string) => void;
}

/** Reads and checks a custom-resource file; every parse and reference error is in the message. */
export function loadGridFile(file: string, gridName?: string): ResolvedGrid {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new LocalError(`cannot read ${file}: ${(e as Error).message}`, 2);
  }
  const parsed = parseResources(text);
  const resolved = parsed.errors.length === 0 ? resolveGrid(parsed, gridName) : undefined;
  const errors = [...parsed.errors, ...(resolved?.errors ?? [])];
  if (errors.length > 0 || !resolved?.grid) {
    throw new LocalError(`${file} is not a usable grid description:\n${errors.map((e) => `  - ${e}`).join('\n')}`, 2);
  }
  if (resolved.pools.length === 0) throw new LocalError(`${file}: grid ${resolved.grid.metadata.name} has no NodePool: nothing to start`, 2);
  return resolved;
}

export function clientOf(rt: Runtime, n: LocalNode): AdminClient {
  return new AdminClient(n.host, n.adminPort, rt.secrets.adminToken);
}

function configPath(rt: Runtime, n: LocalNode): string {
  return path.resolve(paths.config(rt.data, n.id));
}

function readRuntime(rt: Runtime, n: LocalNode): RuntimeInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(paths.runtime(rt.data, n.id), 'utf8')) as RuntimeInfo;
  } catch {
    return undefined;
  }
}

/** The pid of the node's live process: the one recorded, or the one its runtime.json names. */
export function livePid(rt: Runtime, n: LocalNode): number | undefined {
  const config = configPath(rt, n);
  for (const pid of [n.pid, readRuntime(rt, n)?.pid]) if (isNodeProcess(pid, config)) return pid;
  return undefined;
}

/**
 * Starts the given nodes that are not running, then waits until each of them (started now or
 * before) is up: its runtime.json names its live pid and GET /health answers 200. Ports that are
 * taken are refused before anything starts (fixed ports) or replaced by free ones (auto).
 * If a node does not come up, the nodes started by this call are stopped again.
 */
export async function ensureRunning(rt: Runtime, grid: ResolvedGrid['grid'], nodes: LocalNode[]): Promise<{ started: LocalNode[] }> {
  const toStart: LocalNode[] = [];
  for (const n of nodes) {
    const pid = livePid(rt, n);
    if (pid === undefined) toStart.push(n);
    else n.pid = pid;
  }
  const ports = new Map<string, Ports>();
  const problems: string[] = [];
  for (const n of toStart) {
    const p = { ...portsFor(n, rt.state.ports, grid) };
    for (const key of ['s3Port', 'adminPort', 'rpcPort'] as const) {
      const why = await portProblem(n.host, p[key]);
      if (!why) continue;
      if (rt.state.ports === 'auto' && p[key] !== 0 && !(await portProblem(n.host, 0))) p[key] = 0; // take another free one
      else problems.push(`node ${n.id}: ${why}`);
    }
    ports.set(n.id, p);
  }
  if (problems.length > 0) {
    const hint = rt.state.ports === 'fixed' ? '\nStop what uses them, or start with --ports auto to let each node pick free ports.' : '';
    throw new LocalError(`cannot start the grid:\n${problems.map((p) => `  - ${p}`).join('\n')}${hint}`);
  }
  const cli = path.resolve(__dirname, '..', 'archipel.js');
  const exits = new Map<string, () => boolean>();
  for (const n of toStart) {
    fs.mkdirSync(paths.nodeData(rt.data, n.id), { recursive: true, mode: 0o700 });
    clearStaleLock(rt, n);
    fs.writeFileSync(configPath(rt, n), nodeConfigYaml(n, ports.get(n.id)!, { name: rt.state.grid, region: rt.state.region }, rt.secrets), { mode: 0o600 });
    const child = spawnNode(cli, configPath(rt, n), path.resolve(paths.log(rt.data, n.id)));
    n.pid = child.pid;
    exits.set(n.id, child.exited);
    rt.say(`started ${n.id} (site ${n.site}) on ${n.host}, pid ${n.pid}`);
  }
  if (toStart.length > 0) writeState(rt.data, rt.state); // pids first: a crash now still leaves them findable
  const results = await Promise.allSettled(nodes.map((n) => waitServing(rt, n, exits.get(n.id))));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${nodes[i].id}: ${(r.reason as Error).message}`] : []));
  if (failed.length > 0) {
    await stopNodes(rt, toStart, 'term');
    writeState(rt.data, rt.state);
    throw new LocalError(`nodes did not come up:\n${failed.join('\n')}`);
  }
  writeState(rt.data, rt.state);
  return { started: toStart };
}

/**
 * The node refuses a data directory whose node.lock names a pid that kill(pid, 0) finds, and a
 * SIGKILLed node stays a zombie (which kill(pid, 0) finds) until init reaps it, which can take a
 * while; a pid may also have been reused. We know better: no live process runs this node's config
 * (checked by the caller, under our lock), so the lock is stale.
 */
function clearStaleLock(rt: Runtime, n: LocalNode): void {
  const lock = path.join(paths.nodeData(rt.data, n.id), 'node.lock');
  let pid: number;
  try {
    pid = Number(fs.readFileSync(lock, 'utf8').trim());
  } catch {
    return; // no lock
  }
  if (!isNodeProcess(pid, configPath(rt, n))) fs.rmSync(lock, { force: true });
}

/** Waits for runtime.json of the live process and GET /health = 200; records the ports it listens on. */
async function waitServing(rt: Runtime, n: LocalNode, exited?: () => boolean): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  const config = configPath(rt, n);
  for (;;) {
    const pid = n.pid;
    if ((exited?.() ?? false) || !isNodeProcess(pid, config)) {
      throw new Error(`the process exited; last lines of ${paths.log(rt.data, n.id)}:\n${indent(tail(paths.log(rt.data, n.id)))}`);
    }
    const info = readRuntime(rt, n);
    if (info?.pid === pid) {
      n.s3Port = info.s3Port;
      n.adminPort = info.adminPort;
      n.rpcPort = info.rpcPort ?? 0;
      if (await clientOf(rt, n).up()) return;
    }
    if (Date.now() >= deadline) throw new Error(`not serving after ${START_TIMEOUT_MS} ms (see ${paths.log(rt.data, n.id)})`);
    await sleep(POLL_MS);
  }
}

/** The planner's input: every node the state knows, ready or not. */
function observe(state: LocalState, ready: Set<string>): ObservedNode[] {
  return state.nodes.map((n) => ({
    id: n.id, pool: n.pool,
    rpcAddress: `${n.host}:${n.rpcPort}`, s3Address: `${n.host}:${n.s3Port}`,
    capacityBytes: 0, // the node does not report it yet: the planner takes the pool's storage size
    ready: ready.has(n.id),
  }));
}

/**
 * The file's pools with the replica counts `archipel local scale` set (state.replicas) instead of
 * their `spec.replicas`; pools the file no longer has are ignored.
 */
export function withReplicas(resolved: ResolvedGrid, replicas: Record<string, number> | undefined): ResolvedGrid {
  if (!replicas) return resolved;
  const pools = resolved.pools.map((p) => {
    const n = replicas[p.metadata.name];
    return n === undefined || n === p.spec.replicas ? p : { ...p, spec: { ...p.spec, replicas: n } };
  });
  return { ...resolved, pools };
}

function plan(resolved: ResolvedGrid, nodes: ObservedNode[], previous: Layout | undefined, drainedNodeIds: string[] = []): PlanResult {
  return planLayout({ grid: resolved.grid, sites: resolved.sites, pools: resolved.pools, policies: resolved.policies, nodes, previous, drainedNodeIds });
}

/**
 * Readable refusal for a layout a node would refuse, or for a scale-in that would leave a policy
 * unsatisfiable (the planner's `refused`); the planner's other problems come back as warnings.
 */
export function judge(result: PlanResult): string[] {
  const { errors } = checkLayout(result.layout);
  if (errors.length > 0) throw new LocalError(`the layout planned from this file would be refused by the nodes:\n${errors.map((e) => `  - ${e}`).join('\n')}`, 2);
  if (result.refused.length > 0) {
    throw new LocalError(`refused: removing these nodes would leave a policy without the copies it asks for:\n${result.refused.map((e) => `  - ${e}`).join('\n')}\n`
      + 'Keep enough nodes in the site (NodePool replicas, or `archipel local scale`), or lower the policy\'s copies there first.', 2);
  }
  return result.problems;
}

/**
 * Plans the layout as if every given node were up at its future address, without starting anything:
 * `up` refuses a file whose layout the nodes would refuse before it starts a process.
 */
export function checkPlan(state: LocalState, resolved: ResolvedGrid, ids: Set<string>): string[] {
  const g = resolved.grid.spec;
  const nodes = observe(state, ids).map((o) => {
    const host = state.nodes.find((n) => n.id === o.id)!.host;
    return { ...o, rpcAddress: `${host}:${g.rpc.port}`, s3Address: `${host}:${g.s3.port}` };
  });
  return judge(plan(withReplicas(resolved, state.replicas), nodes, state.layout ?? undefined));
}

/**
 * Plans the layout from the file (with the replica counts of state.replicas) and the running nodes,
 * on top of the newest layout any node (or the state file) holds, so versions only go up and an
 * unchanged grid keeps its version. Applies nothing: `scale` looks at the plan before it changes
 * anything. `ready` are the running nodes that answer /ready, the ones a layout is applied to.
 */
export async function planNext(rt: Runtime, resolved: ResolvedGrid, drainedNodeIds: string[] = []): Promise<{ result: PlanResult; ready: LocalNode[] }> {
  const running = rt.state.nodes.filter((n) => livePid(rt, n) !== undefined);
  const seen = await Promise.all(running.map(async (n) => {
    const c = clientOf(rt, n);
    return { n, ready: await c.up(), layout: await c.layout().catch(() => null) };
  }));
  let previous = rt.state.layout ?? undefined;
  for (const s of seen) if (s.layout && (!previous || s.layout.version > previous.version)) previous = s.layout;
  const ready = seen.filter((s) => s.ready).map((s) => s.n);
  const result = plan(withReplicas(resolved, rt.state.replicas), observe(rt.state, new Set(ready.map((n) => n.id))), previous, drainedNodeIds);
  return { result, ready };
}

/**
 * Plans the next layout (planNext), refuses it as `judge` says, applies it to every ready node and
 * waits until each holds it. `drainedNodeIds`: draining nodes that reported themselves drained; they
 * leave the layout and are not waited for (they are about to be stopped).
 */
export async function planAndApply(rt: Runtime, resolved: ResolvedGrid, opts: { drainedNodeIds?: string[] } = {}): Promise<{ layout: Layout; changed: boolean; warnings: string[] }> {
  const drained = new Set(opts.drainedNodeIds ?? []);
  const planned = await planNext(rt, resolved, [...drained]);
  const { result } = planned;
  const ready = planned.ready.filter((n) => !drained.has(n.id));
  const warnings = judge(result);
  const { layout } = result;
  await Promise.all(ready.map(async (n) => {
    const r = await clientOf(rt, n).applyLayout(layout);
    if (r.version < layout.version) throw new LocalError(`${n.id} kept layout version ${r.version} instead of ${layout.version}`);
  }));
  const deadline = Date.now() + LAYOUT_TIMEOUT_MS;
  for (;;) {
    const versions = await Promise.all(ready.map((n) => clientOf(rt, n).layout().then((l) => l?.version ?? 0, () => 0)));
    if (versions.every((v) => v === layout.version)) break;
    if (Date.now() >= deadline) {
      const behind = ready.filter((_, i) => versions[i] !== layout.version).map((n, i) => `${n.id} at ${versions[i]}`);
      throw new LocalError(`not every node holds layout version ${layout.version} after ${LAYOUT_TIMEOUT_MS} ms: ${behind.join(', ')}`);
    }
    await sleep(POLL_MS);
  }
  // Nodes that just joined take the grid's buckets and keys before they serve: wait until they do.
  const serving = ready.filter((n) => layout.nodes.some((x) => x.id === n.id && x.state !== 'failed'));
  for (;;) {
    const ok = await Promise.all(serving.map((n) => clientOf(rt, n).ready()));
    if (ok.every(Boolean)) break;
    if (Date.now() >= deadline) {
      throw new LocalError(`not every node serves under layout version ${layout.version} after ${LAYOUT_TIMEOUT_MS} ms: ${serving.filter((_, i) => !ok[i]).map((n) => n.id).join(', ')}`);
    }
    await sleep(POLL_MS);
  }
  rt.state.layout = layout;
  writeState(rt.data, rt.state);
  return { layout, changed: result.changed, warnings };
}

/** `term`: SIGTERM, then SIGKILL after a grace period; `kill`: SIGKILL at once. Waits until each is gone. */
export async function stopNodes(rt: Runtime, nodes: LocalNode[], how: 'term' | 'kill'): Promise<LocalNode[]> {
  const stopped: LocalNode[] = [];
  await Promise.all(nodes.map(async (n) => {
    const pid = livePid(rt, n) ?? null;
    const config = configPath(rt, n);
    const outcome = await stopNode(pid, config, how === 'term' ? STOP_GRACE_MS : 0, KILL_TIMEOUT_MS);
    if (outcome !== 'not running') {
      stopped.push(n);
      rt.say(`${outcome} ${n.id} (pid ${pid})`);
    }
    n.pid = null;
  }));
  writeState(rt.data, rt.state);
  return stopped;
}

function indent(text: string): string {
  return text.split('\n').map((l) => `    ${l}`).join('\n');
}
