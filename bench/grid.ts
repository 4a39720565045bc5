import { ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSecrets, readState } from '../cli/local/state';
import type { BenchClient } from './signed-client';

/**
 * The three-site local grid for the benchmark, run the way a user runs it: the compiled CLI's
 * `archipel local up -f examples/three-sites.yaml --ports auto` in a temporary data folder, endpoints
 * and credentials read from the files `up` leaves there (`local-grid.json`, `secrets.json`), and
 * `archipel local down` plus removal of the folder at the end.
 *
 * The scrubber cannot be turned off here: `up` writes each node's configuration anew at every start
 * (cli/local/node-config.ts has no scrub setting). Its first pass runs at start, on empty nodes, and
 * the next one a day later (scrub.intervalSeconds), so it does not read during a run.
 */

const CLI_TIMEOUT_MS = 90_000; // `up` waits at most 30 s per node start and 15 s for the layout
const BUCKET_VISIBLE_TIMEOUT_MS = 10_000;

export interface GridGateway {
  id: string;
  site: string;
  url: string;
}

export interface LocalGrid {
  dir: string;
  file: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Every node of the primary sites (each is a gateway for the whole namespace). */
  gateways: GridGateway[];
  /** Every node process of the grid, all sites: their CPU is summed. */
  nodes: { id: string; site: string; pid: number }[];
  /** `local up` wall time. */
  upMs: number;
}

/** The compiled CLI beside this compiled file (dist/cli/archipel.js when run from dist/bench/). */
const cliPath = (): string => path.join(__dirname, '..', 'cli', 'archipel.js');

/** The repository: the nearest folder above this file with a package.json (dist/ and other build folders have none). */
function repoRoot(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return process.cwd();
  }
}

export const GRID_FILE = path.join(repoRoot(), 'examples', 'three-sites.yaml');
/** The rebalance phase's grid: the same three sites with one node each (bench/rebalance-grid.yaml). */
export const REBALANCE_GRID_FILE = path.join(repoRoot(), 'bench', 'rebalance-grid.yaml');

/** CLI commands in progress, so that a bench that dies in the middle of `local up` stops it too. */
const running = new Set<ChildProcess>();

function runCli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [cliPath(), ...args], { timeout: CLI_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      running.delete(child);
      if (err) reject(new Error(`archipel ${args.join(' ')}: ${err.message}\n${stderr.slice(-4000)}`));
      else resolve({ stdout, stderr });
    });
    running.add(child);
  });
}

/** A CLI command that runs for long (`local scale`): its stderr lines as they come, its exit code and output at the end. */
export interface CliRun {
  pid: number;
  /** Resolves when it exits: the exit code (null when killed), stdout and the whole of stderr. */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** SIGTERM if it still runs. */
  kill: () => void;
}

export function spawnCli(args: string[], onStderrLine: (line: string) => void): CliRun {
  const child = spawn(process.execPath, [cliPath(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    partial += c.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onStderrLine(l);
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      running.delete(child);
      if (partial) onStderrLine(partial);
      resolve({ code, stdout, stderr });
    });
    child.on('error', (e) => {
      running.delete(child);
      resolve({ code: null, stdout, stderr: `${stderr}${e.message}` });
    });
  });
  return { pid: child.pid ?? 0, done, kill: () => void (child.exitCode === null && child.signalCode === null && child.kill('SIGTERM')) };
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Creates the data folder; `startLocalGrid` then runs `local up` in it. Separate so that cleanup knows the folder even if `up` fails. */
export function gridDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-bench-grid-'));
}

