import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import { GatewayError, errorBody } from '../errors.js';
import { applyDlp, createStreamRedactor } from '../dlp/index.js';
import type { ExtprocDeps } from './deps.js';
import type { Exchange } from './exchange.js';
import { baseMode } from './requestPhase.js';
import { headerMap, setHeader, type ProcessingRequest, type ProcessingResponse, type ProtoHeaderMutation, type ProtoHttpBody } from './proto.js';

/** Largest decompressed body the gateway will inspect; larger bodies are refused (zip bombs). */
const MAX_DECOMPRESSED_BYTES = 32 * 1024 * 1024;

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
 * JSON/text, streamed for SSE (without buffering the stream), none when the tool does not inspect.
 */
export function onResponseHeaders(deps: ExtprocDeps, ex: Exchange, msg: ProcessingRequest): ProcessingResponse {
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
    ex.responseMode = ex.responseIsSse ? 'streamed' : 'buffered';
    mode.responseBodyMode = ex.responseIsSse ? 'STREAMED' : 'BUFFERED';
    if (ex.responseIsSse) {
      ex.redactor = createStreamRedactor(deps.scanner);
      // Redaction changes lengths: a streamed body cannot keep a fixed content-length.
      mutation.removeHeaders = ['content-length'];
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

/** Buffered response body: decompress, drop fields, redact or block, fix length and encoding. */
function bufferedBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  ex.responseChunks.push(body.body ?? Buffer.alloc(0));
  if (!body.endOfStream) {
    // Buffered mode delivers one message; tolerate more by holding everything until the end.
    return { responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.alloc(0) } } } };
  }
  let raw: Buffer = Buffer.concat(ex.responseChunks);
  ex.responseChunks = [];
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
  const out = Buffer.from(text, 'utf8');
  const mutation: ProtoHeaderMutation = { setHeaders: [setHeader('content-length', String(out.length))] };
  if (ex.responseEncoding) mutation.removeHeaders = ['content-encoding'];
  return { responseBody: { response: { status: 'CONTINUE', headerMutation: mutation, bodyMutation: { body: out } } } };
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

/**
 * Streamed response body (SSE): redact as chunks flow, holding back only a bounded tail so a
 * secret split across chunks is never partly delivered. A block ends the stream with an error event.
 */
function streamedBody(deps: ExtprocDeps, ex: Exchange, body: ProtoHttpBody): ProcessingResponse {
  const reply = (s: string): ProcessingResponse => ({
    responseBody: { response: { status: 'CONTINUE', bodyMutation: { body: Buffer.from(s, 'utf8') } } },
  });
  if (ex.streamBlocked) return reply('');
  const [complete, carry] = completeUtf8(Buffer.concat([ex.utf8Carry, body.body ?? Buffer.alloc(0)]));
  ex.utf8Carry = body.endOfStream ? Buffer.alloc(0) : carry;
  const chunk = complete.toString('utf8') + (body.endOfStream ? carry.toString('utf8') : '');
  const pushed = ex.redactor!.push(chunk);
  let out = pushed.text;
  let findings = pushed.findings;
  let blocked = pushed.blocked;
  if (body.endOfStream && !blocked) {
    const rest = ex.redactor!.end();
    out += rest.text;
    findings = [...findings, ...rest.findings];
    blocked = rest.blocked;
  }
  ex.noteFindings(ex.dlpResponse, findings, blocked);
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
  return { responseBody: { response: { status: 'CONTINUE' } } };
}
