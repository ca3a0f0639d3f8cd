import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

/**
 * The official OpenLineage 2-0-2 schema and facet schemas (spec/ of
 * github.com/OpenLineage/OpenLineage, Apache-2.0), read at test time from
 * ../shared/openlineage-spec/, a folder beside the repository, not in it
 * (`specUnavailable`: where it is missing these tests skip, under CI they fail),
 * with Pedigree's own facet schemas (docs/openlineage/facets/), in one strict
 * draft 2020-12 validator with formats checked. Each facet is checked against
 * its own facet schema, found by its key and where it sits (run, job, dataset,
 * input or output facets); a facet no standard schema declares is checked
 * against the base definition of its place (RunFacet, DatasetFacet, …) and,
 * when it is one of Pedigree's, against the schema its `_schemaURL` names.
 */
const root = path.resolve(import.meta.dirname, '../..');
export const SPEC_DIR = path.resolve(root, '../shared/openlineage-spec');
const OL_ID = 'https://openlineage.io/spec/2-0-2/OpenLineage.json';
const CUSTOM_DIR = path.join(root, 'docs/openlineage/facets');

/** null when the spec is there; else why the tests that need it skip (under CI: a failure). */
export function specUnavailable(): string | null {
  if (existsSync(path.join(SPEC_DIR, 'OpenLineage.json'))) return null;
  const why = `no OpenLineage spec at ${SPEC_DIR}`;
  if (process.env.CI) throw new Error(`CI must run the OpenLineage schema tests, but ${why}`);
  console.warn(`[skipping OpenLineage schema tests] ${why}`);
  return why;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
const jsonFiles = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? jsonFiles(p) : f.endsWith('.json') ? [p] : [];
  });

/** Where a facet sits in an event, and the OpenLineage definition every facet there extends. */
const PLACES = {
  run: 'RunFacet',
  job: 'JobFacet',
  dataset: 'DatasetFacet',
  input: 'InputDatasetFacet',
  output: 'OutputDatasetFacet',
} as const;
type Place = keyof typeof PLACES;

export interface OpenLineageValidator {
  /** Problems with one event (empty: valid): the event schema, then each facet's. */
  problems(event: unknown): string[];
  /** Facets checked so far, by schema ($id or base definition): what the tests covered. */
  readonly checkedWith: Map<string, number>;
}

export function openLineageValidator(): OpenLineageValidator {
  // Strict: unknown formats and keywords are errors (the spec's `example` annotations are declared as such).
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false, validateFormats: true });
  addFormats(ajv);
  ajv.addKeyword({ keyword: 'example', schemaType: ['string', 'number', 'boolean', 'object', 'array'] });
  ajv.addSchema(readJson(path.join(SPEC_DIR, 'OpenLineage.json')));
  const facetFiles = readdirSync(path.join(SPEC_DIR, 'facets')).map((f) => readJson(path.join(SPEC_DIR, 'facets', f)));
  for (const s of facetFiles) ajv.addSchema(s);
  for (const f of jsonFiles(CUSTOM_DIR)) ajv.addSchema(readJson(f));

  // key → place → the facet schema ($id) that declares it there, from each file's top-level properties.
  const standard = new Map<string, Map<Place, string>>();
  for (const s of facetFiles) {
    const defs = s.$defs as Record<string, unknown>;
    for (const [key, prop] of Object.entries(s.properties as Record<string, unknown>)) {
      const refs = JSON.stringify(prop).match(/#\/\$defs\/\w+/g) ?? [];
      for (const ref of refs) {
        const def = JSON.stringify(defs[ref.slice('#/$defs/'.length)] ?? {});
        for (const [place, base] of Object.entries(PLACES) as [Place, string][]) {
          if (!def.includes(`${OL_ID}#/$defs/${base}"`)) continue;
          const byPlace = standard.get(key) ?? new Map<Place, string>();
          byPlace.set(place, s.$id as string);
          standard.set(key, byPlace);
        }
      }
    }
  }

  const compiled = new Map<string, ValidateFunction>();
  const validator = (ref: string) => {
    let v = compiled.get(ref);
    if (!v) {
      v = ajv.getSchema(ref);
      if (!v) throw new Error(`no schema ${ref}`);
      compiled.set(ref, v);
    }
    return v;
  };
  const checkedWith = new Map<string, number>();
  const check = (ref: string, value: unknown, where: string, out: string[]) => {
    checkedWith.set(ref, (checkedWith.get(ref) ?? 0) + 1);
    const v = validator(ref);
    if (!v(value)) out.push(`${where} (against ${ref}): ${ajv.errorsText(v.errors, { dataVar: where })}`);
  };

  const checkFacets = (facets: unknown, place: Place, where: string, out: string[]) => {
    if (!facets || typeof facets !== 'object') return;
    for (const [key, value] of Object.entries(facets as Record<string, unknown>)) {
      const schemaId = standard.get(key)?.get(place);
      if (schemaId) {
        check(schemaId, { [key]: value }, `${where}`, out);
        continue;
      }
      check(`${OL_ID}#/$defs/${PLACES[place]}`, value, `${where}.${key}`, out);
      const url = (value as { _schemaURL?: unknown })._schemaURL;
      if (typeof url === 'string' && url.includes('/pedigree-ml/pedigree/')) check(url, value, `${where}.${key}`, out);
    }
  };

  return {
    checkedWith,
    problems(event) {
      const out: string[] = [];
      check(OL_ID, event, 'event', out);
      const e = event as { run?: { facets?: unknown }; job?: { facets?: unknown }; inputs?: unknown[]; outputs?: unknown[] };
      checkFacets(e.run?.facets, 'run', 'run.facets', out);
      checkFacets(e.job?.facets, 'job', 'job.facets', out);
      for (const [list, place] of [
        ['inputs', 'input'],
        ['outputs', 'output'],
      ] as const) {
        for (const [i, d] of (Array.isArray(e[list]) ? e[list] : []).entries()) {
          const ds = d as { facets?: unknown; inputFacets?: unknown; outputFacets?: unknown };
          checkFacets(ds.facets, 'dataset', `${list}[${i}].facets`, out);
          checkFacets(place === 'input' ? ds.inputFacets : ds.outputFacets, place, `${list}[${i}].${place}Facets`, out);
        }
      }
      return out;
    },
  };
}

/** Every JSON file of the spec's examples/ and tests/ folders, by path relative to the spec folder. */
export function specExamples(): { name: string; event: unknown }[] {
  return ['examples', 'tests'].flatMap((dir) =>
    jsonFiles(path.join(SPEC_DIR, dir))
      .sort()
      .map((file) => ({ name: path.relative(SPEC_DIR, file), event: JSON.parse(readFileSync(file, 'utf8')) as unknown })),
  );
}
