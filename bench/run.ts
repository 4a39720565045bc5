import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, cleanupAllNodes, waitFor, StartedNode } from '../test/helpers/node-process';
import { SignedS3Client, BenchClient, PayloadMode } from './signed-client';
import { SdkS3Client } from './sdk-client';
import { Budget, Op, Target, Totals, addTotals, emptyTotals, figures, runRound } from './load';
import { GridRow, Row, checkGoals, checkGridGoals, checkRebalanceGoals, formatGoals, formatGridTable, formatRebalance, formatTable, SIZE_LABELS } from './report';
import { RebalanceResult, rebalancePhase } from './rebalance';
import { GRID_FILE, LocalGrid, SpreadClient, gridDataDir, gridLogsTail, killGridNow, startLocalGrid, stopLocalGrid } from './grid';

/**
 * `npm run bench [-- options]`: one storage node and the bare reference server, the same load on
 * both in alternating rounds, figures and ratios printed, goals checked, JSON summary written.
 * Then the three-site local grid (examples/three-sites.yaml, started with the compiled CLI) against
 * the same single node: PUT and GET of 4 KiB and 1 MiB, load spread over the primary sites' gateways.
 * Then the rebalance phase (bench/rebalance.ts): a one-node-per-site grid scaled out to two nodes per
 * site under a PUT/GET load; MiB/s moved, and the load's throughput against the same load without a move.
 *
 *   --quick            smoke run in seconds (checks the bench works, figures mean little)
 *   --sizes 4k,1m,64m  object sizes to run
 *   --round-ms N       length of one round (default 1500; the 64 MiB rounds are bounded by count)
 *   --rounds N         rounds per server and phase (default 4, order node,bare,bare,node,...)
 *   --concurrency N    requests in flight (default 16)
 *   --no-sdk           skip the @aws-sdk/client-s3 pass
 *   --no-sha256        skip the PUT pass with a signed payload hash
 *   --no-grid          skip the three-site grid phase
 *   --no-rebalance     skip the rebalance phase (also BENCH_REBALANCE=0)
 *   --only LIST        run only these phases, comma-separated: node (single node vs bare), grid, rebalance
 *   --rebalance-objects N    1 MiB objects preloaded before the scale-out (default 300; --quick 40)
 *   --rebalance-ms N         length of the load without a move, before and after it (default 20000; --quick 3000)
 *   --rebalance-clients N    PUT clients, and as many GET clients, of the rebalance load (default 2)
 *   --out FILE         where to write the JSON summary (default: a new file under the temp dir)
 */

interface Options {
  quick: boolean;
  sizes: string[];
  roundMs: number;
  rounds: number;
  concurrency: number;
  sdk: boolean;
  sha256: boolean;
  grid: boolean;
  /** The single node against the bare server (the first phases). */
  node: boolean;
  rebalance: boolean;
  rebalanceObjects: number;
  rebalanceMs: number;
  rebalanceClients: number;
  out?: string;
}

const PHASES = ['node', 'grid', 'rebalance'] as const;
/** Long enough for the default data set on a slow machine; the phase fails after it. */
const REBALANCE_TIMEOUT_S = 600;

const SIZE_BYTES: Record<string, number> = { '4k': 4096, '1m': 1024 * 1024, '64m': 64 * 1024 * 1024 };
const BIG = '64m';
/** Per round, so that each 64 MiB phase moves at most rounds x this x 64 MiB (2 GiB by default). */
const BIG_OPS_PER_ROUND = 16;
const MAX_OPS_PER_ROUND = 200_000;
const BIG_ROUND_MAX_MS = 60_000;
/** The grid phase: sizes (of those asked for) and operations, issue 3. */
const GRID_SIZES = ['4k', '1m'];
const GRID_OPS: Op[] = ['PUT', 'GET'];

