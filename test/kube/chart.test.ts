// Packaging: the Helm chart charts/archipel-operator and docker/Dockerfile. Without a cluster: the
// chart's CRDs are those of crds/, its RBAC covers what the builders build and the informers watch,
// the Dockerfile builds what the chart and the StatefulSets run. With helm: lint and render. On a
// real API server: the rendered chart applies server-side and installs with helm, under the
// restricted Pod Security Standard, and `kubectl auth can-i` shows the operator's service account
// can do what the operator does and nothing it must not.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import YAML from 'yaml';
import { buildBucketSecret, buildGridObjects, NODE_UID, PATHS } from '../../operator/src/builders';
import { bucket, SECRETS, threeSites } from '../../operator/src/builders/fixtures';
import { WATCHED_RESOURCES } from '../../operator/src/runtime/informers';
import { findBinDir, kubeTestsRequired, skipWithoutKubeBinaries } from './binaries';
import { ControlPlane } from './control-plane';
import { KubeObject, waitFor } from './kube-client';
import { aliveGroups, describeGroup } from './leak-check';

/** The repository root, found upwards from the compiled test (dist/ or .build/<name>/). */
function repoRoot(): string {
  for (let dir = __dirname, i = 0; i < 8; dir = path.dirname(dir), i++) {
    if (fs.existsSync(path.join(dir, 'crds')) && fs.existsSync(path.join(dir, 'charts', 'archipel-operator', 'Chart.yaml'))) return dir;
  }
  throw new Error('charts/archipel-operator not found above the compiled test');
}

const root = repoRoot();
const chartDir = path.join(root, 'charts', 'archipel-operator');
const dockerfilePath = path.join(root, 'docker', 'Dockerfile');

interface RunResult { code: number; stdout: string; stderr: string }

/** Runs a binary with a private HOME and helm folders; resolves with the exit code, never rejects on one. */
function run(file: string, args: string[], home: string, kubeconfig: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        KUBECONFIG: kubeconfig,
        HELM_CACHE_HOME: path.join(home, 'helm', 'cache'),
        HELM_CONFIG_HOME: path.join(home, 'helm', 'config'),
        HELM_DATA_HOME: path.join(home, 'helm', 'data'),
      },
      timeout: 60_000,
      maxBuffer: 16 * 1024 * 1024,
      killSignal: 'SIGKILL',
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      if (code === -1) reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${err!.message}\n${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

const docsOf = (text: string): KubeObject[] =>
  YAML.parseAllDocuments(text).map((d) => d.toJS() as KubeObject).filter((o) => o && typeof o === 'object');

const find = (docs: KubeObject[], kind: string, name?: string): KubeObject[] =>
  docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));

// ---- what the operator does, kept beside the builders' and informers' resources -------------------

/** A `kubectl auth can-i` question: resource as kubectl names it (`plural.group`). */
interface Access {
  verb: string;
  resource: string;
  subresource?: string;
  name?: string;
  /** A namespace, '*' for all of them, or undefined for a cluster-scoped resource. */
  namespace?: string;
}

const GROUP = 'storage.archipel.io';
const CUSTOM = ['grids', 'sites', 'nodepools', 'replicationpolicies', 'buckets'];
/** The custom kinds that own objects (owner references with blockOwnerDeletion). */
const OWNERS = ['grids', 'sites', 'nodepools', 'buckets'];

/** `plural.group` for a kind and apiVersion, as kubectl names resources. */
function resourceName(apiVersion: string, plural: string): string {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  return group ? `${plural}.${group}` : plural;
}

const PLURALS: Record<string, string> = {
  StatefulSet: 'statefulsets', Service: 'services', Secret: 'secrets', ConfigMap: 'configmaps',
  PodDisruptionBudget: 'poddisruptionbudgets', Pod: 'pods',
};

/** Applied with server-side apply: create when absent, patch, get to read back. */
const APPLIED = ['statefulsets.apps', 'services', 'secrets', 'configmaps', 'poddisruptionbudgets.policy'];
/** Listed and watched by the informers (besides the custom resources). */
const WATCHED = ['statefulsets.apps', 'pods', 'services', 'secrets'];

