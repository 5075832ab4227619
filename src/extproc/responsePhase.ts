import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import { GatewayError, errorBody } from '../errors.js';
import { applyDlp, createStreamRedactor } from '../dlp/index.js';
import type { ExtprocDeps } from './deps.js';
import type { Exchange } from './exchange.js';
import { baseMode, joinDecision, noDecision, readMetadata } from './requestPhase.js';
import { headerMap, setHeader, type ProcessingRequest, type ProcessingResponse, type ProtoHeaderMutation, type ProtoHttpBody } from './proto.js';

/** Largest decompressed body the gateway will inspect; larger bodies are refused (zip bombs). */
const MAX_DECOMPRESSED_BYTES = 32 * 1024 * 1024;

/**
 * Largest response Envoy is asked to buffer (BUFFERED mode): the listener's
 * per_connection_buffer_limit_bytes. Past Envoy's buffer limit a buffered response stalls until
 * the route times out, so larger bodies, and bodies of unknown length, are streamed to portcullis
 * and held here instead (bounded by MAX_DECOMPRESSED_BYTES).
 */
const ENVOY_BUFFER_LIMIT = 1024 * 1024;

const TEXTUAL = /^(?:text\/|application\/(?:[\w.+-]*\+)?(?:json|xml|x-ndjson|ndjson|javascript|x-www-form-urlencoded|graphql|yaml|x-yaml))/i;

function decompress(buf: Buffer, encoding: string): Buffer {
  const opts = { maxOutputLength: MAX_DECOMPRESSED_BYTES };
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') return gunzipSync(buf, opts);
    if (encoding === 'deflate') return inflateSync(buf, opts);
    if (encoding === 'br') return brotliDecompressSync(buf, opts);
  } catch (err) {
    throw new GatewayError('internal', `upstream ${encoding} body could not be decompressed for inspection`, { rule: 'dlp.decompress', cause: err });
  }
  throw new GatewayError('internal', `upstream used content-encoding "${encoding}", which cannot be inspected`, { rule: 'dlp.encoding' });
}

/**
 * Response headers: choose how the body is inspected from its content type — buffered for
 * JSON/text (held by portcullis instead of Envoy when too large for Envoy's buffer or of unknown
 * length), streamed for SSE (without buffering the stream), none when the tool does not inspect.
 */
export function onResponseHeaders(deps: ExtprocDeps, ex: Exchange, msg: ProcessingRequest): ProcessingResponse {
  if (!ex.sawRequest) {
    const handoff = readMetadata(deps, msg);
    // A local reply from a filter before this one: an Envoy error (no hand-off at all) or an
    // ext_authz denial (a verified hand-off that did not allow). No tool answered, ext_authz
    // already audited a denial, and the body is the gateway's or Envoy's own error.
    if ((!handoff.ok && handoff.problem === 'absent') || (handoff.ok && !handoff.meta.allowed)) {
      ex.localReply = true;
      return { responseHeaders: { response: { status: 'CONTINUE' } } };
    }
    if (!handoff.ok) throw noDecision(handoff.problem);
    if (!handoff.meta.tool) throw noDecision('not_allowed');
    // A route that skips the request-header phase (nothing to inspect on the way in).
    joinDecision(deps, ex, handoff.meta);
  }
  const tool = ex.tool!;
  const h = headerMap(msg.responseHeaders);
  ex.upstreamStatus = Number(h[':status'] ?? 0) || null;
  ex.responseStatus = ex.upstreamStatus;
  const ct = h['content-type'] ?? '';
  const encoding = (h['content-encoding'] ?? 'identity').trim().toLowerCase();
  const inspect = (tool.response.dlp || (deps.filters.get(tool.name)?.empty === false)) && !msg.responseHeaders?.endOfStream;
  const mutation: ProtoHeaderMutation = {};
  const mode = baseMode('NONE');
  if (inspect && (ct === '' || TEXTUAL.test(ct))) {
    ex.responseIsSse = /^text\/event-stream/i.test(ct);
    if (encoding !== 'identity' && encoding !== '') {
      if (ex.responseIsSse) throw new GatewayError('internal', 'compressed event streams cannot be inspected', { rule: 'dlp.encoding' });
      ex.responseEncoding = encoding;
    }
    const length = Number(h['content-length'] ?? NaN);
    const fitsEnvoyBuffer = Number.isSafeInteger(length) && length <= ENVOY_BUFFER_LIMIT;
    ex.responseMode = ex.responseIsSse ? 'streamed' : fitsEnvoyBuffer ? 'buffered' : 'held';
    mode.responseBodyMode = ex.responseMode === 'buffered' ? 'BUFFERED' : 'STREAMED';
    if (ex.responseIsSse) ex.redactor = createStreamRedactor(deps.scanner);
    if (ex.responseMode !== 'buffered') {
      // Headers leave before the body is known: redaction changes the length, and a held body
      // is returned decoded.
      mutation.removeHeaders = ex.responseEncoding ? ['content-length', 'content-encoding'] : ['content-length'];
    }
  }
  return { responseHeaders: { response: { status: 'CONTINUE', headerMutation: mutation } }, modeOverride: mode };
}

