import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { repoPath } from '../../helpers/paths.js';
import { cli } from './run.js';

/** Every command and sub-command, with options its help must name. */
const COMMANDS: [string[], string[]][] = [
  [[], ['--version', '--help', 'serve', 'check', 'token', 'dlp', 'audit', 'mcp']],
  [['serve'], ['--config']],
  [['check'], ['--config', '--envoy']],
  [['token'], ['--config', '--agent', '--agent-version', '--user', '--tenant', '--roles', '--ttl', '--key', '--issuer', '--audience']],
  [['dlp'], ['scan']],
  [['dlp', 'scan'], ['--json', '--config']],
  [['audit'], ['verify', 'show', 'keygen']],
  [['audit', 'verify'], ['--public-key', '--key-id', '--anchors']],
  [['audit', 'show'], ['--since', '--until', '--agent', '--user', '--tenant', '--tool', '--mcp-tool', '--decision', '--format', '--verify']],
  [['audit', 'keygen'], ['--out']],
  [['mcp'], ['pins', 'approve']],
  [['mcp', 'pins'], ['--config', '--json']],
  [['mcp', 'approve'], ['--config', '--tool', '--name', '--hash']],
];

describe('portcullis --help', () => {
  for (const [path, names] of COMMANDS) {
    it(`portcullis ${[...path, '--help'].join(' ')} shows its usage and options, exit 0`, async () => {
      const r = await cli([...path, '--help']);
      expect(r).toMatchObject({ code: 0, err: '' });
      expect(r.out).toContain(`Usage: ${['portcullis', ...path].join(' ')} `);
      for (const n of names) expect(r.out).toContain(n);
    });
  }

  it('answers -h and "help <command>" the same way', async () => {
    const long = await cli(['check', '--help']);
    expect(await cli(['check', '-h'])).toEqual(long);
    expect(await cli(['help', 'check'])).toEqual(long);
    expect((await cli(['audit', 'help', 'verify'])).out).toBe((await cli(['audit', 'verify', '--help'])).out);
  });

  it('prints the program usage on stdout with no arguments, exit 0', async () => {
    const r = await cli([]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: portcullis /);
    expect(r.err).toBe('');
  });

  it('prints the version from package.json', async () => {
    const { version } = JSON.parse(readFileSync(repoPath('package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) expect(await cli([flag])).toEqual({ code: 0, out: `${version}\n`, err: '' });
  });
});

describe('usage errors', () => {
  it('an unknown option names it and points at the command help, exit 2, nothing on stdout', async () => {
    for (const [args, help] of [
      [['serve', '--config', 'x.yaml', '--bogus'], 'portcullis serve --help'],
      [['check', '--config', 'x.yaml', '--verbose'], 'portcullis check --help'],
      [['token', '--config', 'x.yaml', '--role', 'admin'], 'portcullis token --help'],
      [['dlp', 'scan', '--yaml'], 'portcullis dlp scan --help'],
      [['audit', 'verify', 'a.log', '--key', 'k.pem'], 'portcullis audit verify --help'],
      [['mcp', 'pins', '--config', 'x.yaml', '--all'], 'portcullis mcp pins --help'],
    ] as const) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^portcullis: unknown option '--[a-z]+'/);
      expect(r.err).toContain(`(run "${help}" for usage)`);
    }
  });

  it('an unknown command or sub-command, a missing argument or required option: exit 2 with a pointer', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'[\s\S]*portcullis --help/],
      [['audit', 'erase', 'a.log'], /unknown command 'erase'[\s\S]*portcullis audit --help/],
      [['dlp', 'redact'], /unknown command 'redact'/],
      [['check'], /required option '-c, --config <file>' not specified[\s\S]*portcullis check --help/],
      [['audit', 'verify'], /missing required argument 'file'/],
      [['mcp', 'approve', '--config', 'x.yaml', '--tool', 'docs'], /required option '--name <mcp_tool>' not specified/],
      [['audit', 'show', 'a.log', 'b.log'], /too many arguments/],
    ];
    for (const [args, why] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(why);
    }
  });

  it('a bad option value is a usage error that points at the command help', async () => {
    const r = await cli(['token', '--config', repoPath('scripts', 'demo', 'portcullis.yaml'), '--ttl', 'soon']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--ttl must be a positive number of seconds\n\(run "portcullis token --help" for usage\)/);
  });
});
