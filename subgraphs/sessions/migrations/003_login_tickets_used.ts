import type { Migration } from '../../../lib/db.js';

/**
 * The notebooks' sign-in tickets already used (lib/loginTicket.ts, usedLoginTickets.ts): a ticket's id is
 * inserted when it signs a browser in, so a second use is refused by whichever replica sees it. A row is
 * kept until its ticket has expired (then deleted now and then).
 */
export const loginTicketsUsed: Migration = {
  id: '003_login_tickets_used',
  async up(knex, schema) {
    await knex.schema.withSchema(schema).createTable('login_tickets_used', (t) => {
      t.text('id').primary();
      t.timestamp('expires_at', { useTz: true }).notNullable();
      t.index(['expires_at']);
    });
  },
};
