/**
 * `archipel local …`: the embedded runtime. The same custom resources a platform team applies to
 * Kubernetes, run as one storage-node process per node on loopback, with the layout computed by the
 * operator's planner (operator/src/planner). See docs/decisions/0013-local-runtime.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ResolvedGrid } from '../../operator/src/planner/resolve';
import { assignAddresses, wantedNodes } from './addresses';
import { exportLines, shellQuote } from './format';
import { checkPlan, ensureRunning, livePid, loadGridFile, planAndApply, stopNodes, withReplicas, type Runtime } from './runtime';
import { DEFAULT_SCALE_TIMEOUT_S, finishScaleIn, parseReplicas, parseTimeoutMs, startScale, waitScale } from './scale';
import { statusReport } from './status';
import {
  DEFAULT_DATA_DIR, LocalError, STATE_FORMAT, loadOrCreateSecrets, lockDataDir, readState, requireSecrets, requireState, writeState,
  type LocalNode, type LocalState, type PortMode,
} from './state';

export const DEFAULT_FILE = path.join('examples', 'three-sites.yaml');
const PORTS_ENV = 'ARCHIPEL_LOCAL_PORTS';

interface DataOpts { data?: string }
interface UpOpts extends DataOpts { file?: string; ports?: string; grid?: string }
interface ScaleOpts extends DataOpts { replicas?: string; timeout?: string }

const say = (line: string): void => void process.stderr.write(`${line}\n`);

function dataDir(opts: DataOpts): string {
  return path.resolve(opts.data ?? DEFAULT_DATA_DIR);
}

/** How to run a command again (as this CLI was invoked), for the hints it prints. */
function hint(data: string, sub: string): string {
  const argv1 = process.argv[1] ?? 'archipel';
  const cmd = path.basename(argv1) === 'archipel' ? 'archipel' : `node ${shellQuote(short(argv1))}`;
  const dataOpt = path.resolve(DEFAULT_DATA_DIR) === data ? '' : ` --data ${shellQuote(short(data))}`;
  return `${cmd} local ${sub}${dataOpt}`;
}

/** A path relative to the current folder when it is below it, else absolute. */
function short(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : path.resolve(p);
}

function portMode(opts: UpOpts, known: LocalState | undefined): PortMode {
  const v = opts.ports ?? process.env[PORTS_ENV] ?? known?.ports ?? 'fixed';
  if (v !== 'fixed' && v !== 'auto') throw new LocalError(`--ports must be fixed or auto (got ${JSON.stringify(v)})`, 2);
  return v;
}

/** The nodes to run: those the pools ask for, and known ones still in the layout (draining). */
function desired(state: LocalState, wanted: Set<string>): LocalNode[] {
  const inLayout = new Set((state.layout?.nodes ?? []).map((n) => n.id));
  return state.nodes.filter((n) => wanted.has(n.id) || inLayout.has(n.id));
}

async function withLock<T>(data: string, fn: () => Promise<T>): Promise<T> {
  const release = lockDataDir(data);
  try {
    return await fn();
  } finally {
    release();
  }
}

export async function up(opts: UpOpts): Promise<void> {
  const data = dataDir(opts);
  const known = readState(data);
  const file = path.resolve(opts.file ?? known?.file ?? DEFAULT_FILE);
  if (!opts.file && !known && !fs.existsSync(file)) throw new LocalError(`no custom-resource file given and ${file} does not exist: pass -f FILE`, 2);
  const fromFile = loadGridFile(file, opts.grid ?? known?.grid);
  // Counts set by `archipel local scale` win over the file's, for every later command (see scale.ts).
  const resolved = withReplicas(fromFile, known?.replicas);
  for (const p of fromFile.pools) {
    const n = known?.replicas?.[p.metadata.name];
    if (n !== undefined && n !== p.spec.replicas) say(`note: NodePool ${p.metadata.name} runs ${n} node(s), as \`archipel local scale\` set it (the file says ${p.spec.replicas})`);
  }
  const gridName = resolved.grid.metadata.name;
  if (known && known.grid !== gridName) {
    throw new LocalError(`${data} holds grid ${known.grid}, and ${file} describes grid ${gridName}: use another --data folder`, 2);
  }
  const ports = portMode(opts, known);
  const wanted = wantedNodes(resolved);
  const prepare = (k: LocalState | undefined): LocalState => {
    const base: LocalState = k ?? { format: STATE_FORMAT, grid: gridName, file, ports, region: '', sites: [], nodes: [], layout: null, updatedAt: '' };
    return { ...base, file, ports, region: resolved.grid.spec.s3.region, ...assignAddresses(resolved, base, wanted) };
  };
  const ids = (s: LocalState): Set<string> => new Set(desired(s, new Set(wanted.map((w) => w.id))).map((n) => n.id));
  // Refuse a file whose layout the nodes would refuse before anything is created or started.
  const dry = prepare(known);
  for (const w of checkPlan(dry, resolved, ids(dry))) say(`warning: ${w}`);

  await withLock(data, async () => {
    const state = prepare(readState(data));
    const rt: Runtime = { data, state, secrets: loadOrCreateSecrets(data), say };
    writeState(data, state);
    const { started } = await ensureRunning(rt, resolved.grid, desired(state, ids(state)));
    if (started.length === 0) say(`all ${ids(state).size} nodes were already running`);
    const { layout, changed, warnings } = await planAndApply(rt, resolved);
    for (const w of warnings) say(`warning: ${w}`);
    say(changed ? `layout version ${layout.version} applied` : `layout version ${layout.version} unchanged`);
    process.stdout.write(summary(rt, layout.version));
  });
}

