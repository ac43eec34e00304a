import { builder } from '../../graphql/builder.js';
import { TokenIssueRef } from '../tokens/tokens.graphql.js';
import { refusedTo } from '../../graphql/refusals.js';

builder.queryFields((t) => ({
  config: t.withAuth({ authenticated: true }).field({
    type: 'JSON',
    description:
      "The tenant's settings, defaults filled in: { activeWindowSeconds: 300, metricsRetentionHours: 168, limits: { maxValueBytes: 1048576, maxCommitOperations: 500, maxMetricsPerCall: 1000, maxDepth: 12, maxAliases: 30, maxCost: 5000, maxBatchOperations: 20, maxConnectionsPerToken: 2000, maxSubscriptionsPerSocket: 100 }, quotas: { maxEntries: null, maxBytes: null }, rateLimit: { perTokenPerSecond: null } } (null: no quota or rate limit). activeWindowSeconds defaults to the gateway's STATEHOUSE_ACTIVE_WINDOW_SECONDS. Any valid token",
    resolve: (_root, _args, context) => context.services.config.get(context.principal.tenantId),
  }),
}));

builder.mutationFields((t) => ({
  createTenant: t.withAuth({ bootstrap: true }).field({
    type: TokenIssueRef,
    description:
      'Creates a tenant with its `common` and `system` namespaces, and returns its first ADMIN token (named admin; shown once). The bootstrap admin token of tenant default only',
    args: {
      name: t.arg.string({
        required: true,
        description:
          'The tenant id: 1 to 63 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit; taken: BAD_USER_INPUT',
      }),
    },
    unauthorizedError: refusedTo('create tenants'),
    resolve: (_root, args, context) => context.services.tokens.createTenant(args.name),
  }),
  updateConfig: t.withAuth({ admin: true }).field({
    type: 'JSON',
    description:
      "Changes the tenant's settings and returns them all; effective at once on every gateway process. An unknown setting, a wrong type or a value out of range is BAD_USER_INPUT naming it. ADMIN only",
    args: {
      patch: t.arg({
        type: 'JSON',
        required: true,
        description:
          'An RFC 7396 merge patch on the settings (see config), such as { limits: { maxValueBytes: 2097152 } }; null restores a default',
      }),
    },
    unauthorizedError: refusedTo("change the tenant's config"),
    resolve: (_root, args, context) => context.services.config.update(context.principal.tenantId, args.patch),
  }),
}));
