import type { TLSSocket } from 'node:tls';
import { S3Error } from './error';
import type { Handler, S3Context } from './context';
import { objectBody, readSmallBody } from './body';
import { attributesFromHeaders, quoteEtag } from './headers';
import { writeConditions } from './put';
import { parseXml, xmlList, xmlText, isoDate, MAX_XML_BODY_BYTES, XmlObject } from './xml';
import { delimiterParam, encodeName, nameParam, parseEncodingType, parseMaxParam } from './list';
import { bodyFromVersion, parseCopySource, parseCopySourceRange, resolveCopySource } from './copy-source';
import { LIMITS, CompletePart } from '../model/store';
import { CHECKSUM_ALGORITHMS, ChecksumAlgorithm, checksumHeaderName, parseChecksumAlgorithm } from '../util/checksum';
import type { PartRecord, UploadRecord } from '../meta/types';

type ChecksumType = 'FULL_OBJECT' | 'COMPOSITE';

// ---- pure parts ---------------------------------------------------------------------------------------

/** partNumber of UploadPart / UploadPartCopy: an integer in 1..10000. */
export function parsePartNumber(raw: string | undefined): number {
  if (raw === undefined || !/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > LIMITS.maxParts) {
    throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${LIMITS.maxParts}, inclusive`, { ArgumentName: 'partNumber', ArgumentValue: (raw ?? '').slice(0, 32) });
  }
  return Number(raw);
}

/** part-number-marker of ListParts: a non-negative integer; 0 when absent. */
export function parsePartNumberMarker(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  if (!/^\d{1,10}$/.test(raw) || Number(raw) > 2147483647) {
    throw new S3Error('InvalidArgument', 'Provided part-number-marker not an integer or within integer range', { ArgumentName: 'part-number-marker', ArgumentValue: raw.slice(0, 32) });
  }
  return Number(raw);
}

/** The XML element carrying a checksum of this algorithm: ChecksumCRC32, ChecksumSHA256, ... */
export function checksumElement(a: ChecksumAlgorithm): string {
  return `Checksum${a}`;
}

/**
 * x-amz-checksum-algorithm / x-amz-checksum-type of CreateMultipartUpload. S3's rules: CRC64NVME is only
 * FULL_OBJECT, SHA1/SHA256 only COMPOSITE, CRC32/CRC32C either; the default type is COMPOSITE except for
 * CRC64NVME. A type without an algorithm is refused.
 */
export function parseUploadChecksum(algHeader: string | undefined, typeHeader: string | undefined): { algorithm: ChecksumAlgorithm; type: ChecksumType } | undefined {
  let type: ChecksumType | undefined;
  if (typeHeader !== undefined) {
    const t = typeHeader.toUpperCase();
    if (t !== 'FULL_OBJECT' && t !== 'COMPOSITE') throw new S3Error('InvalidRequest', 'Value for x-amz-checksum-type header is invalid.');
    type = t;
  }
  if (algHeader === undefined) {
    if (type !== undefined) throw new S3Error('InvalidRequest', 'The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.');
    return undefined;
  }
  const algorithm = parseChecksumAlgorithm(algHeader);
  if (!algorithm) {
    throw new S3Error('InvalidRequest', `Checksum algorithm provided is unsupported. Please try again with any of the valid types: [${CHECKSUM_ALGORITHMS.join(', ')}]`);
  }
  const fullOnly = algorithm === 'CRC64NVME';
  const compositeOnly = algorithm === 'SHA1' || algorithm === 'SHA256';
  const chosen: ChecksumType = type ?? (fullOnly ? 'FULL_OBJECT' : 'COMPOSITE');
  if ((fullOnly && chosen !== 'FULL_OBJECT') || (compositeOnly && chosen !== 'COMPOSITE')) {
    throw new S3Error('InvalidRequest', `The ${chosen} checksum type cannot be used with the ${algorithm.toLowerCase()} checksum algorithm.`);
  }
  return { algorithm, type: chosen };
}

/** The parts listed by a CompleteMultipartUpload document, checksums taken for the upload's algorithm. */
export function parseCompleteParts(doc: XmlObject, u: Pick<UploadRecord, 'checksumAlgorithm' | 'checksumType'>): CompletePart[] {
  const parts = xmlList(doc, 'Part');
  if (parts.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part.');
  if (parts.length > LIMITS.maxParts) throw new S3Error('MalformedXML', `At most ${LIMITS.maxParts} parts.`);
  return parts.map((p) => {
    const pn = xmlText(p, 'PartNumber');
    const etag = xmlText(p, 'ETag');
    if (pn === undefined || etag === undefined || etag === '') throw new S3Error('MalformedXML', 'Each Part needs a PartNumber and an ETag.');
    if (!/^\d{1,10}$/.test(pn.trim())) throw new S3Error('MalformedXML', 'PartNumber must be an integer.');
    const partNumber = Number(pn.trim());
    if (partNumber < 1 || partNumber > LIMITS.maxParts) {
      throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${LIMITS.maxParts}, inclusive`, { ArgumentName: 'PartNumber', ArgumentValue: pn.slice(0, 32) });
    }
    const part: CompletePart = { partNumber, etag };
    if (u.checksumAlgorithm) {
      const c = xmlText(p, checksumElement(u.checksumAlgorithm));
      if (c !== undefined) part.checksum = c;
      else if (u.checksumType !== 'FULL_OBJECT') {
        throw new S3Error('InvalidRequest', `The upload was created using a ${u.checksumAlgorithm.toLowerCase()} checksum. The complete request must include the checksum for each part. It was missing for part ${partNumber} in the request.`);
      }
    }
    return part;
  });
}

