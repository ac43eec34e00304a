import { _, Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { LRUCache } from 'lru-cache';
import { RE2JS } from 're2js';
import { badInput, StatehouseError } from './errors.js';

/**
 * What validating one value against a tenant's schema may cost, so that no schema makes a write
 * stall the gateway (issue 14). A step is one subschema applied to one part of the value, weighted
 * by the subschema's own size (an `enum` of 1,000 values weighs 1,001); a value of n parts may take
 * `steps + stepsPerPart × n` of them. Patterns run on RE2, in time linear in the text, at a cost per
 * character that grows with the pattern: the characters tested times the pattern's instructions
 * (about its length), over one value, may come to at most `patternWork`.
 */
export const SCHEMA_WORK = { steps: 20_000, stepsPerPart: 4, patternWork: 100_000 } as const;

/**
 * The most subschemas (objects where JSON Schema expects a schema) a tenant's schema may have:
 * compiling costs about a tenth of a millisecond each, on every gateway, before its first write.
 */
export const MAX_SUBSCHEMAS = 500;

/** A value whose check passed SCHEMA_WORK: refused, as it cannot be checked in bounded time. */
class TooMuchWork extends Error {}

/** The validation in progress (validation is synchronous: one at a time), and the patterns it compiled. */
const work = { steps: 0, maxSteps: 0, pattern: 0, compiled: [] as LinearPattern[] };

/** A pattern RE2 cannot run, and why: at schema creation, BAD_USER_INPUT naming the field. */
class UnsupportedPattern extends Error {}

/**
 * What RE2 lacks, found before RE2 sees the pattern: some of it would otherwise be misread
 * (`\k<name>` becomes a literal `k<name>`) or refused with a misleading message.
 */
function unsupportedIn(pattern: string): string | null {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    const next = pattern[i + 1];
    if (char === '\\') {
      if (next !== undefined && /[1-9]/.test(next)) return `a backreference (\\${next})`;
      if (next === 'k' && pattern[i + 2] === '<') return 'a named backreference (\\k<…>)';
      i++;
    } else if (inClass) {
      if (char === ']') inClass = false;
    } else if (char === '[') {
      inClass = true;
    } else if (char === '(' && next === '?') {
      const kind = pattern.slice(i + 2, i + 4);
      if (kind.startsWith('=') || kind.startsWith('!')) return `a lookahead (?${kind[0]}…)`;
      if (kind === '<=' || kind === '<!') return `a lookbehind (?${kind}…)`;
    }
  }
  return null;
}

/** RE2's form of a pattern and its size in instructions; throws UnsupportedPattern saying why it cannot be run. */
function translated(pattern: string): { source: string; instructions: number } {
  const unsupported = unsupportedIn(pattern);
  if (unsupported) throw new UnsupportedPattern(`the pattern ${JSON.stringify(pattern)} uses ${unsupported}`);
  try {
    const source = RE2JS.translateRegExp(pattern);
    return { source, instructions: RE2JS.compile(source).programSize() };
  } catch (error) {
    throw new UnsupportedPattern(`the pattern ${JSON.stringify(pattern)} cannot be run: ${(error as Error).message}`);
  }
}

/**
 * A schema's pattern as ajv uses it (`test`). It is compiled for each validation that tests it and
 * dropped after: RE2's lazily built automaton may grow to megabytes, which a pattern kept with its
 * cached schema would hold for good.
 */
class LinearPattern {
  private compiled: RE2JS | undefined;

  constructor(
    private readonly re2: { source: string; instructions: number },
    /** ajv shares the patterns of its schemas by this text. */
    private readonly text: string,
  ) {}

  toString(): string {
    return this.text;
  }

  test(input: string): boolean {
    work.pattern += input.length * this.re2.instructions;
    if (work.pattern > SCHEMA_WORK.patternWork) throw new TooMuchWork("its text takes too long to match the schema's patterns");
    if (!this.compiled) {
      this.compiled = RE2JS.compile(this.re2.source);
      work.compiled.push(this);
    }
    return this.compiled.test(input);
  }

  release(): void {
    this.compiled = undefined;
  }
}

/** ajv's RegExpEngine on RE2: every pattern of a schema (pattern, patternProperties, propertyNames) runs in linear time. */
const linearRegExp = Object.assign((pattern: string, flags: string) => new LinearPattern(translated(pattern), `/${pattern}/${flags}`), {
  code: 'linearRegExp',
});

/** The keyword added to every subschema before compiling: counts the steps of a validation. */
const STEP = 'x-statehouse-step';

/** Where JSON Schema (2020-12, and the older keywords ajv still reads) holds subschemas. */
const ONE_SUBSCHEMA = [
  'additionalItems',
  'additionalProperties',
  'contains',
  'else',
  'if',
  'items',
  'not',
  'propertyNames',
  'then',
  'unevaluatedItems',
  'unevaluatedProperties',
];
const SUBSCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf', 'prefixItems', 'items'];
const SUBSCHEMA_MAPS = ['$defs', 'definitions', 'dependentSchemas', 'dependencies', 'patternProperties', 'properties'];

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The parts of a JSON value: itself, and those of each item and property. */
function partsOf(value: unknown): number {
  let parts = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const next = pending.pop();
    parts++;
    if (Array.isArray(next)) for (const item of next as unknown[]) pending.push(item);
    else if (isObject(next)) for (const key in next) pending.push(next[key]);
  }
  return parts;
}

