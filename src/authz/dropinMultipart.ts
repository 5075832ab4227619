/**
 * `parsed_body` of a `multipart/form-data` body as OPA-Envoy builds it: each named form part's
 * values in order, text as a string, a part whose own content type is JSON parsed. Only what
 * OPA-Envoy reads is parsed; a body that does not follow the multipart framing is an error (the
 * reference then answers 400 too).
 */

/** Form name to the values of its parts. */
export type MultipartValues = Record<string, unknown[]>;

/** The `boundary` parameter of a content type, `null` when it has none; throws on a malformed type. */
export function mediaBoundary(contentType: string): string | null {
  const parts = contentType.split(';');
  const type = (parts.shift() as string).trim();
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(type)) throw new Error('mime: expected slash after first token');
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq === -1) {
      if (p.trim() === '') continue;
      throw new Error('mime: invalid media parameter');
    }
    if (p.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    return v === '' ? null : v;
  }
  return null;
}

/** Reads `name="x"` (or `name=x`) from a Content-Disposition value whose type is `form-data`. */
function formName(disposition: string | undefined): string {
  if (!disposition) return '';
  const [kind, ...params] = disposition.split(';');
  if ((kind as string).trim().toLowerCase() !== 'form-data') return '';
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq === -1 || p.slice(0, eq).trim().toLowerCase() !== 'name') continue;
    const v = p.slice(eq + 1).trim();
    return v.startsWith('"') && v.endsWith('"') && v.length >= 2 ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
  }
  return '';
}

/**
 * Parses a multipart body into form values.
 * @throws Error when the framing is broken (no opening boundary, a part without its end) or a
 *   JSON part does not parse.
 */
export function parseMultipart(body: string, boundary: string): MultipartValues {
  const values: MultipartValues = Object.create(null);
  const open = `--${boundary}`;
  let at = body.startsWith(open) ? 0 : body.indexOf(`\n${open}`);
  if (at === -1) throw new Error('multipart: NextPart: EOF');
  if (at > 0) at += 1;
  let pos = at + open.length;
  for (;;) {
    if (body.startsWith('--', pos)) return values;
    const eol = body.indexOf('\n', pos);
    if (eol === -1 || body.slice(pos, eol).replace(/\r$/, '').trim() !== '') throw new Error('multipart: NextPart: EOF');
    pos = eol + 1;
    const headerEnd = body.indexOf('\n\n', pos) !== -1 && (body.indexOf('\r\n\r\n', pos) === -1 || body.indexOf('\n\n', pos) < body.indexOf('\r\n\r\n', pos))
      ? { at: body.indexOf('\n\n', pos), len: 2 }
      : { at: body.indexOf('\r\n\r\n', pos), len: 4 };
    if (headerEnd.at === -1) throw new Error('multipart: NextPart: EOF');
    const headers: Record<string, string> = Object.create(null);
    for (const line of body.slice(pos, headerEnd.at).split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] ??= line.slice(colon + 1).trim();
    }
    const start = headerEnd.at + headerEnd.len;
    let end = body.indexOf(`\r\n${open}`, start);
    let sep = 2;
    if (end === -1) {
      end = body.indexOf(`\n${open}`, start);
      sep = 1;
    }
    if (end === -1) throw new Error('unexpected EOF');
    const name = formName(headers['content-disposition']);
    if (name !== '') {
      const text = body.slice(start, end);
      (values[name] ??= []).push((headers['content-type'] ?? '').includes('application/json') ? JSON.parse(text) : text);
    }
    pos = end + sep + open.length;
  }
}
