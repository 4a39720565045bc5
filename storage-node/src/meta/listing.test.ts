import assert from 'node:assert/strict';
import { listPage, ListSource, KeyBound } from './listing';
import type { MetaStore } from './meta-store';
import { bucket, TempStores, upload, version } from './testing';
import type { ListObjectsResult, ListVersionsResult, ObjectVersion, UploadRecord } from './types';

/**
 * Listing order and pagination checked against a deliberately naive reference model: sort everything with
 * Buffer.compare on UTF-8 bytes, roll up, then cut pages. The store must give the same entries, page by page.
 */

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['a', 'b', '/', 'é', '中', '😀', '-', '~'];
const PREFIXES = ['', 'a', 'a/', 'é', '中/', '😀', 'b/a', 'zz'];
const byteCmp = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

function randomKey(r: () => number): string {
  const n = 1 + Math.floor(r() * 5);
  let k = '';
  for (let i = 0; i < n; i++) k += ALPHABET[Math.floor(r() * ALPHABET.length)];
  return k;
}

type RefEntry = { key: string; versionId?: string } | { prefix: string };

/** Reference rollup: consecutive keys (sorted) that share a common prefix become one entry. */
function rollUp<T extends { key: string }>(items: T[], prefix: string, delimiter: string | undefined, skipUpTo: string | undefined): Array<{ item: T } | { prefix: string }> {
  const out: Array<{ item: T } | { prefix: string }> = [];
  let lastPrefix: string | undefined;
  for (const it of items) {
    const rest = it.key.slice(prefix.length);
    const i = delimiter ? rest.indexOf(delimiter) : -1;
    if (i < 0) {
      out.push({ item: it });
      continue;
    }
    const cp = prefix + rest.slice(0, i + delimiter!.length);
    if (cp === lastPrefix) continue;
    lastPrefix = cp;
    if (skipUpTo !== undefined && byteCmp(cp, skipUpTo) <= 0) continue;
    out.push({ prefix: cp });
  }
  return out;
}

interface Model {
  versions: ObjectVersion[]; // all stored versions
}

function refVersionsSorted(m: Model, prefix: string): ObjectVersion[] {
  return m.versions
    .filter((v) => v.key.startsWith(prefix))
    .sort((a, b) => byteCmp(a.key, b.key) || b.ts - a.ts || byteCmp(b.versionId, a.versionId));
}

function refListObjects(m: Model, prefix: string, delimiter: string | undefined, after: string | undefined): RefEntry[] {
  const latest = new Map<string, ObjectVersion>();
  for (const v of refVersionsSorted(m, prefix)) if (!latest.has(v.key)) latest.set(v.key, v);
  const live = [...latest.values()].filter((v) => !v.deleteMarker && (after === undefined || byteCmp(v.key, after) > 0));
  return rollUp(live, prefix, delimiter, after).map((e) => ('item' in e ? { key: e.item.key } : e));
}

function refListVersions(m: Model, prefix: string, delimiter: string | undefined, keyMarker?: string, vidMarker?: string): RefEntry[] {
  let all = refVersionsSorted(m, prefix);
  if (keyMarker !== undefined) {
    const pos = vidMarker === undefined ? undefined : all.find((v) => v.key === keyMarker && v.versionId === vidMarker);
    all = all.filter((v) => {
      const c = byteCmp(v.key, keyMarker);
      if (c !== 0) return c > 0;
      return pos !== undefined && (v.ts < pos.ts || (v.ts === pos.ts && byteCmp(v.versionId, pos.versionId) < 0));
    });
  }
  return rollUp(all, prefix, delimiter, keyMarker).map((e) => ('item' in e ? { key: e.item.key, versionId: e.item.versionId } : e));
}

function entriesOfObjects(r: ListObjectsResult): RefEntry[] {
  // Merge contents and prefixes back into listing order to compare with the model.
  const all: RefEntry[] = [...r.contents.map((v) => ({ key: v.key })), ...r.commonPrefixes.map((p) => ({ prefix: p }))];
  return all.sort((a, b) => byteCmp('key' in a ? a.key : a.prefix, 'key' in b ? b.key : b.prefix));
}

function entriesOfVersions(r: ListVersionsResult): RefEntry[] {
  const rows: RefEntry[] = r.versions.map((v) => ({ key: v.key, versionId: v.versionId }));
  const all: RefEntry[] = [...rows, ...r.commonPrefixes.map((p) => ({ prefix: p }))];
  // Stable sort by key: versions of one key keep their (newest first) order.
  return all.sort((a, b) => byteCmp('key' in a ? a.key : a.prefix, 'key' in b ? b.key : b.prefix));
}

