import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { auditSensitiveRead } from '../audit/audit.graphql.js';
import { refusedTo } from '../../graphql/refusals.js';

const ImportMode = builder.enumType('ImportMode', {
  values: {
    MERGE: { description: 'Create or update the given namespaces and set their entries; keep everything else' },
    REPLACE: { description: 'Also delete the entries of the given namespaces that the data does not hold' },
  },
});

builder.queryFields((t) => ({
  exportState: t.field({
    type: 'JSON',
    description: 'The namespaces (all, or those named) with their settings and live entries',
    args: { namespaces: t.arg.stringList() },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('export state'),
    resolve: async (_root, args, context) => {
      const exported = await context.services.portability.export(principalOf(context).tenantId, args.namespaces);
      for (const ns of exported.namespaces) if (ns.sensitive && ns.entries.length > 0) auditSensitiveRead(context, ns.name);
      return exported;
    },
  }),
}));

builder.mutationFields((t) => ({
  importState: t.boolean({
    description: 'Brings back an exportState document: all or nothing, one revision',
    args: { data: t.arg({ type: 'JSON', required: true }), mode: t.arg({ type: ImportMode, defaultValue: 'MERGE' }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('import state'),
    resolve: (_root, args, context) => context.services.portability.import(principalOf(context), args.data, args.mode ?? 'MERGE'),
  }),
}));
