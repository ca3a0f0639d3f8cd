'use client';

export function StatusBadge({ status }: { status: string }) {
  return <span className={`status status-${status}`}>{status}</span>;
}

/** Errors are shown, never a blank page. A refused key says where the dashboard takes one. */
export function ErrorBox({ error }: { error: { message: string; data?: { code?: string } | null } }) {
  const unauthorized = error.data?.code === 'UNAUTHORIZED';
  return (
    <div className="errorbox" role="alert">
      <b>Could not load:</b> {error.message}
      {unauthorized && <p className="small">In the dashboard, paste the key into the “API key” box at the top right.</p>}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p className="muted">Loading {what}…</p>;
}