/** What the operator needs in every namespace it watches. */
function needsIn(namespace: string): Access[] {
  const verbs = (resources: string[], vs: string[], extra: Partial<Access> = {}): Access[] =>
    resources.flatMap((resource) => vs.map((verb) => ({ verb, resource, namespace, ...extra })));
  return [
    ...verbs(CUSTOM.map((p) => `${p}.${GROUP}`), ['get', 'list', 'watch', 'patch']),
    ...verbs(CUSTOM.map((p) => `${p}.${GROUP}`), ['get', 'patch', 'update'], { subresource: 'status' }),
    ...verbs(OWNERS.map((p) => `${p}.${GROUP}`), ['update'], { subresource: 'finalizers' }),
    ...verbs(APPLIED, ['get', 'create', 'patch']),
    ...verbs(WATCHED, ['get', 'list', 'watch']),
    ...verbs(['events', 'events.events.k8s.io'], ['create', 'patch']),
  ];
}

/** Leader election in the release namespace: its own Lease only (a create cannot name one). */
function leaderNeeds(namespace: string, lease: string): Access[] {
  return [
    { verb: 'create', resource: 'leases.coordination.k8s.io', namespace },
    { verb: 'get', resource: 'leases.coordination.k8s.io', name: lease, namespace },
    { verb: 'update', resource: 'leases.coordination.k8s.io', name: lease, namespace },
  ];
}

/** What it must never do, whatever it watches. */
function never(namespace: string, releaseNamespace: string): Access[] {
  return [
    { verb: 'delete', resource: 'nodes' },
    { verb: 'patch', resource: 'nodes' },
    { verb: 'create', resource: 'clusterroles.rbac.authorization.k8s.io' },
    { verb: 'create', resource: 'clusterrolebindings.rbac.authorization.k8s.io' },
    { verb: 'create', resource: 'rolebindings.rbac.authorization.k8s.io', namespace },
    { verb: 'escalate', resource: 'roles.rbac.authorization.k8s.io', namespace },
    { verb: 'update', resource: 'customresourcedefinitions.apiextensions.k8s.io' },
    { verb: 'delete', resource: 'customresourcedefinitions.apiextensions.k8s.io' },
    { verb: 'create', resource: 'pods', namespace },
    { verb: 'create', resource: 'pods', subresource: 'exec', namespace },
    { verb: 'delete', resource: 'pods', namespace },
    { verb: 'delete', resource: 'secrets', namespace },
    { verb: 'delete', resource: 'statefulsets.apps', namespace },
    { verb: 'delete', resource: 'persistentvolumeclaims', namespace },
    { verb: 'delete', resource: `buckets.${GROUP}`, namespace },
    { verb: 'delete', resource: `grids.${GROUP}`, namespace },
    { verb: 'update', resource: `grids.${GROUP}`, namespace },
    { verb: 'create', resource: 'deployments.apps', namespace },
    { verb: 'impersonate', resource: 'serviceaccounts', namespace },
    { verb: 'create', resource: 'serviceaccounts', subresource: 'token', namespace },
    { verb: 'update', resource: 'leases.coordination.k8s.io', name: 'kube-scheduler', namespace: 'kube-system' },
    { verb: 'update', resource: 'leases.coordination.k8s.io', name: 'someone-else', namespace: releaseNamespace },
  ];
}

const describeAccess = (a: Access): string =>
  `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.name ? ` ${a.name}` : ''}` +
  (a.namespace === '*' ? ' in all namespaces' : a.namespace ? ` in ${a.namespace}` : '');

// ---- the Dockerfile, read as stages ----------------------------------------------------------------

interface Stage { from: string; name?: string; lines: string[] }

function dockerStages(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from) stages.push({ from: from[1], name: from[2], lines: [] });
    else if (stages.length === 0) {
      const arg = /^ARG\s+(\w+)=(\S+)$/.exec(line);
      if (arg) args[arg[1]] = arg[2];
    } else stages.at(-1)!.lines.push(line);
  }
  return { args, stages };
}

