import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { LRUCache } from 'lru-cache';
import { badInput, StatehouseError } from './errors.js';

const ajv = new Ajv2020({ allErrors: false, strict: false, validateFormats: false });

/** Compiled validators by schema text: each namespace schema is compiled once, not per write. */
const compiled = new LRUCache<string, ValidateFunction>({ max: 1_000 });

function validatorFor(schema: unknown, field: string): ValidateFunction {
  const text = JSON.stringify(schema);
  let validate = compiled.get(text);
  if (!validate) {
    if (typeof schema !== 'object' && typeof schema !== 'boolean') throw badInput(field, `${field} must be a JSON Schema object`);
    try {
      validate = ajv.compile(schema as object);
    } catch (error) {
      throw badInput(field, `${field} is not a valid JSON Schema: ${(error as Error).message}`);
    }
    compiled.set(text, validate);
  }
  return validate;
}

/** Rejects a schema that is not valid JSON Schema draft 2020-12. */
export function checkSchema(schema: unknown, field = 'schema'): void {
  validatorFor(schema, field);
}

/** VALIDATION_FAILED with the JSON pointer of the first offending part and why. */
export function validateValue(schema: unknown, value: unknown): void {
  const validate = validatorFor(schema, 'schema');
  if (validate(value)) return;
  const [first] = validate.errors ?? [];
  const path = first?.instancePath || '/';
  const reason = first?.message ?? 'does not match the schema';
  throw new StatehouseError('VALIDATION_FAILED', `value ${path} ${reason}`, { path, reason });
}
