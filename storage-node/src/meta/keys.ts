/**
 * Object keys in S3 order. S3 lists keys in UTF-8 byte order, which is code point order; sqlite's BINARY
 * collation on UTF-8 TEXT compares bytes, so SQL ranges already agree with S3. JavaScript's `<` compares
 * UTF-16 code units instead, which disagrees for characters above U+FFFF against U+E000..U+FFFF, so any
 * comparison of keys done in JS must use compareUtf8.
 */

export const MAX_KEY_BYTES = 1024;

/** A lone surrogate cannot be encoded in UTF-8; such a string would be silently altered by sqlite. */
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE_RE.test(s);
}

/** Code unit → a value whose order is code point order (surrogates, i.e. chars above U+FFFF, sort last). */
function rank(u: number): number {
  if (u < 0xd800) return u;
  return u >= 0xe000 ? u - 0x800 : u + 0x2000;
}

/** Negative, zero or positive as a sorts before, with or after b in UTF-8 byte order. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

/**
 * The smallest string greater than every string that starts with `p` (so [p, successor(p)) is exactly the
 * strings with prefix p): the last code point incremented, skipping the surrogate range; a trailing U+10FFFF
 * cannot be incremented, so it is dropped and the one before it incremented. Undefined when no such string
 * exists (p is empty or all U+10FFFF): then nothing sorts after the strings with prefix p.
 */
export function prefixSuccessor(p: string): string | undefined {
  let end = p.length;
  while (end > 0) {
    const low = p.charCodeAt(end - 1);
    const isPair = end >= 2 && low >= 0xdc00 && low <= 0xdfff && p.charCodeAt(end - 2) >= 0xd800 && p.charCodeAt(end - 2) <= 0xdbff;
    const start = isPair ? end - 2 : end - 1;
    const cp = p.codePointAt(start)!;
    if (cp === 0x10ffff) {
      end = start;
      continue;
    }
    const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
    return p.slice(0, start) + String.fromCodePoint(next);
  }
  return undefined;
}

/**
 * The common prefix a key rolls up into when listed with `prefix` and `delimiter`: the prefix plus everything
 * up to and including the first delimiter after it; undefined when the key does not roll up.
 */
export function commonPrefixOf(key: string, prefix: string, delimiter: string | undefined): string | undefined {
  if (!delimiter) return undefined;
  const i = key.indexOf(delimiter, prefix.length);
  return i < 0 ? undefined : key.slice(0, i + delimiter.length);
}

/** Invariant of every stored key: non-empty, well-formed, at most 1024 UTF-8 bytes (the layer above validates). */
export function assertKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new Error('object key must be a non-empty string');
  if (key.length > MAX_KEY_BYTES || Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new Error(`object key longer than ${MAX_KEY_BYTES} bytes`);
  }
  if (!isWellFormed(key)) throw new Error('object key is not well-formed Unicode');
}

/** Prefixes, delimiters and markers of a listing: well-formed and bounded (they are compared with keys). */
export function assertListingString(name: string, s: string | undefined): void {
  if (s === undefined) return;
  if (typeof s !== 'string') throw new Error(`${name} must be a string`);
  if (s.length > 4 * MAX_KEY_BYTES) throw new Error(`${name} is too long`);
  if (!isWellFormed(s)) throw new Error(`${name} is not well-formed Unicode`);
}
