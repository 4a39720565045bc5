import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNode, cleanupAllNodes, waitFor, StartedNode } from '../test/helpers/node-process';
import { SignedS3Client, BenchClient, PayloadMode } from './signed-client';
import { SdkS3Client } from './sdk-client';
import { Budget, Op, Target, Totals, addTotals, emptyTotals, figures, runRound } from './load';
import { Row, checkGoals, formatGoals, formatTable, SIZE_LABELS } from './report';

/**
 * `npm run bench [-- options]`: one storage node and the bare reference server, the same load on
 * both in alternating rounds, figures and ratios printed, goals checked, JSON summary written.
 *
 *   --quick            smoke run in seconds (checks the bench works, figures mean little)
 *   --sizes 4k,1m,64m  object sizes to run
 *   --round-ms N       length of one round (default 1500; the 64 MiB rounds are bounded by count)
 *   --rounds N         rounds per server and phase (default 4, order node,bare,bare,node,...)
 *   --concurrency N    requests in flight (default 16)
 *   --no-sdk           skip the @aws-sdk/client-s3 pass
 *   --no-sha256        skip the PUT pass with a signed payload hash
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
  out?: string;
}

const SIZE_BYTES: Record<string, number> = { '4k': 4096, '1m': 1024 * 1024, '64m': 64 * 1024 * 1024 };
const BIG = '64m';
/** Per round, so that each 64 MiB phase moves at most rounds x this x 64 MiB (2 GiB by default). */
const BIG_OPS_PER_ROUND = 16;
const MAX_OPS_PER_ROUND = 200_000;
const BIG_ROUND_MAX_MS = 60_000;

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
  };
  let explicitRoundMs = false;
  let explicitRounds = false;
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
    else if (a === '--out') o.out = path.resolve(next());
    else throw new Error(`unknown option ${a} (see bench/run.ts)`);
  }
  if (o.quick) {
    if (!explicitRoundMs) o.roundMs = 250;
    if (!explicitRounds) o.rounds = 1;
  }
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

function makeTargets(node: StartedNode, bare: BareProcess, client: (endpoint: string) => BenchClient): [Target, Target] {
  return [
    { name: 'node', pid: node.pid, client: client(node.s3Url), state: new Map() },
    { name: 'bare', pid: bare.pid, client: client(`http://127.0.0.1:${bare.port}`), state: new Map() },
  ];
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  log(`archipel bench: sizes ${o.sizes.join(',')}, concurrency ${o.concurrency}, ${o.rounds} round(s) of ${o.roundMs} ms per server and phase${o.quick ? ' (quick: figures are indicative only)' : ''}`);
  log(`machine: ${os.cpus().length} CPU(s) ${os.cpus()[0]?.model ?? ''}, Node ${process.version}, ${os.platform()} ${os.release()}`);

  // The node as a user would run it, with fsync on; the scrubber is off so that it does not compete for the disk during a run.
  const node = await startNode({ configOverrides: { scrub: { enabled: false }, storage: { fsync: true } } });
  const bare = await startBare();
  const cleanup = async (): Promise<void> => {
    bare.child.kill('SIGTERM');
    await cleanupAllNodes();
    fs.rmSync(bare.dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  // If the bench dies some other way (broken pipe, uncaught error), the bare server and its files go too.
  process.once('exit', () => {
    bare.child.kill('SIGKILL');
    fs.rmSync(bare.dir, { recursive: true, force: true });
  });
  const rows: Row[] = [];
  const tables: string[] = [];
  try {
    const keys = { region: node.region, accessKeyId: node.accessKeyId, secretAccessKey: node.secretAccessKey };
    const signed = (payload: PayloadMode) => (endpoint: string) => new SignedS3Client({ endpoint, ...keys, connections: o.concurrency, payload });
    const main = makeTargets(node, bare, signed('unsigned'));
    const transport = (main[0].client as SignedS3Client).transportName;
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

    const goals = checkGoals(rows);
    for (const t of tables) log(t);
    log('');
    log(formatGoals(goals));
    const out = o.out ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-bench-')), 'results.json');
    const summary = {
      at: new Date().toISOString(),
      durationMs: Date.now() - t0,
      machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, kernel: os.release() },
      options: o,
      transport,
      rows,
      goals,
    };
    fs.writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
    log(`\nJSON summary: ${out}`);
    log(`bench took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } catch (e) {
    process.stderr.write(`bench failed: ${(e as Error).stack}\n--- node output (tail) ---\n${node.logs().slice(-8000)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exit(1);
});
