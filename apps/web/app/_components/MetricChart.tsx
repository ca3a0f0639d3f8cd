'use client';
import { keepPreviousData, useQueries } from '@tanstack/react-query';
import { useEffect, useMemo, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatNumber } from '../_lib/format';
import { foldUpdate, type LiveChart, type LivePoint } from '../_lib/live';
import { useTRPC } from '../_lib/trpc';

/** How many step ranges a chart asks for: the server returns each range's exact min, max and last value. */
const BUCKETS = 400;
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

/** At most this many buckets in a series: its points are drawn as dots (one point draws no line). */
const FEW_POINTS = 3;

export interface ChartSeries {
  runId: string;
  label: string;
  /** Added to the run's steps on the x axis (a later stage drawn after its ancestors, end to end). */
  offset?: number;
}

/** A running run's metric updates since the page opened (`runs.watch`), in position order. */
export interface LiveMetrics {
  runId: string;
  updates: { position: number; points: LivePoint[] }[];
}

export interface StepMarker {
  step: number;
  label: string;
  /** 'stage': a stage boundary (solid line, label at the bottom); default: a mid-run change (dashed). */
  kind?: 'change' | 'stage';
}

/**
 * One metric of one or more runs. Each run is drawn as its min–max band per
 * bucket plus its last value; selecting a range with the mouse re-queries
 * finer buckets for that range (so extremes stay exact at any zoom).
 */
