import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/**
 * The storage node's configuration file (YAML). Relative paths resolve against the file's folder.
 * Every limit has a default here so that main.ts never guesses.
 */
export interface GridConfig {
  /** The grid's name (informational; shown in status). */
  name: string;
  /** The internal secret that signs node-to-node RPC; `previous` is still accepted during a rotation. */
  secrets: { current: string; previous?: string };
  /** The peer RPC listener (docs/decisions/0010-peer-rpc.md). */
  rpc: { host: string; port: number; maxConcurrent: number };
  /** Partition moves of a layout transition (docs/decisions/0016-layout-transitions.md). */
  rebalance: { maxBytesPerSecond: number; concurrency: number };
}

export interface NodeConfig {
  /** pool: the node pool the node belongs to (defaults to the id without its `-<ordinal>`). */
  node: { id: string; site: string; pool: string };
  /** Present when the node is part of a grid: it then serves data only under a layout it holds. */
  grid?: GridConfig;
  dataDir: string;
  s3: {
    host: string;
    /** 0 picks a free port; the chosen one is logged and written to <dataDir>/runtime.json. */
    port: number;
    region: string;
    /** Domains for virtual-hosted-style addressing: <bucket>.<domain>. */
    domains: string[];
    maxHeaderBytes: number;
    /** Idle/slow-client limits. */
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    maxConcurrentRequests: number;
  };
  admin: { host: string; port: number; token?: string };
  accessKeys: { accessKeyId: string; secretAccessKey: string; name: string }[];
  storage: { chunkSizeBytes: number; fsync: boolean };
  scrub: { bytesPerSecond: number; intervalSeconds: number; enabled: boolean };
  audit: { fsyncIntervalMs: number; segmentMaxBytes: number };
  log: { level: string; format: 'json' | 'text' };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;

function section(o: Obj, name: string): Obj {
  const v = o[name];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${name}: must be a mapping`);
  return v as Obj;
}

function str(o: Obj, name: string, def?: string): string {
  const v = o[name];
  if (v === undefined || v === null) {
    if (def === undefined) throw new ConfigError(`${name}: required`);
    return def;
  }
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${name}: must be a non-empty string`);
  return v;
}