function parseArgs(argv: string[]): Options {
  const env = process.env;
  const o: Options = {
    quick: env.BENCH_QUICK === '1',
    sizes: (env.BENCH_SIZES ?? '4k,1m,64m').split(','),
    roundMs: Number(env.BENCH_ROUND_MS ?? 1500),
    rounds: Number(env.BENCH_ROUNDS ?? 4),
    concurrency: 16,
    sdk: true,
    sha256: true,
    grid: env.BENCH_GRID !== '0',
    node: true,
    rebalance: env.BENCH_REBALANCE !== '0',
    rebalanceObjects: Number(env.BENCH_REBALANCE_OBJECTS ?? 300),
    rebalanceMs: Number(env.BENCH_REBALANCE_MS ?? 20_000),
    rebalanceClients: 2,
  };
  let explicitRoundMs = false;
  let explicitRounds = false;
  let explicitObjects = env.BENCH_REBALANCE_OBJECTS !== undefined;
  let explicitRebalanceMs = env.BENCH_REBALANCE_MS !== undefined;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--sizes') o.sizes = next().split(',');
    else if (a === '--round-ms') (o.roundMs = Number(next())), (explicitRoundMs = true);
    else if (a === '--rounds') (o.rounds = Number(next())), (explicitRounds = true);
    else if (a === '--concurrency') o.concurrency = Number(next());
    else if (a === '--no-sdk') o.sdk = false;
    else if (a === '--no-sha256') o.sha256 = false;
    else if (a === '--no-grid') o.grid = false;
    else if (a === '--no-rebalance') o.rebalance = false;
    else if (a === '--only') only = next().split(',');
    else if (a === '--rebalance-objects') (o.rebalanceObjects = Number(next())), (explicitObjects = true);
    else if (a === '--rebalance-ms') (o.rebalanceMs = Number(next())), (explicitRebalanceMs = true);
    else if (a === '--rebalance-clients') o.rebalanceClients = Number(next());
    else if (a === '--out') o.out = path.resolve(next());
    else throw new Error(`unknown option ${a} (see bench/run.ts)`);
  }
  if (o.quick) {
    if (!explicitRoundMs) o.roundMs = 250;
    if (!explicitRounds) o.rounds = 1;
    if (!explicitObjects) o.rebalanceObjects = 40;
    if (!explicitRebalanceMs) o.rebalanceMs = 3000;
  }
  if (only) {
    const bad = only.filter((p) => !(PHASES as readonly string[]).includes(p));
    if (bad.length > 0) throw new Error(`--only: unknown phase ${bad.join(',')} (use ${PHASES.join(', ')})`);
    o.node = only.includes('node');
    o.grid = only.includes('grid');
    o.rebalance = only.includes('rebalance');
  }
  if (!(Number.isInteger(o.rebalanceObjects) && o.rebalanceObjects >= 1 && o.rebalanceObjects <= 100_000)) throw new Error('--rebalance-objects: 1..100000');
  if (!(o.rebalanceMs >= 500 && o.rebalanceMs <= 600_000)) throw new Error('--rebalance-ms: 500..600000');
  if (!(Number.isInteger(o.rebalanceClients) && o.rebalanceClients >= 1 && o.rebalanceClients <= 64)) throw new Error('--rebalance-clients: 1..64');
  for (const s of o.sizes) if (!(s in SIZE_BYTES)) throw new Error(`unknown size ${s}: use 4k, 1m, 64m`);
  if (!(o.roundMs >= 50 && o.roundMs <= 60_000)) throw new Error('--round-ms: 50..60000');
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 20)) throw new Error('--rounds: 1..20');
  if (!(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 256)) throw new Error('--concurrency: 1..256');
  return o;
}

interface BareProcess {
  port: number;
  pid: number;
  dir: string;
  child: ChildProcess;
}

async function startBare(): Promise<BareProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-bench-bare-'));
  const child = spawn(process.execPath, [path.join(__dirname, 'bare-server.js'), '--dir', dir, '--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const info = await waitFor('the bare server to listen', async () => {
    if (child.exitCode !== null) throw new Error(`bare server exited with ${child.exitCode}`);
    const nl = out.indexOf('\n');
    return nl >= 0 ? (JSON.parse(out.slice(0, nl)) as { port: number; pid: number }) : undefined;
  }, 10_000);
  return { port: info.port, pid: info.pid, dir, child };
}

function bodyFor(size: string): Buffer {
  return crypto.randomBytes(SIZE_BYTES[size]);
}

/** The same phase on both servers, alternating rounds node,bare,bare,node,... so slow drift (disk, page cache, thermal) cancels. */
async function phase(targets: [Target, Target], op: Op, bucket: string, body: Buffer, o: Options, rounds: number, budget: (i: number) => Budget): Promise<[Totals, Totals]> {
  const sums: [Totals, Totals] = [emptyTotals(), emptyTotals()];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) addTotals(sums[i], await runRound(targets[i], op, bucket, body, budget(i), o.concurrency));
  }
  return sums;
}

