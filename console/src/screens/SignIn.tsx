import { Button, Card, Center, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { signIn } from '../client';
import { ApiError } from '../ui';

/** Sign-in with an API key: the platform checks it and keeps it in an HttpOnly cookie. */
export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [apiKey, setApiKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(apiKey.trim());
      setApiKey('');
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
        <form onSubmit={submit} aria-label="Sign in">
          <Stack>
            <Title order={2}>Mariner console</Title>
            <Text size="sm" c="dimmed">
              Sign in with an API key (<code>npm start</code> prints the admin key). The platform keeps it in an HttpOnly session cookie; this page never stores
              it.
            </Text>
            <PasswordInput label="API key" placeholder="sk-..." value={apiKey} onChange={(e) => setApiKey(e.currentTarget.value)} required autoFocus />
            <ApiError error={error} title="Sign-in failed" />
            <Button type="submit" loading={busy} disabled={!apiKey.trim()}>
              Sign in
            </Button>
          </Stack>
        </form>
      </Card>
    </Center>
  );
}
