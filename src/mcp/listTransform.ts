import type { JsonTransform } from '../extproc/response/pipeline.js';
import { noteDefinitionEvents } from './definitionEvents.js';
import type { McpCatalog } from './catalog.js';
import { toolLists } from './definition.js';

/**
 * The response transform that learns tool definitions from every `tools/list` answer passing
 * through (whole bodies, each message of a batch, each SSE event alike) and removes the tools
 * the catalog withholds; a list the catalog refuses ends the response with its error. Runs
 * first, so later transforms see the list the agent will receive. A list is always counted as
 * changed, so the pipeline re-serialises it from what was judged: the agent reads the same
 * list, whatever its parser makes of duplicate keys or other oddities in the original bytes.
 */
export function definitionsTransform(catalog: McpCatalog): JsonTransform {
  return {
    name: 'mcp_definitions',
    apply(doc, ctx) {
      let changes = 0;
      for (const list of toolLists(doc)) {
        changes += 1;
        const r = catalog.ingest(ctx.tool, list);
        noteDefinitionEvents(ctx.res, r.events);
        if (r.refusal) throw r.refusal;
        for (let i = list.length - 1; i >= 0; i--) {
          if (r.hidden.has((list[i] as { name: string }).name)) {
            list.splice(i, 1);
            changes += 1;
          }
        }
      }
      return changes;
    },
  };
}
