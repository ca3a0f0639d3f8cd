import { invalid } from './errors.ts';

/**
 * MLflow's search grammar, as clients send it (mlflow/utils/search_utils.py):
 * clauses joined by AND, each `<entity>.<key> <comparator> <value>`, e.g.
 *   metrics.loss < 0.5 and params.lr = '0.001' and tags.`mlflow.parentRunId` = 'abc'
 *   attributes.status = 'FAILED' and attributes.run_name LIKE 'pre%'
 * Keys may be quoted with backticks or double quotes; `tags.mlflow.parentRunId`
 * (dots in the key) works unquoted too. OR is not part of MLflow's grammar.
 */
export type Entity = 'metric' | 'param' | 'tag' | 'attribute' | 'dataset';
export type Comparator = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'LIKE' | 'ILIKE' | 'IN' | 'NOT IN' | 'IS NULL' | 'IS NOT NULL';
export type Value = string | number | (string | number)[] | null;

export interface Clause {
  entity: Entity;
  key: string;
  comparator: Comparator;
  value: Value;
}

const ENTITIES: Record<string, Entity> = {
  metric: 'metric',
  metrics: 'metric',
  param: 'param',
  params: 'param',
  parameter: 'param',
  parameters: 'param',
  tag: 'tag',
  tags: 'tag',
  attribute: 'attribute',
  attributes: 'attribute',
  attr: 'attribute',
  run: 'attribute',
  dataset: 'dataset',
  datasets: 'dataset',
};

type Token = { kind: 'word' | 'string' | 'quotedKey' | 'number' | 'op' | 'punct'; text: string; value?: string | number };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= input.length) throw invalid(`unterminated ${c} in ${JSON.stringify(input)}`);
        const d = input[j]!;
        if (d === '\\' && j + 1 < input.length) {
          text += input[j + 1];
          j += 2;
          continue;
        }
        if (d === c) {
          if (input[j + 1] === c) {
            text += c;
            j += 2;
            continue;
          }
          break;
        }
        text += d;
        j++;
      }
      // A double-quoted or backticked part right after `entity.` is a key; a quoted value otherwise.
      const prev = tokens.at(-1);
      if (prev?.kind === 'word' && prev.text.endsWith('.') && (c === '`' || c === '"' || c === "'")) {
        prev.text += text;
        prev.kind = 'quotedKey';
      } else tokens.push({ kind: c === '`' ? 'quotedKey' : 'string', text, value: text });
      i = j + 1;
      continue;
    }
    const op = /^(!=|<>|<=|>=|=|<|>)/.exec(input.slice(i));
    if (op) {
      tokens.push({ kind: 'op', text: op[1] === '<>' ? '!=' : op[1]! });
      i += op[1]!.length;
      continue;
    }
    if (c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: 'punct', text: c });
      i++;
      continue;
    }
    const num = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(?![\w.])/.exec(input.slice(i));
    if (num) {
      tokens.push({ kind: 'number', text: num[0], value: Number(num[0]) });
      i += num[0].length;
      continue;
    }
    const word = /^[\w.\-/:@]+/.exec(input.slice(i));
    if (word) {
      tokens.push({ kind: 'word', text: word[0] });
      i += word[0].length;
      continue;
    }
    throw invalid(`unexpected ${JSON.stringify(c)} at position ${i} in filter ${JSON.stringify(input)}`);
  }
  return tokens;
}

