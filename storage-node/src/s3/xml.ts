import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { S3Error } from './error';

const NS = 'http://s3.amazonaws.com/doc/2006-03-01/';

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  suppressEmptyNode: false,
  processEntities: true,
  suppressBooleanAttributes: false,
});

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  // Values are kept exactly: keys may begin or end with spaces. Whitespace between elements shows up
  // as '#text', which readers below ignore.
  trimValues: false,
  processEntities: true,
  // Numeric character references (&#34; is how Go's encoder writes a quote in an ETag) are decoded.
  htmlEntities: true,
  removeNSPrefix: true,
  // Elements that may repeat are always arrays, so one and many look the same to handlers.
  isArray: (name) => ['Part', 'Object', 'Tag', 'Rule'].includes(name),
});

/** Characters XML 1.0 cannot carry, even escaped. Keys holding them need encoding-type=url. */
// eslint-disable-next-line no-control-regex
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

export type XmlValue = string | number | boolean | undefined | null | XmlObject | XmlValue[];
export interface XmlObject {
  [name: string]: XmlValue;
}

function clean(v: XmlValue): XmlValue {
  if (typeof v === 'string') return v.replace(XML_INVALID, (c) => `&#x${c.charCodeAt(0).toString(16)};`);
  if (Array.isArray(v)) return v.map(clean);
  if (v && typeof v === 'object') {
    const o: XmlObject = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = clean(x);
    return o;
  }
  return v;
}

/** A complete S3 XML document: declaration, root element with the S3 namespace. */
export function toXml(root: string, body: XmlObject, withNamespace = true): string {
  const content = withNamespace ? { '@_xmlns': NS, ...body } : body;
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + builder.build({ [root]: clean(content) });
}

export const MAX_XML_BODY_BYTES = 2 * 1024 * 1024;

/** Parses a request body; anything not well-formed, or declaring a DTD, is MalformedXML. */
export function parseXml(text: string, expectedRoot: string): XmlObject {
  if (text.trim() === '') throw new S3Error('MalformedXML');
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) throw new S3Error('MalformedXML', 'DTDs are not accepted.');
  if (XMLValidator.validate(text) !== true) throw new S3Error('MalformedXML');
  let doc: XmlObject;
  try {
    doc = parser.parse(text) as XmlObject;
  } catch {
    throw new S3Error('MalformedXML');
  }
  const root = doc[expectedRoot];
  if (root === undefined) throw new S3Error('MalformedXML', `The root element must be ${expectedRoot}.`);
  if (root === null || (typeof root === 'string' && root.trim() === '')) return {};
  if (typeof root !== 'object' || Array.isArray(root)) throw new S3Error('MalformedXML');
  return root as XmlObject;
}

/** Reads a child element as text; undefined when absent. */
export function xmlText(o: XmlObject, name: string): string | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object') throw new S3Error('MalformedXML', `${name} must be text.`);
  return String(v);
}

export function xmlList(o: XmlObject, name: string): XmlObject[] {
  const v = o[name];
  if (v === undefined || v === null || (typeof v === 'string' && v.trim() === '')) return [];
  const arr = Array.isArray(v) ? v : [v];
  return arr.map((x) => {
    if (x === null || (typeof x === 'string' && x.trim() === '')) return {};
    if (typeof x !== 'object' || Array.isArray(x)) throw new S3Error('MalformedXML', `${name} must be an element.`);
    return x as XmlObject;
  });
}

export function xmlChild(o: XmlObject, name: string): XmlObject | undefined {
  const v = o[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' && v.trim() === '') return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new S3Error('MalformedXML', `${name} must be an element.`);
  return v as XmlObject;
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}