describe('operator chart and images: files, no cluster', () => {
  it("ships exactly the CRDs of crds/ in the chart's crds/ (copies: helm would also install crds/samples/ through a symlink)", () => {
    const top = fs.readdirSync(path.join(root, 'crds')).filter((f) => f.endsWith('.yaml')).sort();
    const inChart = fs.readdirSync(path.join(chartDir, 'crds')).sort();
    assert.deepEqual(inChart, top, 'the same files, nothing else (no samples: helm installs every file under crds/)');
    for (const f of top) {
      assert.equal(fs.readFileSync(path.join(chartDir, 'crds', f), 'utf8'), fs.readFileSync(path.join(root, 'crds', f), 'utf8'),
        `charts/archipel-operator/crds/${f} differs from crds/${f}: run \`cp crds/*.yaml charts/archipel-operator/crds/\``);
    }
  });

  it('covers every object the builders build and every resource the informers watch', () => {
    const { grid, sites, pools } = threeSites();
    const built = buildGridObjects({ grid, sites, pools, secrets: SECRETS });
    assert.deepEqual(built.problems, []);
    const objects = [...built.objects, buildBucketSecret(bucket('records'), grid, { accessKeyId: 'AKIDRECORDS', secretAccessKey: 'secret-access-key' })];
    for (const o of objects) {
      const plural = PLURALS[o.kind!];
      assert.ok(plural, `the builders build a ${o.kind}: give the chart's rules (templates/_helpers.tpl) and APPLIED here its verbs`);
      assert.ok(APPLIED.includes(resourceName(o.apiVersion!, plural)), `${o.kind} is applied: add it to APPLIED and to the chart's rules`);
    }
    for (const r of WATCHED_RESOURCES) {
      const name = resourceName(r.apiVersion, r.plural);
      assert.ok(r.primary ? CUSTOM.includes(r.plural) : WATCHED.includes(name), `the informers watch ${name}: add list and watch to the chart's rules and here`);
    }
  });

  it('builds both images from one Dockerfile: pinned Node, one Node major and Debian in every stage, npm ci --omit=dev, tsc', () => {
    const { args, stages } = dockerStages(fs.readFileSync(dockerfilePath, 'utf8'));
    const nodeVersion = args.NODE_VERSION;
    assert.match(nodeVersion ?? '', /^\d+\.\d+\.\d+$/, 'NODE_VERSION is an exact release');
    const [major, minor] = nodeVersion.split('.').map(Number);
    const engines = /^>=(\d+)\.(\d+)$/.exec(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).engines.node)!;
    assert.ok(major > Number(engines[1]) || (major === Number(engines[1]) && minor >= Number(engines[2])), `Node ${nodeVersion} meets engines.node`);
    const byName = new Map(stages.map((s) => [s.name, s]));
    for (const name of ['deps', 'build']) {
      assert.equal(byName.get(name)?.from, 'node:${NODE_VERSION}-bookworm', `${name} stage: the pinned Node on Debian 12`);
    }
    assert.ok(byName.get('deps')!.lines.some((l) => /^RUN npm ci --omit=dev\b/.test(l)), 'deps: production dependencies only');
    assert.ok(byName.get('build')!.lines.some((l) => /^RUN npm ci\b(?!.*--omit)/.test(l)), 'build: every dependency, for tsc');
    assert.ok(byName.get('build')!.lines.some((l) => /^RUN npx tsc -p docker\/tsconfig\.build\.json$/.test(l)), 'build: tsc');
    assert.equal(byName.get('runtime')?.from, `gcr.io/distroless/nodejs${major}-debian12`, 'runtime: the same Node major and Debian as the deps stage built better-sqlite3 for');
    assert.deepEqual([byName.get('operator')?.from, byName.get('storage-node')?.from], ['runtime', 'runtime']);
  });

  it('runs the images as uid 10001 with the archipel CLI, from dist/ and production node_modules only, no shell step', () => {
    const { stages } = dockerStages(fs.readFileSync(dockerfilePath, 'utf8'));
    const runtimeStages = stages.filter((s) => ['runtime', 'operator', 'storage-node'].includes(s.name ?? ''));
    const runtime = runtimeStages[0];
    assert.deepEqual(runtime.lines.filter((l) => /^COPY\b/.test(l)), [
      'COPY --from=deps /src/node_modules ./node_modules',
      'COPY --from=build /src/dist ./dist',
    ]);
    assert.ok(runtime.lines.includes(`USER ${NODE_UID}:${NODE_UID}`), 'the uid the StatefulSet runs the node as');
    const bin = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).bin.archipel as string;
    assert.ok(runtime.lines.includes(`ENTRYPOINT ["/nodejs/bin/node", "/app/${bin}"]`), 'ENTRYPOINT is the package bin');
    for (const s of runtimeStages) assert.deepEqual(s.lines.filter((l) => /^(RUN|ADD)\b/.test(l)), [], `${s.name}: no RUN (no shell in distroless)`);
    const cmd = (name: string): string[] => JSON.parse(/^CMD (.*)$/.exec(stages.find((s) => s.name === name)!.lines.find((l) => l.startsWith('CMD '))!)![1]);
    assert.deepEqual(cmd('storage-node'), ['node', '--config', PATHS.configFile]);
    assert.deepEqual(cmd('operator'), ['operator']);
    const values = YAML.parse(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8'));
    assert.deepEqual([values.podSecurityContext.runAsUser, values.podSecurityContext.runAsNonRoot], [NODE_UID, true], 'the chart runs the operator as the image user');
    // What the build stage compiles is what .dockerignore sends.
    const build = JSON.parse(fs.readFileSync(path.join(root, 'docker', 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    const ignore = fs.readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n');
    for (const dir of build.include.map((d) => d.replace(/^\.\.\//, ''))) {
      assert.ok(stages.find((s) => s.name === 'build')!.lines.some((l) => l.startsWith(`COPY ${dir} `) || l.startsWith(`COPY ${dir}/src `)), `build copies ${dir}`);
      assert.ok(ignore.some((l) => l === `!${dir}/` || l.startsWith(`!${dir}/`)), `.dockerignore sends ${dir}`);
    }
  });
});

describe('operator chart with helm: lint and render', function () {
  this.timeout(120_000);
  let helm = '';
  let home = '';
  const template = async (release: string, namespace: string, set: string[] = []): Promise<RunResult> =>
    run(helm, ['template', release, chartDir, '--namespace', namespace, ...set.flatMap((s) => ['--set', s])], home, path.join(home, 'no-kubeconfig'));

  before(function () {
    const bin = findBinDir(['helm']);
    if (!bin) {
      if (kubeTestsRequired()) throw new Error('helm missing: run test/kube/setup.sh');
      console.warn('    (skipped: no helm binary; run test/kube/setup.sh, see test/kube/README.md)');
      this.skip();
    }
    helm = path.join(bin, 'helm');
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-chart-'));
  });

  after(() => {
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('passes helm lint --strict with the default values and with watchNamespaces', async () => {
    for (const set of [[], ['watchNamespaces={team-a,team-b}', 'replicas=2']]) {
      const out = await run(helm, ['lint', '--strict', chartDir, ...set.flatMap((s) => ['--set', s])], home, path.join(home, 'no-kubeconfig'));
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.match(out.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(out.stdout, /\[(WARNING|ERROR)\]/, out.stdout);
    }
  });

  it('renders a ClusterRole by default, and only namespaced Roles with watchNamespaces, with the matching --namespace flags', async () => {
    const all = await template('archipel-operator', 'archipel-system');
    assert.equal(all.code, 0, all.stderr);
    const docs = docsOf(all.stdout);
    assert.deepEqual(find(docs, 'ClusterRole').map((d) => d.metadata.name), ['archipel-operator']);
    assert.deepEqual(find(docs, 'Role').map((d) => `${d.metadata.namespace}/${d.metadata.name}`), ['archipel-system/archipel-operator-leader-election']);
    const args = find(docs, 'Deployment')[0].spec.template.spec.containers[0].args as string[];
    assert.deepEqual(args.filter((a) => a.startsWith('--namespace')), []);
    for (const d of docs.filter((o) => o.kind !== 'ClusterRole' && o.kind !== 'ClusterRoleBinding')) {
      assert.equal(d.metadata.namespace, 'archipel-system', `${d.kind} ${d.metadata.name} names its namespace (kubectl apply of the rendered output)`);
    }

    const some = await template('archipel-operator', 'archipel-system', ['watchNamespaces={team-a,team-b}']);
    assert.equal(some.code, 0, some.stderr);
    const nsDocs = docsOf(some.stdout);
    assert.deepEqual([...find(nsDocs, 'ClusterRole'), ...find(nsDocs, 'ClusterRoleBinding')], [], 'nothing cluster-wide');
    assert.deepEqual(find(nsDocs, 'Role').map((d) => d.metadata.namespace).sort(), ['archipel-system', 'team-a', 'team-b']);
    assert.deepEqual(find(nsDocs, 'RoleBinding').map((d) => d.metadata.namespace).sort(), ['archipel-system', 'team-a', 'team-b']);
    const nsArgs = find(nsDocs, 'Deployment')[0].spec.template.spec.containers[0].args as string[];
    assert.deepEqual(nsArgs.filter((a) => a.startsWith('--namespace')), ['--namespace=team-a', '--namespace=team-b']);
  });

  it('refuses two replicas without leader election, a misspelt value and a namespace that is not a DNS label', async () => {
    const cases: [string[], RegExp][] = [
      [['replicas=2', 'leaderElection.enabled=false'], /replicas > 1 needs leaderElection\.enabled=true/],
      [['watchNamespace=team-a'], /additional properties 'watchNamespace' not allowed/],
      [['watchNamespaces={Team_A}'], /'Team_A' does not match pattern/],
    ];
    for (const [set, message] of cases) {
      const out = await template('archipel-operator', 'archipel-system', set);
      assert.notEqual(out.code, 0, `${set.join(' ')} renders`);
      assert.match(out.stderr, message);
    }
    const single = docsOf((await template('archipel-operator', 'archipel-system', ['leaderElection.enabled=false'])).stdout);
    assert.ok((find(single, 'Deployment')[0].spec.template.spec.containers[0].args as string[]).includes('--no-leader-election'));
    assert.deepEqual(find(single, 'Role'), [], 'no Lease rights without leader election');
  });
});

describe('operator chart on a real API server', function () {
  this.timeout(300_000);
  let cp: ControlPlane | undefined;
  let helmHome = '';
  const pgids: number[] = [];

  /** Cluster-wide: rendered with helm template and applied with kubectl apply --server-side. */
  const wide = { release: 'archipel-operator', namespace: 'archipel-system', sa: 'archipel-operator' };
  /** Namespaced: installed with helm install, two replicas. */
  const tenant = { release: 'tenants-archipel-operator', namespace: 'archipel-tenants', sa: 'tenants-archipel-operator', watch: ['team-a', 'team-b'] };

  const kubectl = (args: string[]): Promise<string> => cp!.kubectl(args);
  const bin = (name: string): string => path.join(cp!.binDir, name);

  /** The answers of `kubectl auth can-i` as `sa` that differ from `want`. */
  async function wrongAnswers(sa: string, namespace: string, accesses: Access[], want: 'yes' | 'no'): Promise<string[]> {
    const wrong: string[] = [];
    const queue = [...accesses];
    const worker = async (): Promise<void> => {
      for (let a = queue.shift(); a; a = queue.shift()) {
        const args = ['auth', 'can-i', a.verb, a.name ? `${a.resource}/${a.name}` : a.resource,
          ...(a.subresource ? ['--subresource', a.subresource] : []),
          // A cluster-scoped resource is asked about with no namespace (kubectl warns otherwise).
          ...(a.namespace === '*' || a.namespace === undefined ? ['--all-namespaces'] : ['--namespace', a.namespace]),
          '--as', `system:serviceaccount:${namespace}:${sa}`];
        const out = await run(bin('kubectl'), args, cp!.dir, cp!.kubeconfigPath);
        const answer = out.stdout.trim();
        // A misspelt resource answers "no" with a warning: that would make a "must not" pass for nothing.
        if (/warning|error/i.test(out.stderr) || (answer !== 'yes' && answer !== 'no')) wrong.push(`kubectl ${args.join(' ')}: ${out.stdout}${out.stderr}`);
        else if (answer !== want) wrong.push(`${describeAccess(a)}: ${answer}`);
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return wrong;
  }

  const deploymentOf = (namespace: string, name: string): Promise<KubeObject> =>
    cp!.client.get(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`);

  /** Waits for the ReplicaSet controller to create `count` pods: the restricted Pod Security level admitted them. */
  const waitPodsCreated = async (namespace: string, release: string, count: number): Promise<KubeObject[]> => {
    const selector = `labelSelector=app.kubernetes.io%2Finstance%3D${release}`;
    try {
      return await waitFor(`${count} operator pods in ${namespace}`, async () => {
        const pods = (await cp!.client.list(`/api/v1/namespaces/${namespace}/pods?${selector}`)).items;
        return pods.length === count ? pods : undefined;
      }, 30_000, 250);
    } catch (err) {
      // A pod refused by Pod Security shows as the ReplicaSet's ReplicaFailure condition.
      const sets = (await cp!.client.list(`/apis/apps/v1/namespaces/${namespace}/replicasets?${selector}`)).items;
      const why = sets.flatMap((rs) => (rs.status?.conditions ?? []).map((c: { message: string }) => c.message));
      throw new Error(`${(err as Error).message}: ${why.join('; ') || 'no ReplicaSet condition'}`);
    }
  };

  const restrictedNamespace = async (name: string): Promise<void> => {
    await kubectl(['create', 'namespace', name]);
    await kubectl(['label', 'namespace', name, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/enforce-version=latest']);
  };

  before(async function () {
    skipWithoutKubeBinaries(this);
    cp = await ControlPlane.start({ startTimeoutMs: 60_000 });
    pgids.push(...cp.pids());
    helmHome = cp.dir;
    for (const ns of tenant.watch) await kubectl(['create', 'namespace', ns]);
  });

  after(async () => {
    await cp?.stop();
    const left = aliveGroups(pgids);
    assert.deepEqual(left.map(describeGroup), [], 'no control-plane process is left');
  });

  it('installs with helm install and watchNamespaces: the five CRDs from crds/ Established, a two-replica Deployment, NOTES that say what to apply next', async () => {
    await restrictedNamespace(tenant.namespace);
    const out = await cp!.helm(['install', tenant.release, chartDir, '--namespace', tenant.namespace,
      '--set', `watchNamespaces={${tenant.watch.join(',')}}`, '--set', 'replicas=2']);
    const waited = await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=archipel']);
    assert.equal(waited.trim().split('\n').length, 5, waited);
    assert.equal((await kubectl(['get', 'grids', '--all-namespaces', '-o', 'name'])).trim(), '', 'no sample was installed as a CRD');
    for (const want of ['kubectl apply --server-side -n team-a -f crds/samples/three-sites.yaml', 'crds/samples/bucket.yaml',
      "records-s3 -o jsonpath='{.data.AWS_SECRET_ACCESS_KEY}'", 'watching team-a, team-b', `rollout status deployment/${tenant.release}`]) {
      assert.ok(out.includes(want), `NOTES say ${JSON.stringify(want)}:\n${out}`);
    }
    const deployment = await deploymentOf(tenant.namespace, tenant.release);
    assert.equal(deployment.spec.replicas, 2);
    const [container] = deployment.spec.template.spec.containers;
    assert.deepEqual(container.args, ['operator', '--metrics-port=8080', '--log-level=info', '--log-format=json', '--leader-election',
      `--lease-name=${tenant.release}`, '--namespace=team-a', '--namespace=team-b']);
    assert.ok(deployment.spec.template.spec.affinity?.podAntiAffinity, 'two replicas prefer two nodes');
    await waitPodsCreated(tenant.namespace, tenant.release, 2);
  });

  it('applies `helm template --include-crds` with kubectl apply --server-side over the installed CRDs, under the restricted Pod Security level', async () => {
    await restrictedNamespace(wide.namespace);
    const rendered = await run(bin('helm'), ['template', wide.release, chartDir, '--namespace', wide.namespace, '--include-crds'], helmHome, cp!.kubeconfigPath);
    assert.equal(rendered.code, 0, rendered.stderr);
    const file = path.join(cp!.dir, 'archipel-operator.yaml');
    fs.writeFileSync(file, rendered.stdout);
    const applied = await kubectl(['apply', '--server-side', '-f', file]);
    const kinds = docsOf(rendered.stdout).map((d) => `${d.kind}/${d.metadata.name}`);
    assert.equal(applied.trim().split('\n').length, kinds.length, applied);
    assert.doesNotMatch(applied, /unchanged|configured/, 'every object is server-side applied');
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', 'app.kubernetes.io/part-of=archipel']);
    const deployment = await deploymentOf(wide.namespace, wide.release);
    const spec = deployment.spec.template.spec;
    const [container] = spec.containers;
    assert.equal(container.image, 'ghcr.io/archipel/operator:0.1.0');
    assert.deepEqual(container.args, ['operator', '--metrics-port=8080', '--log-level=info', '--log-format=json', '--leader-election', `--lease-name=${wide.release}`]);
    assert.deepEqual(container.ports, [{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual([container.livenessProbe.httpGet.path, container.readinessProbe.httpGet.path], ['/healthz', '/readyz']);
    assert.deepEqual([spec.securityContext.runAsNonRoot, spec.securityContext.runAsUser, container.securityContext.readOnlyRootFilesystem], [true, NODE_UID, true]);
    assert.equal(spec.serviceAccountName, wide.sa);
    assert.ok(container.resources.requests.memory && container.resources.limits.memory, 'memory request and limit');
    await waitPodsCreated(wide.namespace, wide.release, 1);
  });

  it('lets the cluster-wide operator do what it needs in any namespace, and nothing it must not', async () => {
    await kubectl(['create', 'namespace', 'storage']);
    const needs = [...needsIn('storage'), ...needsIn('*').filter((a) => ['list', 'watch'].includes(a.verb)), ...leaderNeeds(wide.namespace, wide.release)];
    assert.deepEqual(await wrongAnswers(wide.sa, wide.namespace, needs, 'yes'), [], 'refused though the operator needs it');
    assert.deepEqual(await wrongAnswers(wide.sa, wide.namespace, never('storage', wide.namespace), 'no'), [], 'granted though it must not be');
  });

  it('keeps the namespaced operator to its namespaces: nothing in kube-system, in default or across namespaces', async () => {
    const needs = [...tenant.watch.flatMap(needsIn), ...leaderNeeds(tenant.namespace, tenant.release)];
    assert.deepEqual(await wrongAnswers(tenant.sa, tenant.namespace, needs, 'yes'), [], 'refused though the operator needs it');
    const outside: Access[] = [
      ...never('team-a', tenant.namespace),
      { verb: 'get', resource: 'secrets', namespace: 'kube-system' },
      { verb: 'list', resource: 'secrets', namespace: 'default' },
      { verb: 'list', resource: 'secrets', namespace: '*' },
      { verb: 'list', resource: `grids.${GROUP}`, namespace: '*' },
      { verb: 'create', resource: 'statefulsets.apps', namespace: 'default' },
      { verb: 'list', resource: 'pods', namespace: tenant.namespace },
      { verb: 'update', resource: 'leases.coordination.k8s.io', name: wide.release, namespace: wide.namespace },
    ];
    assert.deepEqual(await wrongAnswers(tenant.sa, tenant.namespace, outside, 'no'), [], 'granted though it must not be');
  });

  it('keeps the CRDs, and with them every Grid and Bucket, when the release is uninstalled', async () => {
    await cp!.helm(['uninstall', tenant.release, '--namespace', tenant.namespace]);
    assert.equal(await cp!.client.getOptional(`/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/${tenant.release}`), undefined);
    const crds = (await kubectl(['get', 'crd', '-l', 'app.kubernetes.io/part-of=archipel', '-o', 'name'])).trim().split('\n');
    assert.equal(crds.length, 5, crds.join(', '));
  });
});
