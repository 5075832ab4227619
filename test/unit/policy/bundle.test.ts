import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBundle, readBundle, deepMerge } from '../../../src/policy/bundle.js';
import { readTar } from '../../../src/policy/tar.js';
import { GatewayError } from '../../../src/errors.js';
import { buildBundle, copyShippedPolicy, tempDir } from './helpers.js';

const WASM = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

/** One ustar header block. */
function header(name: string, size: number, type = '0', prefix = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

interface Member {
  name: string;
  data: Buffer | string;
  type?: string;
  prefix?: string;
}

function tar(members: Member[], end = true): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const data = Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data);
    parts.push(header(m.name, data.length, m.type ?? '0', m.prefix ?? ''), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

function expectBundleError(fn: () => unknown, fragment: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GatewayError);
  const err = caught as GatewayError;
  expect(err.code).toBe('internal');
  expect(err.rule).toBe('policy.bundle');
  expect(err.message).toMatch(fragment);
}

describe('bundle reader on a bundle built by scripts/build-policy.sh', () => {
  let path: string;
  let output: string;

  beforeAll(() => {
    ({ path, output } = buildBundle(copyShippedPolicy()));
  });

  it('the script reports what it built', () => {
    expect(output).toMatch(/^built .*build\/bundle\.tar\.gz \(entrypoint envoy\/authz\/allow, sha256:[0-9a-f]{12}\)$/m);
  });

  it('reads policy.wasm, data.json, the manifest and the archive hash', async () => {
    const b = await readBundle(path);
    expect(b.wasm.subarray(0, 4)).toEqual(Buffer.from([0x00, 0x61, 0x73, 0x6d]));
    expect(b.data).toMatchObject({ portcullis: { agents: { reporter: { tools: ['weather', 'docs'] } } } });
    expect(b.manifest?.wasm).toEqual([{ entrypoint: 'envoy/authz/allow', module: '/policy.wasm' }]);
    expect(b.manifest?.revision ?? '').toBe('');
    expect(b.sha256).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
    expect(output).toContain(`sha256:${b.sha256.slice(0, 12)}`);
  });

  it('leaves tests out of the bundle', () => {
    const names = readTar(gunzipSync(readFileSync(path))).map((e) => e.path);
    expect(names).toContain('/policy.wasm');
    expect(names).toContain('/authz.rego');
    expect(names.some((n) => n.endsWith('_test.rego'))).toBe(false);
  });

  it('carries the revision given at build time', async () => {
    const { path: p } = buildBundle(copyShippedPolicy(), { revision: 'release-7' });
    expect((await readBundle(p)).manifest?.revision).toBe('release-7');
  });

  it('builds the same bytes twice (idempotent)', () => {
    const dir = copyShippedPolicy();
    const first = readFileSync(buildBundle(dir).path);
    const second = readFileSync(buildBundle(dir).path);
    expect(second.equals(first)).toBe(true);
  });
});

describe('tar reader', () => {
  it('reads ustar members with prefix, directories and the end marker', () => {
    const entries = readTar(
      tar([
        { name: 'dir/', data: '', type: '5' },
        { name: 'data.json', data: '{"a":1}', prefix: 'deep/er' },
        { name: './x.txt', data: 'x'.repeat(700) },
      ]),
    );
    expect(entries.map((e) => [e.path, e.type, e.data.length])).toEqual([
      ['/dir', 'directory', 0],
      ['/deep/er/data.json', 'file', 7],
      ['/x.txt', 'file', 700],
    ]);
  });

  it('applies pax path records and GNU long names to the next member', () => {
    const long = `${'a'.repeat(120)}/data.json`;
    const pax = `${String(`path=${long}\n`.length + 4)} path=${long}\n`;
    expect(Buffer.byteLength(pax)).toBe(Number(pax.split(' ')[0]));
    const entries = readTar(
      tar([
        { name: 'PaxHeader', data: pax, type: 'x' },
        { name: 'short', data: '1' },
        { name: '././@LongLink', data: 'b/long/name.txt\0', type: 'L' },
        { name: 'trunc', data: '2' },
      ]),
    );
    expect(entries.map((e) => e.path)).toEqual([`/${long}`, '/b/long/name.txt']);
  });

  it('rejects a bad checksum with its offset', () => {
    const t = tar([{ name: 'a', data: 'x' }]);
    t[0] = 0x62; // change the name without fixing the checksum
    expect(() => readTar(t)).toThrow('tar header at byte 0 has a bad checksum');
  });

  it('rejects a member running past the end', () => {
    const t = tar([{ name: 'a', data: 'x'.repeat(600) }], false).subarray(0, 512 + 512);
    expect(() => readTar(t)).toThrow('tar member at byte 0 runs past the end of the archive');
  });

  it('rejects a trailing partial block', () => {
    const t = Buffer.concat([tar([{ name: 'a', data: 'x' }], false), Buffer.from('junk')]);
    expect(() => readTar(t)).toThrow(/partial block at byte 1024/);
  });

  it('rejects a non-octal size', () => {
    const t = tar([{ name: 'a', data: 'x' }]);
    t.write('9999', 124);
    let sum = 0;
    t.write('        ', 148);
    for (let i = 0; i < 512; i++) sum += t[i] as number;
    t.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    expect(() => readTar(t)).toThrow('tar header at byte 0 has an invalid size field');
  });
});

