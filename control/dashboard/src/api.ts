// HTTP access to the Sluice API on the page's own origin.
//
// Every request carries the user's bearer token when one is stored (in
// sessionStorage, so it is gone when the tab closes). Without a token the
// browser's client certificate, if any, authenticates the user. A failed
// answer becomes an ApiError carrying the Kubernetes Status message.

const TOKEN_KEY = 'sluice.token';

/** The API path answering "who am I?". */
export const SELF_REVIEW_PATH = '/apis/authentication.k8s.io/v1/selfsubjectreviews';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled (or not a browser)
  }
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

/** A request that failed: `code` is the HTTP status (0 for a network failure). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** An ApiError from a Kubernetes Status object (as sent in a watch ERROR event). */
export function statusError(status: unknown, fallbackCode = 500): ApiError {
  const s = (status ?? {}) as { code?: unknown; message?: unknown; reason?: unknown };
  const code = typeof s.code === 'number' ? s.code : fallbackCode;
  const message = typeof s.message === 'string' && s.message ? s.message : `HTTP ${code}`;
  return new ApiError(code, message, typeof s.reason === 'string' ? s.reason : undefined);
}

/** The ApiError for a non-2xx response: its Status message, else its text, else the HTTP status. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // body unreadable: fall back to the status line
  }
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === 'string') return statusError(body, res.status);
  } catch {
    // not JSON
  }
  const message = text.trim().slice(0, 500) || res.statusText || `HTTP ${res.status}`;
  return new ApiError(res.status, message);
}

/** Any thrown value as an ApiError (network failures become code 0). */
export function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ApiError(0, `network error: ${message}`);
}

export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

/** What views and stores use to reach the API (tests pass a fake). */
export type Fetcher = (path: string, init?: RequestInit) => Promise<Response>;

let unauthorizedHandler: (e: ApiError) => void = () => {};

/** Called when a request of the signed-in session answers 401 (token expired or revoked). */
export function onUnauthorized(handler: (e: ApiError) => void): void {
  unauthorizedHandler = handler;
}

/** Tries of a request the network failed before any answer (see `send`). */
const NETWORK_TRIES = 3;

/**
 * Whether a request may be sent again after the network failed it: reads,
 * patches and puts say the same thing twice, and a SelfSubjectReview only
 * asks. Nothing else the page sends creates anything, but a create would not
 * be repeated.
 */
function repeatable(path: string, init: RequestInit): boolean {
  const method = (init.method ?? 'GET').toUpperCase();
  return ['GET', 'HEAD', 'PATCH', 'PUT'].includes(method) || path === SELF_REVIEW_PATH;
}

/**
 * One request. A request the network failed before any answer (the
 * browser's `TypeError`, e.g. Chromium's ERR_NETWORK_CHANGED when an address
 * of the machine changes) is sent again, after a short pause, when it is
 * repeatable; an answer, even an error, is never retried here.
 */
async function send(path: string, init: RequestInit, token: string | null): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  if (!headers.has('Accept')) headers.set('Accept', 'application/json');
  const tries = repeatable(path, init) ? NETWORK_TRIES : 1;
  let res: Response | undefined;
  for (let attempt = 1; !res; attempt++) {
    try {
      res = await fetch(path, { ...init, headers, credentials: 'same-origin' });
    } catch (e) {
      if (isAbort(e) || attempt >= tries) throw isAbort(e) ? e : asApiError(e);
      await sleep(250 * attempt, init.signal ?? undefined);
    }
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res;
}

/** fetch() an API path with the stored token; throws ApiError unless the answer is 2xx. */
export const apiFetch: Fetcher = async (path, init = {}) => {
  try {
    return await send(path, init, getToken());
  } catch (e) {
    if (e instanceof ApiError && e.code === 401) unauthorizedHandler(e);
    throw e;
  }
};

/**
 * Like apiFetch, but a 401 is not taken as the session's end: for requests
 * the API server proxies to a node (flows), whose 401 may be the node's own.
 */
export const proxyFetch: Fetcher = (path, init = {}) => send(path, init, getToken());

/** The user the API sees for `token` (or for no token: a client certificate). */
export async function reviewSelf(token: string | null): Promise<string> {
  const res = await send(
    SELF_REVIEW_PATH,
    {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
    },
    token,
  );
  const review = await res.json();
  return String(review?.status?.userInfo?.username ?? '');
}

/** A JSON merge patch (`application/merge-patch+json`) of the object at `path`. */
export async function mergePatch(path: string, patch: unknown): Promise<unknown> {
  const res = await apiFetch(path, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/merge-patch+json' },
    body: JSON.stringify(patch),
  });
  return res.json();
}

/**
 * Read a streamed body as text chunks until it ends. `onText` may return
 * false to stop reading (the stream is then cancelled).
 */
export async function readText(res: Response, onText: (text: string) => boolean | void): Promise<void> {
  if (!res.body) {
    const text = await res.text();
    if (text) onText(text);
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let stopped = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      if (text && onText(text) === false) {
        stopped = true;
        break;
      }
    }
    if (!stopped) {
      const rest = decoder.decode();
      if (rest) onText(rest);
    }
  } finally {
    // Stop the transfer if we left early (or `onText` threw).
    reader.cancel().catch(() => {});
  }
}

/** Splits a text stream into lines (`\n` or `\r\n`), keeping a partial last line. */
export class LineSplitter {
  private buffer = '';

  /** The complete lines in `chunk` (with what came before); blank lines are skipped. */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const parts = this.buffer.split('\n');
    this.buffer = parts.pop() ?? '';
    return parts.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  }

  /** The unterminated last line, if any. */
  end(): string[] {
    const rest = this.buffer.trim();
    this.buffer = '';
    return rest ? [rest] : [];
  }
}

/** Read a streamed body line by line; `onLine` may return false to stop. */
export async function readLines(res: Response, onLine: (line: string) => boolean | void): Promise<void> {
  const lines = new LineSplitter();
  let stopped = false;
  await readText(res, (text) => {
    for (const line of lines.push(text)) {
      if (onLine(line) === false) {
        stopped = true;
        return false;
      }
    }
    return true;
  });
  if (!stopped) for (const line of lines.end()) onLine(line);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}
