import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { RebalanceStatus } from '../storage-node/src/admin/api-types';
import { AdminClient } from '../cli/local/admin-client';
import { readSecrets, readState, type LocalState } from '../cli/local/state';
import { readCpuMs } from '../test/helpers/proc';
import { Figures, Totals, emptyTotals, figures } from './load';
import { SignedS3Client } from './signed-client';
import { CliRun, REBALANCE_GRID_FILE, SpreadClient, gridDataDir, gridLogsTail, isAlive, spawnCli, startLocalGrid, stopLocalGrid } from './grid';

/**
 * The rebalance phase (issue 5): how fast a scale-out moves data, and what it costs the clients.
 *
 *  1. `archipel local up -f bench/rebalance-grid.yaml --ports auto` in a temporary folder: three sites
 *     (dc1, dc2 primary, dc3 fallback), one node each, one copy per site, `balanced` ingest.
 *  2. Preload: N objects of 1 MiB through the primary sites' gateways.
 *  3. Baseline: a closed-loop load of 1 MiB objects (C clients doing PUTs of new keys, C clients doing
 *     GETs of preloaded keys, signed client, round-robin over the same gateways) for a fixed time, no move.
 *  4. Move: the same load again, and `archipel local scale <pool> --replicas 2` for every site's pool.
 *     The CLI holds the data folder's lock while it starts the new node and applies the layout, so the
 *     three commands are started one after the other, each once the previous one has applied its
 *     layout (a few seconds); their waits, and the three moves, overlap. The window runs from the
 *     first `scale` start until every node reports, under the last layout, phase idle and no open
 *     version (copied, retired, cleaned up), polled every 250 ms on GET /v1/status.
 *  5. After: the same load for the baseline's length on the grid of six nodes, no move, so that the
 *     cost of the move can be told from the cost of twice as many node processes on the same cores.
 *
 * Bytes moved are counted on disk: the copies that the old node of a site held when the first `scale`
 * started and that its new node holds at the end (blob files, so a few bytes of framing per MiB
 * chunk are included). Writes made during the move go to old and new owners directly and are not
 * counted; copies written between the first `scale` start and its layout (about a second) are moved
 * but not counted either, so the figure errs low. The nodes' own counters (`rebalance.bytesMoved`,
 * highest value seen per node and layout version, summed) are reported next to it.
 */

export interface RebalanceOptions {
  /** Objects of 1 MiB written before the baseline. */
  objects: number;
  /** Length of the baseline load (no move). */
  baselineMs: number;
  /** PUT clients, and as many GET clients. */
  clients: number;
  /** How long `scale` (and this phase) waits for the move. */
  scaleTimeoutS: number;
}

export const OBJECT_BYTES = 1024 * 1024;
const BUCKET = 'bench-rebalance';
const POLL_MS = 250;
const PRELOAD_CONCURRENCY = 8;
const LOCK_RETRIES = 50;
const LOCK_RETRY_MS = 200;
const CLI_EXIT_WAIT_MS = 15_000;

export interface LoadWindow {
  put: Figures;
  get: Figures;
  elapsedMs: number;
  /** CPU of every node process of the grid over the window (nodes started in it: from their start), in cores. */
  gridCpuCores: number;
  /** The whole machine over the window (/proc/stat): share of all CPUs busy, and share waiting for I/O. */
  machineBusy: number;
  machineIowait: number;
  /** This process (the load's clients and the status poller), in cores. */
  benchCpuCores: number;
}

/** /proc/stat's first line: jiffies busy, idle and iowait, all CPUs together. */
function machineTicks(): { busy: number; idle: number; iowait: number } {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return { busy: user + nice + system + irq + softirq + steal, idle, iowait };
  } catch {
    return { busy: NaN, idle: NaN, iowait: NaN };
  }
}

export interface SiteMove {
  site: string;
  oldNode: string;
  newNode: string;
  /** Copies the old node held at the first `scale` start. */
  before: { blobs: number; bytes: number };
  /** Of those, held by the new node at the end. */
  moved: { blobs: number; bytes: number };
  /** Of those, no longer held by the old node at the end. */
  released: { blobs: number; bytes: number };
  /** Of those, held by both at the end (a clean-up not finished), and by neither (lost). */
  onBoth: number;
  onNeither: number;
}

