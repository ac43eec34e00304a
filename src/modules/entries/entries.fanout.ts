import {
  type DocumentNode,
  execute,
  type ExecutionArgs,
  type ExecutionResult,
  getArgumentValues,
  getOperationAST,
  type GraphQLError,
  Kind,
} from 'graphql';
import type { AccessService } from '../../auth/access.js';
import type { Context } from '../../context.js';
import { forbidden, type StatehouseError, unauthenticated } from '../../domain/errors.js';
import { isSealed } from '../../domain/value-cipher.js';
import type { EventBus } from '../../events/bus.js';
import type { ChangeFeeds } from '../../events/change-feed.js';
import type { EntryChange } from './entries.service.js';
import type { WatchEvent } from './entries.watch.js';

/** The part of a WebSocket a shared subscription writes to (ws's WebSocket). */
export interface SubscriberSocket {
  send(data: string): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
}

/** Unsent bytes past which a subscriber that does not read is disconnected, rather than held in memory. */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
export const SUBSCRIBER_TOO_SLOW = 1013;

type MaskError = (error: unknown, message: string) => Error;

/**
 * `entryChanged` subscriptions over WebSocket, multiplexed (as Hasura does): subscribers of the same
 * namespace filter with the same document and variables form one group, which reads the tenant
 * feed once, executes each change once, serializes it once and writes the same bytes to every
 * member's socket. Only the frame's subscription id differs per member.
 *
 * Each member still went through the ordinary subscribe path first (limits, auth scopes, argument
 * checks, audit); its access is re-checked on every access or token event, as a lone watcher's is.
 * A sealed value (sensitive namespace) is never shared: it is executed per member, with its own
 * principal (READER → null) and audit. Subscriptions without a namespace (access differs per
 * change) or with afterRevision (a replay of their own) take the ordinary path.
 */
export class EntryFanout {
  private readonly groups = new Map<string, Group>();
  private readonly documentIds = new WeakMap<DocumentNode, number>();
  private nextDocumentId = 0;

  constructor(
    private readonly deps: { feeds: ChangeFeeds<EntryChange>; access: AccessService; bus: EventBus },
    private readonly maskError: MaskError,
  ) {}

  /**
   * A member iterator when `args` (already accepted by the ordinary subscribe) can be shared;
   * null when it cannot, and the ordinary stream should serve it.
   */
  async join(args: ExecutionArgs, socket: SubscriberSocket, id: string): Promise<AsyncIterableIterator<ExecutionResult> | null> {
    const filter = sharedFilter(args);
    const context = args.contextValue as Context;
    const principal = context.principal;
    if (!filter || !principal) return null;
    const settings = await this.deps.access.namespace(principal.tenantId, filter.namespace);
    if (!settings || settings.sensitive) return null;
    let documentId = this.documentIds.get(args.document);
    if (documentId === undefined) this.documentIds.set(args.document, (documentId = this.nextDocumentId++));
    const key = [
      principal.tenantId,
      filter.namespace,
      filter.scope ?? '',
      filter.keyPrefix ?? '',
      documentId,
      args.operationName ?? '',
      JSON.stringify(args.variableValues ?? {}),
    ].join('\u0000');
    let group = this.groups.get(key);
    if (!group) {
      group = new Group(principal.tenantId, filter, args, this.deps, this.maskError, () => this.groups.delete(key));
      this.groups.set(key, group);
    }
    return group.join(new Member(socket, id, context));
  }

  /** How many groups share how many subscriptions now (of one namespace's name, in any tenant, when given). */
  stats(namespace?: string): { groups: number; members: number } {
    let groups = 0;
    let members = 0;
    for (const group of this.groups.values()) {
      if (namespace !== undefined && group.namespace !== namespace) continue;
      groups++;
      members += group.size;
    }
    return { groups, members };
  }

  /** Ends every shared subscription (shutdown). */
  closeAll(): void {
    for (const group of this.groups.values()) group.close();
  }
}

interface SharedFilter {
  namespace: string;
  scope: string | null;
  keyPrefix: string | null;
}

/** The filter of a lone `entryChanged` root field with a namespace and no replay; null otherwise. */
function sharedFilter(args: ExecutionArgs): SharedFilter | null {
  const operation = getOperationAST(args.document, args.operationName);
  if (operation?.operation !== 'subscription' || operation.selectionSet.selections.length !== 1) return null;
  const [field] = operation.selectionSet.selections;
  if (field?.kind !== Kind.FIELD || field.name.value !== 'entryChanged' || field.directives?.length) return null;
  const definition = args.schema.getSubscriptionType()?.getFields().entryChanged;
  if (!definition) return null;
  const values = getArgumentValues(definition, field, (args.variableValues ?? {}) as Record<string, unknown>);
  if (typeof values.namespace !== 'string' || values.afterRevision) return null;
  return {
    namespace: values.namespace,
    scope: typeof values.scope === 'string' && values.scope !== '' ? values.scope : null,
    keyPrefix: typeof values.keyPrefix === 'string' && values.keyPrefix !== '' ? values.keyPrefix : null,
  };
}

