import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MetaStore } from './meta-store';
import { FORMAT_VERSION, runMigrations } from './schema';
import { silentLogger } from '../util/logger';
import { bucket, part, TempStores, upload, version } from './testing';
import type { ObjectVersion } from './types';

describe('meta/meta-store', () => {
  const temp = new TempStores();
  afterEach(() => temp.cleanup());

  describe('opening', () => {
    it('gives a new store a random volume id and the current format version, both kept across reopen', () => {
      const dir = temp.dir();
      const file = path.join(dir, 'meta.db');
      const a = MetaStore.open(file);
      assert.equal(a.formatVersion, FORMAT_VERSION);
      assert.match(a.volumeId, /^[0-9a-f-]{36}$/);
      const id = a.volumeId;
      a.close();
      const b = temp.open(file);
      assert.equal(b.volumeId, id);
      assert.equal(b.formatVersion, FORMAT_VERSION);
      const other = temp.open();
      assert.notEqual(other.volumeId, id);
    });

    it('refuses a store written by a newer format version, with a clear error, and leaves it untouched', () => {
      const file = path.join(temp.dir(), 'meta.db');
      MetaStore.open(file).close();
      const raw = new Database(file);
      raw.prepare("UPDATE meta SET v = '99' WHERE k = 'formatVersion'").run();
      raw.close();
      assert.throws(() => MetaStore.open(file), new RegExp(`format version 99 is newer than this software supports \\(${FORMAT_VERSION}\\)`));
      const check = new Database(file, { readonly: true });
      assert.equal((check.prepare("SELECT v FROM meta WHERE k = 'formatVersion'").get() as { v: string }).v, '99');
      check.close();
    });

    it('runs each migration once, in order, and resumes from the stored version', () => {
      const file = path.join(temp.dir(), 'm.db');
      const db = new Database(file);
      const m1 = { to: 1, sql: 'CREATE TABLE t (a INTEGER);' };
      const m2 = { to: 2, sql: 'ALTER TABLE t ADD COLUMN b INTEGER; INSERT INTO t VALUES (1, 2);' };
      assert.equal(runMigrations(db, [m1], silentLogger()), 1);
      assert.equal(runMigrations(db, [m1, m2], silentLogger()), 2);
      assert.equal(runMigrations(db, [m1, m2], silentLogger()), 2);
      assert.deepEqual(db.prepare('SELECT * FROM t').all(), [{ a: 1, b: 2 }]);
      assert.throws(() => runMigrations(db, [m1], silentLogger()), /newer than this software supports/);
      assert.throws(() => runMigrations(db, [m2], silentLogger()), /must produce version 1/);
      db.close();
    });

    it('keeps every committed write across close and reopen', () => {
      const file = path.join(temp.dir(), 'meta.db');
      const a = MetaStore.open(file);
      a.upsertAccessKey({ accessKeyId: 'AK1', secretAccessKey: 'secret1', name: 'app', createdMs: 1 });
      a.createBucket(bucket('b1'));
      a.putVersion(version('b1', 'k/é', 'v1', 10));
      a.createUpload(upload('b1', 'big', 'u1', 5));
      a.putPart(part('u1', 1, 'p1'));
      a.close();
      const b = temp.open(file);
      assert.equal(b.getAccessKey('AK1')?.secretAccessKey, 'secret1');
      assert.equal(b.getBucket('b1')?.versioning, 'Enabled');
      assert.equal(b.getVersion('b1', 'k/é')?.versionId, 'v1');
      assert.equal(b.getParts('u1').length, 1);
    });
  });

  describe('durability', () => {
    it('resolves sync() after writes, shares it between concurrent callers, and refuses it after close', async () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      await s.sync();
      for (let i = 0; i < 50; i++) s.putVersion(version('b', `k${i}`, 'v', i + 1));
      await Promise.all(Array.from({ length: 20 }, () => s.sync()));
      s.close();
      await assert.rejects(s.sync(), /closed/);
      assert.throws(() => s.getBucket('b'), /closed/);
    });

    it('keeps every synced write when the process is killed with SIGKILL mid-stream', async function () {
      this.timeout(30_000);
      const dir = temp.dir();
      const file = path.join(dir, 'meta.db');
      const script = path.join(dir, 'writer.js');
      fs.writeFileSync(script, `
        const { MetaStore } = require(${JSON.stringify(path.join(__dirname, 'meta-store.js'))});
        const s = MetaStore.open(${JSON.stringify(file)});
        s.createBucket({ name: 'b', owner: 'o', createdMs: 1, region: 'r', versioning: 'Enabled', objectLockEnabled: false });
        (async () => {
          for (let i = 1; ; i++) {
            s.putVersion({ bucket: 'b', key: 'k' + i, versionId: 'v', ts: i, isLatest: true, deleteMarker: false, size: 0, etag: '',
              lastModifiedMs: i, headers: {}, userMeta: {}, blobs: [], tags: [], legalHold: false, owner: 'o' });
            await s.sync();
            process.stdout.write(i + '\\n');
          }
        })();
      `);
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let acked = 0;
      let buf = '';
      await new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error('writer made no progress')), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop() ?? '';
          for (const l of lines) acked = Math.max(acked, Number(l));
          if (acked >= 300) {
            clearTimeout(deadline);
            resolve();
          }
        });
        child.on('exit', () => reject(new Error('writer exited early')));
      });
      child.removeAllListeners('exit');
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
      const s = temp.open(file);
      for (let i = 1; i <= acked; i++) assert.ok(s.getVersion('b', 'k' + i), `acknowledged write k${i} survives`);
    });
  });

  describe('access keys and buckets', () => {
    it('upserts, lists by id and deletes access keys', () => {
      const s = temp.open();
      s.upsertAccessKey({ accessKeyId: 'B', secretAccessKey: 's1', name: 'one', createdMs: 1 });
      s.upsertAccessKey({ accessKeyId: 'A', secretAccessKey: 's2', name: 'two', createdMs: 2 });
      s.upsertAccessKey({ accessKeyId: 'B', secretAccessKey: 's3', name: 'one again', createdMs: 3 });
      assert.deepEqual(s.listAccessKeys().map((k) => [k.accessKeyId, k.secretAccessKey]), [['A', 's2'], ['B', 's3']]);
      assert.equal(s.deleteAccessKey('A'), true);
      assert.equal(s.deleteAccessKey('A'), false);
      assert.equal(s.getAccessKey('A'), undefined);
    });

    it('creates a bucket once, lists buckets by name, and patches settings', () => {
      const s = temp.open();
      assert.equal(s.createBucket(bucket('beta', { tags: [['t', '1']] })), true);
      assert.equal(s.createBucket(bucket('beta', { owner: 'other' })), false);
      s.createBucket(bucket('alpha', { versioning: 'Unversioned' }));
      assert.deepEqual(s.listBuckets().map((b) => b.name), ['alpha', 'beta']);
      assert.equal(s.getBucket('beta')?.owner, 'AKOWNER');
      s.updateBucket('alpha', { versioning: 'Enabled', objectLockEnabled: true, lockDefault: { mode: 'GOVERNANCE', days: 3 } });
      assert.deepEqual(s.getBucket('alpha'), bucket('alpha', { versioning: 'Enabled', objectLockEnabled: true, lockDefault: { mode: 'GOVERNANCE', days: 3 } }));
      s.updateBucket('alpha', { lockDefault: undefined });
      s.updateBucket('beta', { tags: undefined });
      assert.equal(s.getBucket('alpha')?.lockDefault, undefined);
      assert.equal(s.getBucket('alpha')?.objectLockEnabled, true);
      assert.equal(s.getBucket('beta')?.tags, undefined);
      assert.throws(() => s.updateBucket('nope', { versioning: 'Enabled' }), /no such bucket/);
      assert.throws(() => s.updateBucket('alpha', { lockDefault: { mode: 'GOVERNANCE', days: 1, years: 1 } }), /exactly one/);
    });

    it('deletes a bucket with its uploads and parts, and refuses while versions remain', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.createUpload(upload('b', 'k', 'u1', 1));
      s.putPart(part('u1', 1, 'blob-p1'));
      s.putVersion(version('b', 'k', 'v1', 1));
      assert.equal(s.bucketHasObjects('b'), true);
      assert.equal(s.bucketHasUploads('b'), true);
      assert.throws(() => s.deleteBucket('b'), /still has versions/);
      s.deleteVersion('b', 'k', 'v1');
      assert.equal(s.bucketHasObjects('b'), false);
      assert.equal(s.deleteBucket('b'), true);
      assert.equal(s.deleteBucket('b'), false);
      assert.equal(s.getUpload('u1'), undefined);
      assert.deepEqual(s.getParts('u1'), []);
      assert.equal(s.isBlobReferenced('blob-p1'), false);
    });
  });

  describe('versions', () => {
    it('stores every field of a version and reads it back unchanged', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      const v: ObjectVersion = version('b', 'dir/中 é😀.txt', '0001234567890aAbBcCdDeE_-12', 99, {
        contentType: 'text/plain',
        headers: { 'cache-control': 'no-cache', 'content-encoding': 'gzip' },
        userMeta: { color: 'blue' },
        checksum: { algorithm: 'CRC32C', value: 'AAAAAA==-2', type: 'COMPOSITE' },
        parts: [{ partNumber: 1, size: 2, etag: 'aa', checksum: 'x' }, { partNumber: 2, size: 1, etag: 'bb' }],
        blobs: [{ id: 'b1', size: 2 }, { id: 'b2', size: 1 }],
        tags: [['k', 'v'], ['k2', '']],
        retention: { mode: 'COMPLIANCE', untilMs: 1_800_000_000_000 },
        legalHold: true,
      });
      assert.deepEqual(s.putVersion(v), {});
      assert.deepEqual(s.getVersion('b', v.key, v.versionId), v);
      assert.deepEqual(s.getVersion('b', v.key), v);
    });

    it('makes a new version the latest; the latest may be a delete marker', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.putVersion(version('b', 'k', 'v1', 1));
      s.putVersion(version('b', 'k', 'v2', 2, { deleteMarker: true }));
      const latest = s.getVersion('b', 'k');
      assert.equal(latest?.versionId, 'v2');
      assert.equal(latest?.deleteMarker, true);
      assert.equal(s.getVersion('b', 'k', 'v1')?.isLatest, false);
      assert.equal(s.getVersion('b', 'other'), undefined);
      assert.equal(s.getVersion('b', 'k', 'v9'), undefined);
    });

    it("replaces the key's 'null' version and returns it for blob cleanup", () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      const first = version('b', 'k', 'null', 1);
      assert.deepEqual(s.putVersion(first), {});
      s.putVersion(version('b', 'k', 'v2', 2));
      const second = version('b', 'k', 'null', 3, { blobs: [{ id: 'new-blob', size: 3 }] });
      const { replaced } = s.putVersion(second);
      assert.deepEqual(replaced, { ...first, isLatest: false });
      assert.equal(s.isBlobReferenced(first.blobs[0].id), false);
      assert.equal(s.isBlobReferenced('new-blob'), true);
      assert.deepEqual(s.getVersion('b', 'k'), second);
      assert.deepEqual(
        s.listVersions('b', { prefix: '', maxKeys: 10 }).versions.map((v) => [v.versionId, v.isLatest]),
        [['null', true], ['v2', false]],
      );
    });

    it('promotes the next newest version (by ts, then version id) when the latest is deleted', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.putVersion(version('b', 'k', 'a', 1));
      s.putVersion(version('b', 'k', 'b', 5));
      s.putVersion(version('b', 'k', 'c', 5));
      s.putVersion(version('b', 'k', 'd', 7, { deleteMarker: true }));
      const removed = s.deleteVersion('b', 'k', 'd');
      assert.equal(removed?.versionId, 'd');
      assert.equal(removed?.isLatest, true);
      assert.equal(s.getVersion('b', 'k')?.versionId, 'c', 'same ts: the larger version id is newer');
      assert.equal(s.deleteVersion('b', 'k', 'b')?.isLatest, false);
      assert.equal(s.getVersion('b', 'k')?.versionId, 'c', 'deleting an older version keeps the latest');
      s.deleteVersion('b', 'k', 'c');
      assert.equal(s.getVersion('b', 'k')?.versionId, 'a');
      s.deleteVersion('b', 'k', 'a');
      assert.equal(s.getVersion('b', 'k'), undefined);
      assert.equal(s.deleteVersion('b', 'k', 'a'), undefined);
    });

    it('updates tags, retention and legal hold of one version', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.putVersion(version('b', 'k', 'v1', 1));
      s.putVersion(version('b', 'k', 'v2', 2));
      assert.equal(s.updateVersion('b', 'k', 'v1', { tags: [['a', 'b']], retention: { mode: 'GOVERNANCE', untilMs: 5 }, legalHold: true }), true);
      const v1 = s.getVersion('b', 'k', 'v1');
      assert.deepEqual([v1?.tags, v1?.retention, v1?.legalHold], [[['a', 'b']], { mode: 'GOVERNANCE', untilMs: 5 }, true]);
      assert.equal(s.getVersion('b', 'k')?.legalHold, false, 'other versions untouched');
      s.updateVersion('b', 'k', 'v1', { retention: null });
      assert.equal(s.getVersion('b', 'k', 'v1')?.retention, undefined);
      assert.deepEqual(s.getVersion('b', 'k', 'v1')?.tags, [['a', 'b']], 'absent fields keep their value');
      assert.equal(s.updateVersion('b', 'k', 'nope', { legalHold: true }), false);
    });

    it('refuses invalid versions: duplicate id, long key, empty id, unknown bucket, size not matching blobs', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.putVersion(version('b', 'k', 'v1', 1));
      assert.throws(() => s.putVersion(version('b', 'k', 'v1', 2)), /already exists/);
      assert.throws(() => s.putVersion(version('b', 'x'.repeat(1025), 'v1', 2)), /1024/);
      assert.throws(() => s.putVersion(version('b', 'k', '', 2)), /versionId/);
      assert.throws(() => s.putVersion(version('nope', 'k', 'v3', 2)), /no such bucket/);
      assert.throws(() => s.putVersion(version('b', 'k', 'v4', 2, { size: 4 })), /add up/);
      assert.throws(() => s.putVersion(version('b', 'k', 'v5', 2.5)), /ts/);
      assert.equal(s.getVersion('b', 'k')?.versionId, 'v1', 'a refused write changes nothing');
    });

    it('rolls back every call inside a transaction that throws', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      assert.throws(() => s.transaction(() => {
        s.putVersion(version('b', 'k', 'v1', 1));
        s.createBucket(bucket('c'));
        throw new Error('boom');
      }), /boom/);
      assert.equal(s.getVersion('b', 'k'), undefined);
      assert.equal(s.getBucket('c'), undefined);
    });
  });

  describe('multipart uploads', () => {
    it('keeps parts by number, replaces a re-uploaded part and returns the old one', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      const u = { ...upload('b', 'big', 'u1', 7), contentType: 'video/mp4', checksumAlgorithm: 'CRC32' as const, checksumType: 'FULL_OBJECT' as const };
      s.createUpload(u);
      assert.deepEqual(s.getUpload('u1'), u);
      s.putPart(part('u1', 3, 'p3'));
      s.putPart(part('u1', 1, 'p1'));
      const { replaced } = s.putPart(part('u1', 3, 'p3b'));
      assert.equal(replaced?.blob?.id, 'p3');
      assert.equal(s.isBlobReferenced('p3'), false);
      assert.deepEqual(s.getParts('u1').map((p) => [p.partNumber, p.blob?.id]), [[1, 'p1'], [3, 'p3b']]);
      assert.throws(() => s.putPart(part('nope', 1, 'x')), /no such upload/);
      assert.throws(() => s.putPart(part('u1', 10_001, 'x')), /part number/);
      assert.throws(() => s.createUpload(upload('nope', 'k', 'u2', 1)), /no such bucket/);
    });

    it('lists parts after a marker with truncation', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.createUpload(upload('b', 'k', 'u1', 1));
      for (const n of [1, 2, 3, 5, 8]) s.putPart(part('u1', n, `p${n}`));
      const seen: number[] = [];
      let marker = 0;
      for (let i = 0; i < 10; i++) {
        const page = s.listParts('u1', marker, 2);
        seen.push(...page.parts.map((p) => p.partNumber));
        if (!page.isTruncated) {
          assert.equal(page.nextPartNumberMarker, undefined);
          break;
        }
        assert.equal(page.nextPartNumberMarker, page.parts[page.parts.length - 1].partNumber);
        marker = page.nextPartNumberMarker!;
      }
      assert.deepEqual(seen, [1, 2, 3, 5, 8]);
      assert.deepEqual(s.listParts('u1', 8, 2), { parts: [], isTruncated: false });
      assert.deepEqual(s.listParts('u1', 0, 0), { parts: [], isTruncated: false });
    });

    it('deletes an upload with its parts and returns them for blob cleanup', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.createUpload(upload('b', 'k', 'u1', 1));
      s.putPart(part('u1', 2, 'p2'));
      s.putPart(part('u1', 1, 'p1'));
      s.putPart({ uploadId: 'u1', partNumber: 3, size: 0, etag: 'd41d8cd98f00b204e9800998ecf8427e', lastModifiedMs: 1 });
      assert.equal(s.isBlobReferenced('p1'), true);
      assert.deepEqual(s.deleteUpload('u1').map((p) => p.partNumber), [1, 2, 3]);
      assert.equal(s.getUpload('u1'), undefined);
      assert.equal(s.isBlobReferenced('p1'), false);
      assert.equal(s.isBlobReferenced('p2'), false);
      assert.deepEqual(s.deleteUpload('u1'), []);
    });

    it('counts a blob referenced by both a part and a version until both are gone (complete upload)', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.createUpload(upload('b', 'k', 'u1', 1));
      s.putPart(part('u1', 1, 'shared', 3));
      s.transaction(() => {
        s.putVersion(version('b', 'k', 'v1', 1, { blobs: [{ id: 'shared', size: 3 }] }));
        s.deleteUpload('u1');
      });
      assert.equal(s.isBlobReferenced('shared'), true, 'the version still references it');
      s.deleteVersion('b', 'k', 'v1');
      assert.equal(s.isBlobReferenced('shared'), false);
    });
  });
});
