import { readFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { describe, it, expect } from 'vitest';
import { buildSchema, parse, validate } from 'graphql';
import { DEFAULT_QUERY, INTROSPECTION_QUERY, explorerHtml } from './explorer.js';

const SPEC_DEFAULT_QUERY = 'query Me { self { id organizationRoleBindings { role organization { id title } } } }';

function inlineScripts(html: string): string[] {
  return [...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/gi)].map((m) => m[1] ?? '');
}

/** Reads back the value the page assigns to a `var NAME = <json>;` line of its inline script. */
function embedded(html: string, name: string): unknown {
  const match = new RegExp(`var ${name} = (.*);\\n`).exec(html);
  if (!match?.[1]) throw new Error(`no ${name} in page`);
  return JSON.parse(match[1]);
}

describe('explorerHtml', () => {
  const html = explorerHtml({ endpoint: '/graphql' });

  it('is a complete page titled for Mariner', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain('<title>Mariner GraphQL explorer</title>');
    expect(html).toContain('</html>');
  });

  it('is explorer/index.html with its stylesheet and script inline', () => {
    const source = (name: string) => readFileSync(new URL(`./explorer/${name}`, import.meta.url), 'utf8');
    expect(html).toContain(`<style>\n${source('explorer.css')}</style>`);
    expect(inlineScripts(html)[0]).toMatch(/^\nvar ENDPOINT = .*;\nvar INTROSPECTION_QUERY = .*;\n/);
    expect(inlineScripts(html)[0]?.endsWith(source('explorer.js'))).toBe(true);
    expect(html).not.toMatch(/<link rel="stylesheet"|<script src=/);
  });

  it('loads nothing from another host', () => {
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/(^|[^:\w])\/\/[a-z0-9.-]+\.[a-z]{2,}\//i); // protocol-relative URLs
    expect(html).not.toMatch(/<script\b[^>]*\bsrc\s*=/i);
    expect(html).not.toMatch(/@import|url\(/i);
    const attributes = [...html.matchAll(/\b(?:src|href|action|srcset|poster)\s*=\s*["']?([^"'\s>]*)/gi)];
    for (const [, value] of attributes) expect(value).toMatch(/^(data:|#|$)/);
  });

  it('allows no URL except the endpoint it was given', () => {
    const endpoint = 'https://mariner.internal:8080/graphql';
    const page = explorerHtml({ endpoint });
    const urls = page.match(/(?:https?:)?\/\/[^\s"'<>\\)]+/gi) ?? [];
    expect(urls.length).toBeGreaterThan(0);
    for (const url of urls) expect(url).toBe(endpoint);
    expect(embedded(page, 'ENDPOINT')).toBe(endpoint);
  });

  it('embeds an endpoint containing </script> without breaking out', () => {
    const endpoint = '/graphql?x=</script><script>alert(1)</script><!--\u2028"\'&';
    const page = explorerHtml({ endpoint });
    expect(page).not.toContain('</script><script>alert');
    expect(page.match(/<script/gi)).toHaveLength(1);
    expect(page.match(/<\/script/gi)).toHaveLength(1);
    expect(page).not.toContain('<!--');
    expect(page).toContain('\\u003c/script\\u003e');
    expect(embedded(page, 'ENDPOINT')).toBe(endpoint);
  });

  it('has an inline script that parses', () => {
    const scripts = inlineScripts(html);
    expect(scripts).toHaveLength(1);
    expect(() => new Function(scripts[0] ?? '')).not.toThrow();
  });

  it('contains the default query in the editor', () => {
    expect(DEFAULT_QUERY.replace(/\s+/g, ' ').trim()).toBe(SPEC_DEFAULT_QUERY);
    const editor = /<textarea id="query"[^>]*>([\s\S]*?)<\/textarea>/.exec(html);
    expect(editor?.[1]?.replace(/\s+/g, ' ').trim()).toBe(SPEC_DEFAULT_QUERY);
  });

  it('sends the expected headers, and writes no HTML', () => {
    expect(html).toContain("'Bearer ' + key");
    expect(html).toContain("'content-type': 'application/json'");
    expect(html).toContain("'openai-organization'");
    expect(html).toContain("'openai-project'");
    expect(html).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it('embeds an introspection query that validates against a schema', () => {
    expect(embedded(html, 'INTROSPECTION_QUERY')).toBe(INTROSPECTION_QUERY);
    const schema = buildSchema('type Query { hello(name: String!): [String!]! }');
    expect(validate(schema, parse(INTROSPECTION_QUERY))).toEqual([]);
    expect(INTROSPECTION_QUERY.match(/ofType/g)?.length).toBeGreaterThanOrEqual(6);
  });
});

/** A Web Storage area that remembers every write. */
class RecordingStorage {
  readonly items = new Map<string, string>();
  readonly writes: string[] = [];
  getItem(name: string): string | null {
    return this.items.get(name) ?? null;
  }
  setItem(name: string, value: string): void {
    this.writes.push(`${name}=${value}`);
    this.items.set(name, String(value));
  }
  removeItem(name: string): void {
    this.items.delete(name);
  }
}

type Listener = (event: unknown) => void;

/** Just enough of a DOM element for the explorer's script: values, text, listeners. */
function fakeElement(): Record<string, any> {
  const listeners: Record<string, Listener[]> = {};
  const element: Record<string, any> = {
    value: '',
    textContent: '',
    className: '',
    style: {},
    classList: { add() {}, remove() {}, toggle() {}, contains: () => false },
    addEventListener: (type: string, listener: Listener) => (listeners[type] ??= []).push(listener),
    appendChild: (child: unknown) => child,
    setAttribute() {},
    querySelectorAll: () => [],
    focus() {},
    setSelectionRange() {},
    setRangeText() {},
    dispatchEvent: () => true,
    fire: (type: string) => {
      for (const listener of listeners[type] ?? []) listener.call(element, { type, target: element, preventDefault() {} });
    },
  };
  return element;
}

/**
 * The explorer's inline script run as a browser would run it on a page load, against a fake DOM and
 * the given storage (what survives a reload); every request and every cookie written is recorded.
 */
function openExplorer(page: string, storage: { local: RecordingStorage; session: RecordingStorage; cookies: string[] }) {
  const elements = new Map<string, Record<string, any>>();
  const byId = (id: string) => {
    if (!elements.has(id)) elements.set(id, fakeElement());
    return elements.get(id)!;
  };
  const requests: { url: string; headers: Record<string, string>; body: string }[] = [];
  const document = {
    getElementById: byId,
    createElement: () => fakeElement(),
    createTextNode: () => fakeElement(),
    addEventListener() {},
    execCommand: () => false,
    get cookie() {
      return storage.cookies.join('; ');
    },
    set cookie(value: string) {
      storage.cookies.push(value);
    },
  };
  const fetch = (url: string, init: { headers: Record<string, string>; body: string }) => {
    requests.push({ url, headers: init.headers, body: init.body });
    return new Promise(() => {}); // the answers do not matter here
  };
  runInNewContext(inlineScripts(page)[0] ?? '', {
    document,
    navigator: { platform: 'Linux' },
    localStorage: storage.local,
    sessionStorage: storage.session,
    fetch,
    performance: { now: () => 0 },
    setTimeout: (callback: () => void) => (callback(), 0),
    clearTimeout() {},
    Event: class {},
  });
  return { input: byId, requests };
}

describe('the explorer keeps the API key in the page only (notebooks share its origin)', () => {
  const page = explorerHtml({ endpoint: '/graphql' });
  const key = `sk-${'k'.repeat(40)}`;

  it('a typed key goes into requests but into no storage or cookie, and a reload asks for it again', () => {
    const storage = { local: new RecordingStorage(), session: new RecordingStorage(), cookies: [] as string[] };
    const first = openExplorer(page, storage);
    first.input('api-key').value = key;
    first.input('api-key').fire('input');
    first.input('org').value = 'org-abc';
    first.input('org').fire('input');
    first.input('query').value = '{ self { id } }';
    first.input('run').fire('click');
    const run = first.requests.at(-1)!;
    expect(JSON.parse(run.body)).toMatchObject({ query: '{ self { id } }' });
    expect(run.headers).toMatchObject({ authorization: `Bearer ${key}`, 'openai-organization': 'org-abc' });

    const persisted = [...storage.local.writes, ...storage.session.writes, ...storage.cookies].join('\n');
    expect(persisted).not.toContain(key);
    expect(persisted).not.toContain('k'.repeat(20));

    const reloaded = openExplorer(page, storage);
    expect(reloaded.input('api-key').value).toBe('');
    expect(reloaded.input('org').value).toBe('org-abc');
    expect(reloaded.requests.every((request) => request.headers['authorization'] === undefined)).toBe(true);
  });

  it('a key an earlier version left in localStorage is removed and not used', () => {
    const storage = { local: new RecordingStorage(), session: new RecordingStorage(), cookies: [] as string[] };
    storage.local.items.set('mariner.apiKey', key);
    const opened = openExplorer(page, storage);
    expect(storage.local.getItem('mariner.apiKey')).toBeNull();
    expect(opened.input('api-key').value).toBe('');
    expect(opened.requests.every((request) => request.headers['authorization'] === undefined)).toBe(true);
  });
});