/** One subscriber: frames go straight to its socket; its iterator only ever yields the error that ends it. */
class Member implements AsyncIterableIterator<ExecutionResult> {
  /** The start of every frame of this subscription, up to its payload. */
  readonly prefix: string;
  private ending: ExecutionResult | null = null;
  private done = false;
  private wake: (() => void) | null = null;
  onLeave: () => void = () => {};

  constructor(
    readonly socket: SubscriberSocket,
    id: string,
    readonly context: Context,
  ) {
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  }

  get active(): boolean {
    return !this.done && this.ending === null;
  }

  send(payload: string): void {
    if (!this.active) return;
    if (this.socket.bufferedAmount > MAX_UNSENT_BYTES) {
      this.finish();
      this.socket.close(SUBSCRIBER_TOO_SLOW, 'Subscriber too slow: too many changes unread');
      return;
    }
    this.socket.send(`${this.prefix}${payload}}`);
  }

  /** Ends with `result` (an error) as the last message, or quietly without one. */
  end(result: ExecutionResult | null): void {
    if (!this.active) return;
    if (result) this.ending = result;
    else this.done = true;
    this.onLeave();
    this.wake?.();
  }

  private finish(): void {
    this.done = true;
    this.onLeave();
    this.wake?.();
  }

  async next(): Promise<IteratorResult<ExecutionResult>> {
    while (!this.done && this.ending === null) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.ending) {
      const value = this.ending;
      this.ending = null;
      this.done = true;
      return { value, done: false };
    }
    return { value: undefined, done: true };
  }

  async return(): Promise<IteratorResult<ExecutionResult>> {
    this.ending = null;
    this.finish();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }
}

class Group {
  private readonly members = new Set<Member>();
  private chain: Promise<void> = Promise.resolve();
  private detach: (() => void) | null = null;
  private readonly offBus: () => void;
  private closed = false;

  constructor(
    private readonly tenantId: string,
    private readonly filter: SharedFilter,
    /** The first member's arguments: document, variables, and a context for changes that need no caller. */
    private readonly args: ExecutionArgs,
    private readonly deps: { feeds: ChangeFeeds<EntryChange>; access: AccessService; bus: EventBus },
    private readonly maskError: MaskError,
    private readonly onEmpty: () => void,
  ) {
    const attached = deps.feeds.attach(tenantId, (changes) => this.enqueue(() => this.deliver(changes)));
    this.chain = attached.then(
      ({ detach }) => {
        if (this.closed) detach();
        else this.detach = detach;
      },
      () => this.close(),
    );
    this.offBus = deps.bus.on((event) => {
      const affected = event.type === 'reset' || ((event.type === 'access' || event.type === 'tokens') && event.tenantId === tenantId);
      if (affected) this.enqueue(() => this.recheckAccess());
    });
  }

  get size(): number {
    return this.members.size;
  }

  get namespace(): string {
    return this.filter.namespace;
  }

  /** Joins once the feed is attached, so that the member's first change is one after it subscribed. */
  async join(member: Member): Promise<Member> {
    await this.chain;
    if (this.closed) {
      member.end(null);
      return member;
    }
    member.onLeave = () => this.leave(member);
    this.members.add(member);
    return member;
  }

  private leave(member: Member): void {
    this.members.delete(member);
    if (this.members.size === 0) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onEmpty();
    this.detach?.();
    this.offBus();
    for (const member of this.members) member.end(null);
  }

  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.closed ? undefined : task())).catch(() => this.close());
  }

  private matches(change: EntryChange): boolean {
    const { namespace, scope, keyPrefix } = this.filter;
    return change.namespace === namespace && (!scope || change.scope === scope) && (!keyPrefix || change.key.startsWith(keyPrefix));
  }

  private async deliver(changes: readonly EntryChange[]): Promise<void> {
    for (const change of changes) {
      if (!this.matches(change) || this.members.size === 0) continue;
      if (isSealed(change.value)) {
        // Never shared: each member sees it as its own role may.
        for (const member of [...this.members]) member.send(await this.run({ change }, member.context));
        continue;
      }
      const payload = await this.run({ change }, this.args.contextValue as Context);
      for (const member of this.members) member.send(payload);
    }
  }

  /** Executes the subscription's selection on one event and serializes it, errors masked as Yoga masks them. */
  private async run(event: WatchEvent, contextValue: Context): Promise<string> {
    return JSON.stringify(await this.execute(event, contextValue));
  }

  private async execute(event: WatchEvent, contextValue: Context): Promise<ExecutionResult> {
    const result = await execute({ ...this.args, rootValue: event, contextValue });
    if (!result.errors) return result;
    return { ...result, errors: result.errors.map((error) => this.maskError(error, 'Unexpected error.') as GraphQLError) };
  }

  /** After an access or token event: members whose token or access to the namespace is gone end with the reason. */
  private async recheckAccess(): Promise<void> {
    for (const member of [...this.members]) {
      const principal = await member.context.reauthenticate();
      let reason: StatehouseError | null = null;
      if (!principal) reason = unauthenticated('The token was revoked');
      else if (!(await this.deps.access.canRead(principal, this.filter.namespace))) {
        reason = forbidden(`Access to ${this.filter.namespace} was revoked`);
      }
      if (reason) member.end(await this.execute({ end: reason }, member.context));
    }
  }
}
