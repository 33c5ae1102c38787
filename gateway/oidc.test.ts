import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestOidcProvider, type TestOidcProvider } from '../test/support/oidcProvider.js';
import { createOidcVerifier, looksLikeJwt, OidcTokenError, type OidcVerifier } from './oidc.js';

describe('OIDC token verification', () => {
  let provider: TestOidcProvider;
  let otherProvider: TestOidcProvider;
  let verifier: OidcVerifier;

  beforeAll(async () => {
    [provider, otherProvider] = await Promise.all([startTestOidcProvider(), startTestOidcProvider()]);
    verifier = createOidcVerifier({ issuer: provider.issuer, audience: 'mariner', emailClaim: 'email' });
  });

  afterAll(async () => {
    await Promise.all([provider?.close(), otherProvider?.close()]);
  });

  async function rejection(promise: Promise<unknown>): Promise<OidcTokenError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OidcTokenError);
    return error as OidcTokenError;
  }

  it('accepts a provider-issued token and normalises the email', async () => {
    const token = await provider.tokenFor('  Alice@Example.COM ');
    expect(looksLikeJwt(token)).toBe(true);
    const { email, subject } = await verifier.verify(token);
    expect(email).toBe('alice@example.com');
    expect(subject).toBe('mariner-test-client');
  });

  it('accepts a trailing slash on the configured issuer', async () => {
    const slashed = createOidcVerifier({ issuer: `${provider.issuer}/`, audience: 'mariner', emailClaim: 'email' });
    await expect(slashed.verify(await provider.tokenFor('bob@example.com'))).resolves.toMatchObject({
      email: 'bob@example.com',
    });
  });

  it('cannot be created without an audience: a token for any client of the issuer would do', () => {
    expect(() => createOidcVerifier({ issuer: provider.issuer, audience: '', emailClaim: 'email' })).toThrow(/MARINER_OIDC_AUDIENCE/);
  });

  it('rejects a token for another audience', async () => {
    const token = await provider.tokenFor('alice@example.com', { audience: 'other' });
    expect((await rejection(verifier.verify(token))).message).toBe('token audience mismatch');
  });

  it('rejects an expired token', async () => {
    const token = await provider.expiredTokenFor('alice@example.com');
    expect((await rejection(verifier.verify(token))).message).toBe('token expired');
  });

  it('rejects a token signed by a key the issuer does not publish', async () => {
    const token = await provider.foreignTokenFor('alice@example.com');
    expect((await rejection(verifier.verify(token))).message).toBe('token signature invalid');
  });

  it('rejects a token without an email claim', async () => {
    const token = await provider.tokenFor('');
    expect((await rejection(verifier.verify(token))).message).toBe('token has no email claim');
  });

  it('reads the email from the configured claim', async () => {
    const custom = createOidcVerifier({ issuer: provider.issuer, audience: 'mariner', emailClaim: 'upn' });
    const token = await provider.tokenFor('alice@example.com');
    expect((await rejection(custom.verify(token))).message).toBe('token has no email claim');
  });

  it('rejects a token from a different issuer', async () => {
    const token = await otherProvider.tokenFor('alice@example.com');
    // Same audience, email and client id: only the issuer and its keys differ.
    // The key lookup fails before claims are checked, so it reads as a forgery.
    const error = await rejection(verifier.verify(token));
    expect(error.message).toBe('token signature invalid');
  });

  it('fails verification, without caching the failure, when discovery fails', async () => {
    const unserved = createOidcVerifier({ issuer: `${provider.issuer}/other`, audience: 'mariner', emailClaim: 'email' });
    const token = await provider.tokenFor('alice@example.com');
    const fetchSpy = vi.spyOn(globalThis, 'fetch');
    try {
      expect((await rejection(unserved.verify(token))).message).toBe('issuer discovery failed');
      // A second attempt discovers again rather than replaying a cached failure.
      expect((await rejection(unserved.verify(token))).message).toBe('issuer discovery failed');
      const discoveryUrl = `${provider.issuer}/other/.well-known/openid-configuration`;
      expect(fetchSpy.mock.calls.filter(([url]) => String(url) === discoveryUrl)).toHaveLength(2);
    } finally {
      fetchSpy.mockRestore();
    }
  });

  it('rejects garbage without echoing it', async () => {
    const error = await rejection(verifier.verify('not-a-jwt'));
    expect(error.message).toBe('invalid token');
  });

  it('recognises the JWT shape', () => {
    expect(looksLikeJwt('aaa.bbb.ccc')).toBe(true);
    expect(looksLikeJwt('mk-0123456789abcdef')).toBe(false);
    expect(looksLikeJwt('aaa.bbb')).toBe(false);
    expect(looksLikeJwt('aaa..ccc')).toBe(false);
    expect(looksLikeJwt('a+a.bbb.ccc')).toBe(false);
  });
});
