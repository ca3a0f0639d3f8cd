import { RUN_KINDS } from '@pedigree/api';
import { Suspense } from 'react';
import { RunsPage } from './_components/RunsPage';

export default function Home() {
  return (
    <Suspense>
      <RunsPage kinds={RUN_KINDS} />
    </Suspense>
  );
}
