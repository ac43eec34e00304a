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
import { type ChangeFeeds, type LogPosition, positionOf } from '../../events/change-feed.js';
import type { EntriesService, EntryChange } from './entries.service.js';
import type { WatchEvent } from './entries.watch.js';

/** The part of a WebSocket a shared subscription writes to (ws's WebSocket). */
export interface SubscriberSocket {
  send(data: string, written?: (error?: Error) => void): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
}

/** Unsent bytes past which a subscriber that does not read is disconnected, rather than held in memory. */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** Live changes held for a subscriber while it replays; past this it cannot catch up. */
const MAX_HELD_CHANGES = 100_000;
export const SUBSCRIBER_TOO_SLOW = 1013;
const REPLAY_PAGE = 500;

type MaskError = (error: unknown, message: string) => Error;

interface Deps {
  feeds: ChangeFeeds<EntryChange>;
  entries: EntriesService;
  access: AccessService;
  bus: EventBus;
}

/**
 * `entryChanged` subscriptions over WebSocket, multiplexed (as Hasura does): subscribers of the same
 * namespace filter with the same document and variables form one group, which reads the tenant
 * feed once, executes each change once, serializes it once and writes the same bytes to every
 * member's socket. Only the frame's subscription id differs per member. A subscriber resuming
 * with afterRevision replays on its own up to where the group stands, then takes the group's
 * changes (held meanwhile): no gap, no duplicate.
 *
 * Each member still went through the ordinary subscribe path first (limits, auth scopes, argument
 * checks, audit); its access is re-checked on every access or token event, as a lone watcher's is.
 * A sealed value (sensitive namespace) is never shared: it is executed per member, with its own
 * principal (READER → null) and audit. An agent's subscription without a namespace (its access
 * differs per change) takes the ordinary path; admins' and readers' share too.
 */
export class EntryFanout {
  private readonly groups = new Map<string, Group>();
  private readonly documentIds = new WeakMap<DocumentNode, number>();
  private nextDocumentId = 0;

  constructor(
    private readonly deps: Deps,
    private readonly maskError: MaskError,
  ) {}

  /**
   * A member iterator when `args` (already accepted by the ordinary subscribe) can be shared;
   * null when it cannot, and the ordinary stream should serve it.
   */
  async join(args: ExecutionArgs, socket: SubscriberSocket, id: string): Promise<AsyncIterableIterator<ExecutionResult> | null> {
    const shape = sharedShape(args);
    const context = args.contextValue as Context;
    const principal = context.principal;
    if (!shape || !principal) return null;
    const { filter, afterRevision } = shape;
    if (filter.namespace === null) {
      // Without a namespace an agent's access differs change by change; admins and readers read all.
      if (principal.role === 'AGENT') return null;
    } else {
      const settings = await this.deps.access.namespace(principal.tenantId, filter.namespace);
      if (!settings || settings.sensitive) return null;
    }
    let documentId = this.documentIds.get(args.document);
    if (documentId === undefined) this.documentIds.set(args.document, (documentId = this.nextDocumentId++));
    const key = [
      principal.tenantId,
      filter.namespace ?? '',
      filter.scope ?? '',
      filter.keyPrefix ?? '',
      documentId,
      args.operationName ?? '',
      JSON.stringify(shape.variables),
    ].join('\u0000');
    const member = new Member(socket, id, context, afterRevision);
    // A group may close (its last member gone) between lookup and join: then the next one is made.
    for (;;) {
      let group = this.groups.get(key);
      if (!group) {
        const made = new Group(principal.tenantId, filter, args, this.deps, this.maskError, () => {
          if (this.groups.get(key) === made) this.groups.delete(key);
        });
        this.groups.set(key, (group = made));
      }
      if (await group.join(member)) return member;
    }
  }

  /** How many groups share how many subscriptions now (of one namespace's name in any tenant, or null: of none, when given). */
  stats(namespace?: string | null): { groups: number; members: number } {
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
  /** null: every namespace (admins and readers only). */
  namespace: string | null;
  scope: string | null;
  keyPrefix: string | null;
}

/**
 * What groups a lone `entryChanged` root field with a namespace: its filter and its variables
 * except afterRevision's (which only says where a member starts); null when it cannot be shared.
 */
function sharedShape(args: ExecutionArgs) {
  const operation = getOperationAST(args.document, args.operationName);
  if (operation?.operation !== 'subscription' || operation.selectionSet.selections.length !== 1) return null;
  const [field] = operation.selectionSet.selections;
  if (field?.kind !== Kind.FIELD || field.name.value !== 'entryChanged' || field.directives?.length) return null;
  const definition = args.schema.getSubscriptionType()?.getFields().entryChanged;
  if (!definition) return null;
  const variables = { ...(args.variableValues ?? {}) } as Record<string, unknown>;
  const values = getArgumentValues(definition, field, variables);
  const resume = field.arguments?.find((argument) => argument.name.value === 'afterRevision')?.value;
  if (resume?.kind === Kind.VARIABLE) delete variables[resume.name.value];
  const filter: SharedFilter = {
    namespace: typeof values.namespace === 'string' ? values.namespace : null,
    scope: typeof values.scope === 'string' && values.scope !== '' ? values.scope : null,
    keyPrefix: typeof values.keyPrefix === 'string' && values.keyPrefix !== '' ? values.keyPrefix : null,
  };
  return { filter, variables, afterRevision: typeof values.afterRevision === 'string' ? values.afterRevision : null };
}

/** One subscriber: frames go straight to its socket; its iterator only ever yields the error that ends it. */
class Member implements AsyncIterableIterator<ExecutionResult> {
  /** The start of every frame of this subscription, up to its payload. */
  private readonly prefix: string;
  /** Live changes at or before this revision were replayed or seen already: skipped. */
  private after: bigint | null;
  /** Live changes held while the member replays; null once it is live. */
  private held: { payload: string; revision: string }[] | null;
  private ending: ExecutionResult | null = null;
  private done = false;
  private wake: (() => void) | null = null;
  onLeave: () => void = () => {};

