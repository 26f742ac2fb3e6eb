import { describe, expect, it } from 'vitest';
import { ApiError, Fetcher, LineSplitter } from './api';
import { Pod } from './k8s';
import { Informer } from './watch';

/** A streamed response whose body is `chunks`, then (unless `open`) its end. */
function streamed(chunks: string[], open = false): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      if (!open) c.close();
    },
  });
  return new Response(body, { status: 200 });
}

function pod(name: string, rv: string, namespace = 'default'): Pod {
  return { metadata: { name, namespace, resourceVersion: rv } };
}

const line = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;

/** Resolves once `check` holds (polling the fake, not the server). */
async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('LineSplitter', () => {
  it('keeps partial lines across chunks', () => {
    const s = new LineSplitter();
    expect(s.push('{"a":1}\n{"b"')).toEqual(['{"a":1}']);
    expect(s.push(':2}\r\n\n')).toEqual(['{"b":2}']);
    expect(s.push('{"c":3}')).toEqual([]);
    expect(s.end()).toEqual(['{"c":3}']);
  });
});

describe('Informer', () => {
  it('lists, then applies watch events from the list resourceVersion', async () => {
    const requests: string[] = [];
    const fetcher: Fetcher = async (path) => {
      requests.push(path);
      if (requests.length === 1) {
        return Response.json({ metadata: { resourceVersion: '10' }, items: [pod('a', '5'), pod('b', '6')] });
      }
      if (requests.length === 2) {
        // Split mid-line on purpose.
        const events = line('ADDED', pod('c', '11')) + line('DELETED', pod('a', '12')) + line('BOOKMARK', { metadata: { resourceVersion: '15' } });
        return streamed([events.slice(0, 30), events.slice(30)], true);
      }
      return new Promise(() => {}); // never answers
    };
    const inf = new Informer<Pod>('/api/v1/pods', fetcher, { throttleMs: 1 });
    let notified = 0;
    inf.subscribe(() => notified++);
    inf.start();
    await until(() => inf.resourceVersion === '15');
    expect(requests[1]).toBe('/api/v1/pods?watch=1&resourceVersion=10&allowWatchBookmarks=true');
    expect([...inf.items.keys()].sort()).toEqual(['default/b', 'default/c']);
    expect(inf.state).toBe('watching');
    await until(() => notified > 0);
    inf.stop();
  });

  it('relists after a 410 ERROR event and watches again from the last version after a stream ends', async () => {
    const requests: string[] = [];
    let lists = 0;
    const fetcher: Fetcher = async (path) => {
      requests.push(path);
      if (!path.includes('watch=1')) {
        lists++;
        return Response.json({ metadata: { resourceVersion: String(lists * 100) }, items: [pod(`p${lists}`, '1')] });
      }
      if (path.includes('resourceVersion=100&')) {
        return streamed([line('ERROR', { kind: 'Status', code: 410, message: 'too old', reason: 'Expired' })]);
      }
      if (path.includes('resourceVersion=200&')) return streamed([line('MODIFIED', pod('p2', '201'))]);
      return new Promise(() => {});
    };
    const inf = new Informer<Pod>('/api/v1/pods', fetcher, { throttleMs: 1 });
    inf.start();
    await until(() => requests.some((r) => r.includes('resourceVersion=201&')), 3000);
    expect(lists).toBe(2);
    expect([...inf.items.keys()]).toEqual(['default/p2']);
    inf.stop();
  });

  it('keeps a 403 as its error (the view shows it)', async () => {
    const fetcher: Fetcher = async () => {
      throw new ApiError(403, 'pods is forbidden');
    };
    const inf = new Informer<Pod>('/api/v1/pods', fetcher, { throttleMs: 1, retryMs: 10_000 });
    inf.start();
    await until(() => inf.error !== null);
    expect(inf.forbidden).toBe(true);
    expect(inf.state).toBe('error');
    expect(inf.error?.message).toBe('pods is forbidden');
    inf.stop();
  });
});
