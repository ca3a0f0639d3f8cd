'use client';

export function StatusBadge({ status }: { status: string }) {
  return <span className={`status status-${status}`}>{status}</span>;
}

/** Errors are shown, never a blank page. */
export function ErrorBox({ error }: { error: { message: string } }) {
  return (
    <div className="errorbox" role="alert">
      <b>Could not load:</b> {error.message}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p className="muted">Loading {what}…</p>;
}
