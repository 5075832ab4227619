import { GatewayError } from '../../errors.js';

/**
 * How the bytes of a response body are read for inspection: as text in their declared charset
 * when they are valid text in it, and otherwise byte for byte (latin1: one character per byte,
 * so every finding's offsets are byte offsets and a redaction can mask the bytes in place
 * without moving anything in a binary format).
 */
export type BodyView = { readonly kind: 'text'; readonly text: string; readonly encoding: 'utf-8' | 'utf-16le' | 'utf-16be' | 'latin1' } | { readonly kind: 'binary'; readonly text: string };

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function swap16(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  if (out.length % 2 === 0) out.swap16();
  return out;
}

/** Reads a body per its charset (parameter value, lower case) or, without one, as UTF-8 if valid. */
export function viewBody(bytes: Buffer, charset: string | null): BodyView {
  const cs = charset?.replace(/^"|"$/g, '') ?? null;
  if (cs === 'utf-16' || cs === 'utf-16le' || cs === 'utf-16be') {
    if (bytes.length % 2 !== 0) return { kind: 'binary', text: bytes.toString('latin1') };
    let be = cs === 'utf-16be';
    let body = bytes;
    if (cs === 'utf-16' && bytes.length >= 2) {
      // RFC 2781: a BOM says the byte order; without one, big-endian.
      if (bytes[0] === 0xff && bytes[1] === 0xfe) {
        be = false;
        body = bytes.subarray(2);
      } else if (bytes[0] === 0xfe && bytes[1] === 0xff) body = bytes.subarray(2);
      else be = true;
    }
    const text = (be ? swap16(body) : body).toString('utf16le');
    return { kind: 'text', text, encoding: be ? 'utf-16be' : 'utf-16le' };
  }
  if (cs === 'iso-8859-1' || cs === 'latin1' || cs === 'us-ascii' || cs === 'ascii' || cs === 'windows-1252') {
    return { kind: 'text', text: bytes.toString('latin1'), encoding: 'latin1' };
  }
  try {
    return { kind: 'text', text: UTF8.decode(bytes), encoding: 'utf-8' };
  } catch {
    return { kind: 'binary', text: bytes.toString('latin1') };
  }
}

/** Encodes inspected text back into the body's encoding. */
export function encodeText(text: string, encoding: 'utf-8' | 'utf-16le' | 'utf-16be' | 'latin1'): Buffer {
  if (encoding === 'utf-16le') return Buffer.from(text, 'utf16le');
  if (encoding === 'utf-16be') return swap16(Buffer.from(text, 'utf16le'));
  if (encoding === 'latin1') {
    // A redaction marker is ASCII; anything else outside latin1 cannot have come from the body.
    if (/[^\u0000-\u00ff]/.test(text)) throw new GatewayError('internal', 'inspected text does not fit the body charset', { rule: 'dlp.encoding' });
    return Buffer.from(text, 'latin1');
  }
  return Buffer.from(text, 'utf8');
}

/** Masks `[start, end)` ranges of a byte-for-byte view in place (same length, so offsets hold). */
export function maskBytes(bytes: Buffer, ranges: readonly { start: number; end: number }[]): Buffer {
  const out = Buffer.from(bytes);
  for (const r of ranges) out.fill(0x2a, Math.max(0, r.start), Math.min(out.length, r.end));
  return out;
}
