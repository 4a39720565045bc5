import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import type { RebalanceStatus } from '../../storage-node/src/admin/api-types';
import { dataPlacement } from '../../storage-node/src/layout/placement';
import type { Layout } from '../../storage-node/src/layout/types';
import { applyLayout, blobIds, gatewayClients, nodeStatus, startGridNodes, TestGrid } from '../helpers/grid';
import { cleanupAllNodes, StartedNode, waitFor } from '../helpers/node-process';

interface Status { rebalance: RebalanceStatus; repair: { owedItems: number } }

/**
 * Issue 5: nodes added and removed while clients keep working (docs/decisions/0016). Three sites start
 * with one node each; a second node joins every site, then a third joins dc1, then it is drained and
 * removed; a node is SIGKILLed in the middle of a transition. A load of PUT/GET/LIST/DELETE runs
 * through @aws-sdk/client-s3 the whole time and must see no failure.
 */
describe('grid rebalancing: hot scale-out and scale-in under load', function () {
  this.timeout(600_000);
  let grid: TestGrid;
  let version = 0;
  const inLayout = new Set<string>();
  const draining = new Set<string>();
  /** Nodes the load goes through: those in the layout that answer /ready (what a load balancer does). */
  const gateways = new Set<string>();
  const clientsOf = gatewayClients(() => grid);
  /** What the bucket holds, as the clients were told: key → body (deleted keys removed). */
  const acked = new Map<string, Buffer>();
  const node = (id: string): StartedNode => grid.nodes.find((n) => n.nodeId === id)!;
  const s3 = (n: StartedNode): S3Client => clientsOf.of(n);
  const get = async (n: StartedNode, key: string): Promise<Buffer> =>
    Buffer.from(await (await s3(n).send(new GetObjectCommand({ Bucket: 'scans', Key: key }))).Body!.transformToByteArray());

  /** The layout of the nodes in `inLayout`, at the next version. */
  const nextLayout = (): Layout => {
    const all = grid.layout(++version, { states: Object.fromEntries([...draining].map((id) => [id, 'draining' as const])) });
    return { ...all, nodes: all.nodes.filter((n) => inLayout.has(n.id)) };
  };
  const apply = async (l: Layout): Promise<void> => {
    const first = grid.nodes.find((n) => inLayout.has(n.nodeId) && !draining.has(n.nodeId))!;
    assert.equal((await applyLayout(first, l)).status, 200);
    // New nodes join the load once they serve.
    await Promise.all([...inLayout].filter((id) => !gateways.has(id)).map(async (id) => {
      await waitFor(`${id} to serve`, async () => (await fetch(`http://${node(id).host}:${node(id).adminPort}/ready`)).status === 200, 20_000);
      gateways.add(id);
    }));
  };
  const statuses = async (): Promise<Map<string, Status>> => {
    const out = new Map<string, Status>();
    for (const id of inLayout) out.set(id, await nodeStatus<Status>(node(id)));
    return out;
  };
  /** Until every node of the layout holds `v`, has no open transition and nothing left to hand off. */
  const settled = (v: number, timeoutMs = 240_000): Promise<Map<string, Status>> => waitFor(`transition to layout ${v} to finish`, async () => {
    const st = await statuses();
    const done = [...st.values()].every((s) => s.rebalance.layoutVersion === v && s.rebalance.openVersions.length === 0 && s.rebalance.phase === 'idle');
    return done ? st : undefined;
  }, timeoutMs, 250).catch(async (e: Error) => {
    // What each node was doing, and the last lines of any node that no longer answers.
    const lines: string[] = [];
    for (const id of inLayout) {
      const s = await nodeStatus<Status>(node(id)).catch(() => undefined);
      lines.push(s ? `${id}: ${JSON.stringify(s.rebalance)}` : `${id}: no answer; last output:\n${node(id).logs().slice(-4000)}`);
    }
    throw new Error(`${e.message}\n${lines.join('\n')}`);
  });

  /** A continuous load through the gateways in the layout: PUT, GET (bytes checked), LIST, DELETE. */
  const failures: string[] = [];
  let ops = 0;
  let loadOn = false;
  let phase = 0;
  const load = async (w: number): Promise<void> => {
    let i = 0;
    const prefix = `load/p${phase}/w${w}`;
    while (loadOn) {
      const gws = grid.nodes.filter((n) => gateways.has(n.nodeId));
      const gw = gws[(w + i) % gws.length];
      const kind = i % 5;
      const key = `${prefix}/obj-${i}`;
      try {
        if (kind === 0 || kind === 1) {
          const body = crypto.randomBytes(500 + ((w * 131 + i * 977) % 20_000));
          await s3(gw).send(new PutObjectCommand({ Bucket: 'scans', Key: key, Body: body }));
          acked.set(key, body);
        } else if (kind === 2) {
          const prev = `${prefix}/obj-${i - 2}`;
          const body = acked.get(prev);
          if (body && !(await get(gw, prev)).equals(body)) failures.push(`GET ${prev} via ${gw.nodeId}: wrong bytes`);
        } else if (kind === 3) {
          await s3(gw).send(new ListObjectsV2Command({ Bucket: 'scans', Prefix: `${prefix}/`, MaxKeys: 100 }));
        } else {
          const victim = `${prefix}/obj-${i - 4}`;
          await s3(gw).send(new DeleteObjectCommand({ Bucket: 'scans', Key: victim }));
          acked.delete(victim);
        }
        ops++;
      } catch (e) {
        failures.push(`${['PUT', 'PUT', 'GET', 'LIST', 'DELETE'][kind]} ${key} via ${gw.nodeId}: ${(e as Error).name}: ${(e as Error).message}`);
      }
      i++;
    }
  };
  let loadDone: Promise<unknown> = Promise.resolve();
  const startLoad = (): void => {
    loadOn = true;
    phase++;
    loadDone = Promise.all(Array.from({ length: 6 }, (_, w) => load(w)));
  };
  const stopLoad = async (): Promise<void> => {
    loadOn = false;
    await loadDone;
  };

  /** Every object reads back byte for byte, and its copies are exactly where its policy places them. */
  const checkPlacement = async (): Promise<void> => {
    const held = new Map<string, Set<string>>();
    const blobOf = new Map<string, string>();
    for (const id of inLayout) {
      held.set(id, new Set(blobIds(node(id))));
      for (const [k, b] of placesOf(node(id))) blobOf.set(k, b);
    }
    const gws = [...inLayout].map(node);
    const wrong: string[] = [];
    for (const [i, [key, body]] of [...acked].entries()) {
      assert.ok((await get(gws[i % gws.length], key)).equals(body), `${key} reads back`);
      const want = dataPlacement(current, 'scans', key).copies.flatMap((c) => c.nodes.map((n) => n.id)).sort();
      const blob = blobOf.get(key);
      const have = [...held].filter(([, ids]) => blob !== undefined && ids.has(blob)).map(([id]) => id).sort();
      if (want.join() !== have.join()) wrong.push(`${key}: on ${have.join(',') || 'no node'}, placed on ${want.join(',')}`);
    }
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${acked.size} objects have copies other than their placement`);
  };
  let current: Layout;
  /** Every active node of the layout holds its capacity-weighted fair share of its site's copies, within 15%. */
  const checkShares = (): void => {
    for (const site of ['dc1', 'dc2', 'dc3']) {
      const nodes = current.nodes.filter((n) => n.site === site && n.state === 'active');
      const counts = nodes.map((n) => blobIds(node(n.id)).length);
      const total = counts.reduce((a, b) => a + b, 0);
      const capacity = nodes.reduce((a, n) => a + n.capacityBytes, 0);
      nodes.forEach((n, i) => {
        const fair = (total * n.capacityBytes) / capacity;
        assert.ok(Math.abs(counts[i] - fair) <= 0.15 * fair, `${n.id} holds ${counts[i]} of ${site}'s ${total} copies (fair share ${Math.round(fair)})`);
      });
    }
  };

  before(async () => {
    grid = await startGridNodes([
      { site: 'dc1', host: '127.0.0.101' }, { site: 'dc2', host: '127.0.0.102' }, { site: 'dc3', host: '127.0.0.103' },
      { site: 'dc1', host: '127.0.0.104' }, { site: 'dc2', host: '127.0.0.105' }, { site: 'dc3', host: '127.0.0.106' },
      { site: 'dc1', host: '127.0.0.107' },
    ], { scrub: { enabled: false }, grid: { rebalance: { maxBytesPerSecond: 0 } } });
    for (const n of grid.nodes.slice(0, 3)) inLayout.add(n.nodeId);
    current = nextLayout();
    await apply(current);
    await waitFor('layout 1 everywhere', async () => (await statuses()).size === 3 && [...(await statuses()).values()].every((s) => s.rebalance.layoutVersion === 1), 20_000);
    await s3(grid.nodes[0]).send(new CreateBucketCommand({ Bucket: 'scans' }));
    // 1200 objects before the first move, so that shares can be measured.
    const keys = Array.from({ length: 1200 }, (_, i) => `base/${String(i).padStart(5, '0')}`);
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < keys.length) {
        const key = keys[next++];
        const body = crypto.randomBytes(200 + (next % 3000));
        await s3(grid.nodes[next % 3]).send(new PutObjectCommand({ Bucket: 'scans', Key: key, Body: body }));
        acked.set(key, body);
      }
    }));
  });
  after(async () => {
    loadOn = false;
    await loadDone;
    clientsOf.destroy();
    await cleanupAllNodes();
  });

  it('adds a node to each site under load: no request fails, and each site moves about half its data', async () => {
    const before = new Map(grid.nodes.slice(0, 3).map((n) => [n.nodeId, new Set(blobIds(n))]));
    startLoad();
    await new Promise((r) => setTimeout(r, 1_000));
    for (const n of grid.nodes.slice(3, 6)) inLayout.add(n.nodeId);
    current = nextLayout();
    await apply(current);
    const st = await settled(current.version);
    await stopLoad();
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${ops + failures.length} requests failed`);
    assert.ok(ops > 50, `only ${ops} requests`);
    for (const [i, n] of grid.nodes.slice(3, 6).entries()) {
      const old = grid.nodes[i];
      const moved = [...before.get(old.nodeId)!].filter((id) => blobIds(n).includes(id)).length;
      const share = moved / before.get(old.nodeId)!.size;
      console.log(`      movement: ${n.nodeId} took ${(share * 100).toFixed(1)}% of ${old.nodeId}'s ${before.get(old.nodeId)!.size} copies (1/2 expected)`);
      assert.ok(share > 0.4 && share < 0.6, `${n.nodeId} took ${(share * 100).toFixed(1)}% of ${old.nodeId}'s copies (expected about 50%)`);
      assert.equal(st.get(n.nodeId)!.rebalance.heldBlobs, st.get(n.nodeId)!.rebalance.ownedBlobs, `${n.nodeId} holds only what it owns`);
    }
    checkShares();
    await checkPlacement();
  });

  it('adds a third node to one site: it takes about a third of that site, and the site stays within 15% of fair shares', async () => {
    const dc1 = grid.nodes.filter((n) => n.nodeId.startsWith('dc1-'));
    const before = new Set(dc1.slice(0, 2).flatMap(blobIds));
    failures.length = 0;
    startLoad();
    inLayout.add(dc1[2].nodeId);
    current = nextLayout();
    await apply(current);
    await settled(current.version);
    await stopLoad();
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} requests failed`);
    const moved = blobIds(dc1[2]).filter((id) => before.has(id)).length / before.size;
    console.log(`      movement: ${dc1[2].nodeId} took ${(moved * 100).toFixed(1)}% of dc1's ${before.size} copies (1/3 expected)`);
    assert.ok(moved > 0.25 && moved < 0.42, `the new node took ${(moved * 100).toFixed(1)}% of the site's copies (expected about 33%)`);
    checkShares();
    await checkPlacement();
  });

  it('a node SIGKILLed in the middle of a transition resumes it after a restart, and nothing is lost', async () => {
    const dc1 = grid.nodes.filter((n) => n.nodeId.startsWith('dc1-'));
    failures.length = 0;
    // Draining the third node moves its copies back to the other two; one of them is killed mid-way.
    draining.add(dc1[2].nodeId);
    current = nextLayout();
    startLoad();
    await apply(current);
    await waitFor('the move to start', async () => (await nodeStatus<Status>(dc1[0])).rebalance.phase !== 'idle', 20_000, 20);
    await dc1[0].kill9();
    await new Promise((r) => setTimeout(r, 1_000));
    await dc1[0].restart();
    await settled(current.version);
    await stopLoad();
    // Copies owed to the killed node by the draining one (as a gateway) are made once it is back.
    const st = await waitFor('the drained node to report it', async () => {
      const s = await nodeStatus<Status>(dc1[2]);
      return s.rebalance.drained ? s : undefined;
    }, 60_000, 250).catch(async (e: Error) => assert.fail(`${e.message}: ${JSON.stringify((await nodeStatus<Status>(dc1[2])).rebalance)}`));
    // Requests through the killed gateway itself fail while it is down: count only the others.
    const others = failures.filter((f) => !f.includes(`via ${dc1[0].nodeId}`));
    assert.deepEqual(others.slice(0, 10), [], `${others.length} requests through live gateways failed`);
    assert.equal(st.rebalance.drained, true, 'the drained node says it can be stopped');
    assert.equal(blobIds(dc1[2]).length, 0, 'the drained node holds no copy');
    await checkPlacement();
  });

  it('scales a site back in under load: the drained node is removed and stopped only once it holds nothing, and no request fails', async () => {
    // dc1's drained third node leaves first; then dc2 goes from 2 nodes to 1.
    const dc1 = grid.nodes.filter((n) => n.nodeId.startsWith('dc1-'));
    const leave = async (id: string): Promise<void> => {
      inLayout.delete(id);
      draining.delete(id);
      gateways.delete(id);
      current = nextLayout();
      await apply(current);
      await settled(current.version);
      await node(id).stop();
    };
    failures.length = 0;
    ops = 0;
    startLoad();
    await leave(dc1[2].nodeId);
    const dc2 = grid.nodes.filter((n) => n.nodeId.startsWith('dc2-'));
    draining.add(dc2[1].nodeId);
    current = nextLayout();
    await apply(current);
    let sawHolding = false;
    await waitFor(`${dc2[1].nodeId} to be drained`, async () => {
      const s = await nodeStatus<Status>(dc2[1]);
      if (!s.rebalance.drained) {
        sawHolding ||= s.rebalance.heldBlobs > 0;
        return undefined;
      }
      return s;
    }, 240_000, 250);
    assert.ok(sawHolding, 'the node held copies while it drained (the test watched a real drain)');
    assert.equal(blobIds(dc2[1]).length, 0, 'the drained node holds no copy');
    await leave(dc2[1].nodeId);
    await stopLoad();
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${ops + failures.length} requests failed`);
    assert.ok(ops > 50, `only ${ops} requests`);
    await checkPlacement();
  });
});

/** key → blob id from a node's places index (read with its own SQLite file; the node keeps running). */
function placesOf(n: StartedNode): Map<string, string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3') as typeof import('better-sqlite3');
  const db = new Database(`${n.dataDir}/meta/places.db`, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT blob_id, key FROM places WHERE bucket = 'scans'").all() as { blob_id: string; key: string }[];
    return new Map(rows.map((r) => [r.key, r.blob_id]));
  } finally {
    db.close();
  }
}
