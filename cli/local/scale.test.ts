import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RebalanceStatus } from '../../storage-node/src/admin/api-types';
import { parseResources } from '../../operator/src/planner/parse';
import { resolveGrid, type ResolvedGrid } from '../../operator/src/planner/resolve';
import { wantedNodes } from './addresses';
import { withReplicas } from './runtime';
import { drainedAll, moveDone, parseReplicas, parseTimeoutMs, progressLines, watch, type Seen } from './scale';
import { LocalError, STATE_FORMAT, readState, type LocalNode, type LocalState } from './state';

const API = 'apiVersion: storage.archipel.io/v1alpha1';
const doc = (kind: string, name: string, spec: string): string => `${API}\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec.split('\n').map((l) => `  ${l}`).join('\n')}\n`;

function grid(): ResolvedGrid {
  const docs = [doc('Grid', 'g', '')];
  for (const s of ['dc1', 'dc2']) docs.push(doc('Site', s, 'grid: g'), doc('NodePool', `${s}-pool`, `site: ${s}\nreplicas: 2`));
  docs.push(doc('ReplicationPolicy', 'default', 'grid: g\nrules:\n  - site: dc1\n  - site: dc2'));
  const r = resolveGrid(parseResources(docs.join('---\n')));
  assert.ok(r.grid, JSON.stringify(r.errors));
  return r as ResolvedGrid;
}

function rb(over: Partial<RebalanceStatus> = {}): RebalanceStatus {
  return {
    layoutVersion: 5, openVersions: [], phase: 'idle', partitionsToMove: 0, partitionsMoved: 0, bucketsToSync: 0, bucketsSynced: 0,
    bytesToMove: 0, bytesMoved: 0, bytesPerSecond: 0, etaSeconds: null, maxBytesPerSecond: 0, heldBlobs: 0, ownedBlobs: 0, drained: false, waitingFor: [],
    ...over,
  };
}

function node(id: string, site: string): LocalNode {
  return { id, site, pool: `${site}-pool`, slot: Number(id.slice(-1)), host: '127.0.0.1', s3Port: 1, adminPort: 2, rpcPort: 3, pid: 1 };
}

/** A look at a grid dc1-pool-0..2 (dc1-pool-2 draining) and dc2-pool-0, with the given statuses (undefined: down). */
function seen(statuses: Record<string, RebalanceStatus | 'no field' | 'down' | 'error'>): Seen {
  const ids = Object.keys(statuses);
  const nodes = ids.map((id) => node(id, id.slice(0, 3)));
  const state: LocalState = {
    format: STATE_FORMAT, grid: 'g', file: 'f.yaml', ports: 'auto', region: 'r', updatedAt: '',
    sites: [{ name: 'dc1', role: 'primary', index: 0 }, { name: 'dc2', role: 'primary', index: 1 }],
    nodes,
    layout: {
      version: 5, partitionCount: 64, defaultPolicy: 'default', policies: [], sites: [],
      nodes: nodes.map((n) => ({ id: n.id, site: n.site, pool: n.pool, rpcAddress: 'h:1', s3Address: 'h:2', capacityBytes: 1, state: n.id === 'dc1-pool-2' ? 'draining' : 'active' })),
    },
  };
  return {
    state,
    nodes: nodes.map((n) => {
      const s = statuses[n.id];
      if (s === 'down') return { n, running: false };
      if (s === 'error') return { n, running: true, error: 'GET /v1/status: timeout' };
      return { n, running: true, st: { nodeId: n.id, site: n.site, ...(s === 'no field' ? {} : { rebalance: s }) } };
    }),
  };
}