function int(o: Obj, name: string, def: number, min: number, max: number): number {
  const v = o[name] ?? def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${name}: must be an integer from ${min} to ${max}`);
  }
  return v;
}

function bool(o: Obj, name: string, def: boolean): boolean {
  const v = o[name] ?? def;
  if (typeof v !== 'boolean') throw new ConfigError(`${name}: must be true or false`);
  return v;
}

const ACCESS_KEY_RE = /^[A-Za-z0-9_-]{3,128}$/;

/**
 * `${NAME}` in any string value is replaced by the environment variable NAME (`$$` is a literal `$`):
 * a pod's config is one file for every pod of a pool, and the pod's name and IP come from the downward
 * API (`id: ${POD_NAME}`, `host: ${POD_IP}`). An unset variable is an error naming the field, never a
 * silent empty string. Values are substituted after parsing, so a variable cannot inject YAML.
 */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv, where = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string | undefined) => {
      if (name === undefined) return '$';
      const v = env[name];
      if (v === undefined) throw new ConfigError(`${where || 'value'}: environment variable ${name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${where}[${i}]`));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, where ? `${where}.${k}` : k)]));
  }
  return value;
}

export function parseNodeConfig(text: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`not valid YAML: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('the file must hold a mapping');
  raw = expandEnv(raw, env);
  const r = raw as Obj;
  const node = section(r, 'node');
  const s3 = section(r, 's3');
  const admin = section(r, 'admin');
  const storage = section(r, 'storage');
  const scrub = section(r, 'scrub');
  const audit = section(r, 'audit');
  const log = section(r, 'log');
  const keysRaw = r.accessKeys ?? [];
  if (!Array.isArray(keysRaw)) throw new ConfigError('accessKeys: must be a list');
  const accessKeys = keysRaw.map((k, i) => {
    if (!k || typeof k !== 'object') throw new ConfigError(`accessKeys[${i}]: must be a mapping`);
    const ko = k as Obj;
    const accessKeyId = str(ko, 'accessKeyId');
    if (!ACCESS_KEY_RE.test(accessKeyId)) throw new ConfigError(`accessKeys[${i}].accessKeyId: 3-128 letters, digits, _ or -`);
    const secretAccessKey = str(ko, 'secretAccessKey');
    if (secretAccessKey.length < 8) throw new ConfigError(`accessKeys[${i}].secretAccessKey: at least 8 characters`);
    return { accessKeyId, secretAccessKey, name: str(ko, 'name', accessKeyId) };
  });
  const dataDir = path.resolve(baseDir, str(r, 'dataDir'));
  const logFormat = str(log, 'format', 'json');
  if (logFormat !== 'json' && logFormat !== 'text') throw new ConfigError('log.format: json or text');
  const domains = s3.domains ?? [];
  if (!Array.isArray(domains) || domains.some((d) => typeof d !== 'string')) throw new ConfigError('s3.domains: a list of strings');
  // admin.tokenFile: a Kubernetes Secret mounted as a file, so the token is in no environment variable.
  const adminToken = readSecret(admin, 'token', baseDir, false, 'admin', 1);
  const nodeId = str(node, 'id', 'node-0');
  return {
    node: { id: nodeId, site: str(node, 'site', 'local'), pool: str(node, 'pool', nodeId.replace(/-[0-9]+$/, '')) },
    grid: r.grid === undefined || r.grid === null ? undefined : parseGrid(section(r, 'grid'), baseDir),
    dataDir,
    s3: {
      host: str(s3, 'host', '127.0.0.1'),
      port: int(s3, 'port', 9000, 0, 65535),
      region: str(s3, 'region', 'us-east-1'),
      domains: domains as string[],
      maxHeaderBytes: int(s3, 'maxHeaderBytes', 16 * 1024, 1024, 1024 * 1024),
      headersTimeoutMs: int(s3, 'headersTimeoutMs', 30_000, 1000, 600_000),
      requestTimeoutMs: int(s3, 'requestTimeoutMs', 0, 0, 24 * 3600_000),
      keepAliveTimeoutMs: int(s3, 'keepAliveTimeoutMs', 60_000, 1000, 600_000),
      maxConcurrentRequests: int(s3, 'maxConcurrentRequests', 1024, 1, 100_000),
    },
    admin: { host: str(admin, 'host', '127.0.0.1'), port: int(admin, 'port', 9001, 0, 65535), token: adminToken },
    accessKeys,
    storage: {
      chunkSizeBytes: int(storage, 'chunkSizeBytes', 1024 * 1024, 4096, 64 * 1024 * 1024),
      fsync: bool(storage, 'fsync', true),
    },
    scrub: {
      bytesPerSecond: int(scrub, 'bytesPerSecond', 32 * 1024 * 1024, 1024, 10 * 1024 * 1024 * 1024),
      intervalSeconds: int(scrub, 'intervalSeconds', 24 * 3600, 1, 365 * 24 * 3600),
      enabled: bool(scrub, 'enabled', true),
    },
    audit: {
      fsyncIntervalMs: int(audit, 'fsyncIntervalMs', 100, 1, 60_000),
      segmentMaxBytes: int(audit, 'segmentMaxBytes', 64 * 1024 * 1024, 4096, 16 * 1024 * 1024 * 1024),
    },
    log: { level: str(log, 'level', 'info'), format: logFormat },
  };
}

/** Bytes a grid secret needs at least (the RPC layer refuses shorter ones too). */
const MIN_GRID_SECRET_BYTES = 32;

function readSecret(o: Obj, name: string, baseDir: string, required: boolean, where = 'grid', minBytes = MIN_GRID_SECRET_BYTES): string | undefined {
  const fileKey = `${name}File`;
  if (o[name] !== undefined && o[fileKey] !== undefined) throw new ConfigError(`${where}: give ${name} or ${fileKey}, not both`);
  let value: string | undefined;
  if (o[fileKey] !== undefined) {
    const file = path.resolve(baseDir, str(o, fileKey));
    try {
      value = fs.readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(`${where}.${fileKey}: cannot read ${file}: ${(e as Error).message}`);
    }
  } else if (o[name] !== undefined) {
    value = str(o, name);
  }
  if (value === undefined) {
    if (required) throw new ConfigError(`${where}.${name} (or ${where}.${fileKey}): required`);
    return undefined;
  }
  // The message names the field, never the value.
  if (Buffer.byteLength(value) < minBytes) throw new ConfigError(`${where}.${name}: at least ${minBytes} bytes`);
  return value;
}

function parseGrid(g: Obj, baseDir: string): GridConfig {
  const rpc = section(g, 'rpc');
  const rebalance = section(g, 'rebalance');
  const current = readSecret(g, 'secret', baseDir, true) as string;
  const previous = readSecret(g, 'previousSecret', baseDir, false);
  return {
    name: str(g, 'name', 'grid'),
    secrets: previous === undefined ? { current } : { current, previous },
    rpc: {
      host: str(rpc, 'host', '127.0.0.1'),
      port: int(rpc, 'port', 9002, 0, 65535),
      maxConcurrent: int(rpc, 'maxConcurrent', 256, 1, 100_000),
    },
    rebalance: {
      // 100 MiB/s per node: moves finish in hours for tens of TB without starving client traffic.
      maxBytesPerSecond: int(rebalance, 'maxBytesPerSecond', 100 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
      concurrency: int(rebalance, 'concurrency', 4, 1, 64),
    },
  };
}

export function loadNodeConfig(file: string): NodeConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parseNodeConfig(text, path.dirname(path.resolve(file)));
}
