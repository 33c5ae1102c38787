import { Button, Card, Group, Select, Stack, Text, Textarea, Title } from '@mantine/core';
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useClient, useQuery } from 'urql';
import { ChatStreamDocument, ModelsDocument } from '../generated/graphql';
import { ApiError, CodeTabs } from '../ui';

interface Message {
  role: 'USER' | 'ASSISTANT';
  content: string;
}

/** Chat with a model, streamed through the typed chatCompletionStream subscription; the request as code. */
export function Playground() {
  const client = useClient();
  const [models] = useQuery({ query: ModelsDocument });
  // Inactive models too: the first request activates a model on demand. Not transcription models.
  const usable = (models.data?.models.items ?? []).filter((m) => m.loadingStatus === 'SUCCEEDED' && !m.formats.includes('WHISPER_GGML'));
  const [model, setModel] = useState<string | null>(null);
  const [draft, setDraft] = useState('');
  const [messages, setMessages] = useState<Message[]>([]);
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<Error | string | null>(null);
  const stop = useRef<(() => void) | null>(null);
  useEffect(() => () => stop.current?.(), []);
  useEffect(() => {
    if (!model && usable[0]) setModel(usable[0].id);
  }, [model, usable]);

  const send = (event: FormEvent) => {
    event.preventDefault();
    if (!model || !draft.trim()) return;
    const history: Message[] = [...messages, { role: 'USER', content: draft.trim() }];
    setMessages([...history, { role: 'ASSISTANT', content: '' }]);
    setDraft('');
    setError(null);
    setStreaming(true);
    const { unsubscribe } = client
      .subscription(ChatStreamDocument, { input: { model, messages: history.map((m) => ({ role: m.role, content: m.content })), maxTokens: 256 } })
      .subscribe((result) => {
        if (result.error) {
          setError(result.error.graphQLErrors[0]?.message ?? result.error.message);
          setStreaming(false);
          return;
        }
        const text = result.data?.chatCompletionStream.choices.map((c) => c.delta.content ?? '').join('') ?? '';
        if (text)
          setMessages((current) => {
            const next = [...current];
            const last = next[next.length - 1]!;
            next[next.length - 1] = { ...last, content: last.content + text };
            return next;
          });
        if (result.data?.chatCompletionStream.choices.some((c) => c.finishReason)) setStreaming(false);
      });
    stop.current = () => {
      unsubscribe();
      setStreaming(false);
    };
  };

  const origin = window.location.origin;
  const lastPrompt = [...messages].reverse().find((m) => m.role === 'USER')?.content ?? draft ?? 'Hello';
  const body = JSON.stringify({ model: model ?? 'MODEL', messages: [{ role: 'user', content: lastPrompt || 'Hello' }], stream: true });
  const samples = [
    {
      label: 'curl',
      code: `curl ${origin}/v1/chat/completions \\\n  -H "Authorization: Bearer $MARINER_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${body.replace(/'/g, "'\\''")}'`,
    },
    {
      label: 'Python',
      code: `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${origin}/v1", api_key=os.environ["MARINER_API_KEY"])\nstream = client.chat.completions.create(\n    model=${JSON.stringify(model ?? 'MODEL')},\n    messages=[{"role": "user", "content": ${JSON.stringify(lastPrompt || 'Hello')}}],\n    stream=True,\n)\nfor chunk in stream:\n    print(chunk.choices[0].delta.content or "", end="")`,
    },
    {
      label: 'Node.js',
      code: `import OpenAI from 'openai';\n\nconst client = new OpenAI({ baseURL: '${origin}/v1', apiKey: process.env.MARINER_API_KEY });\nconst stream = await client.chat.completions.create({\n  model: ${JSON.stringify(model ?? 'MODEL')},\n  messages: [{ role: 'user', content: ${JSON.stringify(lastPrompt || 'Hello')} }],\n  stream: true,\n});\nfor await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '');`,
    },
  ];

  return (
    <Stack>
      <Title order={2}>Playground</Title>
      <ApiError error={models.error ?? error} />
      <Select
        label="Model"
        placeholder={models.fetching ? 'Loading models…' : 'No model loaded'}
        data={usable.map((m) => m.id)}
        value={model}
        onChange={setModel}
        allowDeselect={false}
        maw={420}
      />
      <Card withBorder padding="md" aria-label="Conversation" role="log" aria-live="polite" aria-busy={streaming}>
        <Stack gap="sm">
          {messages.length === 0 && <Text c="dimmed">Say something to the model.</Text>}
          {messages.map((m, i) => (
            <div key={i} data-testid={`message-${m.role.toLowerCase()}`}>
              <Text size="xs" fw={700} c="dimmed">
                {m.role === 'USER' ? 'You' : model}
              </Text>
              <Text style={{ whiteSpace: 'pre-wrap', overflowWrap: 'anywhere' }}>{m.content || (streaming && i === messages.length - 1 ? '…' : '')}</Text>
            </div>
          ))}
        </Stack>
      </Card>
      <form onSubmit={send} aria-label="Send a message">
        <Stack gap="xs">
          <Textarea
            label="Message"
            autosize
            minRows={2}
            value={draft}
            onChange={(e) => setDraft(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.metaKey || e.ctrlKey)) send(e);
            }}
          />
          <Group>
            <Button type="submit" disabled={!model || !draft.trim() || streaming}>
              Send
            </Button>
            {streaming && (
              <Button variant="light" color="orange" onClick={() => stop.current?.()}>
                Stop
              </Button>
            )}
            <Button variant="subtle" onClick={() => setMessages([])} disabled={streaming || messages.length === 0}>
              Clear
            </Button>
          </Group>
        </Stack>
      </form>
      <Title order={4}>This request as code</Title>
      <CodeTabs samples={samples} />
    </Stack>
  );
}