async function runClientPass(kind: Row['client'], targets: [Target, Target], o: Options, ops: Op[], rounds: number, log: (s: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of o.sizes) {
    const body = bodyFor(size);
    const bucket = `bench-${kind}-${size}`; // one bucket per pass and size: LIST sees only its own objects
    for (const t of targets) await t.client.createBucket(bucket);
    for (const op of ops) {
      const big = size === BIG;
      const maxMs = big ? BIG_ROUND_MAX_MS : o.roundMs;
      const maxOps = big ? (o.quick ? 2 : BIG_OPS_PER_ROUND) : MAX_OPS_PER_ROUND;
      // DELETE: spread the deletion of what each server holds evenly over the rounds.
      const deletePerRound = targets.map((t) => {
        const st = t.state.get(bucket);
        return Math.ceil((st ? st.written.length - st.deleted : 0) / rounds);
      });
      const budget = (i: number): Budget => ({ maxMs, maxOps: op === 'DELETE' ? Math.min(maxOps, deletePerRound[i]) : maxOps });
      const [n, b] = await phase(targets, op, bucket, body, o, rounds, budget);
      const row: Row = { client: kind, size, op, node: figures(n), bare: figures(b) };
      rows.push(row);
      const errs = row.node.errors + row.bare.errors ? `, errors node ${row.node.errors} bare ${row.bare.errors}` : '';
      log(`  ${kind} ${SIZE_LABELS[size]} ${op}: node ${row.node.opsPerSec.toFixed(1)} ops/s, bare ${row.bare.opsPerSec.toFixed(1)} ops/s${errs}`);
    }
  }
  return rows;
}

async function warmUp(targets: Target[], o: Options): Promise<void> {
  const body = bodyFor('4k');
  for (const t of targets) {
    await t.client.createBucket('bench-warmup');
    for (const op of ['PUT', 'GET', 'LIST'] as Op[]) await runRound(t, op, 'bench-warmup', body, { maxMs: o.quick ? 150 : 500, maxOps: 20_000 }, o.concurrency);
  }
}

/** PUT then GET per size, grid and single node interleaved like the other phases (grid,node,node,grid,...). */
async function runGridPass(kind: GridRow['client'], targets: [Target, Target], sizes: string[], o: Options, rounds: number, log: (s: string) => void): Promise<GridRow[]> {
  const rows: GridRow[] = [];
  for (const size of sizes) {
    const body = bodyFor(size);
    const bucket = `bench-grid-${kind}-${size}`;
    for (const t of targets) await t.client.createBucket(bucket);
    for (const op of GRID_OPS) {
      const [g, n] = await phase(targets, op, bucket, body, o, rounds, () => ({ maxMs: o.roundMs, maxOps: MAX_OPS_PER_ROUND }));
      const row: GridRow = { client: kind, size, op, grid: figures(g), node: figures(n) };
      rows.push(row);
      const errs = row.grid.errors + row.node.errors ? `, errors grid ${row.grid.errors} node ${row.node.errors}` : '';
      log(`  ${kind} ${SIZE_LABELS[size]} ${op}: grid ${row.grid.opsPerSec.toFixed(1)} ops/s, node ${row.node.opsPerSec.toFixed(1)} ops/s${errs}`);
    }
  }
  return rows;
}

interface GridResult {
  file: string;
  upMs?: number;
  nodes?: LocalGrid['nodes'];
  gateways?: LocalGrid['gateways'];
  rows: GridRow[];
  error?: string;
}

/**
 * The grid phase: `local up` in a temp folder, the load over the primary sites' gateways against the
 * single node in alternating rounds, `local down` and the folder removed whatever happens.
 */
