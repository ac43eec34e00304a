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
import type { Context } from '../context.js';
import type { ShareableField, SharedStream } from '../events/shared-stream.js';

/** The part of a WebSocket a shared subscription writes to (ws's WebSocket). */
export interface SubscriberSocket {
  send(data: string, written?: (error?: Error) => void): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
}

/** Unsent bytes (and live items held while it replays) past which a subscriber is disconnected, rather than held in memory. */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** A replay waits for the socket past this many unsent bytes: a page of large values is never held at once. */
const REPLAY_UNSENT_BYTES = 1024 * 1024;
/** Live items held for a subscriber while it replays; past this it cannot catch up. */
const MAX_HELD_ITEMS = 100_000;
export const SUBSCRIBER_TOO_SLOW = 1013;

type MaskError = (error: unknown, message: string) => Error;
// The transport serves any shareable field; each field's own types stay in its module.
type AnyShareable = ShareableField<unknown, unknown>;
type AnyStream = SharedStream<unknown, unknown>;

/**
 * A context for executions shared by every member of a group: it has no caller, so a resolver that
 * reads one fails loudly instead of showing the first member's view to everyone. Items whose view
 * differs by caller are executed per member (SharedStream.perMember).
 */
function sharedContext(first: Context): Context {
  const noCaller = (): never => {
    throw new Error('A shared subscription execution has no caller: resolve this field per member (SharedStream.perMember)');
  };
  return {
    services: first.services,
    loaders: first.loaders,
    get principal() {
      return noCaller();
    },
    get unauthenticatedReason() {
      return noCaller();
    },
    reauthenticate: noCaller,
  };
}

/**
 * Subscriptions over WebSocket, multiplexed (as Hasura does): subscribers of the same shareable root
 * field with the same stream, document and variables form one group, which takes the stream once,
 * executes each item once, serializes it once and writes the same bytes to every member's socket.
 * Only the frame's subscription id differs per member. A subscriber resuming replays on its own up
 * to where the group stands, then takes the group's items (held meanwhile): no gap, no duplicate.
 *
 * Each member still went through the ordinary subscribe path first (limits, auth scopes, argument
 * checks, audit); its access is re-checked whenever the stream says it may have changed. Which
 * fields can be shared, and how, is said by their modules (ShareableField).
 */
export class SharedSubscriptions {
  private readonly fields: ReadonlyMap<string, AnyShareable>;
  private readonly groups = new Map<string, Group>();
  private readonly documentIds = new WeakMap<DocumentNode, number>();
  private nextDocumentId = 0;

  constructor(
    fields: readonly AnyShareable[],
    private readonly maskError: MaskError,
  ) {
    this.fields = new Map(fields.map((field) => [field.field, field]));
  }

  /**
   * A member iterator when `args` (already accepted by the ordinary subscribe) can be shared;
   * null when it cannot, and the ordinary stream should serve it.
   */
  async join(args: ExecutionArgs, socket: SubscriberSocket, id: string): Promise<AsyncIterableIterator<ExecutionResult> | null> {
    const shape = this.sharedShape(args);
    const context = args.contextValue as Context;
    const principal = context.principal;
    if (!shape || !principal) return null;
    const stream = await shape.field.share(principal, shape.values);
    if (!stream) return null;
    let documentId = this.documentIds.get(args.document);
    if (documentId === undefined) this.documentIds.set(args.document, (documentId = this.nextDocumentId++));
    const key = [shape.field.field, stream.key, documentId, args.operationName ?? '', JSON.stringify(shape.variables)].join('\u0000');
    const member = new Member(socket, id, context, stream, shape.resume);
    // A group may close (its last member gone) between lookup and join: then the next one is made.
    for (;;) {
      let group = this.groups.get(key);
      if (!group) {
        const made = new Group(stream, args, this.maskError, () => {
          if (this.groups.get(key) === made) this.groups.delete(key);
        });
        this.groups.set(key, (group = made));
      }
      if (await group.join(member)) return member;
    }
  }

  /** How many groups share how many subscriptions now (of one label, e.g. a namespace's name, or null: of none, when given). */
  stats(label?: string | null): { groups: number; members: number } {
    let groups = 0;
    let members = 0;
    for (const group of this.groups.values()) {
      if (label !== undefined && group.label !== label) continue;
      groups++;
      members += group.size;
    }
    return { groups, members };
  }

  /** Ends every shared subscription (shutdown). */
  closeAll(): void {
    for (const group of this.groups.values()) group.close();
  }

  /**
   * A lone shareable root field without directives: its argument values, its variables except the
   * resume argument's (which only says where a member starts), and that resume value; null otherwise.
   */
  private sharedShape(args: ExecutionArgs) {
    const operation = getOperationAST(args.document, args.operationName);
    if (operation?.operation !== 'subscription' || operation.selectionSet.selections.length !== 1) return null;
    const [node] = operation.selectionSet.selections;
    if (node?.kind !== Kind.FIELD || node.directives?.length) return null;
    const field = this.fields.get(node.name.value);
    const definition = args.schema.getSubscriptionType()?.getFields()[node.name.value];
    if (!field || !definition) return null;
    const variables = { ...(args.variableValues ?? {}) } as Record<string, unknown>;
    const values = getArgumentValues(definition, node, variables);
    const resume = node.arguments?.find((argument) => argument.name.value === field.resumeArgument)?.value;
    if (resume?.kind === Kind.VARIABLE) delete variables[resume.name.value];
    const resumeValue = values[field.resumeArgument];
    return { field, values, variables, resume: typeof resumeValue === 'string' ? resumeValue : null };
  }
}

