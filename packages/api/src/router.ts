import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { artifactsRouter } from './routers/artifacts.ts';
import { eventsRouter } from './routers/events.ts';
import { lineageRouter } from './routers/lineage.ts';
import { metricsRouter } from './routers/metrics.ts';
import { projectsRouter } from './routers/projects.ts';
import { runsRouter } from './routers/runs.ts';
import { systemRouter } from './routers/system.ts';
import { createCallerFactory, router } from './trpc.ts';

export const appRouter = router({
  system: systemRouter,
  projects: projectsRouter,
  artifacts: artifactsRouter,
  runs: runsRouter,
  metrics: metricsRouter,
  events: eventsRouter,
  lineage: lineageRouter,
});

export type AppRouter = typeof appRouter;
/** Every procedure's input (`RouterInputs['runs']['create']`) and output: the only types a client needs. */
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;

export const createCaller = createCallerFactory(appRouter);