function lastEntryOf(entries: RefEntry[]): string {
  const e = entries[entries.length - 1];
  return 'key' in e ? e.key : e.prefix;
}

/** Fills a store (and the model) with random keys, versions, delete markers, ties in ts, and deletions. */
function populate(s: MetaStore, seed: number, keyCount: number): Model {
  const r = rng(seed);
  s.createBucket(bucket('b'));
  s.createBucket(bucket('other'));
  const keys = new Set<string>();
  while (keys.size < keyCount) keys.add(randomKey(r));
  const m: Model = { versions: [] };
  let ts = 1;
  for (const key of keys) {
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) {
      if (r() < 0.8) ts++; // some versions of a key share a ts: the version id breaks the tie
      // ids increase with put order, so the last put is also the newest by (ts, id)
      const vid = i === 0 && r() < 0.2 ? 'null' : `v${String(ts).padStart(6, '0')}-${i}`;
      const v = version('b', key, vid, ts, { deleteMarker: r() < 0.25 });
      s.putVersion(v);
      m.versions.push(v);
    }
    // Noise in another bucket must never show.
    if (r() < 0.1) s.putVersion(version('other', key, 'x', ts));
  }
  // Delete some versions (latest or not), exercising promotion.
  for (const v of [...m.versions]) {
    if (r() < 0.15) {
      s.deleteVersion('b', v.key, v.versionId);
      m.versions.splice(m.versions.indexOf(v), 1);
    }
  }
  return m;
}

