// Dynamic provisioning of local-folder PersistentVolumes for the test nodes.
//
// Works like an external provisioner: for a Pending claim of our StorageClass it creates a PV
// pre-bound to the claim (claimRef) with node affinity to the node the scheduler chose
// (volume.kubernetes.io/selected-node, WaitForFirstConsumer); the PV controller of
// kube-controller-manager completes the binding. Released PVs with reclaim policy Delete are
// removed with their folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KubeClient, KubeObject } from './kube-client';

export const provisionerName = 'archipel.test/local-folder';
const selectedNodeAnnotation = 'volume.kubernetes.io/selected-node';
const provisionedByAnnotation = 'pv.kubernetes.io/provisioned-by';

export interface ProvisionerOptions {
  client: KubeClient;
  storageClassName: string;
  /** Folder holding one sub-folder per node, each holding one folder per volume. */
  volumesDir: string;
  /** Nodes of this agent that may hold volumes now (up). */
  nodeNames: () => string[];
}

export class VolumeProvisioner {
  constructor(private readonly options: ProvisionerOptions) {}

  /** Creates the StorageClass (default class, WaitForFirstConsumer) if missing. */
  async ensureStorageClass(): Promise<void> {
    await this.options.client.ensure('/apis/storage.k8s.io/v1/storageclasses', {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: {
        name: this.options.storageClassName,
        annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
      },
      provisioner: provisionerName,
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: false,
    });
  }

  folderFor(nodeName: string, pvName: string): string {
    return path.join(this.options.volumesDir, nodeName, pvName);
  }

  /** One provisioning pass; returns the number of PVs created or deleted. */
  async sync(): Promise<number> {
    const { client } = this.options;
    const claims = await client.list('/api/v1/persistentvolumeclaims');
    const volumes = await client.list('/api/v1/persistentvolumes');
    const ours = new Set(this.options.nodeNames());
    const existing = new Set(volumes.items.map((v) => v.metadata.name));
    let changes = 0;
    for (const pvc of claims.items) {
      if (pvc.spec?.storageClassName !== this.options.storageClassName) continue;
      if (pvc.status?.phase !== 'Pending' || pvc.spec?.volumeName || pvc.metadata.deletionTimestamp) continue;
      const node = pvc.metadata.annotations?.[selectedNodeAnnotation];
      if (!node || !ours.has(node)) continue;
      const pvName = `pvc-${pvc.metadata.uid}`;
      if (existing.has(pvName)) continue;
      await this.createVolume(pvc, pvName, node);
      changes++;
    }
    for (const pv of volumes.items) {
      if (pv.metadata.annotations?.[provisionedByAnnotation] !== provisionerName) continue;
      if (pv.status?.phase !== 'Released' || pv.spec?.persistentVolumeReclaimPolicy !== 'Delete') continue;
      const folder: string | undefined = pv.spec?.local?.path;
      if (folder && folder.startsWith(this.options.volumesDir + path.sep)) fs.rmSync(folder, { recursive: true, force: true });
      await client.delete(`/api/v1/persistentvolumes/${pv.metadata.name}`);
      changes++;
    }
    return changes;
  }

  private async createVolume(pvc: KubeObject, pvName: string, nodeName: string): Promise<void> {
    const folder = this.folderFor(nodeName, pvName);
    fs.mkdirSync(folder, { recursive: true });
    await this.options.client.ensure('/api/v1/persistentvolumes', {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: pvName, annotations: { [provisionedByAnnotation]: provisionerName } },
      spec: {
        capacity: { storage: pvc.spec?.resources?.requests?.storage ?? '1Gi' },
        accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        storageClassName: this.options.storageClassName,
        volumeMode: 'Filesystem',
        claimRef: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: pvc.metadata.namespace,
          name: pvc.metadata.name,
          uid: pvc.metadata.uid,
        },
        local: { path: folder },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [nodeName] }] },
            ],
          },
        },
      },
    });
  }
}
