import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Reads a process's resource use from /proc (Linux only), for memory tests and the benchmark. */

let clockTicksPerSecond: number | undefined;

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. 100 on every Linux we run on, asked once anyway. */
export function clockTicks(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      clockTicksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** Resident set size in bytes (VmRSS), or undefined once the process is gone. */
export function readRssBytes(pid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** User + system CPU time consumed so far, in milliseconds (resolution: one clock tick, usually 10 ms). */
export function readCpuMs(pid: number): number {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: parse from the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unreadable /proc/${pid}/stat`);
  return ((utime + stime) * 1000) / clockTicks();
}

/** Samples a process's RSS at a fixed interval and keeps the maximum (and a bounded trace for messages). */
export class RssSampler {
  maxBytes = 0;
  samples = 0;
  private readonly trace: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private static readonly TRACE_MAX = 20_000;

  constructor(private readonly pid: number, private readonly intervalMs = 100) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  /** A compact description for assertion messages: max and a few points of the trace. */
  describe(): string {
    const mib = (b: number): string => (b / 1048576).toFixed(1);
    const step = Math.max(1, Math.floor(this.trace.length / 10));
    const points = this.trace.filter((_, i) => i % step === 0).map(mib);
    return `max RSS ${mib(this.maxBytes)} MiB over ${this.samples} samples (trace MiB: ${points.join(' ')})`;
  }

  private sample(): void {
    const rss = readRssBytes(this.pid);
    if (rss === undefined) return;
    this.samples++;
    if (rss > this.maxBytes) this.maxBytes = rss;
    if (this.trace.length < RssSampler.TRACE_MAX) this.trace.push(rss);
  }
}
