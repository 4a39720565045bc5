import { XMLBuilder } from 'fast-xml-parser';
import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import { quoteEtag } from './headers';
import { isoDate, XmlObject, XmlValue } from './xml';
import { isValidVersionId } from '../util/hlc';
import { MAX_KEY_BYTES } from './names';
import type { ObjectVersion } from '../meta/types';

/** S3 never returns more than this many entries in one listing page, whatever max-keys asks. */
export const MAX_LIST_ENTRIES = 1000;
/** Longest continuation token we decode: a 1024-byte key, JSON-escaped at worst, then base64. */
const MAX_TOKEN_CHARS = 16 * 1024;
const TOKEN_VERSION = 1;
const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

// ---- parameters --------------------------------------------------------------------------------------

/** max-keys / max-uploads / max-parts: a non-negative 32-bit integer, capped at 1000 (S3's page limit). */
export function parseMaxParam(raw: string | undefined, name: string): number {
  if (raw === undefined) return MAX_LIST_ENTRIES;
  const s = raw.trim();
  if (!/^\d{1,10}$/.test(s) || Number(s) > 2147483647) {
    throw new S3Error('InvalidArgument', `Provided ${name} not an integer or within integer range`, { ArgumentName: name, ArgumentValue: raw.slice(0, 64) });
  }
  return Math.min(Number(s), MAX_LIST_ENTRIES);
}

/** encoding-type: absent, or exactly `url`. */
export function parseEncodingType(raw: string | undefined): 'url' | undefined {
  if (raw === undefined) return undefined;
  if (raw.toLowerCase() !== 'url') {
    throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request', { ArgumentName: 'encoding-type', ArgumentValue: raw.slice(0, 64) });
  }
  return 'url';
}

/**
 * URL-encoding of names in listings, as S3 answers under encoding-type=url: UTF-8 percent-encoding with
 * space as `+`, and `/` (the usual delimiter) left as it is. Letters, digits and `-_.*` stay readable.
 */
