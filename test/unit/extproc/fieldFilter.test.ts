import { describe, expect, it } from 'vitest';
import { compileFieldFilter } from '../../../src/extproc/fieldFilter.js';

describe('response field filter', () => {
  it('drops fields by path with wildcards and counts them', () => {
    const f = compileFieldFilter(['billing_codes', 'items.*.internal', 'meta.secret']);
    const doc = { billing_codes: [1], items: [{ id: 1, internal: 'x' }, { id: 2 }], meta: { keep: 1 }, other: true };
    expect(f.apply(doc)).toBe(2);
    expect(doc).toEqual({ items: [{ id: 1 }, { id: 2 }], meta: { keep: 1 }, other: true });
  });

  it('never removes array elements and ignores non-objects', () => {
    const f = compileFieldFilter(['list.*']);
    const doc = { list: [1, 2, 3] };
    expect(f.apply(doc)).toBe(0);
    expect(doc.list).toEqual([1, 2, 3]);
    expect(f.apply('text')).toBe(0);
    expect(compileFieldFilter([]).empty).toBe(true);
  });
});
