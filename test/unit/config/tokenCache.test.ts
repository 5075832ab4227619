import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

const withIdentity = (identity: string): string => `
identity: ${identity}
policy: { bundle: b.tar.gz }
tools:
  - name: weather
    upstream: tool_weather
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('identity.token_cache_size', () => {
  it('defaults to 10000 verified tokens', () => {
    expect(parseConfig(withIdentity('{}'), 'test.yaml').identity.token_cache_size).toBe(10000);
  });

  it('accepts 0 (verify every request) and an explicit size', () => {
    expect(parseConfig(withIdentity('{ token_cache_size: 0 }'), 'test.yaml').identity.token_cache_size).toBe(0);
    expect(parseConfig(withIdentity('{ token_cache_size: 500 }'), 'test.yaml').identity.token_cache_size).toBe(500);
  });

  it('rejects a negative, fractional, unbounded or non-numeric size', () => {
    for (const bad of ['-1', '1.5', '100000000', '"big"']) {
      expect(problems(withIdentity(`{ token_cache_size: ${bad} }`)).some((p) => p.startsWith('$.identity.token_cache_size:'))).toBe(true);
    }
  });
});