export function s3UrlEncode(s: string): string {
  return encodeURIComponent(s)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

/** Applies encoding-type to one name of the response; undefined stays undefined (element omitted). */
export function encodeName(s: string | undefined, enc: 'url' | undefined): string | undefined {
  if (s === undefined) return undefined;
  return enc === 'url' ? s3UrlEncode(s) : s;
}

/** Longest prefix/delimiter/marker passed on (the metadata layer's bound); longer ones are refused. */
const MAX_LISTING_PARAM_CHARS = 4 * MAX_KEY_BYTES;

/**
 * A name-like listing parameter (prefix, delimiter, markers). A value longer than any key simply matches
 * nothing, as on S3; only absurd lengths and malformed Unicode are refused, with a 400 rather than a 500.
 */
export function nameParam(ctx: S3Context, name: string): string | undefined {
  const v = ctx.query.get(name);
  if (v !== undefined) checkListingName(v, name);
  return v;
}

export function checkListingName(v: string, name: string): void {
  if (v.length > MAX_LISTING_PARAM_CHARS) {
    throw new S3Error('InvalidArgument', `The ${name} parameter is too long.`, { ArgumentName: name });
  }
  // Lone surrogates cannot come from a URL (decoding gives U+FFFD) but can from a forged token.
  if (/[\uD800-\uDFFF]/.test(v.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) {
    throw new S3Error('InvalidArgument', `The ${name} parameter is not valid UTF-8.`, { ArgumentName: name });
  }
}

/** An empty delimiter is no delimiter (S3 omits it from the response too). */
export function delimiterParam(ctx: S3Context): string | undefined {
  const d = nameParam(ctx, 'delimiter');
  return d === undefined || d === '' ? undefined : d;
}

// ---- continuation tokens -----------------------------------------------------------------------------

/** Opaque to clients: base64url of {v, a} where `a` is what the next page starts after (a key or common prefix). */
export function encodeContinuationToken(after: string): string {
  return Buffer.from(JSON.stringify({ v: TOKEN_VERSION, a: after }), 'utf8').toString('base64url');
}

export function decodeContinuationToken(token: string): string {
  const bad = (): S3Error => new S3Error('InvalidArgument', 'The continuation token provided is incorrect', { ArgumentName: 'continuation-token' });
  if (token === '' || token.length > MAX_TOKEN_CHARS || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const bytes = Buffer.from(token, 'base64url');
  // Reject tokens that are not the canonical encoding of what they decode to (truncated or edited ones).
  if (bytes.toString('base64url') !== token) throw bad();
  const text = bytes.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(bytes)) throw bad(); // not valid UTF-8
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad();
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad();
  const o = doc as Record<string, unknown>;
  if (o.v !== TOKEN_VERSION || typeof o.a !== 'string' || o.a === '' || Object.keys(o).length !== 2) throw bad();
  try {
    checkListingName(o.a, 'continuation-token');
  } catch {
    throw bad();
  }
  return o.a;
}

// ---- XML shaping -------------------------------------------------------------------------------------

function owner(id: string): XmlObject {
  return { ID: id, DisplayName: id };
}

function checksumFields(v: ObjectVersion): XmlObject {
  return v.checksum ? { ChecksumAlgorithm: v.checksum.algorithm, ChecksumType: v.checksum.type } : {};
}

/** One <Contents> entry of ListObjects / ListObjectsV2. */
export function contentsEntry(v: ObjectVersion, enc: 'url' | undefined, withOwner: boolean): XmlObject {
  return {
    Key: encodeName(v.key, enc),
    LastModified: isoDate(v.lastModifiedMs),
    ETag: quoteEtag(v.etag),
    ...checksumFields(v),
    Size: v.size,
    Owner: withOwner ? owner(v.owner) : undefined,
    StorageClass: 'STANDARD',
  };
}

/** One <Version> or <DeleteMarker> entry of ListObjectVersions, with its element name. */
export function versionEntry(v: ObjectVersion, enc: 'url' | undefined): [string, XmlObject] {
  const common = { Key: encodeName(v.key, enc), VersionId: v.versionId, IsLatest: v.isLatest, LastModified: isoDate(v.lastModifiedMs) };
  if (v.deleteMarker) return ['DeleteMarker', { ...common, Owner: owner(v.owner) }];
  return ['Version', { ...common, ETag: quoteEtag(v.etag), ...checksumFields(v), Size: v.size, StorageClass: 'STANDARD', Owner: owner(v.owner) }];
}

function commonPrefixes(prefixes: string[], enc: 'url' | undefined): XmlObject[] {
  return prefixes.map((p) => ({ Prefix: encodeName(p, enc) }));
}

// Same escaping as xml.ts, in the mode that keeps the order of mixed sibling elements.
const orderedBuilder = new XMLBuilder({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  suppressEmptyNode: false,
  processEntities: true,
});

// eslint-disable-next-line no-control-regex
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

type OrderedNode = Record<string, unknown>;

/** Plain XmlObject (insertion order, arrays as repeated elements) to fast-xml-parser's ordered form. */
function orderedNodes(o: XmlObject): OrderedNode[] {
  const out: OrderedNode[] = [];
  const add = (name: string, v: XmlValue): void => {
    if (v === undefined || v === null) return;
    if (Array.isArray(v)) {
      for (const x of v) add(name, x);
    } else if (typeof v === 'object') {
      out.push({ [name]: orderedNodes(v) });
    } else {
      const text = typeof v === 'string' ? v.replace(XML_INVALID, (c) => `&#x${c.charCodeAt(0).toString(16)};`) : String(v);
      out.push({ [name]: [{ '#text': text }] });
    }
  };
  for (const [k, v] of Object.entries(o)) add(k, v);
  return out;
}

/**
 * An S3 XML document whose root children are given in order as [name, value] pairs, so that different
 * elements can alternate (<Version> and <DeleteMarker> in listing order).
 */
export function toOrderedXml(root: string, children: [string, XmlValue][]): string {
  const nodes = children.flatMap(([name, v]) => orderedNodes({ [name]: v }));
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + (orderedBuilder.build([{ [root]: nodes, ':@': { '@_xmlns': S3_NS } }]) as string);
}

function sendRawXml(ctx: S3Context, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  ctx.res.writeHead(200, { 'content-type': 'application/xml', 'content-length': String(buf.length) });
  ctx.res.end(buf);
  ctx.bytesOut += buf.length;
}

// ---- handlers ----------------------------------------------------------------------------------------

export const listObjectsV2: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const enc = parseEncodingType(ctx.query.get('encoding-type'));
  const maxKeys = parseMaxParam(ctx.query.get('max-keys'), 'max-keys');
  const prefix = nameParam(ctx, 'prefix') ?? '';
  const delimiter = delimiterParam(ctx);
  const token = ctx.query.get('continuation-token');
  const startAfter = nameParam(ctx, 'start-after');
  const fetchOwner = ctx.query.get('fetch-owner')?.toLowerCase() === 'true';
  // A continuation token supersedes start-after (which is then not echoed either, as S3 does).
  const after = token !== undefined ? decodeContinuationToken(token) : startAfter || undefined;
  const r = ctx.svc.store.listObjects(b.name, { prefix, delimiter, after, maxKeys });
  if (r.isTruncated && r.nextAfter === undefined) throw new Error('truncated listing without a next position');
  ctx.sendXml(200, 'ListBucketResult', {
    Name: b.name,
    Prefix: encodeName(prefix, enc),
    ContinuationToken: token,
    NextContinuationToken: r.isTruncated ? encodeContinuationToken(r.nextAfter!) : undefined,
    KeyCount: r.contents.length + r.commonPrefixes.length,
    MaxKeys: maxKeys,
    Delimiter: encodeName(delimiter, enc),
    EncodingType: enc,
    IsTruncated: r.isTruncated,
    StartAfter: token === undefined ? encodeName(startAfter, enc) : undefined,
    Contents: r.contents.map((v) => contentsEntry(v, enc, fetchOwner)),
    CommonPrefixes: commonPrefixes(r.commonPrefixes, enc),
  });
};

export const listObjectsV1: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const enc = parseEncodingType(ctx.query.get('encoding-type'));
  const maxKeys = parseMaxParam(ctx.query.get('max-keys'), 'max-keys');
  const prefix = nameParam(ctx, 'prefix') ?? '';
  const delimiter = delimiterParam(ctx);
  const marker = nameParam(ctx, 'marker') ?? '';
  const r = ctx.svc.store.listObjects(b.name, { prefix, delimiter, after: marker || undefined, maxKeys });
  ctx.sendXml(200, 'ListBucketResult', {
    Name: b.name,
    Prefix: encodeName(prefix, enc),
    Marker: encodeName(marker, enc),
    // S3 gives NextMarker only with a delimiter; without one, clients continue after the last key.
    NextMarker: r.isTruncated && delimiter !== undefined ? encodeName(r.nextAfter, enc) : undefined,
    MaxKeys: maxKeys,
    Delimiter: encodeName(delimiter, enc),
    EncodingType: enc,
    IsTruncated: r.isTruncated,
    Contents: r.contents.map((v) => contentsEntry(v, enc, true)),
    CommonPrefixes: commonPrefixes(r.commonPrefixes, enc),
  });
};

