'use client';
import Link from 'next/link';
import { useEffect } from 'react';

/** Anything a page throws while rendering lands here: the error is shown, never a blank page. */
export default function PageError({ error, reset }: { error: Error & { digest?: string }; reset: () => void }) {
  useEffect(() => console.warn('page error:', error), [error]);
  return (
    <div className="errorbox" role="alert">
      <p>
        <b>This page failed:</b> {error.message || 'unknown error'}
        {error.digest && <span className="muted small"> (server log: {error.digest})</span>}
      </p>
      <p>
        <button onClick={reset}>Try again</button> or go back to <Link href="/">the runs</Link>.
      </p>
    </div>
  );
}
