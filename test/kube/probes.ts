// Container probes (readiness, liveness, startup) run the way the kubelet runs them.
import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';

export type ProbeSpec = any;

export interface ProbeTarget {
  podIP: string;
  /** Named container ports → number. */
  ports: Record<string, number>;
  /** Runs an exec probe's command; resolves with the exit code. */
  exec(command: string[], timeoutMs: number): Promise<number>;
}

function resolvePort(port: number | string, target: ProbeTarget): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const n = target.ports[port];
  if (n === undefined) throw new Error(`unknown named port ${port}`);
  return n;
}

function httpProbe(spec: ProbeSpec, target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  const get = spec.scheme === 'HTTPS' ? https.get : http.get;
  const headers: Record<string, string> = {};
  for (const h of spec.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    const req = get(
      {
        host: spec.host || target.podIP,
        port: resolvePort(spec.port, target),
        path: spec.path || '/',
        headers,
        timeout: timeoutMs,
        rejectUnauthorized: false, // the kubelet does not verify probe certificates either
        agent: false,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    req.on('timeout', () => req.destroy(new Error('probe timeout')));
    req.on('error', () => resolve(false));
  });
}

function tcpProbe(spec: ProbeSpec, target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: spec.host || target.podIP, port: resolvePort(spec.port, target) });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Runs one probe attempt; any error counts as a failure. */
export async function runProbeOnce(spec: ProbeSpec, target: ProbeTarget): Promise<boolean> {
  const timeoutMs = (spec.timeoutSeconds ?? 1) * 1000;
  try {
    if (spec.httpGet) return await httpProbe(spec.httpGet, target, timeoutMs);
    if (spec.tcpSocket) return await tcpProbe(spec.tcpSocket, target, timeoutMs);
    if (spec.exec) return (await target.exec(spec.exec.command ?? [], timeoutMs)) === 0;
    return false; // grpc probes are not supported by this agent
  } catch {
    return false;
  }
}

/**
 * Periodic prober: calls onResult(true|false) whenever the thresholded result changes.
 * Starts after initialDelaySeconds; stops with stop().
 */
export class Prober {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private successes = 0;
  private failures = 0;
  private result: boolean | undefined;

  constructor(
    private readonly spec: ProbeSpec,
    private readonly target: ProbeTarget,
    private readonly onResult: (ok: boolean) => void,
  ) {}

  start(): void {
    this.schedule((this.spec.initialDelaySeconds ?? 0) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), delayMs);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const ok = await runProbeOnce(this.spec, this.target);
    if (this.stopped) return;
    if (ok) {
      this.successes++;
      this.failures = 0;
      if (this.result !== true && this.successes >= (this.spec.successThreshold ?? 1)) this.set(true);
    } else {
      this.failures++;
      this.successes = 0;
      if (this.result !== false && this.failures >= (this.spec.failureThreshold ?? 3)) this.set(false);
    }
    this.schedule((this.spec.periodSeconds ?? 10) * 1000);
  }

  private set(ok: boolean): void {
    this.result = ok;
    this.onResult(ok);
  }
}

/** exec probe helper: runs argv with a timeout, resolving with its exit code (timeout → 1). */
export function execExitCode(argv: string[], env: NodeJS.ProcessEnv, cwd: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    if (argv.length === 0) {
      resolve(1);
      return;
    }
    execFile(argv[0], argv.slice(1), { env, cwd, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 }, (err) => {
      if (!err) resolve(0);
      else resolve(typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? Number((err as { code?: unknown }).code) : 1);
    });
  });
}
