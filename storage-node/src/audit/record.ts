import crypto from 'node:crypto';

/**
 * The on-disk format of the audit log, shared by the writer (audit-log.ts) and the checker (verify.ts) so
 * that both compute the same bytes. See docs/decisions/0004-audit-log.md.
 */

/** One S3 access, as the S3 edge reports it. */
export interface AuditRecord {
  /** ISO 8601 UTC with milliseconds. */
  time: string;
  requestId: string;
  accessKey?: string;
  sourceIp: string;
  /** e.g. 'PutObject'. */
  operation: string;
  bucket?: string;
  key?: string;
  versionId?: string;
  status: number;
  errorCode?: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  userAgent?: string;
}

/** A record as stored: the record plus its place in the chain. */
export interface ChainedRecord extends AuditRecord {
  /** Format version of the line. */
  v: number;
  /** 1-based, global across segments, no gaps. */
  seq: number;
  /** Hash of the previous record, GENESIS_HASH for the very first. */
  prev: string;
  /** sha256 hex of prev + canonical JSON of every other field. */
  hash: string;
}

export const FORMAT_VERSION = 1;
export const GENESIS_HASH = '0'.repeat(64);

/** S3 keys are at most 1024 bytes; anything longer is cut so that a line stays bounded. */
export const MAX_FIELD_CHARS = 2048;
/** Upper bound of one encoded line: 6 string fields of MAX_FIELD_CHARS, each char at most 6 bytes escaped, plus the rest. */
export const MAX_LINE_BYTES = 128 * 1024;

type FieldType = 'string' | 'number';

/** The canonical field order. Changing it changes every hash: it is part of FORMAT_VERSION. */
const FIELDS: ReadonlyArray<readonly [keyof ChainedRecord, FieldType, boolean]> = [
  ['v', 'number', true],
  ['seq', 'number', true],
  ['time', 'string', true],
  ['requestId', 'string', true],
  ['accessKey', 'string', false],
  ['sourceIp', 'string', true],
  ['operation', 'string', true],
  ['bucket', 'string', false],
  ['key', 'string', false],
  ['versionId', 'string', false],
  ['status', 'number', true],
  ['errorCode', 'string', false],
  ['bytesIn', 'number', true],
  ['bytesOut', 'number', true],
  ['durationMs', 'number', true],
  ['userAgent', 'string', false],
  ['prev', 'string', true],
];
const KNOWN_FIELDS = new Set<string>([...FIELDS.map((f) => f[0] as string), 'hash']);
const HASH_RE = /^[0-9a-f]{64}$/;

/** JSON of every field but `hash`, in FIELDS order, absent optional fields left out. */
export function canonicalJson(rec: Omit<ChainedRecord, 'hash'>): string {
  const ordered: Record<string, unknown> = {};
  for (const [name] of FIELDS) {
    const value = (rec as unknown as Record<string, unknown>)[name];
    if (value !== undefined) ordered[name] = value;
  }
  return JSON.stringify(ordered);
}

export function chainHash(prev: string, canonical: string): string {
  return crypto.createHash('sha256').update(prev, 'utf8').update(canonical, 'utf8').digest('hex');
}

/** The exact line (without its newline) that a record with this canonical JSON and hash must be. */
function lineOf(canonical: string, hash: string): string {
  return `${canonical.slice(0, -1)},"hash":"${hash}"}`;
}

export interface EncodedLine {
  line: Buffer;
  hash: string;
  /** Names of fields that were not finite numbers and were stored as -1. */
  fixedFields: string[];
}

/**
 * Encodes one record as the line to append (with its newline). Long strings are cut and non-finite
 * numbers stored as -1 rather than refusing the record: an audit record is never dropped.
 */
export function encodeRecord(rec: AuditRecord, seq: number, prev: string): EncodedLine {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new Error(`audit seq must be a positive integer, got ${seq}`);
  if (!HASH_RE.test(prev)) throw new Error('audit prev must be a sha256 hex digest');
  const fixedFields: string[] = [];
  const clean: Record<string, unknown> = { v: FORMAT_VERSION, seq, prev };
  for (const [name, type] of FIELDS) {
    if (name === 'v' || name === 'seq' || name === 'prev') continue;
    const value = (rec as unknown as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (type === 'string') {
      const s = String(value);
      clean[name] = s.length > MAX_FIELD_CHARS ? s.slice(0, MAX_FIELD_CHARS) : s;
    } else if (typeof value === 'number' && Number.isFinite(value)) {
      clean[name] = value;
    } else {
      clean[name] = -1;
      fixedFields.push(name);
    }
  }
  // Required strings must be present so that the checker's type rules hold for every line we write.
  for (const [name, type, required] of FIELDS) {
    if (required && clean[name] === undefined) clean[name] = type === 'string' ? '' : -1;
  }
  const canonical = canonicalJson(clean as unknown as ChainedRecord);
  const hash = chainHash(prev, canonical);
  const line = Buffer.from(lineOf(canonical, hash) + '\n', 'utf8');
  if (line.length > MAX_LINE_BYTES) throw new Error(`audit line of ${line.length} bytes exceeds ${MAX_LINE_BYTES}`);
  return { line, hash, fixedFields };
}

export type ParsedLine = { ok: true; rec: ChainedRecord } | { ok: false; reason: string };

/** Parses one line (without newline) and checks its shape; does not check the hash. */
export function parseLine(text: string): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `not JSON (${(e as Error).message})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!KNOWN_FIELDS.has(k)) return { ok: false, reason: `unknown field "${k.slice(0, 64)}"` };
  }
  for (const [name, type, required] of FIELDS) {
    const v = obj[name];
    if (v === undefined) {
      if (required) return { ok: false, reason: `missing field "${name}"` };
    } else if (typeof v !== type) {
      return { ok: false, reason: `field "${name}" is not a ${type}` };
    }
  }
  if (obj.v !== FORMAT_VERSION) return { ok: false, reason: `unsupported format version ${String(obj.v)}` };
  if (!Number.isSafeInteger(obj.seq) || (obj.seq as number) < 1) return { ok: false, reason: 'seq is not a positive integer' };
  if (typeof obj.hash !== 'string' || !HASH_RE.test(obj.hash)) return { ok: false, reason: 'hash is not a sha256 hex digest' };
  if (!HASH_RE.test(obj.prev as string)) return { ok: false, reason: 'prev is not a sha256 hex digest' };
  return { ok: true, rec: obj as unknown as ChainedRecord };
}

/**
 * Whether a parsed line is exactly what the writer would have produced: its hash matches its content and
 * its text is canonical (so that even a change that keeps the values, like reordering fields, shows).
 */
export function checkHash(rec: ChainedRecord, text: string): { ok: true } | { ok: false; reason: string } {
  const canonical = canonicalJson(rec);
  if (chainHash(rec.prev, canonical) !== rec.hash) return { ok: false, reason: 'its content does not match its hash' };
  if (lineOf(canonical, rec.hash) !== text) return { ok: false, reason: 'its text is not in canonical form' };
  return { ok: true };
}

// ---- segment files -------------------------------------------------------------------------------------

const SEGMENT_RE = /^audit-(\d{6,})\.jsonl$/;

export function segmentName(index: number): string {
  if (!Number.isSafeInteger(index) || index < 1) throw new Error(`bad audit segment index ${index}`);
  return `audit-${String(index).padStart(6, '0')}.jsonl`;
}

/** Segment indexes found among directory entries, ascending (numerically, so 1000000 sorts after 999999). */
export function segmentIndexes(names: string[]): number[] {
  const out: number[] = [];
  for (const n of names) {
    const m = SEGMENT_RE.exec(n);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}