/** Keywords whose work, each time their subschema is applied, grows with their own size. */
const SIZED = ['const', 'dependentRequired', 'dependentSchemas', 'enum', 'patternProperties', 'properties', 'required'];

/**
 * A copy of `schema` whose every subschema counts its steps, weighted by its own size: the work
 * ajv does each time it applies it (each enum value, property or required name). Throws once it
 * passes MAX_SUBSCHEMAS.
 */
function withSteps(schema: unknown, counted = { subschemas: 0 }): unknown {
  if (!isObject(schema)) return schema;
  if (++counted.subschemas > MAX_SUBSCHEMAS) throw new TooLarge();
  const copy: Record<string, unknown> = {};
  let weight = 1;
  for (const [keyword, value] of Object.entries(schema)) {
    if (SIZED.includes(keyword)) weight += partsOf(value);
    if (ONE_SUBSCHEMA.includes(keyword) && !Array.isArray(value)) copy[keyword] = withSteps(value, counted);
    else if (SUBSCHEMA_LISTS.includes(keyword) && Array.isArray(value)) copy[keyword] = value.map((inner) => withSteps(inner, counted));
    else if (SUBSCHEMA_MAPS.includes(keyword) && isObject(value)) {
      copy[keyword] = Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, withSteps(inner, counted)]));
    } else copy[keyword] = value;
  }
  copy[STEP] = weight;
  return copy;
}

class TooLarge extends Error {}

/** JSON text with the keys of every object sorted: equal JSON values (as uniqueItems means it) have equal text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * uniqueItems in linear time: ajv compares objects and arrays pair by pair, which took seconds
 * for 10,000 objects.
 */
function uniqueItems(unique: boolean, items: unknown[]): boolean {
  if (!unique) return true;
  const seen = new Map<string, number>();
  for (const [index, item] of items.entries()) {
    const text = canonical(item);
    const earlier = seen.get(text);
    if (earlier !== undefined) {
      const error: Partial<ErrorObject> = {
        keyword: 'uniqueItems',
        message: `must NOT have duplicate items (items ## ${earlier} and ${index} are identical)`,
        params: { i: index, j: earlier },
      };
      (uniqueItems as unknown as { errors: Partial<ErrorObject>[] }).errors = [error];
      return false;
    }
    seen.set(text, index);
  }
  return true;
}

const ajv = new Ajv2020({ allErrors: false, strict: false, validateFormats: false, code: { regExp: linearRegExp } });
ajv.removeKeyword('uniqueItems');
ajv.addKeyword({ keyword: 'uniqueItems', type: 'array', schemaType: 'boolean', errors: true, validate: uniqueItems });
function countSteps(weight: number): void {
  work.steps += weight;
  if (work.steps > work.maxSteps) throw new TooMuchWork('checking it against the schema takes too many steps');
}
// First in every subschema, before anything that applies others (a failing one returns early).
// Generated inline (a call, no error handling of its own): it adds little to compiling or running a schema.
ajv.addKeyword({
  keyword: STEP,
  schemaType: 'number',
  before: '$dynamicAnchor',
  code: (cxt) => {
    cxt.gen.code(_`${cxt.gen.scopeValue('func', { ref: countSteps })}(${cxt.schema as number})`);
  },
});

/** Compiled validators by schema text: each namespace schema is compiled once, not per write. */
const compiled = new LRUCache<string, ValidateFunction>({ max: 1_000 });

function validatorFor(schema: unknown, field: string): ValidateFunction {
  const text = JSON.stringify(schema);
  let validate = compiled.get(text);
  if (!validate) {
    if (typeof schema !== 'object' && typeof schema !== 'boolean') throw badInput(field, `${field} must be a JSON Schema object`);
    try {
      validate = ajv.compile(withSteps(schema) as object);
    } catch (error) {
      if (error instanceof TooLarge) throw badInput(field, `${field} has more than ${MAX_SUBSCHEMAS} subschemas`);
      if (error instanceof UnsupportedPattern) {
        throw badInput(
          field,
          `${field} cannot be used: ${error.message} (patterns run on RE2, in linear time: no backreferences or lookaround)`,
        );
      }
      throw badInput(field, `${field} is not a valid JSON Schema: ${(error as Error).message}`);
    }
    compiled.set(text, validate);
  }
  return validate;
}

/** Rejects a schema that is not valid JSON Schema draft 2020-12, or uses a pattern RE2 cannot run. */
export function checkSchema(schema: unknown, field = 'schema'): void {
  validatorFor(schema, field);
}

/** VALIDATION_FAILED with the JSON pointer of the first offending part and why. */
export function validateValue(schema: unknown, value: unknown): void {
  const validate = validatorFor(schema, 'schema');
  work.steps = 0;
  work.pattern = 0;
  work.maxSteps = SCHEMA_WORK.steps + SCHEMA_WORK.stepsPerPart * partsOf(value);
  let valid: boolean;
  try {
    valid = validate(value) as boolean;
  } catch (error) {
    if (!(error instanceof TooMuchWork)) throw error;
    throw new StatehouseError('VALIDATION_FAILED', `value cannot be checked: ${error.message}`, { path: '/', reason: error.message });
  } finally {
    for (const pattern of work.compiled) pattern.release();
    work.compiled.length = 0;
  }
  if (valid) return;
  const [first] = validate.errors ?? [];
  const path = first?.instancePath || '/';
  const reason = first?.message ?? 'does not match the schema';
  throw new StatehouseError('VALIDATION_FAILED', `value ${path} ${reason}`, { path, reason });
}
