/**
 * `archipel local scale POOL --replicas N`: hot scale-out and scale-in of one NodePool of the local
 * grid (ARCHITECTURE §2 "Change without downtime"). The storage nodes move the data themselves
 * (docs/decisions/0016-layout-transitions.md); this side starts and stops processes, plans and
 * applies layouts with the operator's planner, and waits (bounded) until the nodes report the move
 * over, printing progress per site.
 *
 * Three steps, so that `status`, `stop-site` and `start-site` stay usable during a long move:
 *   1. change (under the data folder's lock): check, persist the replica count, start the new nodes,
 *      apply the layout (new nodes active, or the nodes beyond N draining);
 *   2. wait (no lock: it only reads the state file and asks the nodes);
 *   3. scale-in only (under the lock again): check once more that each draining node reports itself
 *      drained, apply the layout without them, stop them, forget them and delete their folders.
 * A node is never stopped before it reports its drain finished; on a timeout the draining nodes stay
 * running and in the layout, and running the same command again resumes the wait.
 */
import fs from 'node:fs';
import type { NodeStatus } from './admin-client';
import { MAX_NODES_PER_SITE, assignAddresses, wantedNodes } from './addresses';
import { formatBytes, formatDuration } from './format';
import { drainDone, rebalanceCell, siteProgressLine, transitionDone, type NodeRebalance } from './rebalance';
import { clientOf, ensureRunning, judge, livePid, planAndApply, planNext, stopNodes, withReplicas, type Runtime } from './runtime';
import { sleep } from './processes';
import type { ResolvedGrid } from '../../operator/src/planner/resolve';
import { LocalError, paths, writeState, type LocalNode, type LocalState } from './state';

export const DEFAULT_SCALE_TIMEOUT_S = 600;
const POLL_MS = 1_000;
const PROGRESS_MS = 2_000;
const MAX_TIMEOUT_S = 7 * 24 * 3600;

/** `--replicas`: a whole number from 1 to the nodes a site can hold here. */
export function parseReplicas(v: string | undefined): number {
  if (v === undefined) throw new LocalError('--replicas N is required', 2);
  if (!/^\s*[0-9]+\s*$/.test(v)) throw new LocalError(`--replicas must be a whole number ≥ 1 (got ${JSON.stringify(v)})`, 2);
  const n = Number(v);
  if (n < 1) throw new LocalError(`--replicas must be at least 1 (got ${n}): to take a pool away, remove its NodePool from the file`, 2);
  if (n > MAX_NODES_PER_SITE) throw new LocalError(`--replicas ${n}: the local runtime runs at most ${MAX_NODES_PER_SITE} nodes per site`, 2);
  return n;
}

/** `--timeout`: seconds, > 0 (default 600). */
export function parseTimeoutMs(v: string | undefined): number {
  if (v === undefined) return DEFAULT_SCALE_TIMEOUT_S * 1000;
  const s = Number(v);
  if (v.trim() === '' || !Number.isFinite(s) || s <= 0 || s > MAX_TIMEOUT_S) {
    throw new LocalError(`--timeout must be a number of seconds in (0, ${MAX_TIMEOUT_S}] (got ${JSON.stringify(v)})`, 2);
  }
  return Math.round(s * 1000);
}

/** How to run another `archipel local` subcommand on the same data folder, for messages. */
export type Hint = (sub: string) => string;

/** What step 1 did, for the wait and the last step. */
export interface ScaleStep {
  pool: string;
  replicas: number;
  was: number;
  version: number;
  changed: boolean;
  started: string[];
  /** In the layout as draining: wait for their drain, then remove them. */
  draining: string[];
  /** Beyond N but never in the layout: stopped and removed at once. */
  removed: string[];
}

function ordinalOf(n: LocalNode): number {
  return Number(n.id.slice(n.pool.length + 1));
}

