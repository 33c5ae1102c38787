import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';

/**
 * Verifies OIDC access and ID tokens presented to the gateway as bearer tokens.
 * The issuer's keys are found through OIDC discovery, so an operator only
 * configures the issuer URL and the audience (Mariner's client id there).
 */

export interface OidcOptions {
  /** Issuer URL as configured; discovery is fetched below it. */
  issuer: string;
  /**
   * Required `aud`: Mariner's client id at the issuer. Always checked: one IdP mints tokens for many
   * clients, and a token for another of them must not open Mariner (RFC 9068 §4, OIDC Core §3.1.3.7).
   */
  audience: string;
  /** Claim carrying the user's email. */
  emailClaim: string;
}

export interface OidcVerifier {
  /** The token's user (email claim), subject and expiry; throws OidcTokenError for a token that is not valid. */
  verify(token: string): Promise<{ email: string; subject: string; expiresAt: Date }>;
}

/**
 * Any reason a bearer token was not accepted. Messages are safe to return to
 * the caller and to log: they never contain the token or key material.
 */
export class OidcTokenError extends Error {
  override name = 'OidcTokenError';
}

/**
 * Only asymmetric algorithms: accepting HS* would let anyone who knows a
 * public key (or a client secret shared with the IdP) forge tokens, and
 * `none` is never acceptable.
 */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** Tolerates small clock differences between the IdP and this host. */
const CLOCK_TOLERANCE_SECONDS = 5;

/** A hung IdP must not hold requests open; discovery is retried on the next verify anyway. */
const DISCOVERY_TIMEOUT_MS = 5_000;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * True when the token has the shape of a compact JWS (three base64url
 * segments), so the gateway can tell an OIDC token from an API key without
 * trying to verify it.
 */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

interface Discovered {
  issuer: string;
  keys: ReturnType<typeof createRemoteJWKSet>;
}

function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

async function discover(configuredIssuer: string): Promise<Discovered> {
  const base = withoutTrailingSlash(configuredIssuer);
  let metadata: unknown;
  try {
    const response = await fetch(`${base}/.well-known/openid-configuration`, {
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    metadata = await response.json();
  } catch (cause) {
    throw new OidcTokenError('issuer discovery failed', { cause });
  }

  const { issuer, jwks_uri: jwksUri } = (metadata ?? {}) as { issuer?: unknown; jwks_uri?: unknown };
  if (typeof issuer !== 'string' || typeof jwksUri !== 'string' || !URL.canParse(jwksUri)) {
    throw new OidcTokenError('issuer discovery failed');
  }
  // OIDC Discovery §4.3: the advertised issuer must be the one we asked. Without
  // this check a misconfigured or hostile discovery document could make us
  // trust tokens minted for a different issuer.
  if (withoutTrailingSlash(issuer) !== base) {
    throw new OidcTokenError('issuer discovery failed');
  }
  return { issuer, keys: createRemoteJWKSet(new URL(jwksUri)) };
}

function toTokenError(error: unknown): OidcTokenError {
  if (error instanceof OidcTokenError) return error;
  if (error instanceof errors.JWTExpired) return new OidcTokenError('token expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return new OidcTokenError('token audience mismatch');
    if (error.claim === 'iss') return new OidcTokenError('token issuer mismatch');
    return new OidcTokenError('invalid token');
  }
  // A token signed by a key the issuer does not publish is as forged as one
  // whose signature does not match a published key.
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey) {
    return new OidcTokenError('token signature invalid');
  }
  // The JWKS could not be fetched: the token may be fine, the IdP is not.
  // Non-jose errors here come from the JWKS fetch (network failure).
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || !(error instanceof errors.JOSEError)) {
    return new OidcTokenError('issuer keys unavailable');
  }
  return new OidcTokenError('invalid token');
}

function emailFrom(payload: JWTPayload, claim: string): string {
  const raw = payload[claim];
  const email = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
  // The local part and domain must both be present; anything else is not an
  // address we could match to a user.
  const at = email.indexOf('@');
  if (at <= 0 || at === email.length - 1) throw new OidcTokenError('token has no email claim');
  // An IdP that says the address is unverified lets anyone claim it; only an
  // explicit `false` is rejected since access tokens rarely carry this claim.
  if (payload.email_verified === false) throw new OidcTokenError('token email is not verified');
  return email;
}

export function createOidcVerifier(options: OidcOptions): OidcVerifier {
  const emailClaim = options.emailClaim || 'email';
  if (!options.audience) throw new Error('OIDC needs an audience (MARINER_OIDC_AUDIENCE): the client id tokens are minted for');
  // The in-flight or settled discovery; cleared on failure so the next verify
  // retries instead of the gateway rejecting every token until restart.
  let discovery: Promise<Discovered> | undefined;

  function discovered(): Promise<Discovered> {
    if (!discovery) {
      const attempt = discover(options.issuer);
      discovery = attempt;
      attempt.catch(() => {
        if (discovery === attempt) discovery = undefined;
      });
    }
    return discovery;
  }

  return {
    async verify(token) {
      try {
        const { issuer, keys } = await discovered();
        const { payload } = await jwtVerify(token, keys, {
          issuer,
          audience: options.audience,
          algorithms: ALGORITHMS,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          // A token without an expiry would be valid forever; one without a
          // subject cannot be attributed.
          requiredClaims: ['exp', 'sub'],
        });
        return { email: emailFrom(payload, emailClaim), subject: payload.sub as string, expiresAt: new Date((payload.exp as number) * 1000) };
      } catch (error) {
        throw toTokenError(error);
      }
    },
  };
}
