// Points a prepared portcullis config at the shared Redis store (rate limits and other state
// shared by every replica), for the compose stack:
//
//   node deploy/compose/add-store.mjs CONFIG REDIS_URL
//
// Run from the portcullis root (the image's /app). Whatever `store` the config had is replaced.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseDocument } from 'yaml';

const [file, url] = process.argv.slice(2);
if (!file || !url) {
  process.stderr.write('usage: add-store.mjs CONFIG REDIS_URL\n');
  process.exit(2);
}
const doc = parseDocument(readFileSync(file, 'utf8'));
doc.set('store', doc.createNode({ kind: 'redis', redis: { url } }));
writeFileSync(file, doc.toString());
process.stderr.write(`add-store: store redis at ${url}\n`);