export const listObjectVersions: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const enc = parseEncodingType(ctx.query.get('encoding-type'));
  const maxKeys = parseMaxParam(ctx.query.get('max-keys'), 'max-keys');
  const prefix = nameParam(ctx, 'prefix') ?? '';
  const delimiter = delimiterParam(ctx);
  const keyMarker = nameParam(ctx, 'key-marker') ?? '';
  const versionIdMarker = ctx.query.get('version-id-marker') ?? '';
  if (versionIdMarker !== '') {
    if (keyMarker === '') {
      throw new S3Error('InvalidArgument', 'A version-id marker cannot be specified without a key marker.', { ArgumentName: 'version-id-marker', ArgumentValue: versionIdMarker.slice(0, 64) });
    }
    if (!isValidVersionId(versionIdMarker)) {
      throw new S3Error('InvalidArgument', 'Invalid version id specified', { ArgumentName: 'version-id-marker', ArgumentValue: versionIdMarker.slice(0, 64) });
    }
  }
  const r = ctx.svc.store.listVersions(b.name, {
    prefix, delimiter, maxKeys,
    keyMarker: keyMarker || undefined,
    versionIdMarker: versionIdMarker || undefined,
  });
  const children: [string, XmlValue][] = [
    ['Name', b.name],
    ['Prefix', encodeName(prefix, enc)],
    ['KeyMarker', encodeName(keyMarker, enc)],
    ['VersionIdMarker', versionIdMarker],
  ];
  if (r.isTruncated) {
    children.push(['NextKeyMarker', encodeName(r.nextKeyMarker, enc)], ['NextVersionIdMarker', r.nextVersionIdMarker]);
  }
  children.push(
    ['MaxKeys', maxKeys],
    ['Delimiter', encodeName(delimiter, enc)],
    ['EncodingType', enc],
    ['IsTruncated', r.isTruncated],
    ...r.versions.map((v) => versionEntry(v, enc)),
    ['CommonPrefixes', commonPrefixes(r.commonPrefixes, enc)],
  );
  sendRawXml(ctx, toOrderedXml('ListVersionsResult', children));
};
