import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';

/**
 * Starts real storage-node processes (`archipel node --config FILE`) for integration tests, each in its
 * own temporary folder, on free loopback ports, and makes sure none outlives the test run.
 *
 * Contract with the node: with port 0 it picks free ports; once both listeners are up it writes
 * <dataDir>/runtime.json = {pid, s3Port, adminPort, nodeId} atomically; GET /health on the admin port
 * answers 200 once it is up, GET /ready once it serves S3 (a grid node: once it is in a layout); SIGTERM
 * stops it gracefully with exit code 0.
 */

export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
  name: string;
}

export interface StartOptions {
  /** Loopback address to listen on: 127.0.0.1 (default) or another 127.0.0.x. */
  host?: string;
  /** Deep-merged over the generated config (plain objects merge, anything else replaces). */
  configOverrides?: object;
  /** Data directory to use (for example one left by an earlier node); default: a fresh temporary one. */
  dataDir?: string;
  /** Access keys added after the generated one. */
  extraKeys?: AccessKey[];
  /** Deadline for runtime.json and /health. */
  startTimeoutMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartedNode {
  s3Url: string;
  adminUrl: string;
  host: string;
  s3Port: number;
  adminPort: number;
  /** The peer RPC port of a grid node (0 for a stand-alone node). */
  rpcPort: number;
  dataDir: string;
  configPath: string;
  accessKeyId: string;
  secretAccessKey: string;
  adminToken: string;
  region: string;
  nodeId: string;
  /** Process id of the current run (changes with restart()). */
  pid: number;
  /** Captured stdout+stderr of every run of this node, bounded to the last 2 MiB. */
  logs(): string;
  /** How the last run ended (undefined while it runs). */
  exitStatus(): ExitStatus | undefined;
  running(): boolean;
  /** SIGTERM, wait for exit (deadline), then SIGKILL. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, wait for exit. */
  kill9(): Promise<void>;
  /** Starts again on the same ports and data dir (stops gracefully first if still running). */
  restart(): Promise<void>;
  /** @aws-sdk/client-s3 for this node: path-style, its endpoint, credentials and region; other settings default. */
  s3Client(opts?: Partial<S3ClientConfig>): S3Client;
}

const LOG_LIMIT_BYTES = 2 * 1024 * 1024;
const DEFAULT_START_TIMEOUT_MS = 20_000;
const STOP_DEADLINE_MS = 15_000; // the node drains in-flight requests for up to 10 s
const KILL_DEADLINE_MS = 5_000;

const liveNodes = new Set<NodeHandle>();
const ownedDirs = new Set<string>();
const clients = new Set<S3Client>();

// Last resort when the test process exits without cleanup (failure, Ctrl-C, mocha --exit): no orphan nodes.
process.on('exit', () => {
  for (const n of liveNodes) n.killSync();
  for (const d of ownedDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort at exit: a dying child may still be writing
    }
  }
});

/** Absolute path of the compiled CLI (dist/cli/archipel.js), or $ARCHIPEL_BIN to test another build. */
export function bin(): string {
  return process.env.ARCHIPEL_BIN ? path.resolve(process.env.ARCHIPEL_BIN) : path.resolve(__dirname, '..', '..', 'cli', 'archipel.js');
}

/** Polls `fn` until it returns a value other than undefined/false, or throws naming `what` after the deadline. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message ?? String(lastError)})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Record<string, unknown>, v) : v;
  }
  return out;
}

/** Bounded capture of a child's output: keeps the last LOG_LIMIT_BYTES. */
class LogTail {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private dropped = false;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes > LOG_LIMIT_BYTES && this.chunks.length > 1) {
      this.bytes -= this.chunks.shift()!.length;
      this.dropped = true;
    }
  }

  text(): string {
    const s = Buffer.concat(this.chunks).toString('utf8');
    return this.dropped ? `[earlier output dropped]\n${s.slice(s.indexOf('\n') + 1)}` : s;
  }
}

