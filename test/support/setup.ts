import { afterAll } from 'vitest';
import { closeLeftovers } from './leftovers.js';

// Registered before any test file's hooks, so it runs after them (after-hooks run in reverse order).
afterAll(closeLeftovers);
