/**
 * The reconciler of each kind. Grid, Site, NodePool and ReplicationPolicy all lead to one pass over
 * their grid (grid.ts), serialized per grid; Bucket has its own (bucket.ts). A reference that names
 * nothing is a condition, not an error. A failing pass sets Degraded with its message and sends a
 * Warning Event, then throws: the work queue retries it with back-off (409 conflicts quietly).
 */
import type { Logger } from 'winston';
import type { Bucket, Grid, Kind, NodePool, Site } from '../api/types';
import { AdminApi } from '../admin/client';
import { Informers, parseKey } from '../runtime/informers';
import { isConflict, KubeApi, KubeObject } from '../runtime/kube-api';
import type { ReconcileOutcome, Reconciler } from '../runtime/manager';
import { BucketAdminFactory, reconcileBucket } from './bucket';
import { GridLocks, ReconcileDeps, syncGrid } from './grid';
import { KubeWrites } from './kube-writes';
import { AdminFactory, defaultAdminFactory } from './layout';
import { setConditions } from './status';

export interface ReconcilerOptions {
  api: KubeApi;
  informers: Pick<Informers, 'get' | 'list'>;
  log: Logger;
  admin?: AdminFactory;
  bucketAdmin?: BucketAdminFactory;
}

export function archipelReconcilers(options: ReconcilerOptions): Record<Kind, Reconciler> {
  const { informers, log } = options;
  const writes = new KubeWrites(options.api, log);
  const deps: ReconcileDeps & { bucketAdmin: BucketAdminFactory } = {
    informers,
    writes,
    log,
    admin: options.admin ?? defaultAdminFactory,
    bucketAdmin: options.bucketAdmin ?? ((host, port, token) => new AdminApi(host, port, token)),
  };
  const locks = new GridLocks();

  const gridPass = async (namespace: string | undefined, gridName: string, signal: AbortSignal): Promise<void | ReconcileOutcome> =>
    locks.run(`${namespace ?? ''}/${gridName}`, async () => {
      // Read inside the lock: the previous pass may have changed the status.
      const grid = informers.get('Grid', namespace, gridName) as unknown as Grid | undefined;
      if (!grid || grid.metadata.deletionTimestamp) return; // owned objects go with it
      return syncGrid(deps, grid, signal);
    });

  /**
   * Logs the reconcile line and runs `fn`. A failure (other than a 409, which the manager requeues
   * quietly) sets Degraded on the object with the message and sends a Warning Event, then is thrown
   * again for the work queue's back-off.
   */
  const wrap = (kind: Kind, fn: (namespace: string | undefined, name: string, obj: any, signal: AbortSignal) => Promise<void | ReconcileOutcome>): Reconciler =>
    async (key, signal) => {
      const { namespace, name } = parseKey(key);
      const obj = informers.get(kind, namespace, name);
      const startMs = Date.now();
      let outcome: void | ReconcileOutcome = undefined;
      let failed: string | undefined;
      try {
        outcome = await fn(namespace, name, obj, signal);
        return outcome;
      } catch (err) {
        failed = (err as Error).message;
        if (!isConflict(err) && !signal.aborted && obj && namespace) await reportFailure(kind, obj, failed);
        throw err;
      } finally {
        // One line per reconcile, once it is done, with the object and the generation it saw.
        log.info('reconcile', {
          kind, namespace, name, generation: obj?.metadata.generation ?? null, exists: obj !== undefined, durationMs: Date.now() - startMs,
          ...(outcome ? { requeueAfterMs: outcome.requeueAfterMs } : {}), ...(failed !== undefined ? { error: failed } : {}),
        });
      }
    };

  const reportFailure = async (kind: Kind, obj: KubeObject, message: string): Promise<void> => {
    const conditions = setConditions(obj.status?.conditions, [{ type: 'Degraded', status: 'True', reason: 'ReconcileFailed', message }], obj.metadata.generation, new Date().toISOString());
    try {
      await writes.patchStatus(kind, obj.metadata.namespace!, obj.metadata.name, { conditions });
    } catch (e) {
      log.warn('status not written', { kind, name: obj.metadata.name, error: (e as Error).message });
    }
    await writes.event(obj, 'Warning', 'ReconcileFailed', message);
  };

  /** A spec field names nothing: said in the object's conditions (and an Event), never a crash loop. */
  const referenceNotFound = async (kind: Kind, obj: KubeObject, message: string): Promise<void> => {
    const conditions = setConditions(obj.status?.conditions, [
      { type: 'Ready', status: 'False', reason: 'ReferenceNotFound', message },
      { type: 'Degraded', status: 'True', reason: 'ReferenceNotFound', message },
      { type: 'ReferenceNotFound', status: 'True', reason: 'ReferenceNotFound', message },
    ], obj.metadata.generation, new Date().toISOString());
    if (JSON.stringify(conditions) === JSON.stringify(obj.status?.conditions)) return;
    await writes.patchStatus(kind, obj.metadata.namespace!, obj.metadata.name, { observedGeneration: obj.metadata.generation, conditions });
    void writes.event(obj, 'Warning', 'ReferenceNotFound', message);
  };

  /** Site and ReplicationPolicy: a pass over their grid, or a condition when it does not exist. */
  const viaGrid = (kind: Kind): Reconciler => wrap(kind, async (ns, _name, obj: KubeObject | undefined, signal) => {
    const gridName = obj?.spec?.grid as string | undefined;
    if (!obj || !gridName) return;
    if (!informers.get('Grid', ns, gridName)) return referenceNotFound(kind, obj, `spec.grid ${JSON.stringify(gridName)} does not name a Grid in namespace ${ns}`);
    return gridPass(ns, gridName, signal);
  });

  return {
    Grid: wrap('Grid', (ns, name, _obj, signal) => gridPass(ns, name, signal)),
    Site: viaGrid('Site'),
    ReplicationPolicy: viaGrid('ReplicationPolicy'),
    NodePool: wrap('NodePool', async (ns, _name, pool: NodePool | undefined, signal) => {
      if (!pool) return;
      const site = informers.get('Site', ns, pool.spec.site) as unknown as Site | undefined;
      if (!site) return referenceNotFound('NodePool', pool as unknown as KubeObject, `spec.site ${JSON.stringify(pool.spec.site)} does not name a Site in namespace ${ns}`);
      if (!informers.get('Grid', ns, site.spec.grid)) return referenceNotFound('NodePool', pool as unknown as KubeObject, `Site ${site.metadata.name} names grid ${JSON.stringify(site.spec.grid)}, which does not exist in namespace ${ns}`);
      return gridPass(ns, site.spec.grid, signal);
    }),
    Bucket: wrap('Bucket', (_ns, _name, bucket: Bucket | undefined, signal) => (bucket ? reconcileBucket(deps, bucket, signal) : Promise.resolve())),
  };
}
