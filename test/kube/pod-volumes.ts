// Volumes of a pod as local folders: emptyDir, PVCs (bound local PVs), ConfigMaps, Secrets,
// downward API and projected service-account tokens.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KubeClient, KubeObject } from './kube-client';
import { fieldRefValue } from './pod-spec';

/** Outcome of preparing volumes: folders by volume name, or why the pod cannot start yet. */
export type VolumesResult =
  | { ready: true; folders: Record<string, string> }
  | { ready: false; reason: 'ContainerCreating' | 'CreateContainerConfigError'; message: string };

const maxFileBytes = 4 * 1024 * 1024;

function writeFiles(dir: string, files: Record<string, Buffer>, mode: number): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, data] of Object.entries(files)) {
    if (data.length > maxFileBytes) throw new Error(`volume file ${rel} larger than ${maxFileBytes} bytes`);
    const target = path.join(dir, rel);
    if (!target.startsWith(dir + path.sep)) throw new Error(`volume item path escapes the volume: ${rel}`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, data, { mode });
  }
}

/** Picks keys (all, or `items` with their paths) from decoded data. */
function selectItems(
  data: Record<string, Buffer>,
  items: Array<{ key: string; path: string }> | undefined,
): Record<string, Buffer> | string {
  if (!items || items.length === 0) return data;
  const out: Record<string, Buffer> = {};
  for (const item of items) {
    const value = data[item.key];
    if (value === undefined) return `key "${item.key}" not found`;
    out[item.path] = value;
  }
  return out;
}

export class PodVolumes {
  constructor(
    private readonly client: KubeClient,
    private readonly pod: KubeObject,
    private readonly volumesDir: string,
  ) {}

  private get ns(): string {
    return this.pod.metadata.namespace ?? 'default';
  }

