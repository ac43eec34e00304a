/**
 * Documents that cost seconds of validation each before any limit applied (issue 14), from any
 * caller, token or not. `variant` makes each one a new text, which no parse cache has seen.
 */
const numbered = (count: number, item: (i: number) => string) => Array.from({ length: count }, (_, i) => item(i)).join(' ');

export const HOSTILE_DOCUMENTS: Record<string, (variant?: number) => string> = {
  '5,000 fields in one selection set': (variant = 0) => `# ${variant}\n{ ${numbered(5_000, (i) => `x${i}`)} }`,
  '8,000 directives on one field': (variant = 0) => `# ${variant}\n{ __typename ${'@x '.repeat(8_000)}}`,
  '3,000 unused fragments': (variant = 0) =>
    `# ${variant}\n{ __typename } ${numbered(3_000, (i) => `fragment F${i} on Query { __typename }`)}`,
};

/**
 * Documents just within the ceilings on the work of parsing and validating, each as costly as
 * they allow: what a hostile caller can still send.
 */
export const COSTLIEST_ACCEPTED: Record<string, (variant?: number) => string> = {
  '14,990 tokens of a list literal': (variant = 0) => `# ${variant}\n{ __typename(a: [${'1 '.repeat(14_990)}]) }`,
  '71 copies of a field with a selection (4,970 merged pairs)': (variant = 0) => `# ${variant}\n{ ${'viewer { role } '.repeat(71)}}`,
  '1,000 unknown fields with arguments': (variant = 0) => `# ${variant}\n{ ${numbered(1_000, (i) => `x${i}(a: 1 b: 2 c: 3)`)} }`,
};