/** Step 1 (under the lock). Every refusal comes before anything is changed. */
export async function startScale(rt: Runtime, resolved: ResolvedGrid, poolName: string, replicas: number, hint: Hint): Promise<ScaleStep> {
  const { state } = rt;
  const pool = resolved.pools.find((p) => p.metadata.name === poolName);
  if (!pool) {
    const names = resolved.pools.map((p) => p.metadata.name).join(', ');
    throw new LocalError(`unknown NodePool ${JSON.stringify(poolName)}: grid ${state.grid} has ${names} (in ${state.file})`, 2);
  }
  const siteName = pool.spec.site;
  if (resolved.sites.find((s) => s.metadata.name === siteName)?.spec.state === 'Failed') {
    throw new LocalError(`NodePool ${poolName}: site ${siteName} is declared Failed in ${state.file}; its nodes do not run`, 2);
  }
  if (!state.nodes.some((n) => livePid(rt, n) !== undefined)) {
    throw new LocalError(`grid ${state.grid} is not running: start it with \`${hint('up')}\` first`, 2);
  }
  const was = state.replicas?.[poolName] ?? pool.spec.replicas;
  const target: LocalState = { ...state, replicas: { ...(state.replicas ?? {}), [poolName]: replicas } };
  const next = withReplicas(resolved, target.replicas);
  let assigned: ReturnType<typeof assignAddresses>;
  try {
    // Only this pool's new nodes: a pool added to the file meanwhile is `up`'s business.
    assigned = assignAddresses(next, state, wantedNodes(next).filter((w) => w.pool === poolName));
  } catch (e) {
    if (e instanceof LocalError) throw new LocalError(`cannot scale ${poolName} to ${replicas}: ${e.message}`, 2);
    throw e;
  }
  const inLayout = new Set((state.layout?.nodes ?? []).map((n) => n.id));
  const mine = assigned.nodes.filter((n) => n.pool === poolName);
  const leaving = mine.filter((n) => ordinalOf(n) >= replicas);
  const toDrain = leaving.filter((n) => inLayout.has(n.id));
  if (toDrain.length > 0) {
    // A node that is down cannot hand its copies off, so its drain would never end.
    const down = toDrain.filter((n) => livePid(rt, n) === undefined);
    if (down.length > 0) {
      throw new LocalError(`cannot drain ${down.map((n) => n.id).join(', ')}: not running, so ${down.length === 1 ? 'it' : 'they'} cannot hand copies off; `
        + `start ${down.length === 1 ? 'it' : 'them'} first (\`${hint(`start-site ${siteName}`)}\`)`, 2);
    }
    const dry = await planNext({ ...rt, state: target }, resolved);
    if (dry.result.refused.length > 0) {
      throw new LocalError(`cannot scale ${poolName} to ${replicas}:\n${dry.result.refused.map((r) => `  - ${r}`).join('\n')}\n`
        + `Nothing was changed. Keep more nodes in site ${siteName}, or lower the policy's copies there first.`, 2);
    }
    judge(dry.result); // a layout the nodes would refuse, before anything changes
  }

  const before = { replicas: state.replicas, ids: new Set(state.nodes.map((n) => n.id)) };
  /** Back to the count it had, the new nodes stopped and forgotten (their logs stay in their folders). */
  const revert = async (started: LocalNode[]): Promise<void> => {
    await stopNodes(rt, started, 'term');
    state.nodes = state.nodes.filter((n) => before.ids.has(n.id));
    if (before.replicas === undefined) delete state.replicas;
    else state.replicas = before.replicas;
    writeState(rt.data, state);
  };
  state.replicas = target.replicas;
  state.sites = assigned.sites;
  state.nodes = assigned.nodes;
  writeState(rt.data, state);
  // The nodes that must run to join: new ones, and any of the pool's that never made it into the layout.
  const joining = mine.filter((n) => ordinalOf(n) < replicas && !inLayout.has(n.id));
  let started: LocalNode[];
  try {
    ({ started } = await ensureRunning(rt, resolved.grid, joining)); // stops what it started when one fails
  } catch (e) {
    await revert([]);
    throw e;
  }
  const down = state.nodes.filter((n) => inLayout.has(n.id) && livePid(rt, n) === undefined).map((n) => n.id);
  if (down.length > 0) rt.say(`warning: ${down.join(', ')} ${down.length === 1 ? 'is' : 'are'} down: the move may wait for ${down.length === 1 ? 'it' : 'them'} (\`${hint('start-site SITE')}\`)`);

  let applied: Awaited<ReturnType<typeof planAndApply>>;
  try {
    applied = await planAndApply(rt, resolved);
  } catch (e) {
    // A refusal (exit code 2) comes before the layout is applied: undo, or every later `up` would meet it
    // again. A failure while applying leaves the count: the layout may be on some nodes already.
    if (e instanceof LocalError && e.exitCode === 2) await revert(started);
    throw e;
  }
  const { layout, changed, warnings } = applied;
  for (const w of warnings) rt.say(`warning: ${w}`);
  const draining = new Set(layout.nodes.filter((n) => n.state === 'draining').map((n) => n.id));
  const drainIds = leaving.filter((n) => draining.has(n.id)).map((n) => n.id);
  rt.say(`layout version ${layout.version} ${changed ? 'applied' : 'unchanged'}`
    + `${started.length > 0 ? `; joining: ${started.map((n) => n.id).join(', ')}` : ''}${drainIds.length > 0 ? `; draining: ${drainIds.join(', ')}` : ''}`);
  // Beyond N but not in the layout (never joined, or left it before a crash of this command): nothing to hand off.
  const inNew = new Set(layout.nodes.map((n) => n.id));
  const gone = leaving.filter((n) => !inNew.has(n.id));
  await removeNodes(rt, gone);
  return { pool: poolName, replicas, was, version: layout.version, changed, started: started.map((n) => n.id), draining: drainIds, removed: gone.map((n) => n.id) };
}

