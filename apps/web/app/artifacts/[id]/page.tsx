import { ArtifactPage } from '../../_components/ArtifactPage';

export default async function Page({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  return <ArtifactPage artifactId={id} />;
}