function filterFields(deps: ExtprocDeps, ex: Exchange, text: string): string {
  const filter = deps.filters.get(ex.tool!.name);
  if (!filter || filter.empty) return text;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return text;
  }
  return filter.apply(doc) > 0 ? JSON.stringify(doc) : text;
}

/** A whole response body: decode, drop fields, redact or block (throws). Returns the text to send. */
function inspectWhole(deps: ExtprocDeps, ex: Exchange): Buffer {
  let raw: Buffer = Buffer.concat(ex.responseChunks);
  ex.responseChunks = [];
  ex.responseHeld = 0;
  if (ex.responseEncoding) raw = decompress(raw, ex.responseEncoding);
  let text = filterFields(deps, ex, raw.toString('utf8'));
  if (ex.tool!.response.dlp) {
    const r = applyDlp(deps.scanner, text);
    ex.noteFindings(ex.dlpResponse, r.findings, r.blocked);
    if (r.blocked) {
      throw new GatewayError('blocked_content', `the response of tool "${ex.tool!.name}" carried data that may not be returned`, {
        rule: 'dlp.response',
        details: { rules: [...ex.dlpResponse.rules] },
      });
    }
    text = r.text;
  }
  if (deps.config.audit.payload.mode !== 'off') ex.responsePayload = text;
  return Buffer.from(text, 'utf8');
}

const EMPTY_BODY: ProcessingResponse = { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.alloc(0) } } } };

/** Buffered response body (Envoy holds it): inspect the whole body, fix length and encoding. */
function bufferedBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  ex.responseChunks.push(body.body ?? Buffer.alloc(0));
  // Buffered mode delivers one message; tolerate more by holding everything until the end.
  if (!body.endOfStream) return EMPTY_BODY;
  const out = inspectWhole(deps, ex);
  const mutation: ProtoHeaderMutation = { setHeaders: [setHeader('content-length', String(out.length))] };
  if (ex.responseEncoding) mutation.removeHeaders = ['content-encoding'];
  return { responseBody: { response: { status: 'CONTINUE', headerMutation: mutation, bodyMutation: { body: out } } } };
}

/**
 * Held response body (too large for Envoy's buffer, or of unknown length): Envoy streams the
 * chunks, portcullis keeps them and answers each with nothing, and sends the inspected body with
 * the last chunk. Nothing reaches the agent before the whole body was inspected.
 */
function heldBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  const chunk = body.body ?? Buffer.alloc(0);
  ex.responseHeld += chunk.length;
  if (ex.responseHeld > MAX_DECOMPRESSED_BYTES) {
    throw new GatewayError('internal', `the response of tool "${ex.tool!.name}" is larger than ${MAX_DECOMPRESSED_BYTES} bytes and cannot be inspected`, {
      rule: 'dlp.response_too_large',
    });
  }
  ex.responseChunks.push(chunk);
  if (!body.endOfStream) return EMPTY_BODY;
  return { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: inspectWhole(deps, ex) } } } };
}

