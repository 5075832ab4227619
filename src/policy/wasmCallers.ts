/**
 * Which rules of a compiled OPA wasm policy call a given host built-in, read from the module
 * itself (the sources in a wasm bundle are often only stubs). OPA compiles a built-in call to
 * `i32.const <builtin id>; i32.const 0 (context); <args>; call opa_builtin<arity>` inside the
 * function of the rule, and names that function after the rule (`g0.data.envoy.authz.allow`)
 * in the module's name section. A best-effort reading for messages: never used to decide.
 */

function leb(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error('truncated LEB128');
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 35) throw new Error('LEB128 too long');
  }
}

function name(buf: Buffer, pos: number): [string, number] {
  const [len, p] = leb(buf, pos);
  return [buf.toString('utf8', p, p + len), p + len];
}

function encodeLeb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Skips an import's description (kind byte then its type); returns whether it was a function. */
function skipImportDesc(buf: Buffer, pos: number): [boolean, number] {
  const kind = buf[pos++];
  if (kind === 0x00) return [true, leb(buf, pos)[1]];
  if (kind === 0x01) {
    pos += 1; // reftype
    const [flags, p] = leb(buf, pos);
    pos = leb(buf, p)[1];
    if (flags & 1) pos = leb(buf, pos)[1];
    return [false, pos];
  }
  if (kind === 0x02) {
    const [flags, p] = leb(buf, pos);
    pos = leb(buf, p)[1];
    if (flags & 1) pos = leb(buf, pos)[1];
    return [false, pos];
  }
  if (kind === 0x03) return [false, pos + 2];
  throw new Error(`unknown import kind ${String(kind)}`);
}

/**
 * Rule names (e.g. `data.envoy.authz.allow`) whose compiled function calls built-in `id`;
 * empty when the module cannot be read this way.
 */
export function rulesCalling(wasm: Buffer, id: number): string[] {
  try {
    let pos = 8;
    const builtinImports = new Map<number, number>(); // function index -> arity
    let importedFunctions = 0;
    const bodies: [number, number][] = [];
    const names = new Map<number, string>();
    while (pos < wasm.length) {
      const section = wasm[pos++] as number;
      const [size, start] = leb(wasm, pos);
      const end = start + size;
      pos = start;
      if (section === 2) {
        const [count, p] = leb(wasm, pos);
        pos = p;
        for (let i = 0; i < count; i++) {
          const [, p1] = name(wasm, pos);
          const [field, p2] = name(wasm, p1);
          const [isFunc, p3] = skipImportDesc(wasm, p2);
          pos = p3;
          if (!isFunc) continue;
          const m = /^opa_builtin([0-4])$/.exec(field);
          if (m) builtinImports.set(importedFunctions, Number(m[1]));
          importedFunctions += 1;
        }
      } else if (section === 10) {
        const [count, p] = leb(wasm, pos);
        pos = p;
        for (let i = 0; i < count; i++) {
          const [len, b] = leb(wasm, pos);
          bodies.push([b, b + len]);
          pos = b + len;
        }
      } else if (section === 0) {
        const [section0, p] = name(wasm, pos);
        if (section0 === 'name') {
          pos = p;
          while (pos < end) {
            const kind = wasm[pos++];
            const [len, b] = leb(wasm, pos);
            if (kind === 1) {
              let q = b;
              const [count, q1] = leb(wasm, q);
              q = q1;
              for (let i = 0; i < count; i++) {
                const [idx, q2] = leb(wasm, q);
                const [fn, q3] = name(wasm, q2);
                names.set(idx, fn);
                q = q3;
              }
            }
            pos = b + len;
          }
        }
      }
      pos = end;
    }
    const marker = Buffer.from([0x41, ...encodeLeb(id), 0x41, 0x00]);
    const calls = [...builtinImports.keys()].map((idx) => Buffer.from([0x10, ...encodeLeb(idx)]));
    const rules = new Set<string>();
    bodies.forEach(([from, to], i) => {
      const body = wasm.subarray(from, to);
      if (!body.includes(marker) || !calls.some((c) => body.includes(c))) return;
      const fn = names.get(importedFunctions + i);
      // Runtime helpers (`_etoa`, `opa_*`) are not rules.
      const rule = fn?.replace(/^g\d+\./, '');
      if (rule?.startsWith('data.')) rules.add(rule);
    });
    return [...rules].sort();
  } catch {
    return [];
  }
}