interface RuntimeJson {
  pid: number;
  s3Port: number;
  adminPort: number;
  rpcPort?: number;
  nodeId: string;
}

class NodeHandle implements StartedNode {
  s3Port = 0;
  adminPort = 0;
  rpcPort = 0;
  pid = 0;
  nodeId = '';
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly adminToken: string;
  private child: ChildProcess | undefined;
  private exited: Promise<ExitStatus> | undefined;
  private lastExit: ExitStatus | undefined;
  private readonly tail = new LogTail();

  constructor(
    readonly host: string,
    readonly dataDir: string,
    readonly configPath: string,
    private config: Record<string, unknown>,
    private readonly startTimeoutMs: number,
  ) {
    const keys = config.accessKeys as AccessKey[];
    this.accessKeyId = keys[0].accessKeyId;
    this.secretAccessKey = keys[0].secretAccessKey;
    this.region = String((config.s3 as Record<string, unknown>).region);
    this.adminToken = String((config.admin as Record<string, unknown>).token);
  }

  get s3Url(): string {
    return `http://${this.host}:${this.s3Port}`;
  }

  get adminUrl(): string {
    return `http://${this.host}:${this.adminPort}`;
  }

  logs(): string {
    return this.tail.text();
  }

  exitStatus(): ExitStatus | undefined {
    return this.lastExit;
  }

  running(): boolean {
    return this.child !== undefined && this.lastExit === undefined;
  }

  async start(): Promise<void> {
    if (this.running()) throw new Error('node already running');
    fs.writeFileSync(this.configPath, YAML.stringify(this.config), { mode: 0o600 });
    const entry = bin();
    if (!fs.existsSync(entry)) throw new Error(`archipel CLI not built: ${entry} (run npm run build)`);
    this.lastExit = undefined;
    const child = spawn(process.execPath, [entry, 'node', '--config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.pid = child.pid ?? 0;
    child.stdout!.on('data', (c: Buffer) => this.tail.push(c));
    child.stderr!.on('data', (c: Buffer) => this.tail.push(c));
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.on('exit', (code, signal) => {
        this.lastExit = { code, signal };
        resolve(this.lastExit);
      });
      child.on('error', (e) => {
        this.tail.push(Buffer.from(`[spawn error] ${e.message}\n`));
        this.lastExit = { code: null, signal: null };
        resolve(this.lastExit);
      });
    });
    try {
      await this.waitReady();
    } catch (e) {
      await this.kill9();
      throw new Error(`${(e as Error).message}\n--- node output ---\n${this.logs()}`);
    }
  }