async function gridPhase(node: StartedNode, o: Options, sizes: string[], log: (s: string) => void, tables: string[], track: (dir: string | undefined) => void): Promise<GridResult> {
  const result: GridResult = { file: GRID_FILE, rows: [] };
  const dir = gridDataDir();
  track(dir);
  try {
    log(`three-site grid: archipel local up -f ${path.relative(process.cwd(), GRID_FILE)} --ports auto (data in ${dir})`);
    const grid = await startLocalGrid(dir);
    Object.assign(result, { upMs: grid.upMs, nodes: grid.nodes, gateways: grid.gateways });
    log(`grid up in ${(grid.upMs / 1000).toFixed(1)} s: ${grid.nodes.length} nodes (pids ${grid.nodes.map((n) => n.pid).join(' ')}), load over ${grid.gateways.map((g) => `${g.id} ${g.url}`).join(', ')}`);
    const gridKeys = { region: grid.region, accessKeyId: grid.accessKeyId, secretAccessKey: grid.secretAccessKey };
    const nodeKeys = { region: node.region, accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey };
    type Keys = typeof gridKeys;
    const pair = (client: (endpoint: string, keys: Keys) => BenchClient): [Target, Target] => [
      { name: 'grid', pids: grid.nodes.map((n) => n.pid), client: new SpreadClient(grid.gateways.map((g) => client(g.url, gridKeys))), state: new Map() },
      { name: 'node', pids: [node.pid], client: client(node.s3Url, nodeKeys), state: new Map() },
    ];
    const signedPair = pair((endpoint, keys) => new SignedS3Client({ endpoint, ...keys, connections: o.concurrency, payload: 'unsigned' }));
    await warmUp([signedPair[0]], o);
    log('three-site grid, signed client, UNSIGNED-PAYLOAD:');
    const signedRows = await runGridPass('signed', signedPair, sizes, o, o.rounds, log);
    result.rows.push(...signedRows);
    tables.push(formatGridTable(`\nThree-site grid (3 copies, balanced ingest) vs single node, ${signedPair[0].client.name}, concurrency ${o.concurrency}; grid CPU summed over its ${grid.nodes.length} node processes`, signedRows));
    await Promise.all(signedPair.map((t) => t.client.close()));
    if (o.sdk) {
      const sdkPair = pair((endpoint, keys) => new SdkS3Client({ endpoint, ...keys }));
      log('three-site grid, @aws-sdk/client-s3:');
      const sdkRows = await runGridPass('sdk', sdkPair, sizes, o, Math.min(o.rounds, 2), log);
      result.rows.push(...sdkRows);
      tables.push(formatGridTable(`\nThree-site grid vs single node, @aws-sdk/client-s3 (defaults) over ${grid.gateways.length} gateways`, sdkRows));
      await Promise.all(sdkPair.map((t) => t.client.close()));
    }
  } catch (e) {
    result.error = (e as Error).message;
    process.stderr.write(`grid phase failed: ${(e as Error).stack}\n--- grid node logs (tail) ---\n${gridLogsTail(dir)}\n`);
    process.exitCode = 1;
  } finally {
    log('three-site grid: archipel local down');
    await stopLocalGrid(dir, log);
    track(undefined);
  }
  return result;
}

