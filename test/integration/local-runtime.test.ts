import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Layout } from '../../storage-node/src/layout/types';
import { bin } from '../helpers/node-process';
import { isolatedEnv, mustRun, runCommand, type CommandResult } from '../helpers/run-command';

/**
 * `archipel local`, end to end: real node processes started detached by the compiled CLI, on free
 * ports (--ports auto), in a temporary data folder. Tests the runtime (processes, layout, status,
 * env, stop/start, persistence), not replication between nodes.
 */

const API = 'apiVersion: storage.archipel.io/v1alpha1';
const doc = (kind: string, name: string, spec: string): string =>
  `${API}\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec.split('\n').map((l) => `  ${l}`).join('\n')}\n`;

/** Three sites (two primary, one fallback), 2 + 1 + 1 nodes, one copy per site. */
function gridYaml(opts: { policySites?: string[] } = {}): string {
  const docs = [doc('Grid', 'lt', 'partitionCount: 64\ns3:\n  region: eu-west-3')];
  const replicas: Record<string, number> = { paris: 2, lyon: 1, lille: 1 };
  for (const [site, role] of [['paris', 'primary'], ['lyon', 'primary'], ['lille', 'fallback']]) {
    docs.push(doc('Site', site, `grid: lt\nrole: ${role}`));
    docs.push(doc('NodePool', `${site}-pool`, `site: ${site}\nreplicas: ${replicas[site]}\nstorage:\n  size: 1Gi`));
  }
  const rules = (opts.policySites ?? ['paris', 'lyon', 'lille']).map((s) => `  - site: ${s}`).join('\n');
  docs.push(doc('ReplicationPolicy', 'default', `grid: lt\nrules:\n${rules}\ningest: balanced`));
  return docs.join('---\n');
}

interface StateNode { id: string; site: string; host: string; s3Port: number; adminPort: number; rpcPort: number; pid: number | null }
interface State { grid: string; nodes: StateNode[]; layout: Layout | null }
interface Secrets { adminToken: string; accessKeyId: string; secretAccessKey: string }

