import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import type { BucketRecord, ObjectVersion, RetentionMode } from '../meta/types';
import { readSmallBody } from './body';
import { parseXml, xmlChild, xmlList, xmlText, isoDate, XmlObject } from './xml';

/**
 * Object Lock: the bucket's configuration (?object-lock) and each version's retention (?retention) and
 * legal hold (?legal-hold). The rules that decide what may change live in model/lock.ts; this file only
 * turns S3 documents into calls on the store and back.
 */

/** These documents are a few hundred bytes; anything near this bound is not a lock document. */
export const MAX_LOCK_XML_BYTES = 64 * 1024;
/** Bounds on a bucket's default retention, so that `days * DAY_MS` stays an exact integer and sane. */
export const MAX_DEFAULT_RETENTION_DAYS = 36_500;
export const MAX_DEFAULT_RETENTION_YEARS = 100;

export type DefaultRetention = NonNullable<BucketRecord['lockDefault']>;
export type Retention = { mode: RetentionMode; untilMs: number };

const MISSING_LOCK = 'Bucket is missing Object Lock Configuration';

function xmlMode(s: string | undefined): RetentionMode {
  // S3 rejects an unknown mode in a document as not matching its schema (the enum), not as a bad argument.
  if (s !== 'GOVERNANCE' && s !== 'COMPLIANCE') throw new S3Error('MalformedXML');
  return s;
}

/** A retention period: an integer; zero or negative is InvalidArgument, anything else not an integer is MalformedXML. */
function period(s: string, max: number): number {
  if (!/^[+-]?\d{1,12}$/.test(s)) throw new S3Error('MalformedXML');
  const n = Number(s);
  if (n <= 0) throw new S3Error('InvalidArgument', 'Default retention period must be a positive integer value.');
  if (n > max) throw new S3Error('InvalidArgument', `Default retention period must be at most ${max}.`);
  return n;
}

/**
 * `<ObjectLockConfiguration>` → the default retention to store (undefined: no default rule).
 * ObjectLockEnabled must say Enabled; a Rule needs a Mode and exactly one of Days or Years.
 */
export function parseLockConfiguration(doc: XmlObject): DefaultRetention | undefined {
  if (xmlText(doc, 'ObjectLockEnabled') !== 'Enabled') throw new S3Error('MalformedXML');
  const rules = xmlList(doc, 'Rule');
  if (rules.length === 0) return undefined;
  if (rules.length > 1) throw new S3Error('MalformedXML');
  const dr = xmlChild(rules[0], 'DefaultRetention');
  if (!dr) throw new S3Error('MalformedXML');
  const mode = xmlMode(xmlText(dr, 'Mode'));
  const days = xmlText(dr, 'Days');
  const years = xmlText(dr, 'Years');
  if ((days === undefined) === (years === undefined)) throw new S3Error('MalformedXML');
  if (days !== undefined) return { mode, days: period(days, MAX_DEFAULT_RETENTION_DAYS) };
  return { mode, years: period(years!, MAX_DEFAULT_RETENTION_YEARS) };
}

export function lockConfigurationXml(b: BucketRecord): XmlObject {
  const out: XmlObject = { ObjectLockEnabled: 'Enabled' };
  const d = b.lockDefault;
  if (d) {
    const retention: XmlObject = { Mode: d.mode };
    if (d.days !== undefined) retention.Days = d.days;
    else retention.Years = d.years;
    out.Rule = { DefaultRetention: retention };
  }
  return out;
}

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$/;

/**
 * `<Retention>` → the retention to set. An empty document removes the retention (only allowed where the
 * rules let it weaken: GOVERNANCE with bypass, or an expired one).
 */
export function parseRetention(doc: XmlObject): Retention | undefined {
  const modeText = xmlText(doc, 'Mode');
  const until = xmlText(doc, 'RetainUntilDate');
  if (modeText === undefined && until === undefined) return undefined;
  if (modeText === undefined || until === undefined) throw new S3Error('MalformedXML');
  const mode = xmlMode(modeText);
  const untilMs = Date.parse(until);
  if (!ISO_DATE_TIME.test(until) || !Number.isFinite(untilMs)) throw new S3Error('MalformedXML');
  return { mode, untilMs };
}

