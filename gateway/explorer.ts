/**
 * A small, fully offline GraphQL explorer that the gateway serves when a browser GETs /graphql.
 *
 * The page is written as what it is, in explorer/: `index.html`, `explorer.css` and `explorer.js`
 * (a browser script). They are read once, when this module loads, and rendered into one page with the
 * stylesheet and the script inline (as Hive gateway renders its landing page into one asset), so the
 * page loads nothing from anywhere: no external scripts, fonts, images or CDNs, and it works on machines
 * without internet access. Per request only the endpoint changes, put before the script as JSON that
 * cannot close the element.
 *
 * The files are found next to this module (`new URL('./explorer/...', import.meta.url)`), from the
 * TypeScript source and from compiled output alike: a build must copy gateway/explorer/ beside it.
 */
import { readFileSync } from 'node:fs';

const ASSETS = new URL('./explorer/', import.meta.url);

function asset(name: string): string {
  const url = new URL(name, ASSETS);
  try {
    return readFileSync(url, 'utf8');
  } catch (error) {
    throw new Error(`the explorer page's ${name} is missing at ${url.pathname} (a build must copy gateway/explorer/): ${(error as Error).message}`);
  }
}

const TYPE_REF_DEPTH = 6;

function typeRefFragment(depth: number): string {
  let inner = 'kind name';
  for (let i = 0; i < depth; i++) inner = `kind name ofType { ${inner} }`;
  return `fragment TypeRef on __Type { ${inner} }`;
}

/** The introspection query the sidebar posts: root types, every type's fields, args and type refs. */
export const INTROSPECTION_QUERY = `query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      kind
      name
      description
      fields(includeDeprecated: true) {
        name
        description
        args { name description defaultValue type { ...TypeRef } }
        type { ...TypeRef }
        isDeprecated
        deprecationReason
      }
      inputFields { name description defaultValue type { ...TypeRef } }
      enumValues(includeDeprecated: true) { name }
    }
  }
}
${typeRefFragment(TYPE_REF_DEPTH)}
`;

/** JSON that is safe to place inside an inline <script>: it can never close the element. */
function scriptJson(value: string): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function unescapeHtml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The page around the one occurrence of `tag`; a page edited out of that shape fails at start. */
function splitAt(page: string, tag: string): [string, string] {
  const at = page.indexOf(tag);
  if (at < 0 || page.indexOf(tag, at + 1) >= 0) throw new Error(`explorer/index.html must contain ${tag} exactly once`);
  return [page.slice(0, at), page.slice(at + tag.length)];
}

/** Source text going inside an inline element must not be able to end it or open a comment. */
function inlinable(name: string, element: string): string {
  const text = asset(name);
  if (new RegExp(`</${element}|<!--`, 'i').test(text)) throw new Error(`explorer/${name} must not contain </${element} or <!--`);
  return text;
}

/** The page with the stylesheet and the script inline, split where the per-request constants go. */
const [PAGE_HEAD, PAGE_TAIL] = (() => {
  const [beforeStyle, afterStyle] = splitAt(asset('index.html'), '<link rel="stylesheet" href="explorer.css">');
  const page = `${beforeStyle}<style>\n${inlinable('explorer.css', 'style')}</style>${afterStyle}`;
  const [beforeScript, afterScript] = splitAt(page, '<script src="explorer.js"></script>');
  return [`${beforeScript}<script>\n`, `${inlinable('explorer.js', 'script')}</script>${afterScript}`];
})();

/** The query the editor starts with (index.html's editor); it works on a fresh install for any authenticated key. */
export const DEFAULT_QUERY = (() => {
  const editor = /<textarea id="query"[^>]*>([\s\S]*?)<\/textarea>/.exec(PAGE_HEAD);
  if (!editor?.[1]) throw new Error('explorer/index.html has no query editor (<textarea id="query">)');
  return unescapeHtml(editor[1]);
})();

const INTROSPECTION_CONSTANT = `var INTROSPECTION_QUERY = ${scriptJson(INTROSPECTION_QUERY)};\n`;

/** The explorer page for a browser that asked for `endpoint` (the page posts its queries there). */
export function explorerHtml(options: { endpoint: string }): string {
  return `${PAGE_HEAD}var ENDPOINT = ${scriptJson(options.endpoint)};\n${INTROSPECTION_CONSTANT}${PAGE_TAIL}`;
}