/** The checksum algorithm a part request declares in a header or trailer (not yet verified: body.ts does). */
export function declaredChecksumAlgorithm(headers: Record<string, string | string[] | undefined>): ChecksumAlgorithm | undefined {
  for (const a of CHECKSUM_ALGORITHMS) if (headers[checksumHeaderName(a)] !== undefined) return a;
  const trailer = headers['x-amz-trailer'];
  const names = (Array.isArray(trailer) ? trailer.join(',') : trailer ?? '').toLowerCase().split(',').map((s) => s.trim());
  for (const n of names) {
    if (n.startsWith('x-amz-checksum-')) {
      const a = parseChecksumAlgorithm(n.slice('x-amz-checksum-'.length));
      if (a) return a;
    }
  }
  return undefined;
}

/** A part may carry any checksum when the upload has none; otherwise only the upload's. */
export function checkPartChecksumAlgorithm(upload: ChecksumAlgorithm | undefined, declared: ChecksumAlgorithm | undefined): void {
  if (upload && declared && upload !== declared) {
    throw new S3Error('InvalidRequest', `Checksum Type mismatch occurred, expected checksum Type: ${upload.toLowerCase()}, actual checksum Type: ${declared.toLowerCase()}`);
  }
}

/** Path-style URL of an object, key segments percent-encoded. */
export function objectLocation(proto: string, host: string, bucket: string, key: string, virtualHosted: boolean): string {
  const path = key.split('/').map(encodeURIComponent).join('/');
  return virtualHosted ? `${proto}://${host}/${path}` : `${proto}://${host}/${bucket}/${path}`;
}

export function partEntry(p: PartRecord, alg: ChecksumAlgorithm | undefined): XmlObject {
  return {
    PartNumber: p.partNumber,
    LastModified: isoDate(p.lastModifiedMs),
    ETag: quoteEtag(p.etag),
    Size: p.size,
    ...(alg && p.checksum !== undefined ? { [checksumElement(alg)]: p.checksum } : {}),
  };
}

export function uploadEntry(u: UploadRecord, enc: 'url' | undefined): XmlObject {
  const who = { ID: u.owner, DisplayName: u.owner };
  return {
    Key: encodeName(u.key, enc),
    UploadId: u.uploadId,
    Initiator: who,
    Owner: who,
    StorageClass: 'STANDARD',
    Initiated: isoDate(u.initiatedMs),
    ChecksumAlgorithm: u.checksumAlgorithm,
    ChecksumType: u.checksumAlgorithm ? u.checksumType : undefined,
  };
}

// ---- handlers -----------------------------------------------------------------------------------------

function uploadOf(ctx: S3Context, bucket: string, key: string): UploadRecord {
  const id = ctx.query.get('uploadId');
  if (id === undefined || id === '') throw new S3Error('NoSuchUpload', undefined, { UploadId: id ?? '' });
  return ctx.svc.store.getUpload(bucket, key, id);
}

function checksumHeaders(alg: ChecksumAlgorithm | undefined, value: string | undefined): Record<string, string> {
  return alg && value !== undefined ? { [checksumHeaderName(alg)]: value } : {};
}