/** Parses a filter string into clauses (AND-ed). `defaultEntity` takes identifiers without a prefix (`name` for experiments). */
export function parseFilter(filter: string | undefined, opts: { defaultEntity?: Entity } = {}): Clause[] {
  if (!filter || !filter.trim()) return [];
  const tokens = tokenize(filter);
  const clauses: Clause[] = [];
  let i = 0;
  const peek = () => tokens[i];
  const bad = (what: string) => invalid(`invalid filter ${JSON.stringify(filter)}: ${what}`);
  while (i < tokens.length) {
    const ident = tokens[i++]!;
    if (ident.kind !== 'word' && ident.kind !== 'quotedKey') throw bad(`expected an identifier such as metrics.loss, got ${JSON.stringify(ident.text)}`);
    const dot = ident.text.indexOf('.');
    let entity: Entity;
    let key: string;
    const prefix = dot > 0 ? ENTITIES[ident.text.slice(0, dot).toLowerCase()] : undefined;
    if (prefix) {
      entity = prefix;
      key = ident.text.slice(dot + 1);
    } else {
      entity = opts.defaultEntity ?? 'attribute';
      key = ident.text;
    }
    if (!key) throw bad(`no key after ${JSON.stringify(ident.text)}`);
    // Comparator
    const t = tokens[i++];
    if (!t) throw bad(`no comparator after ${ident.text}`);
    let comparator: Comparator;
    const upper = t.text.toUpperCase();
    if (t.kind === 'op') comparator = t.text as Comparator;
    else if (t.kind === 'word' && (upper === 'LIKE' || upper === 'ILIKE' || upper === 'IN')) comparator = upper as Comparator;
    else if (t.kind === 'word' && upper === 'NOT' && peek()?.text.toUpperCase() === 'IN') {
      i++;
      comparator = 'NOT IN';
    } else if (t.kind === 'word' && upper === 'IS') {
      const n = tokens[i++];
      if (n?.text.toUpperCase() === 'NULL') comparator = 'IS NULL';
      else if (n?.text.toUpperCase() === 'NOT' && tokens[i]?.text.toUpperCase() === 'NULL') {
        i++;
        comparator = 'IS NOT NULL';
      } else throw bad('expected IS NULL or IS NOT NULL');
    } else throw bad(`expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL) after ${ident.text}, got ${JSON.stringify(t.text)}`);
    // Value
    let value: Value = null;
    if (comparator === 'IN' || comparator === 'NOT IN') {
      if (tokens[i++]?.text !== '(') throw bad(`${comparator} needs a list in parentheses`);
      const list: (string | number)[] = [];
      for (;;) {
        const v = tokens[i++];
        if (!v || (v.kind !== 'string' && v.kind !== 'number')) throw bad(`${comparator} lists hold quoted strings or numbers`);
        list.push(v.value!);
        const sep = tokens[i++];
        if (sep?.text === ')') break;
        if (sep?.text !== ',') throw bad(`expected , or ) in the ${comparator} list`);
      }
      value = list;
    } else if (comparator !== 'IS NULL' && comparator !== 'IS NOT NULL') {
      const v = tokens[i++];
      if (!v || (v.kind !== 'string' && v.kind !== 'number')) throw bad(`expected a value after ${ident.text} ${comparator}`);
      value = v.value!;
    }
    check(entity, key, comparator, value, bad);
    clauses.push({ entity, key, comparator, value });
    const sep = tokens[i];
    if (!sep) break;
    if (sep.kind === 'word' && sep.text.toUpperCase() === 'AND') {
      i++;
      if (i >= tokens.length) throw bad('nothing after AND');
      continue;
    }
    if (sep.kind === 'word' && sep.text.toUpperCase() === 'OR') throw bad('OR is not supported (MLflow filters join clauses with AND)');
    throw bad(`expected AND, got ${JSON.stringify(sep.text)}`);
  }
  return clauses;
}

const NUMERIC: Comparator[] = ['=', '!=', '<', '<=', '>', '>='];

function check(entity: Entity, key: string, comparator: Comparator, value: Value, bad: (what: string) => Error): void {
  if (entity === 'metric') {
    if (!NUMERIC.includes(comparator)) throw bad(`metrics compare with =, !=, <, <=, >, >= (got ${comparator})`);
    if (typeof value !== 'number') throw bad(`metrics.${key} compares with a number, got ${JSON.stringify(value)}`);
  } else if (entity === 'param' || entity === 'tag' || entity === 'dataset') {
    if (['<', '<=', '>', '>='].includes(comparator)) throw bad(`${entity}s compare as strings: =, !=, LIKE, ILIKE, IN, NOT IN, IS NULL (got ${comparator})`);
    if (typeof value === 'number') throw bad(`${entity}s.${key} compares with a quoted string, got ${value}`);
  }
}

/** What a clause is evaluated against: one run or one experiment. */
export interface Searchable {
  attribute(key: string): string | number | null | undefined;
  metric?(key: string): number | undefined;
  param?(key: string): string | undefined;
  tag(key: string): string | undefined;
  datasets?(): { name: string; digest: string; context?: string }[];
}

