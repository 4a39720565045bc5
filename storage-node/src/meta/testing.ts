import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MetaStore } from './meta-store';
import type { BucketRecord, ObjectVersion, PartRecord, UploadRecord } from './types';

/** Fixtures shared by the meta tests (not used by production code). */

export class TempStores {
  private dirs: string[] = [];
  private stores: MetaStore[] = [];

  dir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'archipel-'));
    this.dirs.push(d);
    return d;
  }

  open(file?: string): MetaStore {
    const s = MetaStore.open(file ?? path.join(this.dir(), 'meta.db'));
    this.stores.push(s);
    return s;
  }

  cleanup(): void {
    for (const s of this.stores) s.close();
    for (const d of this.dirs) fs.rmSync(d, { recursive: true, force: true });
    this.stores = [];
    this.dirs = [];
  }
}

export function bucket(name: string, over: Partial<BucketRecord> = {}): BucketRecord {
  return { name, owner: 'AKOWNER', createdMs: 1_700_000_000_000, region: 'local', versioning: 'Enabled', objectLockEnabled: false, ...over };
}

export function version(b: string, key: string, versionId: string, ts: number, over: Partial<ObjectVersion> = {}): ObjectVersion {
  const deleteMarker = over.deleteMarker ?? false;
  return {
    bucket: b,
    key,
    versionId,
    ts,
    isLatest: true,
    deleteMarker,
    size: deleteMarker ? 0 : 3,
    etag: deleteMarker ? '' : 'acbd18db4cc2f85cedef654fccc4a4d8',
    lastModifiedMs: 1_700_000_000_000 + ts,
    headers: {},
    userMeta: {},
    blobs: deleteMarker ? [] : [{ id: `blob-${ts}-${versionId}`, size: 3 }],
    tags: [],
    legalHold: false,
    owner: 'AKOWNER',
    ...over,
  };
}

export function upload(b: string, key: string, uploadId: string, initiatedMs: number): UploadRecord {
  return { uploadId, bucket: b, key, initiatedMs, owner: 'AKOWNER', headers: {}, userMeta: {}, tags: [], legalHold: false };
}

export function part(uploadId: string, partNumber: number, blobId: string, size = 5): PartRecord {
  return { uploadId, partNumber, size, etag: `etag${partNumber}`, lastModifiedMs: 1_700_000_000_000, blob: { id: blobId, size } };
}
