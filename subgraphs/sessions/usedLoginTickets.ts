import type { Knex } from '../../lib/db.js';
import type { Logger } from '../../lib/logging.js';

/**
 * The notebooks' sign-in tickets already used (lib/loginTicket.ts; migrations/003_login_tickets_used.ts): the
 * table every sessions replica shares, so a ticket signs one browser in, whichever replica it reaches.
 */

/** Rows are kept this long past their ticket's expiry: a replica whose clock is behind the database's still sees them. */
const KEPT_AFTER_EXPIRY_SECONDS = 300;
/** How often a replica deletes the expired rows (after a use, never on a timer). */
const SWEEP_INTERVAL_MS = 60_000;

export class UsedLoginTickets {
  private lastSweep = 0;

  constructor(private readonly options: { knex: Knex; schema: string; logger: Logger }) {}

  private table() {
    return this.options.knex.withSchema(this.options.schema).table('login_tickets_used');
  }

  /** Records the ticket as used; false when it already was (by this replica or another). */
  async use(id: string, expiresAt: number): Promise<boolean> {
    const inserted: unknown[] = await this.table()
      .insert({ id, expires_at: new Date(expiresAt * 1000) })
      .onConflict('id')
      .ignore()
      .returning('id');
    if (Date.now() - this.lastSweep > SWEEP_INTERVAL_MS) {
      this.lastSweep = Date.now();
      await this.table()
        .where('expires_at', '<', this.options.knex.raw(`now() - make_interval(secs => ?)`, [KEPT_AFTER_EXPIRY_SECONDS]))
        .delete()
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'expired notebook sign-in tickets could not be deleted'));
    }
    return inserted.length === 1;
  }
}