export const createUpload: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const attrs = attributesFromHeaders(ctx);
  const checksum = parseUploadChecksum(ctx.header('x-amz-checksum-algorithm'), ctx.header('x-amz-checksum-type'));
  const u = await ctx.svc.store.createUpload(b, key, ctx.accessKey, attrs, checksum);
  const headers: Record<string, string> = {};
  if (checksum) {
    headers['x-amz-checksum-algorithm'] = checksum.algorithm;
    headers['x-amz-checksum-type'] = checksum.type;
  }
  ctx.svc.log.debug('multipart upload created', { requestId: ctx.requestId, bucket: b.name, uploadId: u.uploadId });
  ctx.sendXml(200, 'InitiateMultipartUploadResult', { Bucket: b.name, Key: key, UploadId: u.uploadId }, headers);
};

export const uploadPart: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const partNumber = parsePartNumber(ctx.query.get('partNumber'));
  // Refusals come before a byte of the body is read.
  const u = uploadOf(ctx, b.name, key);
  const declared = declaredChecksumAlgorithm(ctx.req.headers);
  checkPartChecksumAlgorithm(u.checksumAlgorithm, declared);
  const body = objectBody(ctx, { maxBytes: LIMITS.maxPartBytes, checksumAlgorithm: u.checksumAlgorithm });
  const part = await ctx.svc.store.uploadPart(u, partNumber, body);
  ctx.sendEmpty(200, { etag: quoteEtag(part.etag), ...checksumHeaders(declared ?? u.checksumAlgorithm, part.checksum) });
};

export const uploadPartCopy: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const partNumber = parsePartNumber(ctx.query.get('partNumber'));
  const u = uploadOf(ctx, b.name, key);
  const src = parseCopySource(ctx);
  const { bucket: srcBucket, version } = resolveCopySource(ctx, src);
  const range = parseCopySourceRange(ctx.header('x-amz-copy-source-range'), version.size);
  const sizeBytes = range ? range.endInclusive - range.start + 1 : version.size;
  if (sizeBytes > LIMITS.maxPartBytes) throw new S3Error('EntityTooLarge', undefined, { ProposedSize: String(sizeBytes), MaxSizeAllowed: String(LIMITS.maxPartBytes) });
  const body = bodyFromVersion(ctx.svc.store, version, range, u.checksumAlgorithm);
  const part = await ctx.svc.store.uploadPart(u, partNumber, body);
  const headers: Record<string, string> = {};
  if (srcBucket.versioning !== 'Unversioned' || version.versionId !== 'null') headers['x-amz-copy-source-version-id'] = version.versionId;
  const result: XmlObject = { ETag: quoteEtag(part.etag), LastModified: isoDate(part.lastModifiedMs) };
  if (u.checksumAlgorithm && part.checksum !== undefined) result[checksumElement(u.checksumAlgorithm)] = part.checksum;
  ctx.sendXml(200, 'CopyPartResult', result, headers);
};

/**
 * The Complete body, read like any other small body; its x-amz-checksum-* headers describe the whole
 * object rather than this XML, so they are set aside while the body is verified.
 */
async function readCompleteBody(ctx: S3Context): Promise<string> {
  const hidden: Record<string, string | string[]> = {};
  for (const a of CHECKSUM_ALGORITHMS) {
    const h = checksumHeaderName(a);
    const v = ctx.req.headers[h];
    if (v !== undefined) {
      hidden[h] = v;
      delete ctx.req.headers[h];
    }
  }
  try {
    return (await readSmallBody(ctx, MAX_XML_BODY_BYTES)).toString('utf8');
  } finally {
    Object.assign(ctx.req.headers, hidden);
  }
}

