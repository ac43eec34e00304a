import { ERROR_CODES } from '../../src/domain/errors.js';

/** The error codes of API.md §3, as the server lists them: every failure carries one of these. */
export const CONTRACT_CODES: readonly string[] = ERROR_CODES;
