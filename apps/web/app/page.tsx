import { Suspense } from 'react';
import { RunsPage } from './_components/RunsPage';

export default function Home() {
  return (
    <Suspense>
      <RunsPage />
    </Suspense>
  );
}
