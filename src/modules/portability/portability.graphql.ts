import { builder } from '../../graphql/builder.js';
import { auditSensitiveRead } from '../audit/audit.graphql.js';
import { refusedTo } from '../../graphql/refusals.js';

const ImportMode = builder.enumType('ImportMode', {
  description: 'How importState treats what is already there',
  values: {
    MERGE: { description: 'Create or update the given namespaces and set their entries; keep everything else' },
    REPLACE: { description: 'Also delete the entries of the given namespaces that the data does not hold' },
  },
});

builder.queryFields((t) => ({
  exportState: t.withAuth({ admin: true }).field({
    type: 'JSON',
    description:
      'A JSON document of namespaces with their settings and live entries (values decrypted): { format: "statehouse-export", version: 1, exportedAt, namespaces: [{ name, description, openAccess, sensitive, schema, defaultValue, defaultTtlSeconds, historyLimit, entries: [{ scope, key, value, expiresAt }] }] }. History and grants are not included. ADMIN only',
    args: { namespaces: t.arg.stringList({ description: 'The namespaces to export; unset: all. Names that do not exist are left out' }) },
    unauthorizedError: refusedTo('export state'),
    resolve: async (_root, args, context) => {
      const exported = await context.services.portability.export(context.principal.tenantId, args.namespaces);
      for (const ns of exported.namespaces) if (ns.sensitive && ns.entries.length > 0) auditSensitiveRead(context, ns.name);
      return exported;
    },
  }),
}));

builder.mutationFields((t) => ({
  importState: t.withAuth({ admin: true }).boolean({
    description:
      'Brings back an exportState document in one transaction: all or nothing, every change under one revision. Namespaces not in it are never touched; an existing namespace keeps its sensitivity. Values obey the size limit and quotas, as writes do. ADMIN only',
    args: {
      data: t.arg({
        type: 'JSON',
        required: true,
        description: 'A document as exportState returns it; anything else is BAD_USER_INPUT naming the part',
      }),
      mode: t.arg({ type: ImportMode, defaultValue: 'MERGE', description: 'MERGE, or REPLACE the entries of the namespaces it holds' }),
    },
    unauthorizedError: refusedTo('import state'),
    resolve: (_root, args, context) => context.services.portability.import(context.principal, args.data, args.mode ?? 'MERGE'),
  }),
}));