  constructor(
    private readonly socket: SubscriberSocket,
    id: string,
    readonly context: Context,
    readonly afterRevision: string | null,
  ) {
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    this.after = afterRevision === null ? null : BigInt(afterRevision);
    this.held = afterRevision === null ? null : [];
  }

  get active(): boolean {
    return !this.done && this.ending === null;
  }

  /** A live change, shared by the group: written, held while replaying, or skipped when already seen. */
  receive(payload: string, revision: string): void {
    if (!this.active) return;
    if (this.held) {
      this.held.push({ payload, revision });
      if (this.held.length > MAX_HELD_CHANGES) this.tooSlow();
      return;
    }
    if (this.after !== null) {
      if (BigInt(revision) <= this.after) return;
      this.after = null;
    }
    void this.write(payload);
  }

  /** Writes one frame; resolves once the socket took it (replay waits for that, so it never floods memory). */
  write(payload: string): Promise<void> {
    if (!this.active) return Promise.resolve();
    if (this.socket.bufferedAmount > MAX_UNSENT_BYTES) {
      this.tooSlow();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.socket.send(`${this.prefix}${payload}}`, () => resolve()));
  }

  /** After its replay: the changes held meanwhile (all after what it replayed), then live. */
  goLive(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const { payload, revision } of held) this.receive(payload, revision);
  }

  private tooSlow(): void {
    this.end(null);
    this.socket.close(SUBSCRIBER_TOO_SLOW, 'Subscriber too slow: too many changes unread');
  }

  /** Leaves the group, ending with `result` (an error) as the last message, or quietly without one. */
  end(result: ExecutionResult | null): void {
    if (!this.active) return;
    if (result) this.ending = result;
    else this.done = true;
    this.held = null;
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
    this.end(null);
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }
}

class Group {
  private readonly members = new Set<Member>();
  /** Feed batches, joins and access checks, one at a time in arrival order. */
  private chain: Promise<void>;
  /** Everything up to here has been delivered to the members. */
  private position: LogPosition = { revision: '0' };
  private detach: (() => void) | null = null;
  private readonly offBus: () => void;
  private closed = false;

  constructor(
    private readonly tenantId: string,
    private readonly filter: SharedFilter,
    /** The first member's arguments: document, variables, and a context for changes that need no caller. */
    private readonly args: ExecutionArgs,
    private readonly deps: Deps,
    private readonly maskError: MaskError,
    private readonly onEmpty: () => void,
  ) {
    const attached = deps.feeds.attach(tenantId, (changes) => this.enqueue(() => this.deliver(changes)));
    this.chain = attached.then(
      ({ position, detach }) => {
        this.position = position;
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

  get namespace(): string | null {
    return this.filter.namespace;
  }

  /**
   * Adds a member in its turn among the feed's batches: live from the next batch on, after a replay
   * up to here when it resumes. False when the group closed first.
   */
  join(member: Member): Promise<boolean> {
    return new Promise((resolve) => {
      this.chain = this.chain.then(() => {
        if (this.closed) return resolve(false);
        member.onLeave = () => this.leave(member);
        this.members.add(member);
        if (member.afterRevision !== null) void this.replay(member, member.afterRevision, this.position);
        resolve(true);
      });
    });
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
    return (
      (!namespace || change.namespace === namespace) &&
      (!scope || change.scope === scope) &&
      (!keyPrefix || change.key.startsWith(keyPrefix))
    );
  }

  private async deliver(changes: readonly EntryChange[]): Promise<void> {
    for (const change of changes) {
      if (!this.matches(change) || this.members.size === 0) continue;
      if (isSealed(change.value)) {
        // Never shared: each member sees it as its own role may.
        for (const member of [...this.members]) member.receive(await this.run({ change }, member.context), change.revision);
        continue;
      }
      const payload = await this.run({ change }, this.args.contextValue as Context);
      for (const member of this.members) member.receive(payload, change.revision);
    }
    const last = changes.at(-1);
    if (last) this.position = positionOf(last);
  }

  /** The member's own changes after `afterRevision` up to `upTo`, one page in flight at a time; then live. */
  private async replay(member: Member, afterRevision: string, upTo: LogPosition): Promise<void> {
    try {
      let after: LogPosition = { revision: afterRevision };
      for (;;) {
        const page = await this.deps.entries.changesPage(this.tenantId, {
          after,
          upTo,
          namespaces: this.filter.namespace === null ? null : [this.filter.namespace],
          limit: REPLAY_PAGE,
        });
        let written: Promise<void> = Promise.resolve();
        for (const change of page.changes) {
          if (!member.active) return;
          if (!this.matches(change)) continue;
          const context = isSealed(change.value) ? member.context : (this.args.contextValue as Context);
          written = member.write(await this.run({ change }, context));
        }
        await written;
        const last = page.changes.at(-1);
        if (!last || page.changes.length < REPLAY_PAGE) break;
        after = positionOf(last);
      }
      member.goLive();
    } catch (error) {
      member.end(await this.execute({ end: error as StatehouseError }, member.context));
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
      else if (this.filter.namespace !== null && !(await this.deps.access.canRead(principal, this.filter.namespace))) {
        reason = forbidden(`Access to ${this.filter.namespace} was revoked`);
      }
      if (reason) member.end(await this.execute({ end: reason }, member.context));
    }
  }
}