export function MetricChart({ series, metricKey, markers = [], height = 220, live }: { series: ChartSeries[]; metricKey: string; markers?: StepMarker[]; height?: number; live?: LiveMetrics }) {
  const trpc = useTRPC();
  const [zoom, setZoom] = useState<{ from: number; to: number } | null>(null);
  // Zoom is in chart coordinates: each series asks for its own step range.
  const inputs = series.map((s) => {
    const off = s.offset ?? 0;
    return { buckets: BUCKETS, ...(zoom ? { fromStep: Math.max(0, zoom.from - off), toStep: zoom.to - off } : {}) };
  });
  const results = useQueries({
    queries: series.map((s, i) =>
      trpc.metrics.chart.queryOptions({ runId: s.runId, key: metricKey, ...inputs[i]! }, { placeholderData: keepPreviousData, enabled: !zoom || zoom.to - (s.offset ?? 0) >= 0 }),
    ),
  });

  // A live run's points since its chart was read are folded in here (no refetch); `stale`: a series they cannot be folded into.
  // Each series' fold is kept and taken up where it stopped, so a new update folds only its own points.
  const folds = useRef(new Map<number, { data: LiveChart; applied: number; last: LiveMetrics['updates'][number] | undefined; chart: LiveChart }>());
  const liveCount = live?.updates.length ?? 0;
  const { folded, stale } = useMemo(() => {
    const stale: number[] = [];
    const folded = results.map((r, i) => {
      if (!r.data) return [];
      if (!live || series[i]?.runId !== live.runId) return r.data.buckets;
      const held = folds.current.get(i);
      const resume = held && held.data === r.data && held.applied <= live.updates.length && live.updates[held.applied - 1] === held.last;
      let chart: LiveChart = resume ? held.chart : r.data;
      let applied = resume ? held.applied : 0;
      for (; applied < live.updates.length; applied++) {
        const u = live.updates[applied]!;
        const next = foldUpdate(chart, inputs[i]!, metricKey, u.position, u.points);
        if (next === 'refetch') {
          stale.push(i);
          break;
        }
        if (next !== 'unchanged') chart = next;
      }
      folds.current.set(i, { data: r.data, applied, last: live.updates[applied - 1], chart });
      return chart.buckets;
    });
    return { folded, stale };
    // keyed on when each query last updated and on the live updates seen: the query results are new objects on every render
  }, [JSON.stringify(results.map((r) => r.dataUpdatedAt)), series.map((s) => s.runId).join(), liveCount, live?.runId, zoom?.from, zoom?.to]);
  useEffect(() => {
    for (const i of stale) if (!results[i]?.isFetching) void results[i]?.refetch();
  }, [stale.join()]);

  const buckets = folded.map((bs, i) => {
    const off = series[i]?.offset ?? 0;
    if (zoom && zoom.to - off < 0) return [];
    return off ? bs.map((b) => ({ ...b, fromStep: b.fromStep + off, toStep: b.toStep + off, lastStep: b.lastStep + off })) : bs;
  });
  /** Where each series starts on the x axis (for tests and tooltips): its first bucket, offset included. */
  const starts = buckets.map((bs) => (bs.length ? String(bs[0]!.fromStep) : '')).join(',');
  const error = results.find((r) => r.error)?.error;
  const data = useMemo(() => {
    const tables: uPlot.AlignedData[] = buckets.map((bs) => [bs.map((b) => b.lastStep), bs.map((b) => b.min), bs.map((b) => b.max), bs.map((b) => b.last)]);
    if (tables.length === 0) return null;
    return tables.length === 1 ? tables[0]! : uPlot.join(tables);
    // keyed on the folded buckets (new when a query updates or live points arrive), the offsets and the zoom
  }, [folded, series.map((s) => s.offset ?? 0).join(), zoom?.to]);
  const points = buckets.reduce((n, bs) => n + bs.reduce((m, b) => m + b.count, 0), 0);
  const lastStep = Math.max(-1, ...buckets.flatMap((bs) => bs.map((b) => b.lastStep)));

  const box = useRef<HTMLDivElement>(null);
  const markersRef = useRef(markers);
  markersRef.current = markers;
  useEffect(() => {
    const el = box.current;
    if (!el || !data || data[0].length === 0) return;
    const ink = getComputedStyle(el).color;
    const grid = 'rgba(128,128,128,0.18)';
    const uSeries: uPlot.Series[] = [{ label: 'step' }];
    const bands: uPlot.Band[] = [];
    series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length]!;
      const base = uSeries.length;
      const prefix = series.length > 1 ? `${s.label} ` : '';
      uSeries.push(
        { label: `${prefix}min`, stroke: 'transparent', width: 0, points: { show: false }, spanGaps: true, value: (_u, v) => (v == null ? '—' : formatNumber(v)) },
        { label: `${prefix}max`, stroke: 'transparent', width: 0, points: { show: false }, spanGaps: true, value: (_u, v) => (v == null ? '—' : formatNumber(v)) },
        // a series of a few points (an eval/loss logged once at the end) has no line to draw: show its points
        { label: series.length > 1 ? s.label : 'last', stroke: color, width: 1.5, points: { show: (buckets[i]?.length ?? 0) <= FEW_POINTS, size: 7, fill: color }, spanGaps: true, value: (_u, v) => (v == null ? '—' : formatNumber(v)) },
      );
      bands.push({ series: [base + 1, base], fill: `${color}33` });
    });
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      series: uSeries,
      bands,
      legend: { show: true },
      scales: { x: { time: false } },
      axes: [
        { stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60, values: (_u, vals) => vals.map((v) => formatNumber(v)) },
      ],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 4) {
              const from = Math.max(0, Math.floor(u.posToVal(u.select.left, 'x')));
              const to = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x'));
              if (to > from) setZoom({ from, to });
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
        draw: [
          (u) => {
            // Mid-run hyperparameter changes (and stage boundaries) as dashed verticals.
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = '#f59e0b';
            ctx.fillStyle = ink;
            ctx.setLineDash([4, 4]);
            ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
            for (const m of markersRef.current) {
              const x = Math.round(u.valToPos(m.step, 'x', true));
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              const stage = m.kind === 'stage';
              ctx.strokeStyle = stage ? 'rgba(128,128,128,0.9)' : '#f59e0b';
              ctx.setLineDash(stage ? [] : [4, 4]);
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
              ctx.fillText(m.label, x + 4, u.bbox.top + (stage ? 12 : 26) * devicePixelRatio);
            }
            ctx.restore();
          },
        ],
      },
    };
    const plot = new uPlot(opts, data, el);
    // The legend lists what is drawn: the min/max helpers of each band stay out of it.
    el.querySelectorAll<HTMLElement>('.u-legend .u-series').forEach((row, i) => {
      if (i > 0 && (i - 1) % 3 !== 2) row.style.display = 'none';
    });
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 600, height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [data, series.map((s) => `${s.runId}${s.label}@${s.offset ?? 0}`).join(), height, markers.map((m) => `${m.step}${m.label}`).join()]);

  const loading = results.some((r) => r.isPending);
  return (
    <figure className="chart" data-metric={metricKey} data-series={series.length} data-starts={starts} data-points={points} data-last-step={lastStep} data-markers={markers.map((m) => m.step).join(',')}>
      <figcaption>
        <b>{metricKey}</b>
        {zoom ? (
          <>
            {' '}
            <span className="muted small">steps {zoom.from}–{zoom.to}</span> <button className="link" onClick={() => setZoom(null)}>reset zoom</button>
          </>
        ) : (
          <span className="muted small"> drag to zoom</span>
        )}
      </figcaption>
      {error && <p className="error small">{error.message}</p>}
      {!loading && data && data[0].length === 0 && <p className="muted small">No points in this range.</p>}
      <div ref={box} className="chart-canvas" />
    </figure>
  );
}