export interface RebalanceResult {
  file: string;
  objects: number;
  objectBytes: number;
  clientsPerOp: number;
  gateways?: string[];
  preloadMs?: number;
  preloadErrors?: number;
  baseline?: LoadWindow;
  move?: LoadWindow;
  /** The same load again once the move is over (two nodes per site, no move): what the bigger grid alone costs. */
  after?: LoadWindow;
  /** move / baseline, and after / baseline. */
  ratios?: { putOpsPerSec: number; getOpsPerSec: number; putP99: number; getP99: number; afterPutOpsPerSec?: number; afterGetOpsPerSec?: number };
  scale?: {
    /** From the first `scale` start to every node idle under the last layout. */
    ms: number;
    commands: { pool: string; startMs: number; appliedMs: number; version: number; lockRetries: number; exitCode: number | null; summary: string }[];
    layoutVersions: number[];
    /** Some node in phase `copying`, first and last seen (ms from the first `scale` start). */
    copying?: { fromMs: number; toMs: number };
    sites: SiteMove[];
    movedBytes: number;
    releasedBytes: number;
    /** movedBytes over `ms`. */
    mibPerSec: number;
    /** movedBytes over the copy window. */
    copyMibPerSec?: number;
    /**
     * The nodes' own count of what their rebalancer copied: the increments of `rebalance.bytesMoved`
     * summed over the polls (the counter restarts at every layout version; what it gained between the
     * last poll and a restart is missed). Includes copies of objects the load wrote during the move
     * before their site's layout changed; excludes copies the repair worker made.
     */
    reportedBytesMoved: number;
    /** Bytes the nodes' repair workers copied during the move (`repair.bytesCopied` in /v1/status). */
    repairBytesCopied: number;
    /** Per node at the end: held and owned copies, as the node reports them. */
    finalNodes: { id: string; layoutVersion: number; phase: string; heldBlobs: number; ownedBlobs: number; openVersions: number[] }[];
    /** Phase changes seen by the poller: `+1.2 s dc1-pool-1 v3 copying`. */
    timeline: string[];
  };
  /** warn/error lines of the node logs over the whole phase, by node and message, with the first of each. */
  logWarnings: { node: string; level: string; message: string; count: number; first: string }[];
  errors: number;
  firstError?: string;
  error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuOf(pid: number): number | undefined {
  try {
    return readCpuMs(pid);
  } catch {
    return undefined; // gone
  }
}

function livePids(dir: string): number[] {
  return (readState(dir)?.nodes ?? []).flatMap((n) => (n.pid && isAlive(n.pid) ? [n.pid] : []));
}

/**
 * PUT clients (new keys under `prefix`) and GET clients (random preloaded keys), closed loop, until
 * `stop()`; requests in flight are waited for and counted. CPU is summed over the grid's node
 * processes as they are at the end (a node started meanwhile counts from its start).
 */
function startMix(client: SpreadClient, body: Buffer, readKeys: string[], prefix: string, perOp: number, dir: string): { stop: () => Promise<LoadWindow> } {
  const put = emptyTotals();
  const get = emptyTotals();
  let on = true;
  const cpu0 = new Map(livePids(dir).map((p) => [p, cpuOf(p) ?? 0]));
  const m0 = machineTicks();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async (op: 'PUT' | 'GET', w: number): Promise<void> => {
    const t = op === 'PUT' ? put : get;
    for (let i = 0; on; i++) {
      const key = op === 'PUT' ? `${prefix}/w${w}-${String(i).padStart(6, '0')}` : readKeys[Math.floor(Math.random() * readKeys.length)];
      const s = performance.now();
      try {
        if (op === 'PUT') {
          await client.put(BUCKET, key, body);
          t.bytes += body.length;
        } else {
          const n = await client.get(BUCKET, key);
          if (n !== body.length) throw new Error(`${n} bytes, expected ${body.length}`);
          t.bytes += n;
        }
      } catch (e) {
        t.errors++;
        t.firstError ??= `${op} ${key}: ${(e as Error).message}`;
      }
      t.ops++;
      t.latenciesMs.push(performance.now() - s);
    }
  };
  const all = Promise.all([
    ...Array.from({ length: perOp }, (_, w) => worker('PUT', w)),
    ...Array.from({ length: perOp }, (_, w) => worker('GET', w)),
  ]);
  return {
    async stop(): Promise<LoadWindow> {
      on = false;
      await all;
      const elapsedMs = performance.now() - t0;
      const m1 = machineTicks();
      const c = process.cpuUsage(c0);
      const total = m1.busy - m0.busy + (m1.idle - m0.idle) + (m1.iowait - m0.iowait);
      let cpu = 0;
      for (const pid of livePids(dir)) cpu += (cpuOf(pid) ?? 0) - (cpu0.get(pid) ?? 0);
      for (const t of [put, get]) {
        t.elapsedMs = elapsedMs;
        t.serverCpuMs = NaN; // the grid's CPU serves both kinds at once: reported as a whole, in cores
        t.clientCpuMs = NaN;
      }
      return {
        put: figures(put), get: figures(get), elapsedMs, gridCpuCores: cpu / elapsedMs,
        machineBusy: (m1.busy - m0.busy) / total, machineIowait: (m1.iowait - m0.iowait) / total, benchCpuCores: (c.user + c.system) / 1000 / elapsedMs,
      };
    },
  };
}

/** Blob copies on a node's disk: id → file size. */
function listBlobs(dir: string, nodeId: string): Map<string, number> {
  const root = path.join(dir, nodeId, 'data', 'blobs', 'blobs');
  const out = new Map<string, number>();
  if (!fs.existsSync(root)) return out;
  for (const d of fs.readdirSync(root)) {
    const sub = path.join(root, d);
    for (const f of fs.readdirSync(sub)) {
      if (!/^[0-9a-f]{32}$/.test(f)) continue;
      try {
        out.set(f, fs.statSync(path.join(sub, f)).size);
      } catch {
        // removed meanwhile
      }
    }
  }
  return out;
}

interface Sample {
  atMs: number;
  state: LocalState;
  nodes: { id: string; site: string; st?: RebalanceStatus; repairBytesCopied?: number; error?: string }[];
}

async function sample(dir: string, token: string, t0: number): Promise<Sample> {
  const state = readState(dir)!;
  const nodes = await Promise.all(state.nodes.map(async (n) => {
    if (!n.pid || !n.adminPort) return { id: n.id, site: n.site, error: 'not started' };
    try {
      const st = await new AdminClient(n.host, n.adminPort, token).status();
      return { id: n.id, site: n.site, st: st.rebalance, repairBytesCopied: (st.repair as { bytesCopied?: number } | undefined)?.bytesCopied };
    } catch (e) {
      return { id: n.id, site: n.site, error: (e as Error).message };
    }
  }));
  return { atMs: performance.now() - t0, state, nodes };
}

/** Every node of the state answers, serves under `version` or later, idle, with no older version open. */
function settled(s: Sample, version: number, nodeCount: number): boolean {
  return s.nodes.length === nodeCount && s.nodes.every((n) => n.st !== undefined && n.st.layoutVersion >= version && n.st.phase === 'idle' && n.st.openVersions.length === 0);
}

/** warn/error lines of each node's log (JSON lines), counted by message, the first of each kept. */
function logWarnings(dir: string): RebalanceResult['logWarnings'] {
  const out: RebalanceResult['logWarnings'] = [];
  for (const id of fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []) {
    const file = path.join(dir, id, 'node.log');
    if (!fs.existsSync(file)) continue;
    const groups = new Map<string, RebalanceResult['logWarnings'][number]>();
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!/"level":"(warn|error)"/.test(line)) continue;
      let level = '?';
      let message = line.slice(0, 200);
      try {
        const j = JSON.parse(line) as { level?: string; message?: string };
        level = j.level ?? level;
        message = j.message ?? message;
      } catch {
        // not JSON: the line is the message
      }
      const g = groups.get(`${level} ${message}`);
      if (g) g.count++;
      else groups.set(`${level} ${message}`, { node: id, level, message, count: 1, first: line });
    }
    out.push(...groups.values());
  }
  return out;
}

