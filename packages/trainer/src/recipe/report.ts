import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Pedigree } from '@pedigree/client';
import { sha256 } from '../model/checkpoint.ts';
import { barChart, lineChart, type LineSeries } from './plots.ts';
import { TOY } from './presets.ts';
import type { RecipeResult } from './recipe.ts';
import { RECALL_CHANCE, resultsMarkdown } from './results.ts';

/**
 * The recipe's report on disk and in the store: results.md and its figures
 * (SVG), side by side in one directory, each registered as an artifact of
 * kind `report` (format `markdown` or `svg`) whose digest is the SHA-256 of
 * the file's bytes and whose `path` is where it was written. results.md
 * links each figure by its file name, which is also the figure artifact's
 * name: the markdown is the index of its figures.
 */

export interface ReportFile {
  /** The file name; for a figure, the relative link in results.md and the artifact's name. */
  name: string;
  /** Absolute. */
  path: string;
  format: 'markdown' | 'svg';
  /** `sha256:<64 hex>` of the bytes. */
  digest: string;
  bytes: number;
  title: string;
}

export interface WrittenReport {
  report: ReportFile;
  figures: ReportFile[];
}

export interface RecordedReport {
  reportArtifactId: string;
  /** In the order of WrittenReport.figures. */
  figureArtifactIds: string[];
}

const pctLabel = (v: number) => `${Number(v.toFixed(1))}%`;

/** Recall (queries asked in a shuffled order) against context length, one line per stage that measured it. */
export function recallFigure(result: RecipeResult): { title: string; svg: string } {
  const contexts = TOY.recallContexts.map((f) => f * TOY.pretrainContext);
  const stages = result.stages.filter((s) => s.evals.recall?.length);
  const series: LineSeries[] = stages.map((s) => ({
    name: s.name,
    points: contexts.map((c) => ({ x: c, y: s.evals.recall!.find((r) => r.contextLength === c)?.score ?? NaN })),
  }));
  const queries = [...new Set(stages.flatMap((s) => s.evals.recall!.map((r) => r.n)))];
  const chance = RECALL_CHANCE;
  const title = 'Recall against context length, every stage';
  const svg = lineChart({
    title,
    subtitle: `key–value recall, queries asked in a shuffled order${queries.length === 1 ? `; ${queries[0]} queries a point` : ''}`,
    xLabel: `context length (tokens; pretraining context ${TOY.pretrainContext})`,
    yLabel: 'recall (% exact)',
    series,
    xScale: 'log2',
    xTicks: contexts.map((c, i) => ({ value: c, label: `${c} (${TOY.recallContexts[i]}×)` })),
    yDomain: [0, 100],
    yFormat: pctLabel,
    dodge: 4, // stages that score the same stay visible side by side
    references: [
      { y: chance, label: `chance ${pctLabel(chance)}` },
      { x: TOY.pretrainContext, label: 'pretraining context' },
      { x: TOY.pretrainContext * TOY.contextFactor, label: 'midtraining context' },
    ],
  });
  return { title, svg };
}

/** Standard error of a pass rate (in percentage points) of `n` independent answers. */
export function passRateSE(score: number, n: number): number {
  const p = score / 100;
  return n > 0 ? 100 * Math.sqrt((p * (1 - p)) / n) : NaN;
}

/** The arithmetic pass rate after SFT and after PTS-DPO (the report's, and with an NLL term), greedy and sampled, with error bars at ±2 standard errors. */
export function passRateFigure(result: RecipeResult): { title: string; svg: string } {
  const by = (name: string) => result.stages.find((s) => s.name === name)?.evals;
  const [sft, dpo, rpo] = [by('sft'), by('dpo'), by('dpo-rpo')];
  const bar = (x: { score: number; n: number } | undefined) => (x ? { value: x.score, se: passRateSE(x.score, x.n) } : { value: NaN });
  const title = 'Arithmetic pass rate: SFT against PTS-DPO, without and with an NLL term';
  const n = (x: { n: number } | undefined) => (x ? String(x.n) : '—');
  const svg = barChart({
    title,
    subtitle: `error bars ±2 standard errors; ${n(sft?.arithmetic)} questions greedy, ${n(sft?.arithmeticSampled)} answers sampled`,
    yLabel: 'pass rate (%)',
    series: ['SFT', 'PTS-DPO', 'PTS-DPO + NLL (RPO)'],
    groups: [
      { label: 'greedy', values: [bar(sft?.arithmetic), bar(dpo?.arithmetic), bar(rpo?.arithmetic)] },
      { label: 'sampled at temperature 1', values: [bar(sft?.arithmeticSampled), bar(dpo?.arithmeticSampled), bar(rpo?.arithmeticSampled)] },
    ],
    yDomain: [0, 100],
    yFormat: pctLabel,
  });
  return { title, svg };
}

/** `results.md` → results-recall-by-context.svg, results-pass-rate.svg: beside it, named after it. */
export function figureFiles(reportFile: string): { recall: string; passRate: string } {
  const stem = path.basename(reportFile).replace(/\.[^.]*$/, '') || 'results';
  const dir = path.dirname(path.resolve(reportFile));
  return { recall: path.join(dir, `${stem}-recall-by-context.svg`), passRate: path.join(dir, `${stem}-pass-rate.svg`) };
}

/** Writes results.md to `file` (its directory made when missing) and its figures beside it. */
export async function writeReport(result: RecipeResult, file: string, opts: { date?: Date } = {}): Promise<WrittenReport> {
  const reportPath = path.resolve(file);
  await mkdir(path.dirname(reportPath), { recursive: true });
  const names = figureFiles(reportPath);
  const write = async (target: string, format: ReportFile['format'], title: string, text: string): Promise<ReportFile> => {
    const bytes = new TextEncoder().encode(text);
    await writeFile(target, bytes);
    return { name: path.basename(target), path: target, format, digest: sha256(bytes), bytes: bytes.byteLength, title };
  };
  const recall = recallFigure(result);
  const passRate = passRateFigure(result);
  const figures = [await write(names.recall, 'svg', recall.title, recall.svg), await write(names.passRate, 'svg', passRate.title, passRate.svg)];
  const markdown = resultsMarkdown(result, { date: opts.date, figures });
  const report = await write(reportPath, 'markdown', `The Phi-4 recipe at toy scale: results (${result.size})`, markdown);
  return { report, figures };
}

/** Registers the figures, then results.md, as `report` artifacts of the project (content-addressed: the same bytes twice are one artifact). */
export async function recordReport(pd: Pedigree, project: string, written: WrittenReport): Promise<RecordedReport> {
  const register = async (f: ReportFile) => (await pd.registerArtifact({ project, name: f.name, digest: f.digest, spec: { kind: 'report', format: f.format, path: f.path } })).artifactId;
  const figureArtifactIds: string[] = [];
  for (const f of written.figures) figureArtifactIds.push(await register(f));
  return { reportArtifactId: await register(written.report), figureArtifactIds };
}
