'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useEffect, useState } from 'react';
import { API_KEY_STORAGE, useTRPC } from '../_lib/trpc';

/** The top bar: where you are, what the server is, and (in keys mode) the API key prompt. */
export function Nav() {
  const trpc = useTRPC();
  const health = useQuery(trpc.system.health.queryOptions(undefined, { staleTime: 60_000 }));
  const [key, setKey] = useState<string | null>(null);
  useEffect(() => setKey(window.localStorage.getItem(API_KEY_STORAGE)), []);
  const needsKey = health.data?.auth === 'keys';
  return (
    <nav className="nav">
      <Link href="/" className="brand">Pedigree</Link>
      <Link href="/">Runs</Link>
      <Link href="/artifacts">Artifacts</Link>
      <span className="spacer" />
      {health.data && (
        <span className="muted small" title="storage · auth mode · last event position">
          {health.data.storage} · {health.data.auth} · #{health.data.position}
        </span>
      )}
      {health.error && <span className="error small">server unreachable: {health.error.message}</span>}
      {needsKey && (
        <form
          className="keyform"
          onSubmit={(e) => {
            e.preventDefault();
            const value = new FormData(e.currentTarget).get('key');
            if (typeof value === 'string' && value) {
              window.localStorage.setItem(API_KEY_STORAGE, value.trim());
              window.location.reload();
            }
          }}
        >
          <input name="key" type="password" placeholder={key ? 'API key set (replace)' : 'enter an API key'} aria-label="API key" />
          <button type="submit">Use key</button>
        </form>
      )}
    </nav>
  );
}
