import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileTemplate, fillTemplate } from '../../../src/credentials/format.js';
import { repoPath } from '../../helpers/paths.js';

describe('credential templates', () => {
  it('insert the secret verbatim, whatever replacement patterns it contains', () => {
    const bearer = compileTemplate('Bearer {secret}');
    for (const secret of ["ab$&cd$'x", '$`', '$$', '$1$2', '$<name>', 'a{secret}b']) {
      expect(fillTemplate(bearer, secret)).toBe(`Bearer ${secret}`);
    }
  });

  it('fill every placeholder and keep the text around them', () => {
    expect(fillTemplate(compileTemplate('{secret}'), 's')).toBe('s');
    expect(fillTemplate(compileTemplate('k={secret};v={secret}!'), '$&')).toBe('k=$&;v=$&!');
  });

  it('refuse a format without a placeholder', () => {
    expect(() => compileTemplate('Bearer secret')).toThrow(/no \{secret\} placeholder/);
  });
});

/** Every TypeScript file under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/**
 * The second argument of each `.replace(`/`.replaceAll(` call, roughly: enough to tell a literal
 * or a callback from a value computed at run time (which `$&`, `$'` ... would be interpreted in).
 */
function replacementArguments(text: string): string[] {
  const out: string[] = [];
  const call = /\.replace(?:All)?\(/g;
  for (let m = call.exec(text); m; m = call.exec(text)) {
    let depth = 0;
    let i = m.index + m[0].length;
    let quote: string | null = null;
    for (; i < text.length; i++) {
      const c = text[i] as string;
      if (quote) {
        if (c === '\\') i++;
        else if (c === quote) quote = null;
      } else if (c === "'" || c === '"' || c === '`') quote = c;
      else if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') {
        if (depth === 0) break;
        depth--;
      } else if (c === ',' && depth === 0) break;
      else if (c === '/' && depth === 0 && /[(,]\s*$/.test(text.slice(m.index, i))) {
        // A regex literal: skip to its closing slash.
        for (i++; i < text.length && text[i] !== '/'; i++) if (text[i] === '\\' || text[i] === '[') i += text[i] === '\\' ? 1 : text.indexOf(']', i) - i;
      }
    }
    if (text[i] === ',') out.push(text.slice(i + 1, i + 200).trim());
  }
  return out;
}

describe('no replacement string computed at run time in src/', () => {
  it('every String.replace/replaceAll replacement is a literal or a callback', () => {
    const offenders: string[] = [];
    for (const file of sources(repoPath('src'))) {
      for (const arg of replacementArguments(readFileSync(file, 'utf8'))) {
        const literal = /^(['"])(?:[^\\]|\\.)*?\1\s*[),]/.test(arg) || /^`[^`$]*(?:\$(?!\{)[^`$]*)*`\s*[),]/.test(arg);
        const callback = /^(?:\([^)]*\)|[A-Za-z_$][\w$]*)\s*(?::[^=]*)?=>/.test(arg) || /^(?:async\s+)?function\b/.test(arg);
        if (!literal && !callback) offenders.push(`${relative(repoPath(), file)}: ${arg.split('\n')[0]}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('the check itself sees a computed replacement', () => {
    expect(replacementArguments("x.replace('{secret}', secret)")).toEqual(['secret)']);
    expect(replacementArguments('x.replace(/a,b/g, (m) => m)')).toEqual(['(m) => m)']);
  });
});
