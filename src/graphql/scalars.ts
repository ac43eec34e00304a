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

builder.addScalarType('JSON', JSONResolver);
builder.addScalarType('DateTime', DateTimeResolver);
builder.addScalarType('Revision', RevisionScalar);
