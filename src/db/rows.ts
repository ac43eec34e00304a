import type { InferSelectModel, Table } from 'drizzle-orm';

/** How raw SQL answers a column's value on both drivers: timestamps and bigints as text, the rest as typed. */
type Raw<V> = V extends Date ? string : V extends bigint ? string : V;

type Columns<T extends Table> = T['_']['columns'];

/**
 * A row of `table` as raw SQL (`database.rows`) returns it: keyed by the columns' SQL names, typed
 * from the drizzle table, so a row type cannot drift from the schema. Pick the columns a query selects.
 */
export type RawRow<T extends Table> = {
  [K in keyof Columns<T> & keyof InferSelectModel<T> as Columns<T>[K]['_']['name']]: Raw<InferSelectModel<T>[K]>;
};
