// Points a prepared portcullis config at the shared Redis store (rate limits and other state
// shared by every replica), for the compose stack:
//
//   node deploy/compose/add-store.mjs CONFIG REDIS_URL
//
// Run from the portcullis root (the image's /app). A build whose config schema has no `store`
// section yet keeps its in-process state: the config is left as it is and that is said on stderr,
// instead of writing a key the config loader would refuse.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseDocument } from 'yaml';

const [file, url] = process.argv.slice(2);
if (!file || !url) {
  process.stderr.write('usage: add-store.mjs CONFIG REDIS_URL\n');
  process.exit(2);
}
const { configSchema } = await import(pathToFileURL(join(process.cwd(), 'dist/config/schema.js')).href);
if (!configSchema?.properties?.store) {
  process.stderr.write('add-store: this portcullis has no store setting; state stays per process\n');
  process.exit(0);
}
const doc = parseDocument(readFileSync(file, 'utf8'));
doc.set('store', doc.createNode({ kind: 'redis', redis: { url } }));
writeFileSync(file, doc.toString());
process.stderr.write(`add-store: store redis at ${url}\n`);
