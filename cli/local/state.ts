/**
 * What the local runtime keeps under its data directory, so that every `archipel local` command
 * (and a later `up` after `down`) finds the same grid:
 *
 *   <data>/local-grid.json     this state: sites, nodes, addresses, ports, pids, the file used, the layout
 *   <data>/secrets.json        grid secret, admin token, S3 access key (generated once, mode 0600)
 *   <data>/<node>/node.yaml    the node's generated configuration (mode 0600: it holds the secrets)
 *   <data>/<node>/node.log     the node's stdout and stderr
 *   <data>/<node>/data/        the node's data directory (runtime.json, layout.json, meta, blobs, audit)
 *
 * Both JSON files carry a format number and are written atomically (temporary file, fsync, rename,
 * folder fsync).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from '../../storage-node/src/admin/api-types';
import { acquireDataDirLock, writeFileAtomic } from '../../storage-node/src/util/files';

export const STATE_FORMAT = 1;
export const SECRETS_FORMAT = 1;

/** How ports are chosen: the Grid's ports on each node's own address, or free ones picked by the nodes. */
export type PortMode = 'fixed' | 'auto';

export interface LocalSite {
  name: string;
  role: 'primary' | 'fallback';
  /** Fixed once given: the site's nodes listen on 127.0.0.(10·(index+1)+slot+1). */
  index: number;
}

export interface LocalNode {
  id: string;
  site: string;
  pool: string;
  /** The node's place within its site (0-8), fixed once given. */
  slot: number;
  host: string;
  /** The ports the node last listened on (0: none yet). */
  s3Port: number;
  adminPort: number;
  rpcPort: number;
  /** The process started for it, or null once it is known to be stopped. */
  pid: number | null;
}

export interface LocalState {
  format: typeof STATE_FORMAT;
  grid: string;
  /** The custom-resource file `up` last used (absolute). */
  file: string;
  ports: PortMode;
  region: string;
  sites: LocalSite[];
  nodes: LocalNode[];
  /** The newest layout applied by this runtime. */
  layout: Layout | null;
  /**
   * Replica counts set by `archipel local scale`, by NodePool name: they override the file's
   * `spec.replicas` every time the runtime plans, so `up` and `start-site` keep them. Absent in
   * state files written before `scale` existed.
   */
  replicas?: Record<string, number>;
  updatedAt: string;
}

export interface LocalSecrets {
  format: typeof SECRETS_FORMAT;
  gridSecret: string;
  adminToken: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** A refusal with a readable message; `exitCode` 2 for bad input, 1 for anything else. */
export class LocalError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'LocalError';
  }
}

export const DEFAULT_DATA_DIR = path.join('.archipel', 'local');

export const paths = {
  state: (data: string): string => path.join(data, 'local-grid.json'),
  secrets: (data: string): string => path.join(data, 'secrets.json'),
  nodeDir: (data: string, id: string): string => path.join(data, id),
  config: (data: string, id: string): string => path.join(data, id, 'node.yaml'),
  log: (data: string, id: string): string => path.join(data, id, 'node.log'),
  nodeData: (data: string, id: string): string => path.join(data, id, 'data'),
  runtime: (data: string, id: string): string => path.join(data, id, 'data', 'runtime.json'),
};

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LocalError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LocalError(`${file} is not valid JSON (${(e as Error).message}); move it away to start a new grid`);
  }
}

/** The state of the grid in `data`, or undefined when `up` never ran there. */
export function readState(data: string): LocalState | undefined {
  const file = paths.state(data);
  const s = readJson(file) as LocalState | undefined;
  if (s === undefined) return undefined;
  if (s?.format !== STATE_FORMAT || !Array.isArray(s.nodes) || !Array.isArray(s.sites) || typeof s.grid !== 'string') {
    throw new LocalError(`${file}: unknown format ${JSON.stringify(s?.format)} (this archipel reads format ${STATE_FORMAT})`);
  }
  const bad = Object.entries(s.replicas ?? {}).filter(([, v]) => !Number.isInteger(v) || v < 1);
  if (s.replicas !== undefined && (typeof s.replicas !== 'object' || s.replicas === null || Array.isArray(s.replicas) || bad.length > 0)) {
    throw new LocalError(`${file}: "replicas" must map NodePool names to integers ≥ 1 (got ${JSON.stringify(s.replicas)})`);
  }
  return s;
}

/** Like readState, for commands that need a grid to exist. */
export function requireState(data: string): LocalState {
  const s = readState(data);
  if (!s) throw new LocalError(`no local grid in ${data}: start one with \`archipel local up\` (or pass --data DIR)`, 2);
  return s;
}

export function writeState(data: string, s: LocalState): void {
  s.updatedAt = new Date().toISOString();
  writeFileAtomic(paths.state(data), `${JSON.stringify(s, null, 2)}\n`);
}

/** The grid's secrets, generated on the first `up` and kept for every later one. */
export function loadOrCreateSecrets(data: string): LocalSecrets {
  const file = paths.secrets(data);
  const existing = readSecrets(data);
  if (existing) return existing;
  const s: LocalSecrets = {
    format: SECRETS_FORMAT,
    gridSecret: crypto.randomBytes(32).toString('hex'),
    adminToken: crypto.randomBytes(24).toString('hex'),
    accessKeyId: `local-${crypto.randomBytes(8).toString('hex')}`,
    secretAccessKey: crypto.randomBytes(30).toString('base64url'),
  };
  writeFileAtomic(file, `${JSON.stringify(s, null, 2)}\n`); // mode 0600
  return s;
}

export function readSecrets(data: string): LocalSecrets | undefined {
  const file = paths.secrets(data);
  const s = readJson(file) as LocalSecrets | undefined;
  if (s === undefined) return undefined;
  const strings = [s?.gridSecret, s?.adminToken, s?.accessKeyId, s?.secretAccessKey];
  if (s?.format !== SECRETS_FORMAT || strings.some((v) => typeof v !== 'string' || v === '')) {
    throw new LocalError(`${file}: unknown format or missing fields (this archipel reads format ${SECRETS_FORMAT})`);
  }
  return s;
}

export function requireSecrets(data: string): LocalSecrets {
  const s = readSecrets(data);
  if (!s) throw new LocalError(`${paths.secrets(data)} is missing: the grid's credentials are lost; start a new grid in another --data folder`);
  return s;
}

/** The data folder, created private (0700), and a lock so that two commands never change it at once. */
export function lockDataDir(data: string): () => void {
  fs.mkdirSync(data, { recursive: true, mode: 0o700 });
  try {
    return acquireDataDirLock(data);
  } catch (e) {
    throw new LocalError(`another archipel local command is working on ${data}: ${(e as Error).message}`);
  }
}
