import type { Principal } from '../auth/principal.js';
import type { Context } from '../context.js';

/**
 * What a module says about a subscription root field whose subscribers may share one stream: who
 * shares (the key), where the items come from, and which items must still be executed per member.
 * The transport (src/transport/fanout.ts) does the rest: groups, frames, replay order, slow readers.
 */
export interface ShareableField<Item, Position> {
  /** The subscription root field. */
  readonly field: string;
  /** The argument that only says where a member resumes (its last item): left out of the group key. */
  readonly resumeArgument: string;
  /** The stream that subscribers with these arguments share, or null: serve this subscriber alone. */
  share(principal: Principal, args: Readonly<Record<string, unknown>>): Promise<SharedStream<Item, Position> | null>;
}

/** One shared stream: the items of one filter of one tenant, in order. */
export interface SharedStream<Item, Position> {
  /** Subscribers whose streams have the same key (and the same document and variables) form one group. */
  readonly key: string;
  /** What the group is counted under in stats (the namespace); null: none. */
  readonly label: string | null;
  /** Starts live delivery in batches, in order; resolves with where the stream stands then. */
  attach(onBatch: (items: readonly Item[]) => void): Promise<{ position: Position; detach: () => void }>;
  /** Where the stream stands once this item is delivered. */
  positionOf(item: Item): Position;
  /** Items after `resume` up to `upTo`, page by page: the next page is read once `page` resolves true; false stops. */
  replay(resume: string, upTo: Position, page: (items: readonly Item[]) => Promise<boolean>): Promise<void>;
  /** Whether a member resuming after `resume` has had this item already. */
  seen(item: Item, resume: string): boolean;
  /** Whether the item is for this stream's subscribers at all. */
  matches(item: Item): boolean;
  /** Whether the item must be executed with each member's own context (its view differs by caller). */
  perMember(item: Item): boolean;
  /** The field's root value for an item, and for the error that ends a member's subscription. */
  rootValue(item: Item): unknown;
  endValue(error: Error): unknown;
  /** Calls `recheck` when a member's access may have changed; returns how to stop. */
  onAccessChange(recheck: () => void): () => void;
  /** Why a member (by its own context) may no longer read this stream; null while it may. */
  revoked(context: Context): Promise<Error | null>;
}