export const completeUpload: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const u = uploadOf(ctx, b.name, key);
  const cond = writeConditions(ctx);
  ctx.svc.store.checkWriteConditions(b.name, key, cond);
  const type = ctx.header('x-amz-checksum-type');
  if (type !== undefined && u.checksumType !== undefined && type.toUpperCase() !== u.checksumType) {
    throw new S3Error('InvalidRequest', `The upload was created using the ${u.checksumType} checksum mode. The complete request must use the same checksum mode.`);
  }
  const expected = CHECKSUM_ALGORITHMS.filter((a) => ctx.header(checksumHeaderName(a)) !== undefined);
  if (expected.length > 1) throw new S3Error('InvalidRequest', 'Expecting a single x-amz-checksum- header.');
  const sizeHeader = ctx.header('x-amz-mp-object-size');
  if (sizeHeader !== undefined && !/^\d{1,16}$/.test(sizeHeader)) throw new S3Error('InvalidArgument', 'x-amz-mp-object-size must be a number.');
  const doc = parseXml(await readCompleteBody(ctx), 'CompleteMultipartUpload');
  const parts = parseCompleteParts(doc, u);
  const v = await ctx.svc.store.completeUpload(b, u, parts, cond, {
    checksum: expected.length === 1 ? { algorithm: expected[0], value: ctx.header(checksumHeaderName(expected[0]))! } : undefined,
    sizeBytes: sizeHeader === undefined ? undefined : Number(sizeHeader),
  });
  ctx.versionId = v.versionId;
  const host = ctx.header('host') ?? 'localhost';
  const hostname = host.replace(/:\d+$/, '').toLowerCase();
  const virtualHosted = ctx.svc.domains.some((d) => hostname === `${b.name}.${d}`);
  const proto = (ctx.req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const result: XmlObject = { Location: objectLocation(proto, host, b.name, key, virtualHosted), Bucket: b.name, Key: key, ETag: quoteEtag(v.etag) };
  if (v.checksum) {
    result[checksumElement(v.checksum.algorithm)] = v.checksum.value;
    result.ChecksumType = v.checksum.type;
  }
  const headers: Record<string, string> = {};
  if (b.versioning !== 'Unversioned') headers['x-amz-version-id'] = v.versionId;
  ctx.sendXml(200, 'CompleteMultipartUploadResult', result, headers);
};

export const abortUpload: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const u = uploadOf(ctx, b.name, key);
  await ctx.svc.store.abortUpload(u);
  ctx.sendEmpty(204);
};

export const listParts: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const key = ctx.requireKey();
  const u = uploadOf(ctx, b.name, key);
  const maxParts = parseMaxParam(ctx.query.get('max-parts'), 'max-parts');
  const marker = parsePartNumberMarker(ctx.query.get('part-number-marker'));
  const page = ctx.svc.store.listParts(u.uploadId, marker, maxParts);
  const parts: PartRecord[] = page.parts;
  const last = parts[parts.length - 1];
  const who = { ID: u.owner, DisplayName: u.owner };
  ctx.sendXml(200, 'ListPartsResult', {
    Bucket: b.name,
    Key: key,
    UploadId: u.uploadId,
    PartNumberMarker: marker,
    NextPartNumberMarker: page.isTruncated && last ? last.partNumber : undefined,
    MaxParts: maxParts,
    IsTruncated: page.isTruncated,
    Part: parts.map((p) => partEntry(p, u.checksumAlgorithm)),
    Initiator: who,
    Owner: who,
    StorageClass: 'STANDARD',
    ChecksumAlgorithm: u.checksumAlgorithm,
    ChecksumType: u.checksumAlgorithm ? u.checksumType : undefined,
  });
};

export const listUploads: Handler = async (ctx) => {
  const b = ctx.authorizedBucket();
  const enc = parseEncodingType(ctx.query.get('encoding-type'));
  const maxUploads = parseMaxParam(ctx.query.get('max-uploads'), 'max-uploads');
  const prefix = nameParam(ctx, 'prefix') ?? '';
  const delimiter = delimiterParam(ctx);
  const keyMarker = nameParam(ctx, 'key-marker') ?? '';
  // S3 ignores upload-id-marker without key-marker.
  const uploadIdMarker = keyMarker === '' ? '' : ctx.query.get('upload-id-marker') ?? '';
  if (uploadIdMarker !== '' && !/^[A-Za-z0-9_-]{1,128}$/.test(uploadIdMarker)) {
    throw new S3Error('InvalidArgument', 'Invalid uploadId marker', { ArgumentName: 'upload-id-marker', ArgumentValue: uploadIdMarker.slice(0, 64) });
  }
  const r = ctx.svc.store.listUploads(b.name, {
    prefix, delimiter, maxUploads,
    keyMarker: keyMarker || undefined,
    uploadIdMarker: uploadIdMarker || undefined,
  });
  ctx.sendXml(200, 'ListMultipartUploadsResult', {
    Bucket: b.name,
    KeyMarker: encodeName(keyMarker, enc),
    UploadIdMarker: uploadIdMarker,
    NextKeyMarker: r.isTruncated ? encodeName(r.nextKeyMarker, enc) : undefined,
    Prefix: encodeName(prefix, enc),
    Delimiter: encodeName(delimiter, enc),
    NextUploadIdMarker: r.isTruncated ? r.nextUploadIdMarker : undefined,
    MaxUploads: maxUploads,
    IsTruncated: r.isTruncated,
    Upload: r.uploads.map((u) => uploadEntry(u, enc)),
    CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: encodeName(p, enc) })),
    EncodingType: enc,
  });
};