/** A live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** SIGKILLs every process whose command line mentions `dir` (the nodes this file started, whatever happened). */
function killProcessesUnder(dir: string): void {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) process.kill(Number(entry), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

describe('local runtime: archipel local up, env, status, stop-site, start-site, down, scale', function () {
  this.timeout(180_000);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-local-'));
  const data = path.join(root, 'grid');
  const file = path.join(root, 'grid.yaml');
  const env = isolatedEnv(path.join(root, 'home'));
  const clients: S3Client[] = [];

  const cli = (args: string[], timeoutMs = 90_000): Promise<CommandResult> =>
    runCommand(process.execPath, [bin(), 'local', ...args, '--data', data], { env, timeoutMs });
  const ok = async (args: string[]): Promise<CommandResult> => {
    const r = await cli(args);
    assert.equal(r.code, 0, `archipel local ${args.join(' ')}: exit ${r.code}\n--- stderr ---\n${r.stderr}\n--- stdout ---\n${r.stdout}`);
    return r;
  };
  const state = (): State => JSON.parse(fs.readFileSync(path.join(data, 'local-grid.json'), 'utf8')) as State;
  const secrets = (): Secrets => JSON.parse(fs.readFileSync(path.join(data, 'secrets.json'), 'utf8')) as Secrets;
  const layoutOf = async (n: StateNode): Promise<Layout | null> => {
    const res = await fetch(`http://${n.host}:${n.adminPort}/v1/layout`, { headers: { authorization: `Bearer ${secrets().adminToken}` }, signal: AbortSignal.timeout(3_000) });
    assert.equal(res.status, 200);
    return ((await res.json()) as { layout: Layout | null }).layout;
  };
  const s3For = (n: StateNode): S3Client => {
    const c = new S3Client({
      endpoint: `http://${n.host}:${n.s3Port}`, region: 'eu-west-3', forcePathStyle: true, maxAttempts: 1,
      credentials: { accessKeyId: secrets().accessKeyId, secretAccessKey: secrets().secretAccessKey },
    });
    clients.push(c);
    return c;
  };
  const readBody = async (c: S3Client, key: string): Promise<string> =>
    (await c.send(new GetObjectCommand({ Bucket: 'records', Key: key }))).Body!.transformToString();

  before(() => fs.writeFileSync(file, gridYaml()));
  after(() => {
    for (const c of clients) c.destroy();
    killProcessesUnder(root);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('up starts one process per node on its site\'s loopback addresses, applies one layout to all, prints endpoints and credentials', async () => {
    const r = await ok(['up', '-f', file, '--ports', 'auto']);
    const s = state();
    assert.deepEqual(s.nodes.map((n) => [n.id, n.host]).sort(), [
      ['lille-pool-0', '127.0.0.31'], ['lyon-pool-0', '127.0.0.21'], ['paris-pool-0', '127.0.0.11'], ['paris-pool-1', '127.0.0.12'],
    ]);
    for (const n of s.nodes) assert.ok(n.pid && alive(n.pid), `${n.id} runs`);
    for (const n of s.nodes) assert.match(r.stdout, new RegExp(`http://${n.host.replace(/\./g, '\\.')}:${n.s3Port}`));
    assert.ok(r.stdout.includes(secrets().accessKeyId) && r.stdout.includes(secrets().secretAccessKey), 'credentials printed');
    assert.equal(fs.statSync(path.join(data, 'secrets.json')).mode & 0o777, 0o600);
    const layouts = await Promise.all(s.nodes.map(layoutOf));
    for (const l of layouts) {
      assert.equal(l?.version, 1);
      assert.deepEqual(l?.nodes.map((n) => n.id).sort(), s.nodes.map((n) => n.id).sort());
    }
  });

  it('env prints export lines that a shell evaluates into a working S3 configuration', async () => {
    const cmd = `eval "$("${process.execPath}" "${bin()}" local env --data "${data}")" && env`;
    const out = await mustRun('bash', ['-c', cmd], { env, timeoutMs: 30_000 });
    const vars = Object.fromEntries(out.split('\n').filter((l) => l.startsWith('AWS_')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const first = state().nodes.find((n) => n.id === 'paris-pool-0')!;
    assert.equal(vars.AWS_ENDPOINT_URL, `http://${first.host}:${first.s3Port}`, 'a node of the first primary site');
    assert.equal(vars.AWS_REGION, 'eu-west-3');
    const c = new S3Client({
      endpoint: vars.AWS_ENDPOINT_URL, region: vars.AWS_REGION, forcePathStyle: true, maxAttempts: 1,
      credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY },
    });
    clients.push(c);
    await c.send(new CreateBucketCommand({ Bucket: 'records' }));
    await c.send(new PutObjectCommand({ Bucket: 'records', Key: 'patient-42/scan', Body: 'kept across down and up' }));
    if (fs.existsSync('/usr/bin/aws')) {
      const ls = await mustRun('bash', ['-c', `eval "$("${process.execPath}" "${bin()}" local env --data "${data}")" && aws s3 ls`], { env, timeoutMs: 60_000 });
      assert.match(ls, /records/);
    }
  });

  it('status shows every node up and ready, and the nodes agreeing on the layout', async () => {
    const r = await ok(['status']);
    for (const n of state().nodes) assert.match(r.stdout, new RegExp(`${n.id}\\s+${n.host.replace(/\./g, '\\.')}:${n.s3Port}\\s+up \\(pid ${n.pid}\\)\\s+yes\\s+1\\s`));
    assert.match(r.stdout, /every running node holds version 1 \(4 of 4 nodes running\)/);
    assert.match(r.stdout, /Degraded policies: none/);
  });

  it('up on a running grid starts nothing and keeps the layout version', async () => {
    const before = state().nodes.map((n) => n.pid);
    const r = await ok(['up']);
    assert.match(r.stderr, /already running/);
    assert.deepEqual(state().nodes.map((n) => n.pid), before);
    assert.equal(state().layout?.version, 1);
  });

  it('stop-site SIGKILLs every node of the site, and status shows them down', async () => {
    const victims = state().nodes.filter((n) => n.site === 'paris');
    await ok(['stop-site', 'paris']);
    for (const n of victims) assert.ok(!alive(n.pid!), `${n.id} (pid ${n.pid}) is gone`);
    const r = await ok(['status']);
    for (const n of victims) assert.match(r.stdout, new RegExp(`${n.id}\\s+\\S+\\s+down`));
    assert.match(r.stdout, /paris 0\/2 \(down\)/);
    assert.match(r.stdout, /lyon-pool-0\s+\S+\s+up/);
  });

  it('start-site brings the site back on the same addresses, serving and holding the layout', async () => {
    const before = state().nodes.filter((n) => n.site === 'paris');
    await ok(['start-site', 'paris']);
    const after = state().nodes.filter((n) => n.site === 'paris');
    assert.deepEqual(after.map((n) => [n.host, n.s3Port, n.adminPort]), before.map((n) => [n.host, n.s3Port, n.adminPort]));
    for (const n of after) {
      assert.ok(n.pid && alive(n.pid));
      assert.equal((await layoutOf(n))?.version, 1);
    }
    assert.equal(await readBody(s3For(after.find((n) => n.id === 'paris-pool-0')!), 'patient-42/scan'), 'kept across down and up');
  });

  it('refuses an unknown site with a readable message', async () => {
    const r = await cli(['stop-site', 'atlantis']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown site "atlantis": grid lt has paris, lyon, lille/);
  });

  it('down stops every process; up brings the same grid back with its credentials, ids, layout and data', async () => {
    const before = state();
    const keys = secrets();
    await ok(['down']);
    for (const n of before.nodes) assert.ok(!alive(n.pid!), `${n.id} stopped`);
    assert.ok(state().nodes.every((n) => n.pid === null));
    await ok(['up']);
    const again = state();
    assert.deepEqual(secrets(), keys);
    assert.deepEqual(again.nodes.map((n) => [n.id, n.host]), before.nodes.map((n) => [n.id, n.host]));
    for (const n of again.nodes) assert.ok(n.pid && alive(n.pid));
    const sameAddresses = again.nodes.every((n, i) => n.s3Port === before.nodes[i].s3Port && n.rpcPort === before.nodes[i].rpcPort);
    const versions = await Promise.all(again.nodes.map(async (n) => (await layoutOf(n))?.version));
    assert.deepEqual(versions, again.nodes.map(() => (sameAddresses ? 1 : 2)), 'unchanged grid, unchanged version (+1 only if a port had to change)');
    assert.equal(await readBody(s3For(again.nodes.find((n) => n.id === 'paris-pool-0')!), 'patient-42/scan'), 'kept across down and up');
  });

  it('scale adds a node to a pool: it starts, joins the layout, takes its share, and serves what was there before', async () => {
    const r = await ok(['scale', 'lyon-pool', '--replicas', '2']);
    const st = state();
    const added = st.nodes.find((n) => n.id === 'lyon-pool-1');
    assert.ok(added && added.pid && alive(added.pid), `lyon-pool-1 runs\n${r.stderr}`);
    for (const n of st.nodes) assert.ok((await layoutOf(n))?.nodes.some((x) => x.id === 'lyon-pool-1' && x.state === 'active'), `${n.id} has lyon-pool-1 in its layout`);
    const status = await fetch(`http://${added.host}:${added.adminPort}/v1/status`, { headers: { authorization: `Bearer ${secrets().adminToken}` } });
    const rb = ((await status.json()) as { rebalance: { phase: string; openVersions: number[]; heldBlobs: number; ownedBlobs: number } }).rebalance;
    assert.deepEqual([rb.phase, rb.openVersions], ['idle', []], 'the transition is over when scale returns');
    assert.equal(rb.heldBlobs, rb.ownedBlobs);
    assert.equal(await readBody(s3For(added), 'patient-42/scan'), 'kept across down and up');
    const shown = await ok(['status']);
    assert.match(shown.stdout, /REBALANCE/);
    assert.match(shown.stdout, /lyon-pool-1/);
  });

  it('scale back in drains the node, then removes it from the layout and stops it; nothing is lost', async () => {
    const before = state().nodes.find((n) => n.id === 'lyon-pool-1')!;
    await ok(['scale', 'lyon-pool', '--replicas', '1']);
    const st = state();
    assert.ok(!st.nodes.some((n) => n.id === 'lyon-pool-1'), 'gone from the state');
    assert.ok(!alive(before.pid!), 'its process is stopped');
    for (const n of st.nodes) assert.ok(!(await layoutOf(n))?.nodes.some((x) => x.id === 'lyon-pool-1'), `${n.id}: not in the layout any more`);
    for (const n of st.nodes) assert.equal(await readBody(s3For(n), 'patient-42/scan'), 'kept across down and up', `read through ${n.id}`);
  });

  it('scale refuses an unknown pool and a count below 1, changing nothing', async () => {
    const before = fs.readFileSync(path.join(data, 'local-grid.json'), 'utf8');
    for (const args of [['scale', 'nowhere-pool', '--replicas', '2'], ['scale', 'lyon-pool', '--replicas', '0']]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.ok(r.stderr.trim().length > 0, 'says why');
    }
    assert.equal(fs.readFileSync(path.join(data, 'local-grid.json'), 'utf8'), before);
  });

  describe('bad input', () => {
    const badData = path.join(root, 'bad');
    const refused = async (yaml: string, message: RegExp): Promise<void> => {
      const f = path.join(root, 'bad.yaml');
      fs.writeFileSync(f, yaml);
      const r = await runCommand(process.execPath, [bin(), 'local', 'up', '-f', f, '--data', badData, '--ports', 'auto'], { env, timeoutMs: 30_000 });
      assert.equal(r.code, 2, `exit code 2 expected\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.ok(!fs.existsSync(badData), 'nothing created, nothing started');
    };

    it('refuses invalid YAML, saying where', async () => {
      await refused('kind: [Grid\n  metadata: {', /not a usable grid description:\n\s+- document 1: YAML error/);
    });

    it('refuses a policy that names an unknown site, with the planner\'s message', async () => {
      await refused(gridYaml({ policySites: ['paris', 'atlantis'] }), /ReplicationPolicy default: spec\.rules\[1\]\.site "atlantis" does not name a Site of grid lt/);
    });
  });
});