/** Stops the nodes (SIGTERM), forgets them and deletes their folders (config, log, data). */
async function removeNodes(rt: Runtime, nodes: LocalNode[]): Promise<void> {
  if (nodes.length === 0) return;
  await stopNodes(rt, nodes, 'term');
  const ids = new Set(nodes.map((n) => n.id));
  rt.state.nodes = rt.state.nodes.filter((n) => !ids.has(n.id));
  writeState(rt.data, rt.state); // forgotten first: a crash now leaves a folder, never a node entry without one
  for (const id of ids) fs.rmSync(paths.nodeDir(rt.data, id), { recursive: true, force: true });
}

/** What one look at the grid found: every node of the state, with its status when it runs and answers. */
export interface Seen {
  state: LocalState;
  nodes: { n: LocalNode; running: boolean; st?: NodeStatus; error?: string }[];
}

/** Reads the state file again (another command may have restarted nodes) and asks every running node. */
export async function look(rt: Runtime, reload: () => LocalState): Promise<Seen> {
  const state = reload();
  const view: Runtime = { ...rt, state };
  const nodes = await Promise.all(state.nodes.map(async (n) => {
    if (livePid(view, n) === undefined) return { n, running: false };
    try {
      return { n, running: true, st: await clientOf(view, n).status() };
    } catch (e) {
      return { n, running: true, error: (e as Error).message };
    }
  }));
  return { state, nodes };
}

/** The per-site progress lines of a look, or one line saying what the wait is for when no site moves yet. */
export function progressLines(seen: Seen, version: number): string[] {
  const draining = new Set((seen.state.layout?.nodes ?? []).filter((n) => n.state === 'draining').map((n) => n.id));
  const sites = [...seen.state.sites].sort((a, b) => a.index - b.index);
  const lines = sites.flatMap((s) => {
    const nodes: NodeRebalance[] = seen.nodes.filter((x) => x.n.site === s.name && x.st)
      .map((x) => ({ id: x.n.id, draining: draining.has(x.n.id), rebalance: x.st?.rebalance }));
    const line = siteProgressLine(s.name, nodes);
    return line ? [line] : [];
  });
  // Why a move may not progress: a node it needs is down or does not answer.
  const inLayout = new Set((seen.state.layout?.nodes ?? []).map((n) => n.id));
  const silent = seen.nodes.filter((x) => inLayout.has(x.n.id) && (!x.running || x.error));
  const silentLine = silent.length > 0 ? [`not answering: ${silent.map(describe).join(', ')}`] : [];
  if (lines.length > 0) return [...lines, ...silentLine];
  const behind = seen.nodes.filter((x) => x.running && !x.error && !transitionDone(x.st?.rebalance, version));
  return [`waiting for the nodes to take up layout version ${version}${behind.length > 0 ? ` (${behind.map(describe).join(', ')})` : ''}`, ...silentLine];
}

