import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { EventId, EventStore, StreamId } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

/**
 * In-memory event store of one session, so a client that lost an SSE stream can resume it with
 * `Last-Event-ID` (the transport spec's resumability). Event ids are `<stream>/<sequence>`: the
 * stream is recoverable from the id alone and replay order is the sequence order.
 */
export class MemoryEventStore implements EventStore {
  private readonly events: { id: EventId; stream: StreamId; seq: number; message: JSONRPCMessage }[] = [];
  private seq = 0;

  /** Keeps `message` and returns its id. */
  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const seq = ++this.seq;
    const id = `${streamId}/${seq}`;
    this.events.push({ id, stream: streamId, seq, message });
    return id;
  }

  /** The stream an event id belongs to, or undefined for an id this store never issued. */
  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return this.events.find((e) => e.id === eventId)?.stream;
  }

  /** Sends every event of the same stream stored after `lastEventId`, in order. */
  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const last = this.events.find((e) => e.id === lastEventId);
    if (!last) throw new Error(`unknown event id ${lastEventId}`);
    for (const e of this.events) {
      // Priming events carry no message: nothing to replay for them.
      if (e.stream === last.stream && e.seq > last.seq && Object.keys(e.message).length > 0) await send(e.id, e.message);
    }
    return last.stream;
  }
}
