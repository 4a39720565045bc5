/**
 * Reading untrusted YAML/JSON objects field by field, with messages that name the object and the
 * field path (`NodePool dc1-pool: spec.replicas must be an integer ≥ 1`). Every reader returns a
 * usable value (the default) after recording a problem, so one pass reports every mistake.
 */

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
export const QUANTITY = /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$/;

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, m: 1e-3 };

/** A Kubernetes quantity (`10Gi`, `500M`, `1.5Ti`) in bytes, rounded down; undefined if malformed. */
export function quantityToBytes(q: string): number | undefined {
  const m = QUANTITY.exec(q);
  if (!m) return undefined;
  const unit = m[2] ?? '';
  const factor = BINARY[unit] ?? DECIMAL[unit];
  const n = Math.floor(Number(q.slice(0, q.length - unit.length)) * factor);
  return Number.isSafeInteger(n) ? n : undefined;
}

export class FieldReader {
  constructor(readonly where: string, readonly errors: string[]) {}

  problem(path: string, message: string): void {
    this.errors.push(`${this.where}: ${path} ${message}`);
  }

  /** An optional nested object; a non-object is reported and read as empty. */
  obj(parent: Obj, key: string, path: string): Obj {
    const v = parent[key];
    if (v === undefined || v === null) return {};
    if (!isObj(v)) { this.problem(path, 'must be an object'); return {}; }
    return v;
  }

  /** Reports keys of `o` not in `known`: a typo in a spec must not be silently ignored. */
  known(o: Obj, path: string, known: readonly string[]): void {
    for (const k of Object.keys(o)) if (!known.includes(k)) this.problem(`${path}.${k}`, 'is not a known field');
  }

  str(o: Obj, key: string, path: string, opts: { def?: string; required?: boolean; pattern?: RegExp; patternText?: string; maxLength?: number } = {}): string | undefined {
    const v = o[key];
    if (v === undefined || v === null || v === '') {
      if (opts.required) this.problem(path, 'is required');
      return opts.def;
    }
    if (typeof v !== 'string') { this.problem(path, 'must be a string'); return opts.def; }
    if (v.length > (opts.maxLength ?? 1024)) { this.problem(path, `must be at most ${opts.maxLength ?? 1024} characters`); return opts.def; }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.problem(path, `must be ${opts.patternText ?? `of the form ${opts.pattern.source}`} (got ${JSON.stringify(v)})`);
      return opts.def;
    }
    return v;
  }

  /** A name that must resolve to another object; required. */
  ref(o: Obj, key: string, path: string): string {
    return this.str(o, key, path, { required: true, pattern: DNS_LABEL, patternText: 'a DNS label (lowercase letters, digits, -)' }) ?? '';
  }

  enumOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], def: T): T {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string' || !values.includes(v as T)) {
      this.problem(path, `must be one of ${values.join(', ')} (got ${JSON.stringify(v)})`);
      return def;
    }
    return v as T;
  }

  int(o: Obj, key: string, path: string, opts: { def?: number; min: number; max: number; required?: boolean }): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) {
      if (opts.required) this.problem(path, 'is required');
      return opts.def;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < opts.min) {
      this.problem(path, `must be an integer ≥ ${opts.min}`);
      return opts.def;
    }
    if (v > opts.max) { this.problem(path, `must be at most ${opts.max}`); return opts.def; }
    return v;
  }

  bool(o: Obj, key: string, path: string, def: boolean): boolean {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') { this.problem(path, 'must be true or false'); return def; }
    return v;
  }

  strList(o: Obj, key: string, path: string, opts: { def?: string[]; max: number; pattern?: RegExp; patternText?: string; minItems?: number }): string[] | undefined {
    const v = o[key];
    if (v === undefined || v === null) return opts.def;
    if (!Array.isArray(v)) { this.problem(path, 'must be a list'); return opts.def; }
    if (v.length > opts.max) { this.problem(path, `must have at most ${opts.max} items`); return opts.def; }
    if (v.length < (opts.minItems ?? 0)) { this.problem(path, `must have at least ${opts.minItems} item(s)`); return opts.def; }
    const out: string[] = [];
    v.forEach((x, i) => {
      if (typeof x !== 'string' || x.length === 0 || x.length > 1024) return void this.problem(`${path}[${i}]`, 'must be a non-empty string');
      if (opts.pattern && !opts.pattern.test(x)) return void this.problem(`${path}[${i}]`, `must be ${opts.patternText} (got ${JSON.stringify(x)})`);
      out.push(x);
    });
    return out;
  }

  stringMap(o: Obj, key: string, path: string): Record<string, string> | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) { this.problem(path, 'must be a map of strings'); return undefined; }
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== 'string') this.problem(`${path}.${k}`, 'must be a string');
      else out[k] = x;
    }
    return out;
  }
}