describe('local runtime: scale', () => {
  it('takes --replicas as a whole number from 1 to 9, and says why otherwise', () => {
    assert.equal(parseReplicas('3'), 3);
    for (const [v, why] of [['0', /at least 1/], ['2.5', /whole number/], ['-1', /whole number/], ['two', /whole number/], ['', /whole number/], ['10', /at most 9 nodes per site/], [undefined, /required/]] as const) {
      assert.throws(() => parseReplicas(v), (e: unknown) => e instanceof LocalError && e.exitCode === 2 && why.test(e.message), String(v));
    }
  });

  it('takes --timeout in seconds, 600 by default', () => {
    assert.equal(parseTimeoutMs(undefined), 600_000);
    assert.equal(parseTimeoutMs('1.5'), 1500);
    for (const v of ['0', '-3', 'soon', '']) assert.throws(() => parseTimeoutMs(v), (e: unknown) => e instanceof LocalError && e.exitCode === 2);
  });

  it('overrides the file\'s replica counts with the ones scale set, for the pools the file still has', () => {
    const r = grid();
    const scaled = withReplicas(r, { 'dc1-pool': 3, 'gone-pool': 5 });
    assert.deepEqual(wantedNodes(scaled).map((w) => w.id), ['dc1-pool-0', 'dc1-pool-1', 'dc1-pool-2', 'dc2-pool-0', 'dc2-pool-1']);
    assert.equal(r.pools[0].spec.replicas, 2, 'the file\'s objects are left as they are');
    assert.equal(withReplicas(r, undefined), r);
  });

  it('reads state files from before scale (no replicas), and refuses a broken replicas field', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-scale-'));
    try {
      const base = { format: STATE_FORMAT, grid: 'g', file: 'f', ports: 'auto', region: 'r', sites: [], nodes: [], layout: null, updatedAt: '' };
      fs.writeFileSync(path.join(dir, 'local-grid.json'), JSON.stringify(base));
      assert.equal(readState(dir)?.replicas, undefined);
      fs.writeFileSync(path.join(dir, 'local-grid.json'), JSON.stringify({ ...base, replicas: { 'dc1-pool': 3 } }));
      assert.deepEqual(readState(dir)?.replicas, { 'dc1-pool': 3 });
      fs.writeFileSync(path.join(dir, 'local-grid.json'), JSON.stringify({ ...base, replicas: { 'dc1-pool': 0 } }));
      assert.throws(() => readState(dir), /"replicas" must map NodePool names to integers ≥ 1/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('waits for every running node to be done with the new version; a node without rebalance counts as done', () => {
    assert.equal(moveDone(seen({ 'dc1-pool-0': rb(), 'dc1-pool-1': 'no field', 'dc2-pool-0': 'down' }), 5), true);
    assert.equal(moveDone(seen({ 'dc1-pool-0': rb({ layoutVersion: 4 }) }), 5), false, 'still at the old version');
    assert.equal(moveDone(seen({ 'dc1-pool-0': rb({ phase: 'copying', openVersions: [4] }) }), 5), false);
    assert.equal(moveDone(seen({ 'dc1-pool-0': 'error' }), 5), false, 'a node that does not answer is not known to be done');
  });

  it('waits for each draining node to say it is drained, and gives up at once when one cannot say it', () => {
    assert.equal(drainedAll(seen({ 'dc1-pool-0': rb(), 'dc1-pool-2': rb({ drained: true }) }), ['dc1-pool-2'], 5), true);
    assert.equal(drainedAll(seen({ 'dc1-pool-2': rb({ phase: 'cleaning', heldBlobs: 3 }) }), ['dc1-pool-2'], 5), false);
    assert.equal(drainedAll(seen({ 'dc1-pool-2': 'down' }), ['dc1-pool-2'], 5), false, 'a node that is down is not drained');
    assert.throws(() => drainedAll(seen({ 'dc1-pool-2': 'no field' }), ['dc1-pool-2'], 5), /dc1-pool-2 does not report a drain .*nothing was stopped/);
  });

  it('prints one progress line per moving site, or what it waits for', () => {
    const lines = progressLines(seen({
      'dc1-pool-0': rb({ phase: 'copying', openVersions: [4], partitionsToMove: 8, partitionsMoved: 2, bytesToMove: 8192, bytesMoved: 2048, bytesPerSecond: 1024, etaSeconds: 6 }),
      'dc1-pool-2': rb({ phase: 'waiting', openVersions: [4], heldBlobs: 7 }),
      'dc2-pool-0': rb(),
    }), 5);
    assert.deepEqual(lines, ['dc1 [#####---------------] 25% 2.0 KiB of 8.0 KiB, 6 partitions left, 1.0 KiB/s, ETA 6 s (dc1-pool-0 copying; dc1-pool-2 draining, 7 copies held)']);
    const before = progressLines(seen({ 'dc1-pool-0': rb({ layoutVersion: 4 }), 'dc2-pool-0': 'down', 'dc2-pool-1': 'error' }), 5);
    assert.deepEqual(before, [
      'waiting for the nodes to take up layout version 5 (dc1-pool-0 idle at version 4)',
      'not answering: dc2-pool-0 down, dc2-pool-1 (GET /v1/status: timeout)',
    ]);
  });

  it('polls until done, says progress every interval meanwhile, and stops at the deadline', async () => {
    let clock = 0;
    const said: string[] = [];
    const base = { say: (l: string) => said.push(l), pollMs: 500, progressMs: 2000, now: () => clock, sleep: async (ms: number) => { clock += ms; } };
    let polls = 0;
    const ok = await watch({ ...base, probe: async () => ++polls, done: (n) => n >= 6, progress: (n) => [`poll ${n}`], timeoutMs: 60_000 });
    assert.deepEqual([ok.done, ok.last, ok.elapsedMs], [true, 6, 2500]);
    assert.deepEqual(said, ['poll 5'], 'one line per 2 s, none for a move that ends quickly');
    clock = 0;
    said.length = 0;
    const late = await watch({ ...base, probe: async () => 'copying', done: () => false, progress: (s) => [s], timeoutMs: 5000 });
    assert.deepEqual([late.done, late.elapsedMs], [false, 5000]);
    assert.equal(said.length, 2);
  });
});