  private async waitReady(): Promise<void> {
    const runtimeFile = path.join(this.dataDir, 'runtime.json');
    const child = this.child!;
    // An early exit ends the wait at once (returned, not thrown: waitFor retries on errors).
    type Outcome = { exited: ExitStatus; info?: undefined } | { info: RuntimeJson; exited?: undefined };
    const got = await waitFor<Outcome>('the node to start (runtime.json of this run, then /health = 200)', async () => {
      if (this.lastExit) return { exited: this.lastExit };
      let rt: RuntimeJson;
      try {
        rt = JSON.parse(fs.readFileSync(runtimeFile, 'utf8')) as RuntimeJson;
      } catch {
        return undefined; // not written yet
      }
      if (rt.pid !== child.pid) return undefined; // left by an earlier run
      // /health, not /ready: a grid node without a layout is up but does not serve S3 (it is not ready).
      const res = await fetch(`http://${this.host}:${rt.adminPort}/health`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status === 200 ? { info: rt } : undefined;
    }, this.startTimeoutMs, 50);
    if (got.exited) throw new Error(`node exited during start: code ${got.exited.code}, signal ${got.exited.signal}`);
    const info = got.info;
    if (this.s3Port !== 0 && (info.s3Port !== this.s3Port || info.adminPort !== this.adminPort)) {
      throw new Error(`node restarted on other ports (${info.s3Port}/${info.adminPort}, expected ${this.s3Port}/${this.adminPort})`);
    }
    this.s3Port = info.s3Port;
    this.adminPort = info.adminPort;
    this.rpcPort = info.rpcPort ?? 0;
    this.nodeId = info.nodeId;
  }

  async stop(): Promise<void> {
    if (!this.running()) return;
    this.child!.kill('SIGTERM');
    if (await this.waitExit(STOP_DEADLINE_MS)) return;
    this.tail.push(Buffer.from(`[test helper] no exit ${STOP_DEADLINE_MS} ms after SIGTERM: SIGKILL\n`));
    await this.kill9();
  }

  async kill9(): Promise<void> {
    if (!this.running()) return;
    this.child!.kill('SIGKILL');
    if (!(await this.waitExit(KILL_DEADLINE_MS))) throw new Error(`node ${this.pid} survived SIGKILL for ${KILL_DEADLINE_MS} ms`);
  }

  killSync(): void {
    if (this.running()) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    // Same ports, so that clients created before the restart keep working.
    this.config = deepMerge(this.config, { s3: { port: this.s3Port }, admin: { port: this.adminPort } });
    if (this.rpcPort !== 0) this.config = deepMerge(this.config, { grid: { rpc: { port: this.rpcPort } } });
    await this.start();
  }

  s3Client(opts: Partial<S3ClientConfig> = {}): S3Client {
    const client = new S3Client({
      endpoint: this.s3Url,
      region: this.region,
      forcePathStyle: true,
      credentials: { accessKeyId: this.accessKeyId, secretAccessKey: this.secretAccessKey },
      ...opts,
    });
    clients.add(client);
    return client;
  }

  private async waitExit(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const done = await Promise.race([this.exited!.then(() => true), timeout]);
    clearTimeout(timer);
    return done;
  }
}

const HOST_RE = /^127\.0\.0\.([1-9]\d?|1\d\d|2[0-4]\d|25[0-4])$/;

export async function startNode(opts: StartOptions = {}): Promise<StartedNode> {
  const host = opts.host ?? '127.0.0.1';
  if (!HOST_RE.test(host)) throw new Error(`startNode: host must be a loopback address 127.0.0.x, got ${host}`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-node-'));
  ownedDirs.add(root);
  const dataDir = opts.dataDir ? path.resolve(opts.dataDir) : path.join(root, 'data');
  const suffix = crypto.randomBytes(4).toString('hex');
  const key: AccessKey = {
    accessKeyId: `test-${suffix}`,
    secretAccessKey: crypto.randomBytes(24).toString('base64url'),
    name: 'test',
  };
  const base: Record<string, unknown> = {
    node: { id: `node-${suffix}`, site: 'local' },
    dataDir,
    s3: { host, port: 0, region: 'us-east-1' },
    admin: { host, port: 0, token: crypto.randomBytes(16).toString('hex') },
    accessKeys: [key, ...(opts.extraKeys ?? [])],
    log: { level: 'info', format: 'json' },
  };
  const config = deepMerge(base, (opts.configOverrides ?? {}) as Record<string, unknown>);
  if (config.dataDir !== dataDir) throw new Error('startNode: pass dataDir as an option, not in configOverrides');
  const node = new NodeHandle(host, dataDir, path.join(root, 'node.yaml'), config, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  liveNodes.add(node);
  await node.start();
  return node;
}

/** Kills every node started by this process, closes the clients made for them, removes their temp folders. */
export async function cleanupAllNodes(): Promise<void> {
  for (const c of clients) c.destroy();
  clients.clear();
  const nodes = [...liveNodes];
  liveNodes.clear();
  await Promise.all(nodes.map((n) => n.kill9()));
  for (const d of ownedDirs) fs.rmSync(d, { recursive: true, force: true });
  ownedDirs.clear();
}
