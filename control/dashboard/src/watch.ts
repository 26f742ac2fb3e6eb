// A small informer: list a collection once, then follow its watch stream,
// keeping the objects in memory. Nothing is polled: after the list, every
// change arrives on the stream.
//
//   GET <url>                          -> items + metadata.resourceVersion
//   GET <url>?watch=1&resourceVersion=<rv>&allowWatchBookmarks=true
//                                      -> one JSON event per line
//
// When a stream ends it is opened again from the last resourceVersion seen
// (events and bookmarks advance it). A 410 Gone, as an answer or as an
// ERROR event, means that version is too old: list again.

import { ApiError, Fetcher, asApiError, readLines, sleep, statusError } from './api';
import { KubeObject, objectKey } from './k8s';

/** connecting: between streams; watching: a stream is open; error: the last attempt failed. */
export type StreamState = 'connecting' | 'watching' | 'error';

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR' | string;
  object: unknown;
}

export interface InformerOptions {
  /** Listeners are told of changes at most once per this many ms (default 100: ~10 renders/s). */
  throttleMs?: number;
  /** First retry delay after a failure (doubles up to maxRetryMs). */
  retryMs?: number;
  maxRetryMs?: number;
}

/** What applying one watch event asks of the stream reader. */
type Applied = 'ok' | 'expired' | ApiError;

export class Informer<T extends KubeObject> {
  /** The objects, keyed by `namespace/name` (or `name` when cluster-scoped). */
  readonly items = new Map<string, T>();
  /** True once a list has been stored. */
  synced = false;
  state: StreamState = 'connecting';
  /** Why the last list or watch failed; cleared when one succeeds. */
  error: ApiError | null = null;
  /** The version to watch from. */
  resourceVersion = '';

  private readonly listeners = new Set<() => void>();
  private controller: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly throttleMs: number;
  private readonly retryMs: number;
  private readonly maxRetryMs: number;

  constructor(
    readonly url: string,
    private readonly fetcher: Fetcher,
    options: InformerOptions = {},
  ) {
    this.throttleMs = options.throttleMs ?? 100;
    this.retryMs = options.retryMs ?? 1000;
    this.maxRetryMs = options.maxRetryMs ?? 30_000;
  }

  /** Whether the user may not list this collection (RBAC). */
  get forbidden(): boolean {
    return this.error?.code === 403;
  }

  get running(): boolean {
    return this.controller !== null;
  }

  start(): void {
    if (this.controller) return;
    this.controller = new AbortController();
    void this.run(this.controller.signal);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Be told (throttled) when objects or the stream state change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  /** The list-then-watch loop, until stopped. */
  private async run(signal: AbortSignal): Promise<void> {
    let relist = true;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (relist) {
          await this.relist(signal);
          relist = false;
        }
        const opened = Date.now();
        const outcome = await this.watchOnce(signal);
        failures = 0;
        if (outcome === 'expired') {
          relist = true;
        } else if (Date.now() - opened < 1000) {
          // A server that closes streams at once must not make us spin.
          await sleep(1000, signal);
        }
      } catch (e) {
        if (signal.aborted) return;
        const err = asApiError(e);
        if (err.code === 410) relist = true;
        failures++;
        this.error = err;
        this.setState('error');
        await sleep(Math.min(this.retryMs * 2 ** (failures - 1), this.maxRetryMs), signal);
      }
    }
  }

  /** Replace the objects with a fresh list. */
  private async relist(signal: AbortSignal): Promise<void> {
    const res = await this.fetcher(this.url, { signal });
    const body = (await res.json()) as { items?: T[] | null; metadata?: { resourceVersion?: string } };
    this.items.clear();
    for (const item of body.items ?? []) this.items.set(objectKey(item), item);
    this.resourceVersion = body.metadata?.resourceVersion ?? '';
    this.synced = true;
    this.error = null;
    this.notify();
  }

  /** Follow one watch stream until it ends; 'expired' when a relist is needed. */
  private async watchOnce(signal: AbortSignal): Promise<'ended' | 'expired'> {
    const sep = this.url.includes('?') ? '&' : '?';
    const url =
      `${this.url}${sep}watch=1&resourceVersion=${encodeURIComponent(this.resourceVersion)}` +
      '&allowWatchBookmarks=true';
    const res = await this.fetcher(url, { signal });
    this.error = null;
    this.setState('watching');
    // Set from the line callback (an object, so the compiler sees the writes).
    const end: { outcome: 'ended' | 'expired'; failure: ApiError | null } = { outcome: 'ended', failure: null };
    await readLines(res, (line) => {
      let event: WatchEvent;
      try {
        event = JSON.parse(line);
      } catch {
        return true; // not an event: skip it
      }
      const applied = this.apply(event);
      if (applied === 'ok') return true;
      if (applied === 'expired') end.outcome = 'expired';
      else end.failure = applied;
      return false;
    });
    this.setState('connecting');
    if (end.failure) throw end.failure;
    return end.outcome;
  }

  /** Apply one watch event to the store. Exposed for tests. */
  apply(event: WatchEvent): Applied {
    if (event.type === 'ERROR') {
      const err = statusError(event.object);
      return err.code === 410 ? 'expired' : err;
    }
    const obj = event.object as T | null;
    if (!obj?.metadata) return 'ok';
    if (obj.metadata.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.items.set(objectKey(obj), obj);
        this.notify();
        break;
      case 'DELETED':
        this.items.delete(objectKey(obj));
        this.notify();
        break;
      // BOOKMARK: only the resourceVersion moves.
    }
    return 'ok';
  }

  private setState(state: StreamState): void {
    if (this.state === state) return;
    this.state = state;
    this.notify();
  }

  /** Tell listeners once per throttle period, however many changes came in it. */
  private notify(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      for (const listener of this.listeners) listener();
    }, this.throttleMs);
  }
}
