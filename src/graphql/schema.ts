import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './scalars.js';
import '../modules/viewer/viewer.graphql.js';
import '../modules/namespaces/namespaces.graphql.js';
import '../modules/entries/entries.graphql.js';
import '../modules/agents/agents.graphql.js';
import '../modules/tokens/tokens.graphql.js';
import '../modules/tenants/tenants.graphql.js';
import '../modules/system/system.graphql.js';
import '../modules/portability/portability.graphql.js';
import '../modules/metrics/metrics.graphql.js';
import '../modules/errors/errors.graphql.js';
import '../modules/insights/insights.graphql.js';
import '../modules/optimizations/optimizations.graphql.js';
import '../modules/audit/audit.graphql.js';

export const schema = lexicographicSortSchema(builder.toSchema());