function likeRegex(pattern: string, insensitive: boolean): RegExp {
  let re = '';
  for (const ch of pattern) re += ch === '%' ? '.*' : ch === '_' ? '.' : ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${re}$`, insensitive ? 'is' : 's');
}

function compare(actual: string | number | null | undefined, c: Clause): boolean {
  if (c.comparator === 'IS NULL') return actual === undefined || actual === null;
  if (c.comparator === 'IS NOT NULL') return actual !== undefined && actual !== null;
  if (actual === undefined || actual === null) return false;
  const v = c.value;
  switch (c.comparator) {
    case '=':
      return typeof actual === 'number' ? actual === Number(v) : actual === String(v);
    case '!=':
      return typeof actual === 'number' ? actual !== Number(v) : actual !== String(v);
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const a = Number(actual);
      const b = Number(v);
      if (Number.isNaN(b)) throw invalid(`${c.entity}s.${c.key} ${c.comparator} needs a number, got ${JSON.stringify(v)}`);
      return c.comparator === '<' ? a < b : c.comparator === '<=' ? a <= b : c.comparator === '>' ? a > b : a >= b;
    }
    case 'LIKE':
    case 'ILIKE':
      return likeRegex(String(v), c.comparator === 'ILIKE').test(String(actual));
    case 'IN':
      return (v as (string | number)[]).some((x) => String(x) === String(actual));
    case 'NOT IN':
      return !(v as (string | number)[]).some((x) => String(x) === String(actual));
    default: {
      const never: never = c.comparator;
      throw new Error(`comparator ${String(never)}`);
    }
  }
}

export function matches(item: Searchable, clauses: readonly Clause[]): boolean {
  return clauses.every((c) => {
    switch (c.entity) {
      case 'metric':
        return compare(item.metric?.(c.key), c);
      case 'param':
        return compare(item.param?.(c.key), c);
      case 'tag':
        return compare(item.tag(c.key), c);
      case 'attribute':
        return compare(item.attribute(c.key), c);
      case 'dataset': {
        const field = c.key === 'name' || c.key === 'digest' || c.key === 'context' ? c.key : null;
        if (!field) throw invalid(`datasets.${c.key}: datasets filter on name, digest or context`);
        return (item.datasets?.() ?? []).some((d) => compare(d[field], c));
      }
      default: {
        const never: never = c.entity;
        throw new Error(`entity ${String(never)}`);
      }
    }
  });
}

export interface OrderBy {
  entity: Entity;
  key: string;
  ascending: boolean;
}

/** `metrics.loss DESC`, `attributes.start_time`, `params.lr ASC`. */
export function parseOrderBy(items: readonly string[] | undefined, opts: { defaultEntity?: Entity } = {}): OrderBy[] {
  return (items ?? []).map((raw) => {
    const m = /^\s*(.+?)(?:\s+(ASC|DESC))?\s*$/i.exec(raw);
    if (!m) throw invalid(`invalid order_by clause ${JSON.stringify(raw)}`);
    let ident = m[1]!.trim();
    const dot = ident.indexOf('.');
    let entity: Entity = opts.defaultEntity ?? 'attribute';
    if (dot > 0 && ENTITIES[ident.slice(0, dot).toLowerCase()]) {
      entity = ENTITIES[ident.slice(0, dot).toLowerCase()]!;
      ident = ident.slice(dot + 1);
    }
    const key = ident.replace(/^[`"](.*)[`"]$/, '$1');
    if (!key) throw invalid(`invalid order_by clause ${JSON.stringify(raw)}`);
    if (entity === 'dataset') throw invalid(`cannot order by datasets (${JSON.stringify(raw)})`);
    return { entity, key, ascending: (m[2] ?? 'ASC').toUpperCase() === 'ASC' };
  });
}

function sortValue(item: Searchable, o: OrderBy): string | number | undefined {
  const v = o.entity === 'metric' ? item.metric?.(o.key) : o.entity === 'param' ? item.param?.(o.key) : o.entity === 'tag' ? item.tag(o.key) : item.attribute(o.key);
  return v === null || (typeof v === 'number' && Number.isNaN(v)) ? undefined : v;
}

/** Sorts by the clauses, then by `tiebreak`; items lacking a value sort last either way (as MLflow's SQL store does). */
export function sortBy<T extends Searchable>(items: T[], order: readonly OrderBy[], tiebreak: (a: T, b: T) => number): T[] {
  return items.sort((a, b) => {
    for (const o of order) {
      const x = sortValue(a, o);
      const y = sortValue(b, o);
      if (x === undefined && y === undefined) continue;
      if (x === undefined) return 1;
      if (y === undefined) return -1;
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x) < String(y) ? -1 : String(x) > String(y) ? 1 : 0;
      if (c !== 0) return o.ascending ? c : -c;
    }
    return tiebreak(a, b);
  });
}

/** Opaque page tokens: where the next page starts. */
export function encodePageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64');
}

export function decodePageToken(token: string | undefined): number {
  if (!token) return 0;
  try {
    const { offset } = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { offset?: unknown };
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) return offset;
  } catch {
    // fall through
  }
  throw invalid(`invalid page_token ${JSON.stringify(token)}`);
}
