import { readFileSync } from 'node:fs';
import {
  type GraphQLNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isIntrospectionType,
  isObjectType,
  isScalarType,
  isSpecifiedScalarType,
  printSchema,
} from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema.js';

/** Every described place of the schema (built-in scalars and introspection types aside), by its coordinate. */
function describedPlaces(): Map<string, { description: string | null | undefined }> {
  const places = new Map<string, { description: string | null | undefined }>();
  const types = Object.values(schema.getTypeMap()).filter(
    (type: GraphQLNamedType) => !isIntrospectionType(type) && !isSpecifiedScalarType(type),
  );
  for (const type of types) {
    places.set(type.name, type);
    if (isObjectType(type) || isInterfaceType(type)) {
      for (const field of Object.values(type.getFields())) {
        places.set(`${type.name}.${field.name}`, field);
        for (const arg of field.args) places.set(`${type.name}.${field.name}(${arg.name}:)`, arg);
      }
    }
    if (isInputObjectType(type)) for (const field of Object.values(type.getFields())) places.set(`${type.name}.${field.name}`, field);
    if (isEnumType(type)) for (const value of type.getValues()) places.set(`${type.name}.${value.name}`, value);
  }
  return places;
}

describe('schema/schema.graphql', () => {
  it('is the printed SDL of the current schema (run `npm run generate:schema` after changing it)', () => {
    const committed = readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8');
    expect(committed).toBe(`${printSchema(schema)}\n`);
  });
});

describe('the schema as a reference (GraphiQL’s Docs pane)', () => {
  it('describes every type, field, argument, input field and enum value', () => {
    const places = describedPlaces();
    expect(places.size).toBeGreaterThan(400);
    const undescribed = [...places].filter(([, place]) => !place.description?.trim()).map(([coordinate]) => coordinate);
    expect(undescribed).toEqual([]);
  });

  it('stands alone: no description and no scalar specification links outside the repository', () => {
    const links = [...describedPlaces()]
      .filter(([, place]) => /\bhttps?:\/\/|\bwww\./i.test(place.description ?? ''))
      .map(([coordinate]) => coordinate);
    expect(links).toEqual([]);
    const specified = Object.values(schema.getTypeMap()).filter((type) => isScalarType(type) && type.specifiedByURL);
    expect(specified.map((type) => type.name)).toEqual([]);
  });
});
