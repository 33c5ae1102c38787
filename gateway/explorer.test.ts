import { describe, it, expect } from 'vitest';
import { buildSchema, parse, validate } from 'graphql';
import { DEFAULT_QUERY, INTROSPECTION_QUERY, explorerHtml } from './explorer.js';

const SPEC_DEFAULT_QUERY =
  'query Me { self { id organizationRoleBindings { role organization { id title } } } }';

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

  it('keeps the API key under mariner.apiKey and sends the expected headers', () => {
    expect(html).toContain("'mariner.apiKey'");
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
