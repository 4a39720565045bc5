// Test helpers for grids of real storage-node processes: start nodes that share a grid secret,
// build a layout from their actual ports, apply and read layouts through the admin API.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Layout, LayoutNode, ReplicationPolicy } from '../../storage-node/src/layout/types';
import type { S3Client } from '@aws-sdk/client-s3';
import { AccessKey, startNode, StartedNode } from './node-process';
import { send } from './signed-http';

export interface GridNodeSpec {
  site: string;
  /** Loopback address of the node (each node its own 127.0.0.x). */
  host: string;
}

export interface TestGrid {
  nodes: StartedNode[];
  secret: string;
  key: AccessKey;
  /** A layout of every node (all active), one copy per site, at `version`. */
  layout(version: number, opts?: { policies?: ReplicationPolicy[]; defaultPolicy?: string; states?: Record<string, LayoutNode['state']> }): Layout;
}

/** Starts one node per spec, all in one grid (same secret, same access key), with no layout yet. */
export async function startGridNodes(specs: GridNodeSpec[], configOverrides: object = {}): Promise<TestGrid> {
  const secret = crypto.randomBytes(32).toString('hex');
  const key: AccessKey = { accessKeyId: `grid-${crypto.randomBytes(4).toString('hex')}`, secretAccessKey: crypto.randomBytes(24).toString('base64url'), name: 'grid' };
  const nodes = await Promise.all(specs.map((s, i) => startNode({
    host: s.host,
    extraKeys: [key],
    configOverrides: {
      node: { id: `${s.site}-pool-${i}`, site: s.site, pool: `${s.site}-pool` },
      ...configOverrides,
      // Merged, not replaced: a test may add grid settings (rebalance bounds) to the grid's own.
      grid: { name: 'test', secret, rpc: { host: s.host, port: 0 }, ...(configOverrides as { grid?: object }).grid },
    },
  })));
  const sites = [...new Set(specs.map((s) => s.site))];
  return {
    nodes, secret, key,
    layout: (version, opts = {}) => ({
      version,
      partitionCount: 4096,
      sites: sites.map((name, i) => ({ name, role: i === 2 ? 'fallback' : 'primary', state: 'active' })),
      nodes: nodes.map((n, i) => ({
        id: n.nodeId, site: specs[i].site, pool: `${specs[i].site}-pool`,
        rpcAddress: `${n.host}:${n.rpcPort}`, s3Address: `${n.host}:${n.s3Port}`,
        capacityBytes: 1e12, state: opts.states?.[n.nodeId] ?? 'active',
      })),
      policies: opts.policies ?? [{ name: 'default', match: { buckets: ['*'] }, rules: sites.map((site) => ({ site, copies: 1 })), ingest: 'balanced' }],
      defaultPolicy: opts.defaultPolicy ?? 'default',
    }),
  };
}

export async function applyLayout(node: StartedNode, layout: unknown, token = node.adminToken): Promise<{ status: number; body: unknown }> {
  const r = await send(node.host, node.adminPort, 'PUT', '/v1/layout',
    { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, JSON.stringify({ layout }));
  return { status: r.status, body: r.body ? JSON.parse(r.body) : undefined };
}

export async function layoutOf(node: StartedNode): Promise<Layout | null> {
  const r = await send(node.host, node.adminPort, 'GET', '/v1/layout', { authorization: `Bearer ${node.adminToken}` }, undefined);
  if (r.status !== 200) throw new Error(`GET /v1/layout: ${r.status} ${r.body}`);
  return (JSON.parse(r.body) as { layout: Layout | null }).layout;
}

/** Path of a blob file on a node's disk (the storage node's layout: <dataDir>/blobs/blobs/aa/<id>). */
export function blobFileOf(n: StartedNode, id: string): string {
  return path.join(n.dataDir, 'blobs', 'blobs', id.slice(0, 2), id);
}

/** Ids of the blob files on a node's disk, sorted (what the node holds, whatever its metadata says). */
export function blobIds(n: StartedNode): string[] {
  const root = path.join(n.dataDir, 'blobs', 'blobs');
  const out: string[] = [];
  for (const d of fs.readdirSync(root)) for (const f of fs.readdirSync(path.join(root, d))) if (/^[0-9a-f]{32}$/.test(f)) out.push(f);
  return out.sort();
}

/** Flips every bit of the byte at `offset` of a file (writing a constant would leave it unchanged 1 time in 256). */
export function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** GET /v1/status of a node (admin token), parsed; fails the test on any other status than 200. */
export async function nodeStatus<T>(n: StartedNode): Promise<T> {
  const r = await send(n.host, n.adminPort, 'GET', '/v1/status', { authorization: `Bearer ${n.adminToken}` }, undefined);
  if (r.status !== 200) throw new Error(`GET /v1/status of ${n.nodeId}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as T;
}

/**
 * One S3 client per gateway node with the grid's key, made on first use, no retries (a test counts
 * every failure); `destroy()` closes them all.
 */
export function gatewayClients(grid: () => TestGrid): { of: (n: StartedNode) => S3Client; destroy: () => void } {
  const clients = new Map<string, S3Client>();
  return {
    of: (n) => {
      let c = clients.get(n.nodeId);
      if (!c) {
        const { key } = grid();
        c = n.s3Client({ maxAttempts: 1, credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey } });
        clients.set(n.nodeId, c);
      }
      return c;
    },
    destroy: () => {
      for (const c of clients.values()) c.destroy();
      clients.clear();
    },
  };
}