/**
 * Starts `archipel local scale POOL --replicas 2` and resolves once it has applied its layout (or
 * failed). A refusal because another command holds the data folder's lock is retried.
 */
async function launchScale(dir: string, pool: string, timeoutS: number, t0: number, log: (s: string) => void): Promise<{ run: CliRun; startMs: number; appliedMs: number; version: number; lockRetries: number }> {
  for (let attempt = 0; ; attempt++) {
    const startMs = performance.now() - t0;
    let applied: (v: number) => void = () => undefined;
    const appliedP = new Promise<number>((r) => (applied = r));
    const run = spawnCli(['local', 'scale', pool, '--replicas', '2', '--data', dir, '--timeout', String(timeoutS)], (line) => {
      const m = /^layout version (\d+) (applied|unchanged)/.exec(line);
      if (m) {
        log(`    +${((performance.now() - t0) / 1000).toFixed(1)} s ${pool}: ${line}`);
        applied(Number(m[1]));
      }
    });
    const first = await Promise.race([appliedP.then((version) => ({ version })), run.done.then((exit) => ({ exit }))]);
    if ('version' in first) return { run, startMs, appliedMs: performance.now() - t0, version: first.version, lockRetries: attempt };
    const { code, stderr } = first.exit;
    if (/another archipel local command is working on/.test(stderr) && attempt < LOCK_RETRIES) {
      await sleep(LOCK_RETRY_MS);
      continue;
    }
    throw new Error(`archipel local scale ${pool} --replicas 2 exited with ${code} before applying a layout:\n${stderr.slice(-3000)}`);
  }
}

