import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, SELF_REVIEW_PATH, apiFetch } from './api';

const realFetch = globalThis.fetch;

/** A fetch that fails with a network error `failures` times, then answers 200. */
function flaky(failures: number) {
  const calls: string[] = [];
  globalThis.fetch = vi.fn(async (path: RequestInfo | URL) => {
    calls.push(String(path));
    if (calls.length <= failures) throw new TypeError('Failed to fetch');
    return new Response('{}', { status: 200 });
  }) as typeof fetch;
  return calls;
}

afterEach(() => {
  globalThis.fetch = realFetch;
});

describe('requests the network failed', () => {
  it('are sent again when repeatable: reads, patches, the self review', async () => {
    let calls = flaky(2);
    expect((await apiFetch('/api/v1/pods')).status).toBe(200);
    expect(calls).toHaveLength(3);
    calls = flaky(1);
    await apiFetch('/apis/apps/v1/namespaces/d/deployments/w/scale', { method: 'PATCH', body: '{}' });
    expect(calls).toHaveLength(2);
    calls = flaky(1);
    await apiFetch(SELF_REVIEW_PATH, { method: 'POST', body: '{}' });
    expect(calls).toHaveLength(2);
  });

  it('are not sent again when they would create something, and give up after three tries', async () => {
    let calls = flaky(1);
    await expect(apiFetch('/api/v1/namespaces/d/configmaps', { method: 'POST', body: '{}' })).rejects.toEqual(
      expect.objectContaining({ code: 0 }),
    );
    expect(calls).toHaveLength(1);
    calls = flaky(5);
    const error = await apiFetch('/api/v1/pods').catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(calls).toHaveLength(3);
  });
});
