import { commonPrefixOf, compareUtf8, prefixSuccessor } from './keys';

/**
 * The pagination engine shared by object, version and upload listings: walks rows in listing order,
 * rolls keys up into common prefixes, and seeks past a whole common prefix with one index lookup
 * instead of scanning its keys.
 */

/** Upper bound of rows fetched by one query. */
const MAX_BATCH = 1000;
/** Batch size after a seek past a common prefix: the next row is often another common prefix. */
const SEEK_BATCH = 8;
/** Upper bound of entries (rows + common prefixes) in one page. */
export const MAX_PAGE_ENTRIES = 100_000;

export interface KeyBound {
  key: string;
  inclusive: boolean;
}

/** Where a page starts: at a key bound, or right after a row position (e.g. a version within its key). */
export type Cursor<P> = { bound: KeyBound } | { after: P };

/** A table read in listing order (key ascending, then the table's own order within a key). */
export interface ListSource<R, P> {
  keyOf(row: R): string;
  /** The position of a row, to continue after it. */
  positionOf(row: R): P;
  /** Up to `limit` rows, in order, with key >= (or >) from.key and key < upper when upper is given. */
  fromKey(from: KeyBound, upper: string | undefined, limit: number): R[];
  /** Up to `limit` rows, in order, that come after position `pos` (rest of its key first), with key < upper. */
  afterRow(pos: P, upper: string | undefined, limit: number): R[];
}

export interface PageQuery<P> {
  prefix: string;
  delimiter?: string;
  start: Cursor<P>;
  /** Common prefixes <= this (in byte order) were already returned or lie before the start: never return them. */
  skipPrefixesUpTo?: string;
  maxEntries: number;
}

export type Entry<R> = { row: R } | { prefix: string };

export interface Page<R> {
  rows: R[];
  prefixes: string[];
  isTruncated: boolean;
  /** The last entry returned; set when truncated (what the next page starts after). */
  last?: Entry<R>;
}

/** The start for "everything after `marker`" (exclusive), clamped to the prefix's range. */
export function startAfterKey(prefix: string, marker: string | undefined): KeyBound {
  if (marker !== undefined && compareUtf8(marker, prefix) >= 0) return { key: marker, inclusive: false };
  return { key: prefix, inclusive: true };
}

export function listPage<R, P>(src: ListSource<R, P>, q: PageQuery<P>): Page<R> {
  if (!Number.isInteger(q.maxEntries) || q.maxEntries < 0 || q.maxEntries > MAX_PAGE_ENTRIES) {
    throw new Error(`page size must be an integer in [0, ${MAX_PAGE_ENTRIES}]`);
  }
  const page: Page<R> = { rows: [], prefixes: [], isTruncated: false };
  // S3 answers max-keys=0 with an empty, untruncated page.
  if (q.maxEntries === 0) return page;
  const delimiter = q.delimiter ? q.delimiter : undefined;
  const upper = prefixSuccessor(q.prefix);
  let cursor: Cursor<P> = q.start;
  let lastRow: R | undefined; // when set, the cursor is "after this row" (its position is computed on refetch only)
  let count = 0;
  let last: Entry<R> | undefined;
  let batch: R[] = [];
  let i = 0;
  let more = true; // the source may hold rows beyond the current batch
  // Doubled before each fetch: a delimiter listing starts small since a seek may discard the batch.
  let size = delimiter ? 16 : MAX_BATCH;
  let seeked = false;

  for (;;) {
    if (i >= batch.length) {
      if (!more) break;
      size = seeked ? SEEK_BATCH : Math.min(size * 2, MAX_BATCH);
      seeked = false;
      // +1: one row beyond the page tells whether it is truncated.
      const limit = Math.max(1, Math.min(size, q.maxEntries - count + 1));
      if (lastRow !== undefined) cursor = { after: src.positionOf(lastRow) };
      lastRow = undefined;
      batch = 'bound' in cursor ? src.fromKey(cursor.bound, upper, limit) : src.afterRow(cursor.after, upper, limit);
      i = 0;
      more = batch.length === limit;
      if (batch.length === 0) break;
    }
    const row = batch[i];
    const key = src.keyOf(row);
    const cp = commonPrefixOf(key, q.prefix, delimiter);
    if (cp === undefined) {
      if (count === q.maxEntries) {
        page.isTruncated = true;
        break;
      }
      page.rows.push(row);
      last = { row };
      count++;
      i++;
      lastRow = row;
      continue;
    }
    const skip = q.skipPrefixesUpTo !== undefined && compareUtf8(cp, q.skipPrefixesUpTo) <= 0;
    if (!skip) {
      if (count === q.maxEntries) {
        page.isTruncated = true;
        break;
      }
      page.prefixes.push(cp);
      last = { prefix: cp };
      count++;
    }
    const next = prefixSuccessor(cp);
    if (next === undefined) break; // every remaining key starts with cp
    cursor = { bound: { key: next, inclusive: true } };
    lastRow = undefined;
    // Rows of this batch past the common prefix are still valid, in order: keep consuming them.
    i++;
    while (i < batch.length && src.keyOf(batch[i]).startsWith(cp)) i++;
    if (i >= batch.length) seeked = true;
  }
  if (page.isTruncated) page.last = last;
  return page;
}