function summary(rt: Runtime, version: number): string {
  const { state, secrets, data } = rt;
  const running = state.nodes.filter((n) => n.pid !== null);
  const lines = [
    `Grid ${state.grid} is up: ${running.length} nodes in ${state.sites.length} sites, layout version ${version}.`,
    '',
    'S3 endpoints (every node serves the whole namespace):',
  ];
  const sites = [...state.sites].sort((a, b) => a.index - b.index);
  const width = Math.max(...sites.map((s) => s.name.length));
  for (const s of sites) {
    const urls = running.filter((n) => n.site === s.name).sort((a, b) => a.slot - b.slot).map((n) => `http://${n.host}:${n.s3Port}`);
    lines.push(`  ${s.name.padEnd(width)}  ${s.role.padEnd(8)}  ${urls.join('  ') || '(no node running)'}`);
  }
  lines.push(
    '',
    'Credentials:',
    `  access key id      ${secrets.accessKeyId}`,
    `  secret access key  ${secrets.secretAccessKey}`,
    `  region             ${state.region}`,
    '',
    `Point the AWS CLI and SDKs at it:  eval "$(${hint(data, 'env')})"`,
    `Status:  ${hint(data, 'status')}`,
    `Stop:    ${hint(data, 'down')}  (data stays in ${data})`,
    '',
  );
  return lines.join('\n');
}

/** The node `env` points clients at: a running node of the first primary site (else of any site). */
export function endpointNode(rt: Runtime): LocalNode | undefined {
  const rank = (n: LocalNode): number => {
    const s = rt.state.sites.find((x) => x.name === n.site);
    return (s?.role === 'primary' ? 0 : 1000) + (s?.index ?? 99) * 10 + n.slot;
  };
  const nodes = [...rt.state.nodes].sort((a, b) => rank(a) - rank(b));
  return nodes.find((n) => livePid(rt, n) !== undefined) ?? nodes[0];
}

export async function env(opts: DataOpts): Promise<void> {
  const data = dataDir(opts);
  const rt: Runtime = { data, state: requireState(data), secrets: requireSecrets(data), say };
  const n = endpointNode(rt);
  if (!n || n.s3Port === 0) throw new LocalError(`grid ${rt.state.grid} in ${data} has never run: start it with \`${hint(data, 'up')}\``);
  if (livePid(rt, n) === undefined) say(`warning: no node of grid ${rt.state.grid} is running; start it with \`${hint(data, 'up')}\``);
  process.stdout.write(exportLines([
    ['AWS_ENDPOINT_URL', `http://${n.host}:${n.s3Port}`],
    ['AWS_ACCESS_KEY_ID', rt.secrets.accessKeyId],
    ['AWS_SECRET_ACCESS_KEY', rt.secrets.secretAccessKey],
    ['AWS_REGION', rt.state.region],
    ['AWS_DEFAULT_REGION', rt.state.region], // older AWS CLIs read only this one
  ]));
}

function siteNodes(state: LocalState, site: string): LocalNode[] {
  if (!state.sites.some((s) => s.name === site)) {
    throw new LocalError(`unknown site ${JSON.stringify(site)}: grid ${state.grid} has ${state.sites.map((s) => s.name).join(', ')}`, 2);
  }
  return state.nodes.filter((n) => n.site === site);
}

export async function stopSite(site: string, opts: DataOpts): Promise<void> {
  const data = dataDir(opts);
  await withLock(data, async () => {
    const state = requireState(data);
    const rt: Runtime = { data, state, secrets: requireSecrets(data), say };
    const stopped = await stopNodes(rt, siteNodes(state, site), 'kill');
    process.stdout.write(`site ${site}: ${stopped.length === 0 ? 'no node was running' : `${stopped.map((n) => n.id).join(', ')} killed (SIGKILL)`}\n`);
  });
}

export async function startSite(site: string, opts: DataOpts): Promise<void> {
  const data = dataDir(opts);
  await withLock(data, async () => {
    const state = requireState(data);
    const nodes = siteNodes(state, site);
    const resolved = withReplicas(loadGridFile(state.file, state.grid), state.replicas);
    const rt: Runtime = { data, state, secrets: requireSecrets(data), say };
    const wanted = new Set(wantedNodes(resolved).map((w) => w.id));
    const { started } = await ensureRunning(rt, resolved.grid, desired(state, wanted).filter((n) => nodes.includes(n)));
    const { layout, changed } = await planAndApply(rt, resolved);
    const what = started.length === 0 ? 'every node was already running' : `${started.map((n) => n.id).join(', ')} started`;
    process.stdout.write(`site ${site}: ${what}; layout version ${layout.version}${changed ? ' applied (addresses changed)' : ''}\n`);
  });
}

