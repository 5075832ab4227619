import { describe, expect, it } from 'vitest';
import { decodeUtf8, looksLikeJsonContainer, parseStrictJson, type StrictJsonProblem } from '../../../src/inspect/strictJson.js';

function problem(input: string | Uint8Array, maxDepth?: number): StrictJsonProblem | 'ok' {
  const r = parseStrictJson(input, maxDepth === undefined ? {} : { maxDepth });
  return r.ok ? 'ok' : r.error.problem;
}

describe('parseStrictJson: accepts strict JSON with the value JSON.parse gives', () => {
  const valid = [
    '{}',
    '[]',
    '0',
    '-0',
    '1.5e10',
    '-12.25E-3',
    '"text"',
    'true',
    'false',
    'null',
    ' \t\r\n{"a":1}\n',
    '{"a":{"a":{"a":[1,2,{"a":null}]}}}',
    '[{"id":1},{"id":1}]',
    '{"emoji":"😀","pair":"\\ud83d\\ude00","esc":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"}',
    '{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9}',
    '{"__proto__":{"x":1}}',
    '1e308',
  ];
  for (const text of valid) {
    it(JSON.stringify(text), () => {
      const r = parseStrictJson(text);
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.value).toEqual(JSON.parse(text));
      const bytes = parseStrictJson(Buffer.from(text, 'utf8'));
      expect(bytes.ok).toBe(true);
    });
  }

  it('keeps __proto__ as an own member, never as a prototype', () => {
    const r = parseStrictJson('{"__proto__":{"polluted":true}}');
    expect(r.ok).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    if (r.ok) expect(Object.keys(r.value as object)).toEqual(['__proto__']);
  });
});

describe('parseStrictJson: refuses bodies whose meaning differs between parsers', () => {
  it('duplicate member names at the top level', () => {
    const r = parseStrictJson('{"priority":"urgent-drop-tables","priority":"low"}');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.problem).toBe('duplicate_key');
      expect(r.error.message).toContain('"priority"');
    }
  });

  it('duplicate member names at any depth and in batches', () => {
    expect(problem('{"params":{"name":"delete_doc","name":"search_docs"}}')).toBe('duplicate_key');
    expect(problem('[{"a":1},{"b":{"c":[{"d":1,"d":2}]}}]')).toBe('duplicate_key');
    expect(problem('{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":0}')).toBe('duplicate_key');
  });

  it('duplicates spelled differently (escapes decode to the same name)', () => {
    expect(problem('{"tenant":"acme","\\u0074enant":"globex"}')).toBe('duplicate_key');
    expect(problem('{"a\\/b":1,"a/b":2}')).toBe('duplicate_key');
  });

  it('names that only look alike are distinct', () => {
    expect(problem('{"a":1,"A":2,"a ":3,"\\u00e9":4,"e\\u0301":5}')).toBe('ok');
  });

  it('a byte order mark, as bytes or as text', () => {
    expect(problem(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}')]))).toBe('bom');
    expect(problem('\ufeff{"a":1}')).toBe('bom');
  });

  it('bytes that are not UTF-8', () => {
    expect(problem(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]))).toBe('encoding');
    // Overlong encoding of "/" and an encoded surrogate (CESU-8) are invalid UTF-8.
    expect(problem(Buffer.from([0x22, 0xc0, 0xaf, 0x22]))).toBe('encoding');
    expect(problem(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]))).toBe('encoding');
    // A body cut inside a multi-byte character.
    expect(problem(Buffer.from('"é"', 'utf8').subarray(0, 2))).toBe('encoding');
  });

  it('lone surrogates, escaped or raw', () => {
    expect(problem('{"a":"\\ud800"}')).toBe('lone_surrogate');
    expect(problem('{"a":"\\udc00"}')).toBe('lone_surrogate');
    expect(problem('{"a":"\\ud800\\u0041"}')).toBe('lone_surrogate');
    expect(problem('{"a":"\\ud800x"}')).toBe('lone_surrogate');
    expect(problem('{"\\ud800":1}')).toBe('lone_surrogate');
    expect(problem('{"a":"\ud800"}')).toBe('lone_surrogate');
    expect(problem('{"a":"\udc00\ud800"}')).toBe('lone_surrogate');
  });

  it('numbers a double cannot hold', () => {
    expect(problem('{"exp":1e400}')).toBe('number_range');
    expect(problem('-1e309')).toBe('number_range');
    expect(problem(`[${'9'.repeat(400)}]`)).toBe('number_range');
    expect(problem('1e-400')).toBe('ok');
  });

  it('nesting beyond the bound', () => {
    expect(problem('[[[[1]]]]', 4)).toBe('ok');
    expect(problem('[[[[[1]]]]]', 4)).toBe('depth');
    expect(problem(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)).toBe('depth');
    expect(problem(`${'{"a":'.repeat(200)}1${'}'.repeat(200)}`)).toBe('depth');
  });
});

describe('parseStrictJson: refuses what is not strict RFC 8259 JSON', () => {
  const invalid = [
    '',
    '   ',
    '{',
    '{"a":1',
    '{"a" 1}',
    '{"a":1,}',
    '[1,]',
    '[1 2]',
    "{'a':1}",
    '{a:1}',
    '{"a":01}',
    '{"a":1.}',
    '{"a":.5}',
    '{"a":+1}',
    '{"a":-}',
    '{"a":1e}',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":tru}',
    '{"a":"x\ny"}',
    '{"a":"\\x41"}',
    '{"a":"\\u12g4"}',
    '{"a":"unterminated}',
    '{"a":1} {"b":2}',
    '{"a":1}x',
    '/* c */{}',
    '{"a":1}\u00a0',
    '\u2028{}',
  ];
  for (const text of invalid) {
    it(JSON.stringify(text), () => {
      expect(problem(text)).toBe('syntax');
    });
  }

  it('never throws on any byte sequence', () => {
    let seed = 7;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const alphabet = '{}[]":,\\u0123456789abcdefnrtlsE.-+ \n\ud800\udc00é';
    for (let n = 0; n < 2000; n++) {
      let s = '';
      const len = Math.floor(rand() * 40);
      for (let k = 0; k < len; k++) s += alphabet[Math.floor(rand() * alphabet.length)];
      const r = parseStrictJson(s);
      if (r.ok) expect(r.value).toEqual(JSON.parse(s));
      // A syntax refusal is a body JSON.parse refuses too: the scanner adds rules, never removes them.
      else if (r.error.problem === 'syntax') expect(() => JSON.parse(s), s).toThrow();
    }
  });
});

describe('helpers', () => {
  it('decodeUtf8 keeps a BOM and refuses invalid bytes', () => {
    expect(decodeUtf8(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toBe('\ufeffa');
    expect(decodeUtf8(Buffer.from([0xff]))).toBeNull();
    expect(decodeUtf8(Buffer.from('héllo'))).toBe('héllo');
  });

  it('looksLikeJsonContainer', () => {
    expect(looksLikeJsonContainer('  {"a":1}')).toBe(true);
    expect(looksLikeJsonContainer('\n[1]')).toBe(true);
    expect(looksLikeJsonContainer('\ufeff{}')).toBe(true);
    expect(looksLikeJsonContainer('a=1')).toBe(false);
    expect(looksLikeJsonContainer('')).toBe(false);
  });
});
