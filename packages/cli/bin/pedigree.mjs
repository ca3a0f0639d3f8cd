#!/usr/bin/env node
// The packages ship TypeScript sources (no build step), so the command
// registers tsx's loader before importing its entry point.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
