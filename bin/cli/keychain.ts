import { createRequire } from 'node:module';

/**
 * The OS keychain, where `mariner login` keeps a context's secret (its API key or OIDC ID token) when the
 * machine has one: the macOS Keychain, the Windows Credential Manager, or on Linux the freedesktop Secret
 * Service (GNOME Keyring, KWallet) over the D-Bus session bus; through @napi-rs/keyring (keyring-rs).
 * One entry per context: service "mariner", account `keychainAccount(context)`.
 *
 * - Loaded on first use, and a failure to load is one more way of "no keychain here": a platform without
 *   the package's prebuilt binary keeps its credentials in the file, like a server without a D-Bus session.
 * - Synchronous: a command resolves its context synchronously (`Invocation.client()` in command.ts), and one
 *   call is a few milliseconds; a locked keyring without a way to prompt fails at once (no wait).
 * - On Linux the entry is pinned to the Secret Service. keyring-rs otherwise falls back to the kernel's
 *   keyutils, whose keys live in the login session and are gone after a logout or reboot: a login that
 *   silently does not last.
 */
export const KEYCHAIN_SERVICE = 'mariner';

/** No keychain here (no D-Bus session, a locked keyring, no binary for this platform), or it refused: the reason. */
export class KeychainUnavailable extends Error {}

type Keyring = typeof import('@napi-rs/keyring');
let keyring: Keyring | Error | undefined;

function entry(account: string): InstanceType<Keyring['Entry']> {
  if (keyring === undefined) {
    try {
      keyring = createRequire(import.meta.url)('@napi-rs/keyring') as Keyring;
    } catch (error) {
      keyring = error as Error;
    }
  }
  if (keyring instanceof Error) throw new KeychainUnavailable(`the keychain library did not load: ${firstLine(keyring.message)}`);
  // (With the store pinned, this already connects to the Secret Service: it throws where there is none.)
  return new keyring.Entry(KEYCHAIN_SERVICE, account, { linux: { store: 'secret-service' } });
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/\.$/, '');
}

/** Runs one keychain call; every failure of the store itself becomes KeychainUnavailable with its message. */
function call<T>(account: string, action: (e: InstanceType<Keyring['Entry']>) => T): T {
  try {
    return action(entry(account));
  } catch (error) {
    if (error instanceof KeychainUnavailable) throw error;
    throw new KeychainUnavailable(firstLine((error as Error).message));
  }
}

/** A context's entry: its name and URL, so two contexts (or one name re-pointed at another platform) never share one. */
export function keychainAccount(context: { name: string; url: string }): string {
  return `${context.name} (${context.url})`;
}

export function setKeychainSecret(account: string, secret: string): void {
  call(account, (e) => e.setPassword(secret));
}

/** The secret, or null when the keychain has no such entry. */
export function getKeychainSecret(account: string): string | null {
  return call(account, (e) => e.getPassword());
}

/** True when an entry was deleted, false when there was none. */
export function deleteKeychainSecret(account: string): boolean {
  return call(account, (e) => e.deletePassword());
}