/** One subscriber: frames go straight to its socket; its iterator only ever yields the error that ends it. */
class Member implements AsyncIterableIterator<ExecutionResult> {
  /** The start of every frame of this subscription, up to its payload. */
  private readonly prefix: string;
  /** Live items it had already (it resumed after this one) are skipped; null once past them. */
  private after: string | null;
  /** Live items held while the member replays; null once it is live. */
  private held: { payload: string; item: unknown }[] | null;
  /** The held items' payloads' length: unsent too, so counted against MAX_UNSENT_BYTES. */
  private heldBytes = 0;
  private ending: ExecutionResult | null = null;
  private done = false;
  private wake: (() => void) | null = null;
  onLeave: () => void = () => {};

  constructor(
    private readonly socket: SubscriberSocket,
    id: string,
    readonly context: Context,
    private readonly stream: AnyStream,
    readonly resume: string | null,
  ) {
    this.prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    this.after = resume;
    this.held = resume === null ? null : [];
  }

  get active(): boolean {
    return !this.done && this.ending === null;
  }

  /** Bytes written to its socket and not yet sent. */
  get unsent(): number {
    return this.socket.bufferedAmount;
  }

  /** A live item, shared by the group: written, held while replaying, or skipped when already seen. */
  receive(payload: string, item: unknown): void {
    if (!this.active) return;
    if (this.held) {
      this.held.push({ payload, item });
      this.heldBytes += payload.length;
      if (this.held.length > MAX_HELD_ITEMS || this.heldBytes + this.socket.bufferedAmount > MAX_UNSENT_BYTES) this.tooSlow();
      return;
    }
    if (this.after !== null) {
      if (this.stream.seen(item, this.after)) return;
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

  /** After its replay: the items held meanwhile (all after what it replayed), then live. */
  goLive(): void {
    const held = this.held ?? [];
    this.held = null;
    this.heldBytes = 0;
    for (const { payload, item } of held) this.receive(payload, item);
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
  /** Live batches, joins and access checks, one at a time in arrival order. */
  private chain: Promise<void>;
  /** Everything up to here has been delivered to the members; undefined until attached. */
  private position: unknown;
  private detach: (() => void) | null = null;
  private readonly offAccess: () => void;
  private readonly shared: Context;
  private closed = false;

  constructor(
    private readonly stream: AnyStream,
    /** The first member's arguments: the document and variables every member shares. */
    private readonly args: ExecutionArgs,
    private readonly maskError: MaskError,
    private readonly onEmpty: () => void,
  ) {
    this.shared = sharedContext(args.contextValue as Context);
    const attached = stream.attach((items) => this.enqueue(() => this.deliver(items)));
    this.chain = attached.then(
      ({ position, detach }) => {
        this.position = position;
        if (this.closed) detach();
        else this.detach = detach;
      },
      () => this.close(),
    );
    this.offAccess = stream.onAccessChange(() => this.enqueue(() => this.recheckAccess()));
  }

  get size(): number {
    return this.members.size;
  }

  get label(): string | null {
    return this.stream.label;
  }

  /**
   * Adds a member in its turn among the stream's batches: live from the next batch on, after a replay
   * up to here when it resumes. False when the group closed first.
   */
  join(member: Member): Promise<boolean> {
    return new Promise((resolve) => {
      this.chain = this.chain.then(() => {
        if (this.closed) return resolve(false);
        member.onLeave = () => this.leave(member);
        this.members.add(member);
        if (member.resume !== null) void this.replay(member, member.resume, this.position);
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
    this.offAccess();
    for (const member of this.members) member.end(null);
  }

  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.closed ? undefined : task())).catch(() => this.close());
  }

  private async deliver(items: readonly unknown[]): Promise<void> {
    for (const item of items) {
      if (!this.stream.matches(item) || this.members.size === 0) continue;
      if (this.stream.perMember(item)) {
        // Never shared: each member sees it as its own role may.
        for (const member of [...this.members]) member.receive(await this.run(item, member.context), item);
        continue;
      }
      const payload = await this.run(item, this.shared);
      for (const member of this.members) member.receive(payload, item);
    }
    const last = items.at(-1);
    if (last !== undefined) this.position = this.stream.positionOf(last);
  }

  /** The member's own items after `resume` up to `upTo`, one page in flight at a time; then live. */
  private async replay(member: Member, resume: string, upTo: unknown): Promise<void> {
    try {
      await this.stream.replay(resume, upTo, async (items) => {
        let written: Promise<void> = Promise.resolve();
        for (const item of items) {
          if (!member.active) return false;
          if (!this.stream.matches(item)) continue;
          written = member.write(await this.run(item, this.stream.perMember(item) ? member.context : this.shared));
          if (member.unsent > REPLAY_UNSENT_BYTES) await written;
        }
        await written;
        return true;
      });
      if (member.active) member.goLive();
    } catch (error) {
      member.end(await this.execute(this.stream.endValue(error as Error), member.context));
    }
  }

  /** Executes the subscription's selection on one item and serializes it, errors masked as Yoga masks them. */
  private async run(item: unknown, contextValue: Context): Promise<string> {
    return JSON.stringify(await this.execute(this.stream.rootValue(item), contextValue));
  }

  private async execute(rootValue: unknown, contextValue: Context): Promise<ExecutionResult> {
    const result = await execute({ ...this.args, rootValue, contextValue });
    if (!result.errors) return result;
    return { ...result, errors: result.errors.map((error) => this.maskError(error, 'Unexpected error.') as GraphQLError) };
  }

  /** Members whose token or access is gone end with the reason. */
  private async recheckAccess(): Promise<void> {
    for (const member of [...this.members]) {
      const reason = await this.stream.revoked(member.context);
      if (reason) member.end(await this.execute(this.stream.endValue(reason), member.context));
    }
  }
}
