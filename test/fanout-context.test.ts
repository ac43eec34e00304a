import { GraphQLBoolean, GraphQLObjectType, GraphQLSchema, GraphQLString, parse } from 'graphql';
import { describe, expect, it, vi } from 'vitest';
import type { Principal } from '../src/auth/principal.js';
import type { Context } from '../src/context.js';
import type { ShareableField, SharedStream } from '../src/events/shared-stream.js';
import { SharedSubscriptions, type SubscriberSocket } from '../src/transport/fanout.js';

/**
 * The fan-out's shared executions run with a context that has no caller: a resolver that reads the
 * caller there fails loudly instead of showing one member's view to every member. No field of the
 * public schema reads the caller in a shared execution (those that would are executed per member), so
 * this drives the real SharedSubscriptions with a schema of one field that does.
 */

interface Item {
  value: string;
  /** Whether the stream says this item must be executed per member. */
  perMember: boolean;
}

const ItemType = new GraphQLObjectType<Item, Context>({
  name: 'Item',
  fields: {
    value: { type: GraphQLString },
    perMember: { type: GraphQLBoolean },
    reader: { type: GraphQLString, resolve: (_item, _args, context) => context.principal?.tokenName },
  },
});
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLBoolean } } }),
  subscription: new GraphQLObjectType({ name: 'Subscription', fields: { item: { type: ItemType } } }),
});
const document = parse('subscription { item { value reader } }');

function principal(tokenName: string): Principal {
  return { tenantId: 'default', tokenId: tokenName, tokenName, role: 'READER', agentId: null, bootstrap: false };
}

function contextOf(caller: Principal): Context {
  return {
    principal: caller,
    unauthenticatedReason: undefined,
    services: {} as Context['services'],
    loaders: {} as Context['loaders'],
    reauthenticate: async () => caller,
  };
}

/** A socket that keeps the frames written to it. */
function socket(): SubscriberSocket & { frames: { id: string; type: string; payload: any }[] } {
  const frames: { id: string; type: string; payload: any }[] = [];
  return {
    frames,
    bufferedAmount: 0,
    send: (data, written) => {
      frames.push(JSON.parse(data));
      written?.();
    },
    close: () => {},
  };
}

/** One stream every subscriber shares; the test pushes its items. */
function stream(): SharedStream<Item, number> & { push(items: Item[]): void } {
  let onBatch: (items: readonly Item[]) => void = () => {};
  return {
    key: 'one',
    label: null,
    push: (items) => onBatch(items),
    attach: async (deliver) => {
      onBatch = deliver;
      return { position: 0, detach: () => {} };
    },
    positionOf: () => 0,
    replay: async () => {},
    seen: () => false,
    matches: () => true,
    perMember: (item) => item.perMember,
    rootValue: (item) => ({ item }),
    endValue: (error) => ({ item: error }),
    onAccessChange: () => () => {},
    revoked: async () => null,
  };
}

describe('the fan-out of shared subscriptions', () => {
  it("executes shared items with no caller, so a field that reads one fails instead of showing one member's view to another", async () => {
    const items = stream();
    const field: ShareableField<Item, number> = { field: 'item', resumeArgument: 'after', share: async () => items };
    // The mask keeps the message, so the test can tell the loud failure from any other.
    const fanout = new SharedSubscriptions([field], (error) => error as Error);
    const alpha = socket();
    const beta = socket();
    const members = [
      await fanout.join({ schema, document, contextValue: contextOf(principal('alpha')) }, alpha, 'a1'),
      await fanout.join({ schema, document, contextValue: contextOf(principal('beta')) }, beta, 'b1'),
    ];
    try {
      expect(fanout.stats()).toEqual({ groups: 1, members: 2 });

      items.push([{ value: 'shared', perMember: false }]);
      await vi.waitFor(() => expect(alpha.frames.length + beta.frames.length).toBe(2));
      for (const [sent, id] of [
        [alpha, 'a1'],
        [beta, 'b1'],
      ] as const) {
        expect(sent.frames[0]).toMatchObject({ id, type: 'next', payload: { data: { item: { value: 'shared', reader: null } } } });
        expect(sent.frames[0]?.payload.errors).toEqual([
          expect.objectContaining({
            message: expect.stringMatching(/shared subscription execution has no caller/),
            path: ['item', 'reader'],
          }),
        ]);
        expect(JSON.stringify(sent.frames)).not.toMatch(/alpha|beta/);
      }

      // What the stream marks as per member is executed with each member's own caller.
      items.push([{ value: 'own', perMember: true }]);
      await vi.waitFor(() => expect(alpha.frames.length + beta.frames.length).toBe(4));
      expect(alpha.frames[1]?.payload).toEqual({ data: { item: { value: 'own', reader: 'alpha' } } });
      expect(beta.frames[1]?.payload).toEqual({ data: { item: { value: 'own', reader: 'beta' } } });
    } finally {
      for (const member of members) await member?.return?.();
    }
    expect(fanout.stats()).toEqual({ groups: 0, members: 0 });
  });
});
