import Link from 'next/link';

export default function NotFound() {
  return (
    <div className="empty">
      <h1>Not found</h1>
      <p>
        There is no page here. Go to <Link href="/">the runs</Link> or <Link href="/artifacts">the artifacts</Link>.
      </p>
    </div>
  );
}