export async function startLocalGrid(dir: string, file = GRID_FILE): Promise<LocalGrid> {
  const t0 = Date.now();
  await runCli(['local', 'up', '-f', file, '--data', dir, '--ports', 'auto']);
  const upMs = Date.now() - t0;
  const state = readState(dir);
  const secrets = readSecrets(dir);
  if (!state || !secrets) throw new Error(`local up left no state or secrets in ${dir}`);
  const primary = new Set(state.sites.filter((s) => s.role === 'primary').map((s) => s.name));
  const nodes = state.nodes.map((n) => ({ id: n.id, site: n.site, pid: n.pid ?? 0 }));
  const dead = nodes.filter((n) => !isAlive(n.pid));
  if (dead.length > 0) throw new Error(`grid nodes not running after up: ${dead.map((n) => n.id).join(', ')}`);
  const gateways = state.nodes
    .filter((n) => primary.has(n.site))
    .sort((a, b) => a.site.localeCompare(b.site) || a.slot - b.slot)
    .map((n) => ({ id: n.id, site: n.site, url: `http://${n.host}:${n.s3Port}` }));
  if (gateways.length === 0) throw new Error(`grid ${state.grid} has no node in a primary site`);
  return { dir, file, region: state.region, accessKeyId: secrets.accessKeyId, secretAccessKey: secrets.secretAccessKey, gateways, nodes, upMs };
}

/** `local down` (SIGTERM, then SIGKILL) when a grid was started there, then the folder goes; never throws. */
export async function stopLocalGrid(dir: string, say: (s: string) => void): Promise<void> {
  try {
    if (fs.existsSync(path.join(dir, 'local-grid.json'))) await runCli(['local', 'down', '--data', dir]);
  } catch (e) {
    say(`local down failed: ${(e as Error).message}`);
    killGridNow(dir);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * Last resort when the bench exits without its cleanup (synchronous, for an 'exit' handler): stops a
 * CLI command in progress, then SIGKILLs every process whose command line is `archipel node --config
 * <a config in this folder>`. The folder is a fresh temporary one, so only this bench's nodes match,
 * including any that `up` started but had not yet recorded in the state file.
 */
export function killGridNow(dir: string): void {
  for (const c of running) c.kill('SIGKILL');
  const prefix = `${path.resolve(dir)}${path.sep}`;
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return; // no /proc: nothing more can be found
  }
  for (const pid of pids) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const i = argv.indexOf('--config');
      if (argv.includes('node') && i >= 0 && argv[i + 1]?.startsWith(prefix)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** Node output for a failure report: the last lines of each node's log. */
export function gridLogsTail(dir: string, bytesPerNode = 2000): string {
  const out: string[] = [];
  for (const id of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const log = path.join(dir, id, 'node.log');
    if (!fs.existsSync(log)) continue;
    const text = fs.readFileSync(log, 'utf8');
    out.push(`--- ${id} ---\n${text.slice(-bytesPerNode)}`);
  }
  return out.join('\n');
}

/**
 * One benchmark client over several gateways: each request goes to the next gateway in turn, so the
 * load spreads evenly whatever the request mix. Buckets are created through the first gateway and
 * waited for on every other one (the grid's metadata is at a quorum, the answer must not depend on
 * the gateway).
 */
export class SpreadClient implements BenchClient {
  readonly name: string;
  private next = 0;

  constructor(private readonly clients: BenchClient[]) {
    if (clients.length === 0) throw new Error('SpreadClient needs at least one client');
    this.name = `${clients[0].name} over ${clients.length} gateways`;
  }

  private pick(): BenchClient {
    const c = this.clients[this.next];
    this.next = (this.next + 1) % this.clients.length;
    return c;
  }

  async createBucket(bucket: string): Promise<void> {
    await this.clients[0].createBucket(bucket);
    const deadline = Date.now() + BUCKET_VISIBLE_TIMEOUT_MS;
    for (const c of this.clients.slice(1)) {
      for (;;) {
        try {
          await c.list(bucket, '', 1);
          break;
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`bucket ${bucket} not visible on every gateway after ${BUCKET_VISIBLE_TIMEOUT_MS} ms: ${(e as Error).message}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  }

  put(bucket: string, key: string, body: Buffer): Promise<void> {
    return this.pick().put(bucket, key, body);
  }

  get(bucket: string, key: string): Promise<number> {
    return this.pick().get(bucket, key);
  }

  list(bucket: string, prefix: string, maxKeys: number): Promise<number> {
    return this.pick().list(bucket, prefix, maxKeys);
  }

  del(bucket: string, key: string): Promise<void> {
    return this.pick().del(bucket, key);
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