/** Splits off a trailing incomplete UTF-8 sequence so characters are never cut between chunks. */
function completeUtf8(buf: Buffer): [Buffer, Buffer] {
  let i = buf.length - 1;
  let back = 0;
  while (i >= 0 && back < 4 && (buf[i]! & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return [buf, Buffer.alloc(0)];
  const lead = buf[i]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (need > back + 1) return [buf.subarray(0, i), buf.subarray(i)];
  return [buf, Buffer.alloc(0)];
}

/** A blank line, which ends an SSE event (LF, CRLF or CR line endings). */
const SSE_EVENT_END = /\r\n\r\n|\n\n|\r\r/g;
/** Longest event terminator minus one: what must be remembered to see one split across chunks. */
const SSE_TAIL = 3;

/** Offsets in `chunk` just after each event terminator, including one that began in the previous chunk. */
function eventEnds(tail: string, chunk: string): number[] {
  const text = tail + chunk;
  const ends: number[] = [];
  SSE_EVENT_END.lastIndex = 0;
  for (let m = SSE_EVENT_END.exec(text); m; m = SSE_EVENT_END.exec(text)) {
    const end = m.index + m[0].length - tail.length;
    if (end > 0) ends.push(end);
  }
  return ends;
}

/**
 * Feeds one piece of the current SSE event to its redactor. When the piece ends the event, the
 * redactor is flushed and replaced, so the whole event is released now instead of waiting for
 * the hold-back window to fill with later events.
 */
function feedEvent(deps: ExtprocDeps, ex: Exchange, piece: string, eventEnded: boolean): { text: string; blocked: boolean } {
  const redactor = ex.redactor!;
  const pushed = redactor.push(piece);
  let text = pushed.text;
  let findings = pushed.findings;
  let blocked = pushed.blocked;
  if (eventEnded && !blocked) {
    const rest = redactor.end();
    text += rest.text;
    findings = [...findings, ...rest.findings];
    blocked = rest.blocked;
  }
  ex.noteFindings(ex.dlpResponse, findings, blocked);
  if (eventEnded) {
    ex.redactor = createStreamRedactor(deps.scanner);
    ex.sseTail = '';
  } else {
    ex.sseTail = (ex.sseTail + piece).slice(-SSE_TAIL);
  }
  return { text, blocked };
}

/**
 * Streamed response body (SSE): redact as chunks flow, holding back only a bounded tail so a
 * secret split across chunks is never partly delivered. Each event is scanned on its own and
 * released as soon as it ends (secrets do not span events; an agent reads events, not bytes).
 * A block withholds the rest of the blocked event and everything after it, and ends the stream
 * with an error event.
 */
function streamedBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  const reply = (s: string): ProcessingResponse => ({
    responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.from(s, 'utf8') } } },
  });
  if (ex.streamBlocked) return reply('');
  const [complete, carry] = completeUtf8(Buffer.concat([ex.utf8Carry, body.body ?? Buffer.alloc(0)]));
  ex.utf8Carry = body.endOfStream ? Buffer.alloc(0) : carry;
  const chunk = complete.toString('utf8') + (body.endOfStream ? carry.toString('utf8') : '');
  const ends = eventEnds(ex.sseTail, chunk);
  const cuts = ends.map((end) => ({ end, eventEnded: true }));
  // The rest of the chunk opens the next event; at the end of the stream it is final as well.
  if ((ends.at(-1) ?? 0) < chunk.length || body.endOfStream) cuts.push({ end: chunk.length, eventEnded: body.endOfStream === true });
  let out = '';
  let from = 0;
  let blocked = false;
  for (const { end, eventEnded } of cuts) {
    const r = feedEvent(deps, ex, chunk.slice(from, end), eventEnded);
    from = end;
    if (r.blocked) {
      blocked = true;
      break;
    }
    out += r.text;
  }
  if (blocked) {
    ex.streamBlocked = true;
    const err = new GatewayError('blocked_content', `the response stream of tool "${ex.tool!.name}" carried data that may not be returned; the stream was ended`, {
      rule: 'dlp.response',
    });
    ex.error = err;
    out += `\n\nevent: error\ndata: ${JSON.stringify(errorBody(err, ex.requestId))}\n\n`;
  }
  return reply(out);
}

/** Dispatches a response body chunk to the buffered or streamed handler. */
export function onResponseBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  if (ex.responseMode === 'streamed') return streamedBody(deps, ex, body);
  if (ex.responseMode === 'buffered') return bufferedBody(deps, ex, body);
  if (ex.responseMode === 'held') return heldBody(deps, ex, body);
  return { responseBody: { response: { status: 'CONTINUE' } } };
}
