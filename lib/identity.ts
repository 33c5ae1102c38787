import { jwtVerify, SignJWT } from 'jose';
import type { ClusterAccess } from './clusterAccess.js';
import { forbidden } from './errors.js';

/** Organization roles (LLMariner user-manager OrganizationRole). */
export type OrganizationRole = 'OWNER' | 'READER' | 'TENANT_SYSTEM';
/** Project roles (LLMariner user-manager ProjectRole). */
export type ProjectRole = 'OWNER' | 'MEMBER';

export interface OrganizationBinding {
  organizationId: string;
  role: OrganizationRole;
  isDefault: boolean;
}

export interface ProjectBinding {
  projectId: string;
  organizationId: string;
  role: ProjectRole;
  isDefault: boolean;
}

/** Who is calling, as authenticated by the gateway (API key or OIDC token). */
export interface Principal {
  userId: string;
  internalUserId: string;
  tenantId: string;
  isServiceAccount: boolean;
  /** Set when the caller used an API key; the key fixes the project context. */
  apiKey: { id: string; organizationId: string; projectId: string; excludedFromRateLimiting: boolean } | null;
  organizations: OrganizationBinding[];
  projects: ProjectBinding[];
}

/** The project context the request runs in, with the scopes the caller's role grants there. */
export interface ProjectContext {
  organizationId: string;
  projectId: string;
  /** The role name of the role → scope table that applied. */
  role: string;
  scopes: string[];
}

/** What a subgraph knows about the caller of one request. */
export interface Identity {
  principal: Principal;
  /** null when no project could be resolved (e.g. an org READER without a project role). */
  project: ProjectContext | null;
  /** Why no project context could be resolved, when `project` is null. */
  projectRefusal?: string;
}

/** Where a project-scoped request runs: its tenant, organization and project, and the role that applied. */
export interface ProjectScope {
  tenantId: string;
  organizationId: string;
  projectId: string;
  role: string;
}

/**
 * The project scope of a request, for subgraphs whose records belong to projects. The policy map lets
 * only callers with a project context reach them; this refuses anyone else all the same.
 */
export function projectScopeOf(identity: Identity | null): ProjectScope {
  const project = identity?.project;
  if (!identity || !project) throw forbidden('No project context');
  return { tenantId: identity.principal.tenantId, organizationId: project.organizationId, projectId: project.projectId, role: project.role };
}

/**
 * A cluster agent, authenticated by its cluster's registration key (LLMariner AuthorizeWorker):
 * it acts for that cluster only, in that cluster's tenant, and only for the organizations the
 * cluster serves (lib/clusterAccess.ts), as they were when its credential was checked.
 */
export interface Worker extends ClusterAccess {
  clusterName: string;
  tenantId: string;
}

/**
 * A platform admin: an owner of the tenant's default organization (the one `mariner up` creates).
 * Platform admins register platform clusters, grant them to organizations and manage the tenant's
 * base-model catalog; every other organization owner acts for its own organization only.
 */
export function isPlatformAdmin(principal: Principal): boolean {
  return principal.organizations.some((o) => o.isDefault && o.role === 'OWNER');
}

const ISSUER = 'mariner-gateway';

interface InternalClaims {
  /** Request id, for log correlation across components. */
  rid: string;
  /** The authenticated identity; absent for the gateway's own system calls. */
  idn?: Identity;
  sys?: boolean;
  /** The cluster agent calling, for worker calls. */
  wrk?: Worker;
}

/** What a subgraph learns from a verified internal token. */
export interface InternalCaller {
  requestId: string;
  system: boolean;
  identity: Identity | null;
  worker: Worker | null;
}

/**
 * Internal identity tokens: short-lived HS256 JWTs the gateway mints for each subgraph call,
 * with the subgraph's name as audience. Subgraphs accept nothing else.
 */
export class InternalTokens {
  /** Imported once: jose would re-import raw key bytes on every sign and verify. */
  private readonly key: Promise<CryptoKey>;
  constructor(
    secret: string,
    readonly ttlSeconds: number,
  ) {
    if (secret.length < 32) throw new Error('internal token secret must be at least 32 characters');
    this.key = crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  async mint(audience: string, requestId: string, identity: Identity | null, system = false, worker: Worker | null = null): Promise<string> {
    const claims: InternalClaims = { rid: requestId };
    if (identity) claims.idn = identity;
    if (system) claims.sys = true;
    if (worker) claims.wrk = worker;
    return new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(audience)
      .setSubject(identity?.principal.userId ?? (worker ? `worker:${worker.clusterId}` : 'system'))
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(await this.key);
  }

  /**
   * Tokens already verified, until they expire: a caller reuses its token for a whole request (and the
   * inference data plane for many), and a signature check costs far more than a map read. A token is
   * its own proof, so a cached answer is exactly what verifying again would give until `exp`.
   */
  private readonly verified = new Map<string, { caller: InternalCaller; expiresAtMs: number }>();

  /** Returns the caller, or null when the token is missing, expired, forged or for another audience. */
  async verify(token: string | undefined, audience: string): Promise<InternalCaller | null> {
    if (!token) return null;
    const key = `${audience} ${token}`;
    const known = this.verified.get(key);
    if (known) {
      if (known.expiresAtMs > Date.now()) return known.caller;
      this.verified.delete(key);
    }
    try {
      const { payload } = await jwtVerify(token, await this.key, { issuer: ISSUER, audience, algorithms: ['HS256'] });
      const claims = payload as unknown as InternalClaims;
      const caller: InternalCaller = {
        requestId: String(claims.rid ?? ''),
        system: claims.sys === true,
        identity: claims.idn ?? null,
        worker: claims.wrk ?? null,
      };
      if (this.verified.size >= MAX_VERIFIED_TOKENS) this.verified.clear();
      if (typeof payload.exp === 'number') this.verified.set(key, { caller, expiresAtMs: payload.exp * 1000 });
      return caller;
    } catch {
      return null;
    }
  }
}

/** Verified tokens remembered at once (each a few KiB at most); past it the memory starts over. */
const MAX_VERIFIED_TOKENS = 10_000;

/** The header that carries the internal token from the gateway to a subgraph. */
export const INTERNAL_TOKEN_HEADER = 'x-mariner-internal-token';
