import { Alert, Button, Card, Center, Divider, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useEffect, useState, type FormEvent } from 'react';
import { signIn, signInOptions } from '../client';
import { ApiError } from '../ui';

/** Why an OIDC sign-in came back without a session (gateway/oidcLogin.ts sends one of these codes). */
const OIDC_FAILURES: Record<string, string> = {
  denied: 'The identity provider did not let you in.',
  expired: 'The sign-in took too long or was started in another browser: try again.',
  state: 'The sign-in answer did not belong to this browser’s sign-in: try again.',
  token: 'The identity provider’s answer could not be verified.',
  user: 'Your account is not a Mariner user yet: ask an organization owner to add your email.',
  issuer: 'The identity provider could not be reached.',
};

const signInParams = () => new URLSearchParams(window.location.hash.split('?')[1] ?? '');

function oidcFailure(): string | null {
  const code = signInParams().get('oidc-error');
  return code ? (OIDC_FAILURES[code] ?? 'The sign-in failed.') : null;
}

/** The page to be on after signing in: the one in the URL (where the session expired), or the models. */
function pageAfterSignIn(): string {
  const hash = window.location.hash;
  const page = hash.startsWith('#/sign-in') ? signInParams().get('return') : hash;
  return page && /^#\/[A-Za-z0-9._~%/-]*$/.test(page) ? page : '#/models';
}

/**
 * Sign-in with an API key, or through the organization's identity provider (OIDC) when one is configured;
 * `expired`: the session this page had ended, which it says. Either way the page in the URL is kept for after.
 */
export function SignIn({ onSignedIn, expired = false }: { onSignedIn: () => void; expired?: boolean }) {
  const [apiKey, setApiKey] = useState('');
  const [error, setError] = useState<string | null>(oidcFailure);
  const [busy, setBusy] = useState(false);
  const [oidc, setOidc] = useState(false);
  useEffect(() => {
    void signInOptions().then((options) => setOidc(options.oidc));
  }, []);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(apiKey.trim());
      setApiKey('');
      if (window.location.hash.startsWith('#/sign-in')) window.location.hash = pageAfterSignIn();
      onSignedIn();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Center mih="100vh" p="md">
      <Card withBorder shadow="sm" padding="lg" w={420} maw="100%">
        <Stack>
          <Title order={2}>Mariner console</Title>
          {expired && (
            <Alert color="yellow" title="Your session expired — sign in again" role="alert">
              You will be back on the page you were on.
            </Alert>
          )}
          {oidc && (
            <>
              <Button component="a" href={`/console/oidc/login?return=${encodeURIComponent(pageAfterSignIn())}`} variant="filled">
                Sign in with your identity provider
              </Button>
              <Divider label="or with an API key" labelPosition="center" />
            </>
          )}
          <form onSubmit={submit} aria-label="Sign in">
            <Stack>
              <Text size="sm" c="dimmed">
                Sign in with an API key (<code>npm start</code> prints the admin key). The platform keeps it in an HttpOnly session cookie; this page never
                stores it.
              </Text>
              <PasswordInput
                label="API key"
                placeholder="sk-..."
                value={apiKey}
                onChange={(e) => setApiKey(e.currentTarget.value)}
                required
                autoFocus={!oidc}
              />
              <ApiError error={error} title="Sign-in failed" />
              <Button type="submit" variant={oidc ? 'default' : 'filled'} loading={busy} disabled={!apiKey.trim()}>
                Sign in
              </Button>
            </Stack>
          </form>
        </Stack>
      </Card>
    </Center>
  );
}
