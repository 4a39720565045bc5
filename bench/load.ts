import { performance } from 'node:perf_hooks';
import { readCpuMs } from '../test/helpers/proc';
import type { BenchClient } from './signed-client';

/** One measured round of one operation against one server, and the sums over a phase's rounds. */

export type Op = 'PUT' | 'GET' | 'LIST' | 'DELETE';

/** A server under test (one process, or every node process of a grid) and what has been written to it, per object size. */
export interface Target {
  name: 'node' | 'bare' | 'grid';
  /** The processes whose CPU time is the server's: summed over all of them. */
  pids: number[];
  client: BenchClient;
  /** Keys written per bucket, in order; DELETE consumes them from `deleted` on. */
  state: Map<string, { written: string[]; deleted: number; seq: number }>;
}

export interface Budget {
  maxMs: number;
  maxOps: number;
}

export interface Totals {
  ops: number;
  errors: number;
  bytes: number;
  elapsedMs: number;
  serverCpuMs: number;
  clientCpuMs: number;
  latenciesMs: number[];
  firstError?: string;
}

const MAX_LATENCY_SAMPLES = 1_000_000;
export const LIST_MAX_KEYS = 100;

export function emptyTotals(): Totals {
  return { ops: 0, errors: 0, bytes: 0, elapsedMs: 0, serverCpuMs: 0, clientCpuMs: 0, latenciesMs: [] };
}

export function addTotals(into: Totals, r: Totals): void {
  into.ops += r.ops;
  into.errors += r.errors;
  into.bytes += r.bytes;
  into.elapsedMs += r.elapsedMs;
  into.serverCpuMs += r.serverCpuMs;
  into.clientCpuMs += r.clientCpuMs;
  for (const l of r.latenciesMs) if (into.latenciesMs.length < MAX_LATENCY_SAMPLES) into.latenciesMs.push(l);
  into.firstError ??= r.firstError;
}

function bucketState(t: Target, bucket: string): { written: string[]; deleted: number; seq: number } {
  let s = t.state.get(bucket);
  if (!s) t.state.set(bucket, (s = { written: [], deleted: 0, seq: 0 }));
  return s;
}

function cpuMs(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + readCpuMs(pid), 0);
}

/**
 * Runs `op` with `concurrency` workers until the time or request budget is spent (requests in flight
 * are waited for and counted), reading the server's CPU time (summed over its processes) from /proc before and after.
 */
export async function runRound(t: Target, op: Op, bucket: string, body: Buffer, budget: Budget, concurrency: number): Promise<Totals> {
  const st = bucketState(t, bucket);
  const r = emptyTotals();
  let issued = 0;
  let stop = false;
  const timer = setTimeout(() => (stop = true), budget.maxMs);
  const nextKey = (): string | undefined => {
    switch (op) {
      case 'PUT':
        return `obj-${String(st.seq++).padStart(8, '0')}`;
      case 'GET':
        return st.written.length > st.deleted ? st.written[st.deleted + (issued % (st.written.length - st.deleted))] : undefined;
      case 'DELETE':
        return st.deleted < st.written.length ? st.written[st.deleted++] : undefined;
      case 'LIST':
        return '';
    }
  };
  const one = async (key: string): Promise<void> => {
    switch (op) {
      case 'PUT':
        await t.client.put(bucket, key, body);
        st.written.push(key);
        r.bytes += body.length;
        return;
      case 'GET': {
        const n = await t.client.get(bucket, key);
        if (n !== body.length) throw new Error(`GET ${key}: ${n} bytes, expected ${body.length}`);
        r.bytes += n;
        return;
      }
      case 'DELETE':
        return t.client.del(bucket, key);
      case 'LIST':
        await t.client.list(bucket, '', LIST_MAX_KEYS);
    }
  };
  const worker = async (): Promise<void> => {
    while (!stop && issued < budget.maxOps) {
      const key = nextKey();
      if (key === undefined) return; // nothing left to read or delete
      issued++;
      const t0 = performance.now();
      try {
        await one(key);
      } catch (e) {
        r.errors++;
        r.firstError ??= (e as Error).message;
      }
      r.ops++;
      r.latenciesMs.push(performance.now() - t0);
    }
  };
  const cpu0 = cpuMs(t.pids);
  const client0 = process.cpuUsage();
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  r.elapsedMs = performance.now() - start;
  clearTimeout(timer);
  r.serverCpuMs = cpuMs(t.pids) - cpu0;
  const c = process.cpuUsage(client0);
  r.clientCpuMs = (c.user + c.system) / 1000;
  return r;
}

export interface Figures {
  ops: number;
  errors: number;
  opsPerSec: number;
  mibPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuMsPerOp: number;
  clientCpuMsPerOp: number;
  firstError?: string;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(p * sorted.length)); // nearest rank
  return sorted[rank - 1];
}

export function figures(t: Totals): Figures {
  const sorted = Float64Array.from(t.latenciesMs).sort();
  const arr = Array.from(sorted);
  const secs = t.elapsedMs / 1000;
  return {
    ops: t.ops,
    errors: t.errors,
    opsPerSec: secs > 0 ? t.ops / secs : 0,
    mibPerSec: secs > 0 ? t.bytes / 1048576 / secs : 0,
    p50Ms: percentile(arr, 0.5),
    p99Ms: percentile(arr, 0.99),
    serverCpuMsPerOp: t.ops > 0 ? t.serverCpuMs / t.ops : NaN,
    clientCpuMsPerOp: t.ops > 0 ? t.clientCpuMs / t.ops : NaN,
    firstError: t.firstError,
  };
}