function makeTargets(node: StartedNode, bare: BareProcess, client: (endpoint: string) => BenchClient): [Target, Target] {
  return [
    { name: 'node', pids: [node.pid], client: client(node.s3Url), state: new Map() },
    { name: 'bare', pids: [bare.pid], client: client(`http://127.0.0.1:${bare.port}`), state: new Map() },
  ];
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const loadAtStart = os.loadavg();
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  const gridSizes = GRID_SIZES.filter((s) => o.sizes.includes(s));
  const runGrid = o.grid && gridSizes.length > 0;
  // The single node runs for its own phases and as the grid phase's reference; the rebalance phase needs neither.
  const needNode = o.node || runGrid;
  const phases = [o.node ? 'node' : '', runGrid ? 'grid' : '', o.rebalance ? 'rebalance' : ''].filter((p) => p !== '');
  log(`archipel bench: phases ${phases.join(', ') || 'none'}; sizes ${o.sizes.join(',')}, concurrency ${o.concurrency}, ${o.rounds} round(s) of ${o.roundMs} ms per server and phase${o.quick ? ' (quick: figures are indicative only)' : ''}`);
  log(`machine: ${os.cpus().length} CPU(s) ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${os.platform()} ${os.release()}, load average ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}`);

  // The node as a user would run it, with fsync on; the scrubber is off so that it does not compete for the disk during a run.
  const node = needNode ? await startNode({ configOverrides: { scrub: { enabled: false }, storage: { fsync: true } } }) : undefined;
  const bare = o.node ? await startBare() : undefined;
  let gridDir: string | undefined; // set while a grid runs, so that every way out takes it down
  const cleanup = async (): Promise<void> => {
    if (gridDir) await stopLocalGrid(gridDir, log);
    bare?.child.kill('SIGTERM');
    await cleanupAllNodes();
    if (bare) fs.rmSync(bare.dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));
  // If the bench dies some other way (broken pipe, uncaught error), the bare server and its files go too.
  process.once('exit', () => {
    if (gridDir) {
      killGridNow(gridDir);
      fs.rmSync(gridDir, { recursive: true, force: true });
    }
    if (bare) {
      bare.child.kill('SIGKILL');
      fs.rmSync(bare.dir, { recursive: true, force: true });
    }
  });
  const rows: Row[] = [];
  const tables: string[] = [];
  let transport: string | undefined;
  try {
    if (node && bare) {
      const keys = { region: node.region, accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey };
      const signed = (payload: PayloadMode) => (endpoint: string) => new SignedS3Client({ endpoint, ...keys, connections: o.concurrency, payload });
      const main = makeTargets(node, bare, signed('unsigned'));
      transport = (main[0].client as SignedS3Client).transportName;
      log(`node pid ${node.pid} (${node.s3Url}), bare server pid ${bare.pid} (port ${bare.port}); low-overhead client transport: ${transport}`);
      await warmUp(main, o);
      log('signed client, UNSIGNED-PAYLOAD:');
      const signedRows = await runClientPass('signed', main, o, ['PUT', 'GET', 'LIST', 'DELETE'], o.rounds, log);
      rows.push(...signedRows);
      tables.push(formatTable(`\nLow-overhead signed client (${main[0].client.name}), concurrency ${o.concurrency}`, signedRows));
      await Promise.all(main.map((t) => t.client.close()));

      if (o.sha256) {
        const shaTargets = makeTargets(node, bare, signed('sha256'));
        log('signed client, sha256 payload:');
        const shaRows = await runClientPass('signed-sha256', shaTargets, o, ['PUT', 'DELETE'], Math.min(o.rounds, 2), log);
        rows.push(...shaRows);
        tables.push(formatTable(`\nSigned client with x-amz-content-sha256 = body hash (PUT verified by the node)`, shaRows));
        await Promise.all(shaTargets.map((t) => t.client.close()));
      }

      if (o.sdk) {
        const sdkTargets = makeTargets(node, bare, (endpoint) => new SdkS3Client({ endpoint, ...keys }));
        log('@aws-sdk/client-s3:');
        const sdkRows = await runClientPass('sdk', sdkTargets, o, ['PUT', 'GET', 'LIST', 'DELETE'], Math.min(o.rounds, 2), log);
        rows.push(...sdkRows);
        tables.push(formatTable(`\n@aws-sdk/client-s3, default settings (what applications get; bare stores the aws-chunked body as is)`, sdkRows));
        await Promise.all(sdkTargets.map((t) => t.client.close()));
      }
    }

    const grid = runGrid && node ? await gridPhase(node, o, gridSizes, log, tables, (d) => (gridDir = d)) : undefined;

    let rebalance: RebalanceResult | undefined;
    if (o.rebalance) {
      rebalance = await rebalancePhase({ objects: o.rebalanceObjects, baselineMs: o.rebalanceMs, clients: o.rebalanceClients, scaleTimeoutS: REBALANCE_TIMEOUT_S }, log, (d) => (gridDir = d));
      tables.push(formatRebalance(rebalance));
    }

    const goals = o.node ? checkGoals(rows) : [];
    const gridGoals = grid ? checkGridGoals(grid.rows) : [];
    if (grid?.error) gridGoals.push({ goal: 'grid phase completed', value: undefined, limit: 0, pass: false, detail: grid.error.split('\n')[0] });
    const rebalanceGoals = rebalance ? checkRebalanceGoals(rebalance) : [];
    for (const t of tables) log(t);
    log('');
    if (o.node) log(formatGoals(goals));
    if (grid) log(formatGoals(gridGoals, 'Goals (issue 3, three-site grid):'));
    if (rebalance) log(formatGoals(rebalanceGoals, 'Checks (issue 5, rebalance):'));
    const out = o.out ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-bench-')), 'results.json');
    const summary = {
      at: new Date().toISOString(),
      durationMs: Date.now() - t0,
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, kernel: os.release(), loadAverageAtStart: loadAtStart },
      options: o,
      transport,
      rows,
      goals,
      grid: grid ? { ...grid, goals: gridGoals } : undefined,
      rebalance: rebalance ? { ...rebalance, goals: rebalanceGoals } : undefined,
    };
    fs.writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
    log(`\nJSON summary: ${out}`);
    log(`bench took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } catch (e) {
    process.stderr.write(`bench failed: ${(e as Error).stack}\n${node ? `--- node output (tail) ---\n${node.logs().slice(-8000)}\n` : ''}`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