function describe(x: Seen['nodes'][number]): string {
  if (!x.running) return `${x.n.id} down`;
  if (x.error) return `${x.n.id} (${x.error})`;
  const r = x.st?.rebalance;
  if (!r) return `${x.n.id} (no rebalance status)`;
  const moved = r.partitionsToMove > 0 ? `, ${r.partitionsMoved} of ${r.partitionsToMove} partitions` : '';
  return `${x.n.id} ${rebalanceCell(r)} at version ${r.layoutVersion}${moved}${r.heldBlobs > 0 ? `, ${r.heldBlobs} copies held` : ''}`;
}

export interface WatchOptions<T> {
  probe: () => Promise<T>;
  /** May throw (a LocalError) to give up at once, when waiting longer cannot help. */
  done: (t: T) => boolean;
  progress: (t: T) => string[];
  say: (line: string) => void;
  timeoutMs: number;
  pollMs?: number;
  progressMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Polls until `done` or the deadline; says the progress lines every `progressMs` meanwhile. */
export async function watch<T>(o: WatchOptions<T>): Promise<{ done: boolean; last: T; elapsedMs: number }> {
  const now = o.now ?? Date.now;
  const wait = o.sleep ?? sleep;
  const progressMs = o.progressMs ?? PROGRESS_MS;
  const start = now();
  let said = start;
  for (;;) {
    const t = await o.probe();
    if (o.done(t)) return { done: true, last: t, elapsedMs: now() - start };
    if (now() - said >= progressMs) {
      for (const line of o.progress(t)) o.say(line);
      said = now();
    }
    const left = start + o.timeoutMs - now();
    if (left <= 0) return { done: false, last: t, elapsedMs: now() - start };
    await wait(Math.min(o.pollMs ?? POLL_MS, left));
  }
}

/** Step 2, scale-out (and a scale that only changed addresses): every running node done with the transition. */
export function moveDone(seen: Seen, version: number): boolean {
  return seen.nodes.every((x) => !x.running || (x.st !== undefined && transitionDone(x.st.rebalance, version)));
}

/** Step 2, scale-in: every draining node says it is drained. Throws when one cannot say it at all. */
export function drainedAll(seen: Seen, ids: string[], version: number): boolean {
  const mute = seen.nodes.filter((x) => ids.includes(x.n.id) && x.st !== undefined && x.st.rebalance === undefined).map((x) => x.n.id);
  if (mute.length > 0) {
    throw new LocalError(`${mute.join(', ')} ${mute.length === 1 ? 'does' : 'do'} not report a drain (no \`rebalance\` in GET /v1/status: a storage node from before layout transitions), `
      + `so ${mute.length === 1 ? 'it is' : 'they are'} left running and draining in the layout; nothing was stopped`);
  }
  return ids.every((id) => drainDone(seen.nodes.find((x) => x.n.id === id)?.st?.rebalance, version));
}

function bytesMovedIn(seen: Seen): number {
  return seen.nodes.reduce((a, x) => a + (x.st?.rebalance?.bytesMoved ?? 0), 0);
}

/** Step 2 then, for a scale-in, step 3 (which the caller runs under the lock). Returns the summary line. */
export async function waitScale(rt: Runtime, step: ScaleStep, opts: { timeoutMs: number; reload: () => LocalState; hint: Hint }): Promise<{ summary: string; drained: string[] }> {
  const count = (n: number): string => `${n} node${n === 1 ? '' : 's'}`;
  const head = `NodePool ${step.pool}: ${count(step.replicas)}${step.was === step.replicas ? '' : ` (was ${step.was})`}`;
  const probe = (): Promise<Seen> => look(rt, opts.reload);
  const progress = (s: Seen): string[] => progressLines(s, step.version);
  if (step.draining.length === 0) {
    const w = await watch({ probe, done: (s) => moveDone(s, step.version), progress, say: rt.say, timeoutMs: opts.timeoutMs });
    if (!w.done) {
      const behind = w.last.nodes.filter((x) => x.running && !(x.st && transitionDone(x.st.rebalance, step.version)));
      throw new LocalError(`the move to layout version ${step.version} is not over after ${formatDuration(opts.timeoutMs / 1000)}: ${behind.map(describe).join(', ')}.\n`
        + `The nodes go on by themselves; follow it with \`${opts.hint('status')}\`.`);
    }
    const moved = bytesMovedIn(w.last);
    const parts = [
      head,
      step.started.length > 0 ? `started ${step.started.join(', ')}` : '',
      step.removed.length > 0 ? `removed ${step.removed.join(', ')}` : '',
      `layout version ${step.version}${step.changed ? '' : ' (unchanged)'}`,
      step.changed ? `data moved${moved > 0 ? ` (${formatBytes(moved)})` : ''} in ${formatDuration(w.elapsedMs / 1000)}` : '',
    ];
    return { summary: parts.filter((p) => p !== '').join('; '), drained: [] };
  }
  const w = await watch({ probe, done: (s) => drainedAll(s, step.draining, step.version), progress, say: rt.say, timeoutMs: opts.timeoutMs });
  if (!w.done) {
    const still = w.last.nodes.filter((x) => step.draining.includes(x.n.id) && !drainDone(x.st?.rebalance, step.version));
    throw new LocalError(`still draining after ${formatDuration(opts.timeoutMs / 1000)}: ${still.map(describe).join(', ')}.\n`
      + `${still.length === 1 ? 'It keeps' : 'They keep'} running and draining; run the same command again to wait for the end (\`${opts.hint('status')}\` shows the progress).`);
  }
  return { summary: head, drained: step.draining };
}

/**
 * Step 3 (under the lock, with the state read again): the drained nodes leave the layout, then stop,
 * and their folders go. Checks again that the count is still the one asked for (no other `scale`
 * meanwhile) and that each node still reports itself drained.
 */
export async function finishScaleIn(rt: Runtime, resolved: ResolvedGrid, step: ScaleStep, head: string): Promise<string> {
  const now = rt.state.replicas?.[step.pool];
  if (now !== step.replicas) {
    throw new LocalError(`NodePool ${step.pool} was set to ${now ?? 'its file count'} meanwhile (another scale?): ${step.draining.join(', ')} left as ${step.draining.length === 1 ? 'it is' : 'they are'}`);
  }
  const ids = step.draining.filter((id) => rt.state.nodes.some((n) => n.id === id));
  if (ids.length === 0) return `${head}; ${step.draining.join(', ')} already removed`;
  const seen = await look(rt, () => rt.state);
  if (!drainedAll(seen, ids, step.version)) {
    throw new LocalError(`${ids.join(', ')} no longer ${ids.length === 1 ? 'reports itself' : 'report themselves'} drained: left running`);
  }
  const { layout } = await planAndApply(rt, resolved, { drainedNodeIds: ids });
  const still = layout.nodes.filter((n) => ids.includes(n.id)).map((n) => n.id);
  if (still.length > 0) throw new LocalError(`the planner kept ${still.join(', ')} in layout version ${layout.version}: left running`);
  await removeNodes(rt, rt.state.nodes.filter((n) => ids.includes(n.id)));
  return `${head}; ${ids.join(', ')} drained, out of layout version ${layout.version}, stopped, ${ids.length === 1 ? 'its folder' : 'their folders'} deleted`;
}
