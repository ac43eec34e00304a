// How a dashboard talks to Statehouse: queries and mutations over HTTP, subscriptions over graphql-ws
// (the browser build loaded before this module as `window.graphqlWs`). Nothing here knows the page.

/** A GraphQL answer with errors; `code` is the first error's `extensions.code` (API.md §3). */
export class GraphQLFailure extends Error {
  constructor(errors) {
    super(errors[0]?.message ?? 'GraphQL error');
    this.errors = errors;
    this.code = errors[0]?.extensions?.code;
    this.extensions = errors[0]?.extensions ?? {};
  }
}

/** The gateway could not be reached, or did not answer with GraphQL. */
export class NetworkFailure extends Error {}

const RETRY_MS = [500, 1_000, 2_000, 4_000, 8_000, 15_000];

/**
 * A client for one token. `onStatus(state, detail)` hears the socket's state: `connecting`, `live`,
 * `reconnecting` (with `detail.inMs`), or `rejected` (the token no longer works). `onConnected` hears
 * every (re)connection: a page reads again what it may have missed while no subscription was listening.
 */
export function createApi(token, { onStatus = () => {}, onConnected = () => {} } = {}) {
  const authorization = `Bearer ${token}`;
  // How far the gateway's clock is ahead of this browser's, so that ages ("12 s ago") and activity windows
  // are measured with the clock that stamped the times. Each answer's Date header (whole seconds) bounds it;
  // the bounds of successive answers narrow it down, and start afresh when they disagree (a clock was set).
  let offsetBounds = null;
  let clockOffset = 0;
  function learnClock(response, sentAt, receivedAt) {
    const serverDate = Date.parse(response.headers.get('date') ?? '');
    if (!Number.isFinite(serverDate)) return;
    const low = serverDate - receivedAt;
    const high = serverDate + 1_000 - sentAt;
    offsetBounds =
      offsetBounds && low <= offsetBounds[1] && high >= offsetBounds[0]
        ? [Math.max(low, offsetBounds[0]), Math.min(high, offsetBounds[1])]
        : [low, high];
    clockOffset = (offsetBounds[0] + offsetBounds[1]) / 2;
  }

  async function request(query, variables = {}) {
    let response;
    const sentAt = Date.now();
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new NetworkFailure('The gateway cannot be reached');
    }
    learnClock(response, sentAt, Date.now());
    const body = await response.json().catch(() => null);
    if (!body) throw new NetworkFailure(`The gateway answered ${response.status}`);
    if (body.errors?.length) throw new GraphQLFailure(body.errors);
    return body.data;
  }

  // The library's own retries would resubscribe with the variables of the first subscribe; a feed must
  // resume after the last revision it saw instead. So the client never retries, and `subscribe` below
  // starts each subscription again, with fresh variables, once the socket is back.
  let failures = 0;
  let dropped = false;
  let pongTimer;
  const client = window.graphqlWs.createClient({
    url: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/graphql`,
    connectionParams: { authorization },
    lazy: true,
    retryAttempts: 0,
    keepAlive: 10_000,
    on: {
      connecting: () => onStatus(dropped ? 'reconnecting' : 'connecting', {}),
      connected: () => {
        failures = 0;
        dropped = false;
        onStatus('live', {});
        onConnected();
      },
      // A ping without a pong within 5 s means the connection is dead though no one closed it.
      ping: (received) => {
        if (!received) pongTimer = setTimeout(() => client.terminate(), 5_000);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
      closed: (event) => {
        clearTimeout(pongTimer);
        if (event?.code === 1000) return; // closed by us: the last subscription ended
        if (event?.code === 4403 || event?.code === 4401) {
          onStatus('rejected', {});
          return;
        }
        dropped = true;
        failures++;
        onStatus('reconnecting', { inMs: retryDelay() });
      },
    },
  });

  function retryDelay() {
    const base = RETRY_MS[Math.min(failures - 1, RETRY_MS.length - 1)] ?? RETRY_MS[0];
    return base + Math.floor(Math.random() * 300);
  }

  /**
   * Subscribes and keeps the subscription alive across dropped sockets. `variables` is called at every
   * (re)start, so it can carry the position to resume from. `onError(failure)` hears GraphQL errors
   * (FORBIDDEN, REVISION_COMPACTED, …); the subscription has then ended. Returns a function that ends it.
   */
  function subscribe(query, variables, onData, onError = () => {}) {
    let stop = null;
    let timer;
    let ended = false;
    const restartLater = () => {
      if (!ended) timer = setTimeout(start, retryDelay());
    };
    const fail = (errors) => {
      if (ended) return;
      ended = true;
      stop?.();
      onError(new GraphQLFailure(errors));
    };
    const start = () => {
      stop = client.subscribe(
        { query, variables: variables() },
        {
          next: (result) => (result.errors?.length ? fail(result.errors) : onData(result.data)),
          // An array is the server's GraphQL errors; anything else is the socket closing under us.
          error: (error) =>
            Array.isArray(error) ? fail(error) : error?.code === 4403 || error?.code === 4401 ? undefined : restartLater(),
          // The server ends subscriptions when it shuts down; a new one starts once it is back.
          complete: restartLater,
        },
      );
    };
    start();
    return () => {
      ended = true;
      clearTimeout(timer);
      stop?.();
    };
  }

  return { request, subscribe, now: () => Date.now() + clockOffset, close: () => client.dispose() };
}