describe('meta/listing', () => {
  const temp = new TempStores();
  afterEach(() => temp.cleanup());

  it('lists objects in UTF-8 byte order: punctuation, é, 中, then emoji', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    const keys = ['😀', '中', '\ue000', 'é', 'z', 'a~', 'a-', 'a/', 'a', 'A', '!'];
    keys.forEach((k, i) => s.putVersion(version('b', k, 'v', i + 1)));
    const got = s.listObjects('b', { prefix: '', maxKeys: 100 }).contents.map((v) => v.key);
    assert.deepEqual(got, ['!', 'A', 'a', 'a-', 'a/', 'a~', 'z', 'é', '中', '\ue000', '😀']);
  });

  it('answers max-keys 0 with an empty, untruncated page', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    s.putVersion(version('b', 'k', 'v', 1));
    assert.deepEqual(s.listObjects('b', { prefix: '', maxKeys: 0 }), { contents: [], commonPrefixes: [], isTruncated: false });
    assert.deepEqual(s.listVersions('b', { prefix: '', maxKeys: 0 }), { versions: [], commonPrefixes: [], isTruncated: false });
  });

  it('hides delete markers and non-latest versions from object listings', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    s.putVersion(version('b', 'gone', 'v1', 1));
    s.putVersion(version('b', 'gone', 'v2', 2, { deleteMarker: true }));
    s.putVersion(version('b', 'kept', 'v1', 3));
    s.putVersion(version('b', 'kept', 'v2', 4));
    const r = s.listObjects('b', { prefix: '', maxKeys: 10 });
    assert.deepEqual(r.contents.map((v) => [v.key, v.versionId]), [['kept', 'v2']]);
    assert.equal(r.isTruncated, false);
  });

  it('does not repeat a common prefix on the next page, nor return one that start-after lies inside', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    ['a/1', 'a/2', 'a/3', 'b', 'c/1'].forEach((k, i) => s.putVersion(version('b', k, 'v', i + 1)));
    const p1 = s.listObjects('b', { prefix: '', delimiter: '/', maxKeys: 1 });
    assert.deepEqual([p1.commonPrefixes, p1.isTruncated, p1.nextAfter], [['a/'], true, 'a/']);
    const p2 = s.listObjects('b', { prefix: '', delimiter: '/', after: 'a/', maxKeys: 1 });
    assert.deepEqual([p2.contents.map((v) => v.key), p2.nextAfter], [['b'], 'b']);
    const p3 = s.listObjects('b', { prefix: '', delimiter: '/', after: 'b', maxKeys: 1 });
    assert.deepEqual([p3.commonPrefixes, p3.isTruncated, p3.nextAfter], [['c/'], false, undefined]);
    const inside = s.listObjects('b', { prefix: '', delimiter: '/', after: 'a/2', maxKeys: 5 });
    assert.deepEqual([inside.contents.map((v) => v.key), inside.commonPrefixes], [['b'], ['c/']]);
  });

  it('continues version listings after a key marker alone (all its versions) or after one version', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    s.putVersion(version('b', 'k', 'v1', 1));
    s.putVersion(version('b', 'k', 'v2', 2));
    s.putVersion(version('b', 'k', 'v3', 3));
    s.putVersion(version('b', 'l', 'v1', 4));
    const ids = (r: ListVersionsResult): string[] => r.versions.map((v) => `${v.key}:${v.versionId}`);
    assert.deepEqual(ids(s.listVersions('b', { prefix: '', keyMarker: 'k', maxKeys: 10 })), ['l:v1']);
    assert.deepEqual(ids(s.listVersions('b', { prefix: '', keyMarker: 'k', versionIdMarker: 'v3', maxKeys: 10 })), ['k:v2', 'k:v1', 'l:v1']);
    const p = s.listVersions('b', { prefix: '', maxKeys: 2 });
    assert.deepEqual([ids(p), p.isTruncated, p.nextKeyMarker, p.nextVersionIdMarker], [['k:v3', 'k:v2'], true, 'k', 'v2']);
  });

  it('places a version marker that was deleted between pages by the clock value in its id', () => {
    const s = temp.open();
    s.createBucket(bucket('b'));
    const id = (ts: number): string => ts.toString(16).padStart(14, '0') + 'abcdefghijkl';
    for (const ts of [10, 20, 30]) s.putVersion(version('b', 'k', id(ts), ts));
    s.deleteVersion('b', 'k', id(20));
    const r = s.listVersions('b', { prefix: '', keyMarker: 'k', versionIdMarker: id(20), maxKeys: 10 });
    assert.deepEqual(r.versions.map((v) => v.versionId), [id(10)]);
  });

  describe('randomized against a reference model', () => {
    const configs: Array<{ prefix: string; delimiter?: string }> = [];
    for (const prefix of PREFIXES) for (const delimiter of [undefined, '/', '中']) configs.push({ prefix, delimiter });

    it('lists objects page by page exactly like the model, for page sizes 1..7, with and without delimiter', () => {
      const s = temp.open();
      const m = populate(s, 42, 300);
      for (const { prefix, delimiter } of configs) {
        const want = refListObjects(m, prefix, delimiter, undefined);
        assert.deepEqual(entriesOfObjects(s.listObjects('b', { prefix, delimiter, maxKeys: 100_000 })), want, `full, ${prefix} ${delimiter}`);
        for (let pageSize = 1; pageSize <= 7; pageSize++) {
          const got: RefEntry[] = [];
          let after: string | undefined;
          for (let pages = 0; ; pages++) {
            assert.ok(pages <= want.length + 1, 'pagination terminates');
            const r = s.listObjects('b', { prefix, delimiter, after, maxKeys: pageSize });
            const entries = entriesOfObjects(r);
            assert.ok(entries.length <= pageSize);
            got.push(...entries);
            if (!r.isTruncated) {
              assert.equal(r.nextAfter, undefined);
              break;
            }
            assert.equal(entries.length, pageSize, 'a truncated page is full');
            assert.equal(r.nextAfter, lastEntryOf(entries));
            after = r.nextAfter;
          }
          assert.deepEqual(got, want, `paged by ${pageSize}, prefix ${JSON.stringify(prefix)}, delimiter ${delimiter}`);
          const cps = got.filter((e) => 'prefix' in e).map((e) => ('prefix' in e ? e.prefix : ''));
          assert.equal(new Set(cps).size, cps.length, 'no common prefix repeats');
        }
      }
    });

    it('honours any start-after value like the model', () => {
      const s = temp.open();
      const m = populate(s, 7, 200);
      const r = rng(99);
      for (let i = 0; i < 400; i++) {
        const { prefix, delimiter } = configs[Math.floor(r() * configs.length)];
        const after = r() < 0.5 ? randomKey(r) : prefix + randomKey(r);
        const maxKeys = 1 + Math.floor(r() * 10);
        const want = refListObjects(m, prefix, delimiter, after);
        const res = s.listObjects('b', { prefix, delimiter, after, maxKeys });
        assert.deepEqual(entriesOfObjects(res), want.slice(0, maxKeys), `after ${JSON.stringify(after)} prefix ${JSON.stringify(prefix)}`);
        assert.equal(res.isTruncated, want.length > maxKeys);
      }
    });

    it('lists versions page by page exactly like the model, for page sizes 1..7, with and without delimiter', () => {
      const s = temp.open();
      const m = populate(s, 1234, 250);
      for (const { prefix, delimiter } of configs) {
        const want = refListVersions(m, prefix, delimiter);
        assert.deepEqual(entriesOfVersions(s.listVersions('b', { prefix, delimiter, maxKeys: 100_000 })), want, `full, ${prefix} ${delimiter}`);
        for (let pageSize = 1; pageSize <= 7; pageSize++) {
          const got: RefEntry[] = [];
          let keyMarker: string | undefined;
          let versionIdMarker: string | undefined;
          for (let pages = 0; ; pages++) {
            assert.ok(pages <= want.length + 1, 'pagination terminates');
            const r = s.listVersions('b', { prefix, delimiter, keyMarker, versionIdMarker, maxKeys: pageSize });
            const entries = entriesOfVersions(r);
            assert.ok(entries.length <= pageSize);
            got.push(...entries);
            if (!r.isTruncated) break;
            assert.equal(entries.length, pageSize, 'a truncated page is full');
            const last = entries[entries.length - 1];
            assert.equal(r.nextKeyMarker, 'key' in last ? last.key : last.prefix);
            assert.equal(r.nextVersionIdMarker, 'key' in last ? last.versionId : undefined);
            keyMarker = r.nextKeyMarker;
            versionIdMarker = r.nextVersionIdMarker;
          }
          assert.deepEqual(got, want, `paged by ${pageSize}, prefix ${JSON.stringify(prefix)}, delimiter ${delimiter}`);
          const cps = got.filter((e) => 'prefix' in e).map((e) => ('prefix' in e ? e.prefix : ''));
          assert.equal(new Set(cps).size, cps.length, 'no common prefix repeats');
        }
      }
    });

    it('lists uploads by key then initiation, paged by 1..7 with markers, like the model', () => {
      const s = temp.open();
      s.createBucket(bucket('b'));
      s.createBucket(bucket('other'));
      const r = rng(5);
      const all: UploadRecord[] = [];
      for (let i = 0; i < 200; i++) {
        const u = upload('b', randomKey(r), `u${String(Math.floor(r() * 1e9)).padStart(9, '0')}-${i}`, Math.floor(r() * 5));
        s.createUpload(u);
        all.push(u);
        if (r() < 0.1) s.createUpload(upload('other', u.key, `o${i}`, 1));
      }
      for (const { prefix, delimiter } of configs) {
        const sorted = all
          .filter((u) => u.key.startsWith(prefix))
          .sort((a, b) => byteCmp(a.key, b.key) || a.initiatedMs - b.initiatedMs || byteCmp(a.uploadId, b.uploadId));
        const want = rollUp(sorted, prefix, delimiter, undefined).map((e) => ('item' in e ? e.item.uploadId : `CP:${e.prefix}`));
        for (let pageSize = 1; pageSize <= 7; pageSize++) {
          const got: string[] = [];
          let keyMarker: string | undefined;
          let uploadIdMarker: string | undefined;
          for (let pages = 0; ; pages++) {
            assert.ok(pages <= want.length + 1, 'pagination terminates');
            const res = s.listUploads('b', { prefix, delimiter, keyMarker, uploadIdMarker, maxUploads: pageSize });
            const entries = [...res.uploads.map((u) => ({ k: u.key, id: u.uploadId })), ...res.commonPrefixes.map((p) => ({ k: p, id: `CP:${p}` }))]
              .sort((a, b) => byteCmp(a.k, b.k));
            got.push(...entries.map((e) => e.id));
            if (!res.isTruncated) break;
            keyMarker = res.nextKeyMarker;
            uploadIdMarker = res.nextUploadIdMarker;
            const last = entries[entries.length - 1];
            assert.equal(keyMarker, last.k);
            assert.equal(uploadIdMarker, last.id.startsWith('CP:') ? undefined : last.id);
          }
          assert.deepEqual(got, want, `uploads paged by ${pageSize}, prefix ${JSON.stringify(prefix)}, delimiter ${delimiter}`);
        }
      }
    });
  });

  it('skips a whole common prefix with one seek instead of reading its keys', () => {
    // In-memory source that counts the rows it hands out.
    const keys: string[] = [];
    for (let i = 0; i < 10_000; i++) keys.push(`dir/${String(i).padStart(5, '0')}`);
    keys.push('file', 'other/x', 'zz');
    keys.sort((a, b) => byteCmp(a, b));
    let rowsRead = 0;
    const fromKey = (from: KeyBound, upper: string | undefined, limit: number): string[] => {
      const out = keys.filter((k) => (from.inclusive ? byteCmp(k, from.key) >= 0 : byteCmp(k, from.key) > 0) && (upper === undefined || byteCmp(k, upper) < 0)).slice(0, limit);
      rowsRead += out.length;
      return out;
    };
    const src: ListSource<string, string> = { keyOf: (k) => k, positionOf: (k) => k, fromKey, afterRow: (k, upper, limit) => fromKey({ key: k, inclusive: false }, upper, limit) };
    const page = listPage(src, { prefix: '', delimiter: '/', start: { bound: { key: '', inclusive: true } }, maxEntries: 1000 });
    assert.deepEqual([page.rows, page.prefixes, page.isTruncated], [['file', 'zz'], ['dir/', 'other/'], false]);
    assert.ok(rowsRead < 100, `read ${rowsRead} rows`);
  });
});
