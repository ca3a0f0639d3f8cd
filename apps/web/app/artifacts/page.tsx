import { Suspense } from 'react';
import { ArtifactsPage } from '../_components/ArtifactsPage';

export default function Page() {
  return (
    <Suspense>
      <ArtifactsPage />
    </Suspense>
  );
}
