import { ARTIFACT_KINDS } from '@pedigree/api';
import { Suspense } from 'react';
import { ArtifactsPage } from '../_components/ArtifactsPage';

// Files (what runs upload through MLflow) are listed with their runs, not here.
const KINDS = ARTIFACT_KINDS.filter((k) => k !== 'file');

export default function Page() {
  return (
    <Suspense>
      <ArtifactsPage allKinds={KINDS} />
    </Suspense>
  );
}