describe('parseBundle', () => {
  it('mounts nested data files at their folder and merges YAML and JSON', () => {
    const b = parseBundle(
      gzipSync(
        tar([
          { name: '/policy.wasm', data: WASM },
          { name: '/a/b/data.yaml', data: 'x: 1\ny: [2]\n' },
          { name: '/data.json', data: '{"a":{"c":true},"top":1}' },
          { name: '/.manifest', data: '{"revision":"r1","roots":[""]}' },
        ]),
      ),
      'test.tar.gz',
    );
    expect(b.data).toEqual({ a: { c: true, b: { x: 1, y: [2] } }, top: 1 });
    expect(b.manifest?.revision).toBe('r1');
    expect(b.wasm.equals(WASM)).toBe(true);
  });

  it('keeps a __proto__ key as data', () => {
    const b = parseBundle(gzipSync(tar([{ name: '/policy.wasm', data: WASM }, { name: '/data.json', data: '{"__proto__":{"polluted":true}}' }])));
    expect(Object.hasOwn(b.data, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('names a non-gzip file', () => {
    expectBundleError(() => parseBundle(Buffer.from('definitely not gzip'), 'x.tar.gz'), /^policy bundle x\.tar\.gz: not a readable gzip archive/);
  });

  it('names a truncated gzip stream', () => {
    const gz = gzipSync(tar([{ name: '/policy.wasm', data: WASM }]));
    expectBundleError(() => parseBundle(gz.subarray(0, gz.length - 10), 'x.tar.gz'), /not a readable gzip archive/);
  });

  it('names a corrupt tar inside valid gzip', () => {
    expectBundleError(() => parseBundle(gzipSync(Buffer.alloc(512, 7)), 'x.tar.gz'), /corrupt tar archive \(tar header at byte 0/);
  });

  it('requires /policy.wasm', () => {
    expectBundleError(() => parseBundle(gzipSync(tar([{ name: '/data.json', data: '{}' }])), 'x.tar.gz'), 'has no /policy.wasm');
  });

  it('requires policy.wasm to be WebAssembly', () => {
    expectBundleError(() => parseBundle(gzipSync(tar([{ name: '/policy.wasm', data: 'not wasm at all' }]))), '/policy.wasm is not a WebAssembly module');
  });

  it('names unparsable data and manifest files', () => {
    expectBundleError(() => parseBundle(gzipSync(tar([{ name: '/policy.wasm', data: WASM }, { name: '/x/data.json', data: '{oops' }]))), /\/x\/data\.json cannot be parsed/);
    expectBundleError(() => parseBundle(gzipSync(tar([{ name: '/policy.wasm', data: WASM }, { name: '/data.json', data: '[1]' }]))), '/data.json must hold a JSON object');
    expectBundleError(() => parseBundle(gzipSync(tar([{ name: '/policy.wasm', data: WASM }, { name: '/.manifest', data: '{"revision":3}' }]))), 'revision must be a string');
  });

  it('names a missing file', async () => {
    const missing = join(tempDir(), 'nope.tar.gz');
    await expect(readBundle(missing)).rejects.toThrow(`policy bundle ${missing}: cannot be read (ENOENT)`);
  });

  it('reads a bundle file written by hand', async () => {
    const p = join(tempDir(), 'b.tar.gz');
    writeFileSync(p, gzipSync(tar([{ name: 'policy.wasm', data: WASM }])));
    expect((await readBundle(p)).manifest).toBeNull();
  });
});

describe('deepMerge', () => {
  it('merges objects recursively and replaces other values', () => {
    expect(deepMerge({ a: { b: 1, c: [1] }, d: 1 }, { a: { c: [2], e: 3 }, d: { x: 1 } })).toEqual({ a: { b: 1, c: [2], e: 3 }, d: { x: 1 } });
  });
});
