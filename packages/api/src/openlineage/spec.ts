import apiPackage from '../../package.json' with { type: 'json' };

/**
 * The OpenLineage vocabulary Pedigree speaks (spec 2-0-2), in one place: the
 * event types, the schema URLs of the standard facets it writes (each the
 * `$id` of the facet schema it was checked against, test/openlineage.export.test.ts),
 * and its own facets. Custom facets are named `pedigree_*`, as OpenLineage asks
 * of producers' own facets, and each has a JSON Schema in this repository
 * (docs/openlineage/facets/), whose URL is its `_schemaURL`. A facet's shape
 * never changes under a published URL: a new shape gets a new version folder.
 */

export const OPENLINEAGE_EVENT_TYPES = ['START', 'RUNNING', 'COMPLETE', 'ABORT', 'FAIL', 'OTHER'] as const;
export type OpenLineageEventType = (typeof OPENLINEAGE_EVENT_TYPES)[number];

export const RUN_EVENT_SCHEMA_URL = 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent';

/** Names this Pedigree, at its version (`producer` of every event, `_producer` of every facet). */
export const PEDIGREE_VERSION: string = apiPackage.version;
export const PRODUCER = `https://github.com/pedigree-ml/pedigree/tree/v${PEDIGREE_VERSION}`;

/** The standard facets Pedigree writes: key → schema URL (the facet schema's `$id` and definition). */
export const STANDARD_FACETS = {
  parent: 'https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet',
  errorMessage: 'https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet',
  version: 'https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet',
  datasetType: 'https://openlineage.io/spec/facets/1-0-1/DatasetTypeDatasetFacet.json#/$defs/DatasetTypeDatasetFacet',
  jobType: 'https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet',
} as const;

/** Where Pedigree's own facet schemas are published: docs/openlineage/facets/ of the repository, one folder per version. */
export const CUSTOM_FACET_BASE = 'https://raw.githubusercontent.com/pedigree-ml/pedigree/main/docs/openlineage/facets/1-0-0/';

/** Pedigree's facets: key → schema URL. Where they go and what they hold: docs/openlineage.md. */
export const CUSTOM_FACETS = {
  /** Run facet: the run as Pedigree knows it (its id, kind, code version, environment, tags, the checkpoint it was forked from). */
  pedigree_run: `${CUSTOM_FACET_BASE}PedigreeRunFacet.json#/$defs/PedigreeRunFacet`,
  /** Run facet: hyperparameters (final values) and their mid-run changes. */
  pedigree_hyperparameters: `${CUSTOM_FACET_BASE}PedigreeHyperparametersRunFacet.json#/$defs/PedigreeHyperparametersRunFacet`,
  /** Run facet: eval scores. */
  pedigree_evals: `${CUSTOM_FACET_BASE}PedigreeEvalsRunFacet.json#/$defs/PedigreeEvalsRunFacet`,
  /** Dataset facet: the artifact behind a dataset (id, kind, digest, spec). */
  pedigree_artifact: `${CUSTOM_FACET_BASE}PedigreeArtifactDatasetFacet.json#/$defs/PedigreeArtifactDatasetFacet`,
  /** Dataset facet on a data mix: its components with weights and filters. */
  pedigree_datamix: `${CUSTOM_FACET_BASE}PedigreeDatamixDatasetFacet.json#/$defs/PedigreeDatamixDatasetFacet`,
  /** Input facet: the roles the run used the dataset in. */
  pedigree_usage_input: `${CUSTOM_FACET_BASE}PedigreeUsageDatasetFacet.json#/$defs/PedigreeUsageInputDatasetFacet`,
  /** Output facet: the roles the run produced the dataset in. */
  pedigree_usage_output: `${CUSTOM_FACET_BASE}PedigreeUsageDatasetFacet.json#/$defs/PedigreeUsageOutputDatasetFacet`,
} as const;

/** The key both usage facets go under (in `inputFacets` or `outputFacets`). */
export const USAGE_FACET_KEY = 'pedigree_usage';

/** What every facet starts with. */
export function facet<T extends object>(schemaURL: string, fields: T): { _producer: string; _schemaURL: string } & T {
  return { _producer: PRODUCER, _schemaURL: schemaURL, ...fields };
}
