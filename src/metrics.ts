import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The one Prometheus registry served on the admin port. Modules define their own metrics
 * against it (`registers: [registry]`), next to the code that updates them.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'portcullis_process_' });