export async function down(opts: DataOpts): Promise<void> {
  const data = dataDir(opts);
  await withLock(data, async () => {
    const state = requireState(data);
    const rt: Runtime = { data, state, secrets: requireSecrets(data), say };
    const stopped = await stopNodes(rt, state.nodes, 'term');
    process.stdout.write(`grid ${state.grid}: ${stopped.length} node(s) stopped; data kept in ${data} (\`${hint(data, 'up')}\` brings it back)\n`);
  });
}

/**
 * `scale POOL --replicas N`: the change under the lock, the wait without it (so `status`, `stop-site`
 * and `start-site` work meanwhile), the removal of drained nodes under the lock again (scale.ts).
 */
export async function scale(pool: string, opts: ScaleOpts): Promise<void> {
  const replicas = parseReplicas(opts.replicas);
  const timeoutMs = parseTimeoutMs(opts.timeout);
  const data = dataDir(opts);
  requireState(data); // before the lock, which would create the folder
  const h = (sub: string): string => hint(data, sub);
  const secrets = requireSecrets(data);
  const load = (state: LocalState): ResolvedGrid => loadGridFile(state.file, state.grid);
  const step = await withLock(data, async () => {
    const state = requireState(data);
    return startScale({ data, state, secrets, say }, load(state), pool, replicas, h);
  });
  const rt: Runtime = { data, state: requireState(data), secrets, say };
  const { summary, drained } = await waitScale(rt, step, { timeoutMs, reload: () => requireState(data), hint: h });
  if (drained.length === 0) {
    process.stdout.write(`${summary}\n`);
    return;
  }
  const done = await withLock(data, async () => {
    const state = requireState(data);
    return finishScaleIn({ data, state, secrets, say }, load(state), step, summary);
  });
  process.stdout.write(`${done}\n`);
}

export async function status(opts: DataOpts): Promise<void> {
  const data = dataDir(opts);
  const rt: Runtime = { data, state: requireState(data), secrets: requireSecrets(data), say };
  process.stdout.write(await statusReport(rt));
}

/** Runs a command; a LocalError becomes its message on stderr and its exit code. */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
      process.exitCode = 0;
    } catch (e) {
      if (!(e instanceof LocalError)) throw e;
      process.stderr.write(`archipel local: ${e.message}\n`);
      process.exitCode = e.exitCode;
    }
  };
}

export function registerLocalCommands(program: Command): void {
  const local = program.command('local').description('run a grid of storage nodes on this machine, from Grid/Site/NodePool/ReplicationPolicy YAML');
  const dataOpt = `data folder (default ${DEFAULT_DATA_DIR})`;
  local.command('up')
    .description('start every node of the grid (those not running), apply the layout, print the S3 endpoints and credentials')
    .option('-f, --file <file>', `custom resources, multi-document YAML (default: the file of the last up, else ${DEFAULT_FILE})`)
    .option('--data <dir>', dataOpt)
    .option('--ports <mode>', `fixed: the Grid's ports (s3, admin, rpc) on each node's own 127.0.0.x; auto: free ports (default: as last time, else $${PORTS_ENV}, else fixed)`)
    .option('--grid <name>', 'the Grid to run when the file holds several')
    .action(run((o: UpOpts) => up(o)));
  local.command('down').description('stop every node (SIGTERM, then SIGKILL after 15 s); data stays').option('--data <dir>', dataOpt)
    .action(run((o: DataOpts) => down(o)));
  local.command('status').description('sites, nodes, processes, readiness, layout versions, capacity used, owed copies').option('--data <dir>', dataOpt)
    .action(run((o: DataOpts) => status(o)));
  local.command('env').description('print export lines for AWS_ENDPOINT_URL and credentials: eval "$(archipel local env)"').option('--data <dir>', dataOpt)
    .action(run((o: DataOpts) => env(o)));
  local.command('scale')
    .description('set the number of nodes of a NodePool: start new nodes and wait while they take their share of the data, '
      + 'or drain the nodes beyond N, wait until they hold nothing, then stop and remove them')
    .argument('<pool>', 'a NodePool of the grid')
    .option('--replicas <n>', 'the number of nodes wanted (1-9; kept for later `up`s instead of the file\'s spec.replicas)')
    .option('--data <dir>', dataOpt)
    .option('--timeout <seconds>', `how long to wait for the data to move (default ${DEFAULT_SCALE_TIMEOUT_S})`)
    .action(run((pool: string, o: ScaleOpts) => scale(pool, o)));
  local.command('stop-site').description('SIGKILL every node of a site (a datacenter outage)').argument('<site>').option('--data <dir>', dataOpt)
    .action(run((site: string, o: DataOpts) => stopSite(site, o)));
  local.command('start-site').description('start the nodes of a site again on the same addresses and data').argument('<site>').option('--data <dir>', dataOpt)
    .action(run((site: string, o: DataOpts) => startSite(site, o)));
}
