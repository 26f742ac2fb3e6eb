// The sign-in page: paste a bearer token; it is checked with a
// SelfSubjectReview before it is kept (in sessionStorage).

import { useRef, useState } from 'preact/hooks';
import { asApiError, reviewSelf, setToken } from '../api';

interface Props {
  /** Why the user is here (a rejected or expired token), if anything went wrong. */
  error?: string;
  onSignedIn: (user: string) => void;
}

export function Login({ error: initialError = '', onSignedIn }: Props) {
  // Uncontrolled: the token is read from the field when the form is sent.
  const field = useRef<HTMLTextAreaElement>(null);
  const [error, setError] = useState(initialError);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = (field.current?.value ?? '').trim();
    if (!t) {
      setError('Paste a bearer token.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      const user = await reviewSelf(t);
      setToken(t);
      onSignedIn(user);
    } catch (err) {
      setError(asApiError(err).message);
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form class="login-box" onSubmit={submit}>
        <h1>Sluice</h1>
        <p class="muted">
          Sign in with a bearer token, for example one made by <code>kubectl create token &lt;serviceaccount&gt;</code>.
          It is kept for this tab only.
        </p>
        <label for="token">Token</label>
        <textarea
          id="token"
          rows={5}
          spellcheck={false}
          autocomplete="off"
          ref={field}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void submit(e);
          }}
        />
        <button id="login" type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p id="login-error" class="error-text" role="alert">
          {error}
        </p>
      </form>
    </main>
  );
}
