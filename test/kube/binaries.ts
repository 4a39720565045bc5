// Where the control-plane binaries are: built by test/kube/setup.sh or given by the environment.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Kubernetes release the binaries are built from; keep in lockstep with setup.sh and bin/go.mod. */
export const kubeVersion = 'v1.36.3';

export const requiredBinaries = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'helm',
] as const;

export type BinaryName = (typeof requiredBinaries)[number];

function hasAll(dir: string | undefined, names: readonly string[]): dir is string {
  if (!dir) return false;
  return names.every((name) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The cache folder setup.sh builds into. */
export function defaultCacheBinDir(): string {
  const root = process.env.ARCHIPEL_KUBE_CACHE || path.join(os.homedir(), '.cache', 'archipel-kube');
  return path.join(root, kubeVersion, 'bin');
}

/**
 * First folder holding every binary in `names`, looked up in order: ARCHIPEL_KUBE_BIN,
 * KUBEBUILDER_ASSETS, the setup.sh cache. Undefined if none has them all.
 */
export function findBinDir(names: readonly string[] = requiredBinaries): string | undefined {
  const candidates = [process.env.ARCHIPEL_KUBE_BIN, process.env.KUBEBUILDER_ASSETS, defaultCacheBinDir()];
  return candidates.find((dir) => hasAll(dir, names));
}

/** True when the kube tests must run (CI): missing binaries then fail instead of skipping. */
export function kubeTestsRequired(): boolean {
  return process.env.ARCHIPEL_KUBE_REQUIRED === '1';
}

/**
 * The start of every cluster test file's `before`: without the binaries, skip the file with a hint, or
 * fail when the kube tests are required (CI).
 */
export function skipWithoutKubeBinaries(ctx: Mocha.Context): void {
  if (findBinDir()) return;
  if (kubeTestsRequired()) throw new Error('Kubernetes test binaries missing: run test/kube/setup.sh');
  console.warn('    (skipped: no Kubernetes test binaries; run test/kube/setup.sh, see test/kube/README.md)');
  ctx.skip();
}
