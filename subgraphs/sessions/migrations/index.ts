import type { Migration } from '../../../lib/db.js';
import { initial } from './001_initial.js';

/** The sessions component's migrations (its tunnel directory), applied in order at start. */
export const migrations: Migration[] = [initial];
