/** What the entries module reads and writes: entries, their changes, and pages of either. */
export interface Entry {
  namespace: string;
  scope: string;
  key: string;
  value: unknown;
  version: number;
  revision: string;
  createdAt: Date;
  updatedAt: Date;
  updatedBy: string | null;
  expiresAt: Date | null;
}

export type ChangeOp = 'SET' | 'DELETE' | 'EXPIRE';

export interface EntryChange {
  revision: string;
  op: ChangeOp;
  namespace: string;
  scope: string;
  key: string;
  version: number;
  value: unknown;
  at: Date;
  actor: string | null;
}

/** One version of an entry, as `entryHistory` lists it (GraphQL leaves out the address it shares). */
export type EntryVersion = EntryChange;

export interface Page<T> {
  nodes: T[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export interface EntryAddress {
  namespace: string;
  key: string;
  scope?: string | null;
}
