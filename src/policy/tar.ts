/**
 * Minimal reader for uncompressed tar archives (POSIX ustar, with pax `path`/`size` records
 * and GNU long names), enough for OPA bundles. Reads everything from memory; never touches
 * the file system, so entry names cannot escape anywhere.
 */

const BLOCK = 512;

/** One archive member. */
export interface TarEntry {
  /** Normalised absolute path inside the archive, e.g. `/policy.wasm`. */
  readonly path: string;
  readonly type: 'file' | 'directory' | 'other';
  readonly data: Buffer;
}

/** Normalises a member name to `/a/b` (leading `./` and `/` removed, then one `/` added). */
export function normaliseTarPath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return `/${parts.join('/')}`;
}

function cString(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end === -1 || end > start + len ? start + len : end);
}

function octal(buf: Buffer, start: number, len: number, field: string, offset: number): number {
  // GNU base-256 encoding for values that do not fit in octal.
  if ((buf[start] ?? 0) & 0x80) {
    let n = (buf[start] ?? 0) & 0x7f;
    for (let i = start + 1; i < start + len; i++) n = n * 256 + (buf[i] ?? 0);
    return n;
  }
  const text = cString(buf, start, len).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`tar header at byte ${offset} has an invalid ${field} field`);
  return parseInt(text, 8);
}

function checksumOk(header: Buffer, offset: number): boolean {
  const stored = octal(header, 148, 8, 'checksum', offset);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return sum === stored;
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/** Parses pax extended header records (`<len> <key>=<value>\n`). */
function paxRecords(data: Buffer, offset: number): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    const len = space === -1 ? NaN : Number(data.toString('ascii', pos, space));
    if (!Number.isInteger(len) || len <= 0 || pos + len > data.length) {
      throw new Error(`tar pax header at byte ${offset} is malformed`);
    }
    const record = data.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

/**
 * Lists the members of a tar archive. Throws an `Error` naming the byte offset when a header
 * is corrupt (bad checksum, bad number) or a member runs past the end of the archive.
 */
export function readTar(archive: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let nextPath: string | null = null;
  let nextSize: number | null = null;
  while (offset + BLOCK <= archive.length) {
    const header = archive.subarray(offset, offset + BLOCK);
    if (isZeroBlock(header)) return entries;
    if (!checksumOk(header, offset)) throw new Error(`tar header at byte ${offset} has a bad checksum`);
    const typeflag = String.fromCharCode(header[156] ?? 0);
    const size = nextSize ?? octal(header, 124, 12, 'size', offset);
    const start = offset + BLOCK;
    if (start + size > archive.length) throw new Error(`tar member at byte ${offset} runs past the end of the archive`);
    const data = archive.subarray(start, start + size);
    offset = start + Math.ceil(size / BLOCK) * BLOCK;

    if (typeflag === 'x') {
      const pax = paxRecords(data, start);
      nextPath = pax.get('path') ?? nextPath;
      const paxSize = pax.get('size');
      nextSize = paxSize !== undefined && /^\d+$/.test(paxSize) ? Number(paxSize) : nextSize;
      continue;
    }
    if (typeflag === 'L') {
      nextPath = cString(data, 0, data.length);
      continue;
    }
    if (typeflag === 'g') continue;

    let name = cString(header, 0, 100);
    if (cString(header, 257, 6) === 'ustar') {
      const prefix = cString(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const path = normaliseTarPath(nextPath ?? name);
    nextPath = null;
    nextSize = null;
    const type = typeflag === '0' || typeflag === '\0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : 'other';
    entries.push({ path, type, data });
  }
  if (offset < archive.length && !isZeroBlock(archive.subarray(offset))) {
    throw new Error(`tar archive ends with a partial block at byte ${offset}`);
  }
  return entries;
}