  private async configMapData(name: string): Promise<Record<string, Buffer> | undefined> {
    const cm = await this.client.getOptional(`/api/v1/namespaces/${this.ns}/configmaps/${name}`);
    if (!cm) return undefined;
    const out: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries((cm.data ?? {}) as Record<string, string>)) out[k] = Buffer.from(v);
    for (const [k, v] of Object.entries((cm.binaryData ?? {}) as Record<string, string>)) out[k] = Buffer.from(v, 'base64');
    return out;
  }

  private async secretData(name: string): Promise<Record<string, Buffer> | undefined> {
    const secret = await this.client.getOptional(`/api/v1/namespaces/${this.ns}/secrets/${name}`);
    if (!secret) return undefined;
    const out: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries((secret.data ?? {}) as Record<string, string>)) out[k] = Buffer.from(v, 'base64');
    return out;
  }

  /** Local folder of a bound PVC, or a reason to wait. */
  private async claimFolder(claimName: string): Promise<string | { message: string }> {
    const pvc = await this.client.getOptional(`/api/v1/namespaces/${this.ns}/persistentvolumeclaims/${claimName}`);
    if (!pvc) return { message: `persistentvolumeclaim "${claimName}" not found` };
    if (pvc.status?.phase !== 'Bound' || !pvc.spec?.volumeName) return { message: `persistentvolumeclaim "${claimName}" not bound` };
    const pv = await this.client.getOptional(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    const folder: string | undefined = pv?.spec?.local?.path ?? pv?.spec?.hostPath?.path;
    if (!folder) return { message: `persistentvolume "${pvc.spec.volumeName}" has no local path` };
    fs.mkdirSync(folder, { recursive: true });
    return folder;
  }

  private async projected(dir: string, sources: KubeObject[]): Promise<string | undefined> {
    const files: Record<string, Buffer> = {};
    for (const source of sources) {
      if (source.configMap || source.secret) {
        const ref = source.configMap ?? source.secret;
        const data = source.configMap ? await this.configMapData(ref.name) : await this.secretData(ref.name);
        if (!data) {
          if (ref.optional) continue;
          return `${source.configMap ? 'configmap' : 'secret'} "${ref.name}" not found`;
        }
        const picked = selectItems(data, ref.items);
        if (typeof picked === 'string') return picked;
        Object.assign(files, picked);
      } else if (source.downwardAPI) {
        for (const item of source.downwardAPI.items ?? []) {
          files[item.path] = Buffer.from(item.fieldRef ? (fieldRefValue(this.pod, item.fieldRef.fieldPath) ?? '') : '');
        }
      } else if (source.serviceAccountToken) {
        const sat = source.serviceAccountToken;
        const sa = this.pod.spec?.serviceAccountName ?? 'default';
        const review = await this.client.create(`/api/v1/namespaces/${this.ns}/serviceaccounts/${sa}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            audiences: sat.audience ? [sat.audience] : undefined,
            expirationSeconds: sat.expirationSeconds ?? 3607,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: this.pod.metadata.name, uid: this.pod.metadata.uid },
          },
        });
        files[sat.path] = Buffer.from(String(review.status?.token ?? ''));
      } else if (source.clusterTrustBundle || source.podCertificate) {
        return 'projected source not supported by the test node agent';
      }
    }
    writeFiles(dir, files, 0o644);
    return undefined;
  }

  /** Creates every volume's folder; idempotent for a pod restart on the same agent. */
  async prepare(): Promise<VolumesResult> {
    const folders: Record<string, string> = {};
    for (const volume of this.pod.spec?.volumes ?? []) {
      const dir = path.join(this.volumesDir, volume.name);
      if (volume.emptyDir) {
        fs.mkdirSync(dir, { recursive: true });
        folders[volume.name] = dir;
      } else if (volume.persistentVolumeClaim) {
        const folder = await this.claimFolder(volume.persistentVolumeClaim.claimName);
        if (typeof folder !== 'string') return { ready: false, reason: 'ContainerCreating', message: folder.message };
        folders[volume.name] = folder;
      } else if (volume.hostPath) {
        fs.mkdirSync(volume.hostPath.path, { recursive: true });
        folders[volume.name] = volume.hostPath.path;
      } else if (volume.configMap || volume.secret) {
        const ref = volume.configMap ?? { ...volume.secret, name: volume.secret.secretName };
        const data = volume.configMap ? await this.configMapData(ref.name) : await this.secretData(ref.name);
        if (!data && !ref.optional) {
          return { ready: false, reason: 'ContainerCreating', message: `${volume.configMap ? 'configmap' : 'secret'} "${ref.name}" not found` };
        }
        const picked = selectItems(data ?? {}, ref.items);
        if (typeof picked === 'string') return { ready: false, reason: 'CreateContainerConfigError', message: picked };
        writeFiles(dir, picked, ref.defaultMode ?? 0o644);
        folders[volume.name] = dir;
      } else if (volume.downwardAPI || volume.projected) {
        const sources = volume.projected ? volume.projected.sources ?? [] : [{ downwardAPI: volume.downwardAPI }];
        const error = await this.projected(dir, sources);
        if (error) return { ready: false, reason: 'ContainerCreating', message: error };
        fs.mkdirSync(dir, { recursive: true });
        folders[volume.name] = dir;
      } else {
        return { ready: false, reason: 'CreateContainerConfigError', message: `volume ${volume.name}: type not supported by the test node agent` };
      }
    }
    return { ready: true, folders };
  }

  /** Decoded ConfigMaps and Secrets named by the containers' env, for resolveEnv(). */
  async envSources(): Promise<{ configMaps: Record<string, Record<string, string>>; secrets: Record<string, Record<string, string>> }> {
    const cmNames = new Set<string>();
    const secretNames = new Set<string>();
    for (const c of [...(this.pod.spec?.initContainers ?? []), ...(this.pod.spec?.containers ?? [])]) {
      for (const from of c.envFrom ?? []) {
        if (from.configMapRef) cmNames.add(from.configMapRef.name);
        if (from.secretRef) secretNames.add(from.secretRef.name);
      }
      for (const e of c.env ?? []) {
        if (e.valueFrom?.configMapKeyRef) cmNames.add(e.valueFrom.configMapKeyRef.name);
        if (e.valueFrom?.secretKeyRef) secretNames.add(e.valueFrom.secretKeyRef.name);
      }
    }
    const toText = (data: Record<string, Buffer> | undefined): Record<string, string> | undefined =>
      data && Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString('utf8')]));
    const configMaps: Record<string, Record<string, string>> = {};
    const secrets: Record<string, Record<string, string>> = {};
    for (const name of cmNames) {
      const d = toText(await this.configMapData(name));
      if (d) configMaps[name] = d;
    }
    for (const name of secretNames) {
      const d = toText(await this.secretData(name));
      if (d) secrets[name] = d;
    }
    return { configMaps, secrets };
  }
}