function fmtMs(ms: number): string {
  return `+${(ms / 1000).toFixed(1)} s`;
}

/**
 * The whole phase; the grid is taken down and its folder removed whatever happens. `track` is told
 * the folder while a grid runs, so that the bench's exit handlers can take it down too.
 */
export async function rebalancePhase(o: RebalanceOptions, log: (s: string) => void, track: (dir: string | undefined) => void): Promise<RebalanceResult> {
  const result: RebalanceResult = { file: REBALANCE_GRID_FILE, objects: o.objects, objectBytes: OBJECT_BYTES, clientsPerOp: o.clients, logWarnings: [], errors: 0 };
  const dir = gridDataDir();
  track(dir);
  let client: SpreadClient | undefined;
  try {
    log(`rebalance: archipel local up -f ${path.relative(process.cwd(), REBALANCE_GRID_FILE)} --ports auto (data in ${dir})`);
    const grid = await startLocalGrid(dir, REBALANCE_GRID_FILE);
    const token = readSecrets(dir)!.adminToken;
    result.gateways = grid.gateways.map((g) => g.id);
    const keys = { region: grid.region, accessKeyId: grid.accessKeyId, secretAccessKey: grid.secretAccessKey };
    const connections = Math.max(PRELOAD_CONCURRENCY, 2 * o.clients);
    client = new SpreadClient(grid.gateways.map((g) => new SignedS3Client({ endpoint: g.url, ...keys, connections, payload: 'unsigned' })));
    log(`grid up in ${(grid.upMs / 1000).toFixed(1)} s: ${grid.nodes.map((n) => n.id).join(', ')}; load over ${grid.gateways.map((g) => g.id).join(', ')}`);
    await client.createBucket(BUCKET);
    const body = crypto.randomBytes(OBJECT_BYTES);

    // 2. Preload.
    const readKeys = Array.from({ length: o.objects }, (_, i) => `data/obj-${String(i).padStart(6, '0')}`);
    const tp = performance.now();
    let next = 0;
    let preloadErrors = 0;
    await Promise.all(Array.from({ length: PRELOAD_CONCURRENCY }, async () => {
      while (next < readKeys.length) {
        const key = readKeys[next++];
        try {
          await client!.put(BUCKET, key, body);
        } catch (e) {
          preloadErrors++;
          result.firstError ??= `preload PUT ${key}: ${(e as Error).message}`;
        }
      }
    }));
    result.preloadMs = performance.now() - tp;
    result.preloadErrors = preloadErrors;
    log(`  preload: ${o.objects} x 1 MiB in ${(result.preloadMs / 1000).toFixed(1)} s${preloadErrors ? `, ${preloadErrors} errors` : ''}`);
    if (preloadErrors > 0) throw new Error(`preload: ${preloadErrors} PUTs failed (${result.firstError})`);

    // 3. Baseline.
    const base = startMix(client, body, readKeys, 'load/base', o.clients, dir);
    await sleep(o.baselineMs);
    result.baseline = await base.stop();
    const b = result.baseline;
    log(`  baseline (no move, ${(b.elapsedMs / 1000).toFixed(1)} s): PUT ${b.put.opsPerSec.toFixed(1)} ops/s, GET ${b.get.opsPerSec.toFixed(1)} ops/s, grid CPU ${b.gridCpuCores.toFixed(2)} cores${b.put.errors + b.get.errors ? `, errors PUT ${b.put.errors} GET ${b.get.errors}` : ''}`);

    // 4. The move, under the same load.
    const start = readState(dir)!;
    const oldNodes = start.nodes.map((n) => ({ id: n.id, site: n.site }));
    const pools = [...new Set(start.nodes.map((n) => n.pool))].sort();
    const snapshot = new Map(oldNodes.map((n) => [n.id, listBlobs(dir, n.id)]));
    const t0 = performance.now();
    const mix = startMix(client, body, readKeys, 'load/move', o.clients, dir);
    let stopped: LoadWindow | undefined;
    const runs: (Awaited<ReturnType<typeof launchScale>> & { pool: string })[] = [];
    const movedCounter = new Map<string, { last: number; sum: number }>();
    const repairCounter = new Map<string, { first: number; last: number }>();
    const versions = new Set<number>();
    const lastPhase = new Map<string, string>();
    const timeline: string[] = [];
    let copying: { fromMs: number; toMs: number } | undefined;
    const observe = (s: Sample): void => {
      for (const n of s.nodes) {
        if (!n.st) continue;
        const r = n.st;
        if (r.layoutVersion > 0) versions.add(r.layoutVersion); // 0: a new node before its first layout
        const c = movedCounter.get(n.id) ?? { last: 0, sum: 0 };
        c.sum += r.bytesMoved >= c.last ? r.bytesMoved - c.last : r.bytesMoved; // restarted at a new version
        c.last = r.bytesMoved;
        movedCounter.set(n.id, c);
        if (n.repairBytesCopied !== undefined) {
          const rc = repairCounter.get(n.id) ?? { first: n.repairBytesCopied, last: n.repairBytesCopied };
          rc.last = n.repairBytesCopied;
          repairCounter.set(n.id, rc);
        }
        const ph = `v${r.layoutVersion} ${r.phase}${r.openVersions.length ? ` (open ${r.openVersions.join(',')})` : ''}`;
        if (lastPhase.get(n.id) !== ph) {
          lastPhase.set(n.id, ph);
          timeline.push(`${fmtMs(s.atMs)} ${n.id} ${ph}${r.phase === 'copying' || r.bytesMoved ? ` moved ${(r.bytesMoved / 1048576).toFixed(0)}/${(r.bytesToMove / 1048576).toFixed(0)} MiB` : ''}`);
        }
        if (r.phase === 'copying') copying = { fromMs: copying?.fromMs ?? s.atMs, toMs: s.atMs };
      }
    };
    // The poller runs from the first `scale` on, so that it sees the first copies.
    let polling = true;
    let lastSample: Sample | undefined;
    const poller = (async () => {
      while (polling) {
        try {
          lastSample = await sample(dir, token, t0);
          observe(lastSample);
        } catch (e) {
          timeline.push(`${fmtMs(performance.now() - t0)} poll failed: ${(e as Error).message}`);
        }
        await sleep(POLL_MS);
      }
    })();
    let end: Sample | undefined;
    let failedRun: { pool: string; code: number | null; stderr: string } | undefined;
    try {
      log(`  move: archipel local scale POOL --replicas 2 for ${pools.join(', ')} (one after the other once each applied its layout), under the same load`);
      for (const pool of pools) {
        const r = { pool, ...(await launchScale(dir, pool, o.scaleTimeoutS, t0, log)) };
        runs.push(r);
        void r.run.done.then((x) => {
          if (x.code !== 0) failedRun ??= { pool, ...x };
        });
      }
      const finalVersion = Math.max(...runs.map((r) => r.version));
      const nodeCount = readState(dir)!.nodes.length;
      const deadline = t0 + o.scaleTimeoutS * 1000;
      for (;;) {
        await sleep(POLL_MS / 2);
        const s = lastSample;
        if (s && settled(s, finalVersion, nodeCount)) {
          end = s;
          break;
        }
        if (failedRun) throw new Error(`archipel local scale ${failedRun.pool} failed (exit ${failedRun.code}):\n${failedRun.stderr.slice(-3000)}`);
        if (performance.now() > deadline) {
          throw new Error(`the move is not over after ${o.scaleTimeoutS} s: ${(s?.nodes ?? []).map((n) => `${n.id} ${n.st ? `v${n.st.layoutVersion} ${n.st.phase} open [${n.st.openVersions}]` : n.error}`).join('; ')}`);
        }
      }
    } finally {
      stopped = await mix.stop();
      polling = false;
      await poller;
      if (!end) for (const r of runs) r.run.kill();
    }
    result.move = stopped;
    const moveMs = end.atMs;
    const exits = await Promise.all(runs.map((r) => Promise.race([r.run.done, sleep(CLI_EXIT_WAIT_MS).then(() => ({ code: null, stdout: '', stderr: 'still running' }))])));

    // Bytes moved, on disk.
    const final = readState(dir)!;
    const oldIds = new Set(oldNodes.map((n) => n.id));
    const sites: SiteMove[] = [];
    for (const old of oldNodes) {
      const newcomer = final.nodes.find((n) => n.site === old.site && !oldIds.has(n.id));
      const before = snapshot.get(old.id)!;
      const oldNow = listBlobs(dir, old.id);
      const newNow = newcomer ? listBlobs(dir, newcomer.id) : new Map<string, number>();
      const m: SiteMove = {
        site: old.site, oldNode: old.id, newNode: newcomer?.id ?? '-',
        before: { blobs: before.size, bytes: 0 }, moved: { blobs: 0, bytes: 0 }, released: { blobs: 0, bytes: 0 }, onBoth: 0, onNeither: 0,
      };
      for (const [id, size] of before) {
        m.before.bytes += size;
        const onNew = newNow.has(id);
        const onOld = oldNow.has(id);
        if (onNew) (m.moved.blobs++, (m.moved.bytes += newNow.get(id)!));
        if (!onOld) (m.released.blobs++, (m.released.bytes += size));
        if (onNew && onOld) m.onBoth++;
        if (!onNew && !onOld) m.onNeither++;
      }
      sites.push(m);
    }
    const movedBytes = sites.reduce((a, s) => a + s.moved.bytes, 0);
    const releasedBytes = sites.reduce((a, s) => a + s.released.bytes, 0);
    const copyMs = copying ? copying.toMs - copying.fromMs : 0;
    result.scale = {
      ms: moveMs,
      commands: runs.map((r, i) => ({
        pool: r.pool, startMs: r.startMs, appliedMs: r.appliedMs, version: r.version, lockRetries: r.lockRetries, exitCode: exits[i].code,
        summary: (exits[i].stdout.trim().split('\n').pop() ?? '') || exits[i].stderr.trim().split('\n').slice(-2).join(' / '),
      })),
      layoutVersions: [...versions].sort((a, c) => a - c),
      copying,
      sites,
      movedBytes,
      releasedBytes,
      mibPerSec: movedBytes / 1048576 / (moveMs / 1000),
      copyMibPerSec: copyMs > 0 ? movedBytes / 1048576 / (copyMs / 1000) : undefined,
      reportedBytesMoved: [...movedCounter.values()].reduce((a, v) => a + v.sum, 0),
      // New nodes count from 0: their first poll may come after their first repair.
      repairBytesCopied: [...repairCounter].reduce((a, [id, v]) => a + v.last - (oldIds.has(id) ? v.first : 0), 0),
      finalNodes: end.nodes.map((n) => ({
        id: n.id, layoutVersion: n.st!.layoutVersion, phase: n.st!.phase, heldBlobs: n.st!.heldBlobs, ownedBlobs: n.st!.ownedBlobs, openVersions: n.st!.openVersions,
      })),
      timeline,
    };
    const mv = result.move;
    result.ratios = {
      putOpsPerSec: mv.put.opsPerSec / b.put.opsPerSec,
      getOpsPerSec: mv.get.opsPerSec / b.get.opsPerSec,
      putP99: mv.put.p99Ms / b.put.p99Ms,
      getP99: mv.get.p99Ms / b.get.p99Ms,
    };
    const sc = result.scale;
    log(`  move over in ${(moveMs / 1000).toFixed(1)} s (layout versions ${sc.layoutVersions.join(', ')}; some node copying from ${copying ? `${fmtMs(copying.fromMs)} to ${fmtMs(copying.toMs)}` : 'never seen'})`);
    for (const c of sc.commands) log(`    ${c.pool}: started ${fmtMs(c.startMs)}, layout v${c.version} at ${fmtMs(c.appliedMs)}${c.lockRetries ? ` after ${c.lockRetries} lock retries` : ''}, exit ${c.exitCode}: ${c.summary}`);
    for (const s of sites) {
      log(`    ${s.site}: ${s.oldNode} held ${s.before.blobs} copies (${(s.before.bytes / 1048576).toFixed(0)} MiB); ${s.newNode} now holds ${s.moved.blobs} of them (${(s.moved.bytes / 1048576).toFixed(0)} MiB), `
        + `${s.oldNode} released ${s.released.blobs}${s.onBoth ? `, ${s.onBoth} on both` : ''}${s.onNeither ? `, ${s.onNeither} ON NEITHER` : ''}`);
    }
    log(`  moved ${(movedBytes / 1048576).toFixed(0)} MiB in ${(moveMs / 1000).toFixed(1)} s: ${sc.mibPerSec.toFixed(1)} MiB/s${sc.copyMibPerSec ? ` (${sc.copyMibPerSec.toFixed(1)} MiB/s over the copy window)` : ''}; nodes' own bytesMoved: ${(sc.reportedBytesMoved / 1048576).toFixed(0)} MiB, repair workers copied ${(sc.repairBytesCopied / 1048576).toFixed(0)} MiB`);
    log(`  load during the move: PUT ${mv.put.opsPerSec.toFixed(1)} ops/s (x${result.ratios.putOpsPerSec.toFixed(2)}), GET ${mv.get.opsPerSec.toFixed(1)} ops/s (x${result.ratios.getOpsPerSec.toFixed(2)}), grid CPU ${mv.gridCpuCores.toFixed(2)} cores${mv.put.errors + mv.get.errors ? `, errors PUT ${mv.put.errors} GET ${mv.get.errors}` : ''}`);

    // 5. The same load on the scaled-out grid, no move.
    const after = startMix(client, body, readKeys, 'load/after', o.clients, dir);
    await sleep(o.baselineMs);
    result.after = await after.stop();
    const af = result.after;
    result.ratios.afterPutOpsPerSec = af.put.opsPerSec / b.put.opsPerSec;
    result.ratios.afterGetOpsPerSec = af.get.opsPerSec / b.get.opsPerSec;
    log(`  after the move (${(af.elapsedMs / 1000).toFixed(1)} s, 2 nodes per site, no move): PUT ${af.put.opsPerSec.toFixed(1)} ops/s (x${result.ratios.afterPutOpsPerSec.toFixed(2)}), GET ${af.get.opsPerSec.toFixed(1)} ops/s (x${result.ratios.afterGetOpsPerSec.toFixed(2)}), grid CPU ${af.gridCpuCores.toFixed(2)} cores${af.put.errors + af.get.errors ? `, errors PUT ${af.put.errors} GET ${af.get.errors}` : ''}`);
  } catch (e) {
    result.error = (e as Error).message;
    process.stderr.write(`rebalance phase failed: ${(e as Error).stack}\n--- grid node logs (tail) ---\n${gridLogsTail(dir)}\n`);
    process.exitCode = 1;
  } finally {
    const windows = [result.baseline, result.move, result.after].filter((w): w is LoadWindow => w !== undefined);
    result.errors = (result.preloadErrors ?? 0) + windows.reduce((a, w) => a + w.put.errors + w.get.errors, 0);
    result.firstError ??= windows.flatMap((w) => [w.put.firstError, w.get.firstError]).find((x) => x !== undefined);
    result.logWarnings = logWarnings(dir);
    await client?.close().catch(() => undefined);
    log('rebalance: archipel local down');
    await stopLocalGrid(dir, log);
    track(undefined);
  }
  return result;
}
