import { Redis } from 'ioredis';

/** Redis commands that are not the gateway's work (connection setup, script loading, this probe). */
const HOUSEKEEPING = new Set(['info', 'ping', 'script', 'client', 'hello', 'select', 'config', 'command', 'auth']);

/**
 * Data commands Redis has executed since start, by command (from `INFO commandstats`), without
 * housekeeping: divided by the Checks served, the Redis operations one call costs.
 */
export async function redisCommandCounts(url: string): Promise<{ calls: Record<string, number>; scriptUsec: number }> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const text = await client.info('commandstats');
    const calls: Record<string, number> = {};
    let scriptUsec = 0;
    for (const m of text.matchAll(/^cmdstat_([\w|]+):calls=(\d+),usec=(\d+)/gm)) {
      const name = (m[1] as string).toLowerCase();
      if (HOUSEKEEPING.has(name.split('|')[0] as string)) continue;
      calls[name] = Number(m[2]);
      // A script's time includes the commands it runs (they are listed too, with their own time).
      if (name === 'eval' || name === 'evalsha') scriptUsec += Number(m[3]);
    }
    return { calls, scriptUsec };
  } finally {
    client.disconnect();
  }
}

/** Sum of `portcullis_authz_decisions_total` over the processes' `/metrics`: the Checks they answered. */
export async function checksServed(adminUrls: readonly string[]): Promise<number> {
  let total = 0;
  for (const url of adminUrls) {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    for (const m of text.matchAll(/^portcullis_authz_decisions_total\{[^}]*\} (\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/gm)) total += Number(m[1]);
  }
  return total;
}
