import { GraphQLError, GraphQLScalarType, Kind, type ValueNode } from 'graphql';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { isRevision } from '../domain/cursor.js';
import { builder } from './builder.js';

function parseRevision(value: unknown, node?: ValueNode): string {
  const text = typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? String(value) : value;
  if (typeof text !== 'string' || !isRevision(text)) {
    throw new GraphQLError('A Revision is a decimal string such as "42"', { nodes: node, extensions: { code: 'BAD_USER_INPUT' } });
  }
  return text;
}

/** A position in a tenant's change log: a decimal string, strictly increasing ("0": before the first change). */
export const RevisionScalar = new GraphQLScalarType<string, string>({
  name: 'Revision',
  description: 'A position in a tenant\'s change log, as a decimal string; strictly increasing. "0" is before the first change.',
  serialize: (value) => String(value),
  parseValue: parseRevision,
  parseLiteral: (ast) => {
    return parseRevision(ast.kind === Kind.STRING || ast.kind === Kind.INT ? ast.value : undefined, ast);
  },
});

builder.addScalarType('JSON', JSONResolver, {
  description:
    'Any JSON value: an object, array, string, number, boolean or null. In arguments, nested at most 100 levels deep, with no U+0000 character and no lone surrogate in its text',
  // The package points at a document outside this gateway; the description says all a client needs.
  specifiedByURL: undefined,
});
builder.addScalarType('DateTime', DateTimeResolver, {
  description:
    'A point in time: an RFC 3339 (ISO 8601) date-time with a time zone offset, such as "2024-05-01T12:00:00Z" or "2024-05-01T14:00:00+02:00". Returned in UTC with milliseconds, such as "2024-05-01T12:00:00.000Z"',
});
builder.addScalarType('Revision', RevisionScalar);
