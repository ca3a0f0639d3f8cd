import { Suspense } from 'react';
import { DiffPage } from '../_components/DiffPage';

export default function Page() {
  return (
    <Suspense>
      <DiffPage />
    </Suspense>
  );
}
