import { expect } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

/** The problems (`path: message`) a config text is refused with; fails when it loads. */
export function configProblems(text: string): string[] {
  try {
    parseConfig(text, 'test.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}