export function retentionXml(r: Retention): XmlObject {
  return { Mode: r.mode, RetainUntilDate: isoDate(r.untilMs) };
}

export function parseLegalHold(doc: XmlObject): boolean {
  const s = xmlText(doc, 'Status');
  if (s !== 'ON' && s !== 'OFF') throw new S3Error('MalformedXML');
  return s === 'ON';
}

function bypassGovernance(ctx: S3Context): boolean {
  return ctx.header('x-amz-bypass-governance-retention')?.toLowerCase() === 'true';
}

/** Object-level lock calls need a bucket with Object Lock, checked before the object is looked at (as S3 does). */
function lockBucket(ctx: S3Context): BucketRecord {
  const b = ctx.authorizedBucket();
  if (!b.objectLockEnabled) throw new S3Error('InvalidRequest', MISSING_LOCK);
  return b;
}

async function readDoc(ctx: S3Context, root: string): Promise<XmlObject> {
  return parseXml((await readSmallBody(ctx, MAX_LOCK_XML_BYTES)).toString('utf8'), root);
}

function target(ctx: S3Context, b: BucketRecord): ObjectVersion {
  const v = ctx.svc.store.resolveVersion(b.name, ctx.requireKey(), ctx.query.get('versionId'));
  ctx.versionId = v.versionId;
  return v;
}

export const getBucketLock: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  if (!b.objectLockEnabled) throw new S3Error('ObjectLockConfigurationNotFoundError', undefined, { BucketName: b.name });
  ctx.sendXml(200, 'ObjectLockConfiguration', lockConfigurationXml(b));
};

export const putBucketLock: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const rule = parseLockConfiguration(await readDoc(ctx, 'ObjectLockConfiguration'));
  // The store refuses (InvalidBucketState) to turn lock on for a bucket whose versioning is not Enabled.
  await ctx.svc.store.setLockConfiguration(b.name, rule);
  ctx.svc.log.info('object lock configuration set', { requestId: ctx.requestId, bucket: b.name, mode: rule?.mode, days: rule?.days, years: rule?.years });
  ctx.sendEmpty(200);
};

export const getRetention: Handler = async (ctx) => {
  const b = lockBucket(ctx);
  const v = target(ctx, b);
  if (!v.retention) throw new S3Error('NoSuchObjectLockConfiguration');
  ctx.sendXml(200, 'Retention', retentionXml(v.retention));
};

export const putRetention: Handler = async (ctx) => {
  const b = lockBucket(ctx);
  const key = ctx.requireKey();
  const next = parseRetention(await readDoc(ctx, 'Retention'));
  const v = await ctx.svc.store.setRetention(b, key, ctx.query.get('versionId'), next, bypassGovernance(ctx));
  ctx.versionId = v.versionId;
  ctx.sendEmpty(200);
};

/**
 * A version whose hold was never set reads as OFF: the store keeps a boolean, so "never set" and "set OFF"
 * cannot be told apart (S3 answers NoSuchObjectLockConfiguration for the former).
 */
export const getLegalHold: Handler = async (ctx) => {
  const b = lockBucket(ctx);
  const v = target(ctx, b);
  ctx.sendXml(200, 'LegalHold', { Status: v.legalHold ? 'ON' : 'OFF' });
};

export const putLegalHold: Handler = async (ctx) => {
  const b = lockBucket(ctx);
  const key = ctx.requireKey();
  const on = parseLegalHold(await readDoc(ctx, 'LegalHold'));
  const v = await ctx.svc.store.setLegalHold(b, key, ctx.query.get('versionId'), on);
  ctx.versionId = v.versionId;
  ctx.svc.log.info('legal hold set', { requestId: ctx.requestId, bucket: b.name, versionId: v.versionId, on });
  ctx.sendEmpty(200);
};
