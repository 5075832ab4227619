/**
 * Compiled JSON field filter: removes fields by dot path before a response is scanned and
 * returned (`result.internal_notes`, `items.*.billing_codes`). `*` matches any key or index.
 */
export interface FieldFilter {
  /** Removes matching fields in place; returns how many were removed. */
  apply(value: unknown): number;
  readonly empty: boolean;
}

function dropPath(node: unknown, path: readonly string[], i: number): number {
  if (node === null || typeof node !== 'object') return 0;
  const seg = path[i] as string;
  const last = i === path.length - 1;
  const obj = node as Record<string, unknown>;
  const keys = seg === '*' ? Object.keys(obj) : Object.prototype.hasOwnProperty.call(obj, seg) ? [seg] : [];
  let n = 0;
  for (const k of keys) {
    if (last) {
      if (Array.isArray(node)) continue; // never shift array indices: drop fields, not elements
      delete obj[k];
      n += 1;
    } else {
      n += dropPath(obj[k], path, i + 1);
    }
  }
  return n;
}

/** Compiles dot paths once (at config load). */
export function compileFieldFilter(paths: readonly string[]): FieldFilter {
  const compiled = paths.map((p) => p.split('.').filter((s) => s.length > 0)).filter((p) => p.length > 0);
  return {
    empty: compiled.length === 0,
    apply(value: unknown): number {
      let n = 0;
      for (const p of compiled) n += dropPath(value, p, 0);
      return n;
    },
  };
}
