import { describe, expect, it } from 'vitest';
import { createLoginTickets, notebookTargetOf, sameNotebook } from './loginTicket.js';
import { createSealer } from './sealedValues.js';

const SECRET = 'a'.repeat(40);
const credential = { authorization: 'Bearer sk-secret-key', organizationId: 'org-1', projectId: 'proj-1' };
const target = { clusterId: 'cluster-abc', notebook: 'lab', namespace: 'team-a' };

describe('notebook sign-in tickets', () => {
  it('carry the credential and the notebook sealed, URL-safe, for a minute, under the secret they were made with', () => {
    const tickets = createLoginTickets(SECRET);
    const { ticket, expiresAt } = tickets.mint(credential, target);
    expect(ticket).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(ticket, 'base64url').toString('latin1')).not.toContain('sk-secret-key');
    expect(expiresAt).toBe(Math.floor(Date.now() / 1000) + 60);
    expect(tickets.open(ticket)).toEqual({ id: expect.any(String), target, credential, expiresAt });
    expect(tickets.open(ticket, (expiresAt + 1) * 1000)).toBeNull();
    expect(createLoginTickets('b'.repeat(40)).open(ticket)).toBeNull();
    // Two tickets for one notebook are two uses.
    expect(tickets.open(tickets.mint(credential, target).ticket)!.id).not.toBe(tickets.open(ticket)!.id);
  });

  it('refuse any changed byte, and a value sealed for another purpose (a session cookie) under the same secret', () => {
    const tickets = createLoginTickets(SECRET);
    const bytes = Buffer.from(tickets.mint(credential, target).ticket, 'base64url');
    for (const index of [0, 13, 30, bytes.length - 1]) {
      const changed = Buffer.from(bytes);
      changed[index] = changed[index]! ^ 1;
      expect(tickets.open(changed.toString('base64url'))).toBeNull();
    }
    const cookie = createSealer(SECRET, 'mariner sessions cookie key v1', 'mariner_session/v1').seal({ v: 1, a: 'Bearer sk-x', o: null, p: null, e: 2e9 });
    expect(tickets.open(cookie)).toBeNull();
    expect(tickets.open('')).toBeNull();
  });

  it('name a notebook by the segments of its public path, any port of it', () => {
    expect(notebookTargetOf('/v1/sessions/cluster-abc/v1/services/notebooks/lab/team-a/6006/x')).toEqual(target);
    expect(notebookTargetOf('/v1/sessions/cluster-abc/v1/services/notebooks/lab/team-a')).toEqual(target);
    expect(notebookTargetOf('/v1/sessions/cluster-abc/v1/services/notebooks/lab')).toBeNull();
    expect(notebookTargetOf('/v1/sessions/cluster-abc/v1/services/notebooks/%E0/team-a/')).toBeNull();
    expect(notebookTargetOf('/v1/files')).toBeNull();
    expect(sameNotebook(target, { ...target, notebook: 'nb-1' })).toBe(false);
    expect(sameNotebook(target, { ...target })).toBe(true);
  });
});
