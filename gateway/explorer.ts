/**
 * A small, fully offline GraphQL explorer that the gateway serves when a browser GETs /graphql.
 *
 * Everything is inline (CSS and vanilla JS): no external scripts, fonts, images or CDNs, so it
 * works on machines without internet access. Data coming from the server is only ever put into
 * the DOM through textContent / DOM nodes, never innerHTML.
 */

/** The query the editor starts with; it works on a fresh install for any authenticated key. */
export const DEFAULT_QUERY = `query Me {
  self {
    id
    organizationRoleBindings {
      role
      organization {
        id
        title
      }
    }
  }
}
`;

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

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE = String.raw`
  :root {
    --bg: #f4f6f9; --panel: #fff; --border: #d8dee6; --text: #1d2733; --muted: #64748b;
    --accent: #2563eb; --accent-dark: #1d4ed8; --head: #0f1e33; --ok: #15803d; --err: #b91c1c;
    --mono: ui-monospace, SFMono-Regular, Menlo, Monaco, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace;
  }
  * { box-sizing: border-box; }
  html, body { height: 100%; }
  body {
    margin: 0; display: flex; flex-direction: column; background: var(--bg); color: var(--text);
    font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif;
  }
  header {
    display: flex; align-items: center; flex-wrap: wrap; gap: 10px 20px; padding: 10px 16px;
    background: var(--head); color: #e8eef6;
  }
  header h1 { margin: 0; font-size: 17px; font-weight: 600; letter-spacing: .2px; white-space: nowrap; }
  .endpoint {
    font: 12px var(--mono); padding: 2px 8px; border-radius: 999px; background: #1e3354; color: #b8c7dc;
    max-width: 260px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  }
  .creds { display: flex; align-items: flex-end; gap: 10px; margin-left: auto; flex-wrap: wrap; }
  .creds label { display: flex; flex-direction: column; gap: 2px; font-size: 11px; color: #9fb1c9; text-transform: uppercase; letter-spacing: .4px; }
  .creds input {
    font: 13px var(--mono); padding: 5px 8px; border: 1px solid #32486a; border-radius: 6px;
    background: #13233d; color: #fff; width: 150px;
  }
  .creds input:focus { outline: 2px solid #60a5fa; outline-offset: 0; }
  .creds #api-key { width: 250px; }
  .keywrap { display: flex; gap: 4px; align-items: stretch; }
  button {
    font: inherit; font-size: 13px; cursor: pointer; border-radius: 6px; padding: 5px 12px;
    border: 1px solid var(--border); background: #fff; color: var(--text);
  }
  button:hover { background: #eef2f7; }
  button:focus-visible { outline: 2px solid #60a5fa; outline-offset: 1px; }
  header button { background: #1e3354; border-color: #32486a; color: #dbe5f1; padding: 0 9px; font-size: 12px; }
  header button:hover { background: #28406a; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
  button.primary:hover { background: var(--accent-dark); }
  button:disabled { opacity: .6; cursor: progress; }
  main {
    flex: 1; min-height: 0; display: grid; gap: 12px; padding: 12px;
    grid-template-columns: 290px minmax(0, 1fr) minmax(0, 1fr);
  }
  .column { display: flex; flex-direction: column; gap: 12px; min-height: 0; }
  .panel {
    background: var(--panel); border: 1px solid var(--border); border-radius: 8px;
    display: flex; flex-direction: column; min-height: 0; overflow: hidden;
  }
  .panel-head {
    display: flex; align-items: center; gap: 8px; padding: 7px 10px; border-bottom: 1px solid var(--border);
    background: #f8fafc; min-height: 46px;
  }
  .panel-head h2 { margin: 0; font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
  .panel-head .spacer { flex: 1; }
  .hint { font-size: 12px; color: var(--muted); }
  textarea, pre.code {
    font: 13px/1.5 var(--mono); color: var(--text); tab-size: 2; margin: 0;
  }
  textarea {
    flex: 1; min-height: 0; width: 100%; resize: none; border: 0; padding: 10px 12px; outline: none;
    background: #fff; white-space: pre; overflow: auto;
  }
  textarea:focus { background: #fcfdff; }
  #query-panel { flex: 3; }
  #variables-panel { flex: 1; min-height: 130px; }
  .var-error {
    display: none; padding: 6px 10px; font-size: 12px; color: var(--err); background: #fef2f2;
    border-top: 1px solid #fecaca; white-space: pre-wrap;
  }
  .var-error.shown { display: block; }
  #variables.invalid { background: #fffafa; }
  pre.code { flex: 1; overflow: auto; padding: 10px 12px; white-space: pre-wrap; word-break: break-word; }
  pre.code.placeholder { color: var(--muted); font-family: inherit; }
  .pill { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 999px; background: #e2e8f0; color: #334155; }
  .pill.ok { background: #dcfce7; color: var(--ok); }
  .pill.err { background: #fee2e2; color: var(--err); }
  .pill:empty { display: none; }
  #timing { font-size: 12px; color: var(--muted); font-variant-numeric: tabular-nums; }
  .j-key { color: #7c3aed; } .j-str { color: #047857; } .j-num { color: #b45309; } .j-lit { color: #2563eb; }
  #schema-panel .filter { padding: 8px 10px; border-bottom: 1px solid var(--border); }
  #schema-filter { width: 100%; font: inherit; font-size: 13px; padding: 5px 8px; border: 1px solid var(--border); border-radius: 6px; }
  #schema { flex: 1; overflow: auto; padding: 4px 0 10px; }
  #schema h3 {
    margin: 10px 10px 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted);
    display: flex; justify-content: space-between;
  }
  #schema ul { list-style: none; margin: 0; padding: 0; }
  #schema li button {
    display: block; width: 100%; text-align: left; border: 0; border-radius: 0; background: none; padding: 4px 10px;
    font: 12.5px/1.45 var(--mono); white-space: normal; word-break: break-word;
  }
  #schema li button:hover { background: #eef4ff; }
  .f-name { color: #1e40af; font-weight: 600; }
  .f-args { color: var(--muted); }
  .f-arg { color: #334155; }
  .f-type { color: #047857; }
  .f-deprecated .f-name { text-decoration: line-through; }
  .schema-msg { margin: 10px; font-size: 13px; color: var(--muted); white-space: pre-wrap; word-break: break-word; }
  .schema-msg.err { color: var(--err); background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px; padding: 8px 10px; }
  .schema-foot { padding: 6px 10px; border-top: 1px solid var(--border); }
  kbd { font: 11px var(--mono); border: 1px solid var(--border); border-bottom-width: 2px; border-radius: 4px; padding: 0 4px; background: #fff; }
`;

// Inline script. Written without backticks or template placeholders so it can live inside
// String.raw; values from the server are injected with scriptJson() only.
const SCRIPT = String.raw`
(function () {
  'use strict';
  // The API key lives in this page's memory only, never in localStorage, sessionStorage or a cookie:
  // notebooks run user-chosen images on this origin, and any script there could read those back.
  // After a reload the user enters it again. Earlier versions kept it under this name: remove it.
  var LEGACY_KEY_STORAGE = 'mariner.apiKey';
  var ORG_STORAGE = 'mariner.organization';
  var PROJECT_STORAGE = 'mariner.project';

  function $(id) { return document.getElementById(id); }
  var keyInput = $('api-key'), orgInput = $('org'), projectInput = $('project');
  var queryEl = $('query'), variablesEl = $('variables'), varError = $('var-error');
  var runButton = $('run'), statusEl = $('status'), timingEl = $('timing'), resultEl = $('result');
  var schemaEl = $('schema'), filterEl = $('schema-filter');

  $('endpoint').textContent = 'POST ' + ENDPOINT;
  if (/Mac|iPhone|iPad/.test(navigator.platform || '')) $('run-hint').textContent = '\u2318 Enter';

  function load(name) { try { return localStorage.getItem(name) || ''; } catch (e) { return ''; } }
  function store(name, value) {
    try { if (value) localStorage.setItem(name, value); else localStorage.removeItem(name); } catch (e) { /* storage disabled */ }
  }
  store(LEGACY_KEY_STORAGE, '');
  orgInput.value = load(ORG_STORAGE);
  projectInput.value = load(PROJECT_STORAGE);

  function requestHeaders() {
    var h = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
    var key = keyInput.value.trim();
    if (key) h.authorization = 'Bearer ' + key;
    if (orgInput.value.trim()) h['openai-organization'] = orgInput.value.trim();
    if (projectInput.value.trim()) h['openai-project'] = projectInput.value.trim();
    return h;
  }

  function post(payload) {
    var started = performance.now();
    return fetch(ENDPOINT, {
      method: 'POST', headers: requestHeaders(), body: JSON.stringify(payload), credentials: 'same-origin'
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try { json = JSON.parse(text); } catch (e) { json = null; }
        return { status: res.status, statusText: res.statusText, text: text, json: json, ms: performance.now() - started };
      });
    });
  }

  // ---- editors ---------------------------------------------------------------------------
  function replaceRange(el, start, end, text) {
    el.focus();
    el.setSelectionRange(start, end);
    var done = false;
    // execCommand keeps the browser's undo history; fall back to setRangeText where unsupported.
    try { done = text.length > 0 && document.execCommand('insertText', false, text); } catch (e) { done = false; }
    if (!done) {
      el.setRangeText(text, start, end, 'end');
      el.dispatchEvent(new Event('input'));
    }
  }

  function editorKeys(e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') { e.preventDefault(); run(); return; }
    if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      replaceRange(e.target, e.target.selectionStart, e.target.selectionEnd, '  ');
    }
  }
  queryEl.addEventListener('keydown', editorKeys);
  variablesEl.addEventListener('keydown', editorKeys);
  document.addEventListener('keydown', function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter' && e.target !== queryEl && e.target !== variablesEl) {
      e.preventDefault(); run();
    }
  });

  // ---- variables -------------------------------------------------------------------------
  var INVALID = {};
  function showVarError(message) {
    varError.textContent = message;
    varError.classList.toggle('shown', !!message);
    variablesEl.classList.toggle('invalid', !!message);
  }
  function lineCol(text, pos) {
    var before = text.slice(0, pos).split('\n');
    return ' (line ' + before.length + ', column ' + (before[before.length - 1].length + 1) + ')';
  }
  function parseVariables() {
    var text = variablesEl.value;
    if (!text.trim()) { showVarError(''); return null; }
    var value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      var msg = String(e && e.message || e);
      var m = /position (\d+)/.exec(msg);
      showVarError('Variables are not valid JSON: ' + msg + (m && !/line \d+/.test(msg) ? lineCol(text, Number(m[1])) : ''));
      return INVALID;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      showVarError('Variables must be a JSON object, for example {"id": "..."}.');
      return INVALID;
    }
    showVarError('');
    return value;
  }
  var varTimer = 0;
  variablesEl.addEventListener('input', function () {
    clearTimeout(varTimer);
    if (varError.classList.contains('shown')) showVarError('');
    varTimer = setTimeout(parseVariables, 600);
  });

  // Picks the operation under the cursor when the document holds several named operations.
  function operationNameAtCursor(query) {
    var re = /(^|[\s}])(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/g;
    var ops = [], m;
    while ((m = re.exec(query))) ops.push({ at: m.index, name: m[3] });
    if (ops.length < 2) return undefined;
    var cursor = queryEl.selectionStart, chosen = ops[0];
    for (var i = 0; i < ops.length; i++) if (ops[i].at <= cursor) chosen = ops[i];
    return chosen.name;
  }

  // ---- results ---------------------------------------------------------------------------
  function renderJson(target, text) {
    target.textContent = '';
    if (text.length > 300000) { target.textContent = text; return; }
    var re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
    var last = 0, m;
    function span(cls, value) {
      var s = document.createElement('span');
      s.className = cls;
      s.textContent = value;
      target.appendChild(s);
    }
    while ((m = re.exec(text))) {
      if (m.index > last) target.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1]) {
        span(m[2] ? 'j-key' : 'j-str', m[1]);
        if (m[2]) target.appendChild(document.createTextNode(m[2]));
      } else if (m[3]) {
        span('j-lit', m[0]);
      } else {
        span('j-num', m[0]);
      }
      last = re.lastIndex;
    }
    if (last < text.length) target.appendChild(document.createTextNode(text.slice(last)));
  }

  function showResult(r) {
    resultEl.classList.remove('placeholder');
    var failed = r.status >= 400 || !!(r.json && r.json.errors && r.json.errors.length);
    var errorCount = r.json && r.json.errors && r.json.errors.length ? r.json.errors.length : 0;
    statusEl.textContent = 'HTTP ' + r.status + (r.statusText ? ' ' + r.statusText : '') +
      (errorCount ? ' \u00b7 ' + errorCount + (errorCount === 1 ? ' error' : ' errors') : '');
    statusEl.className = 'pill ' + (failed ? 'err' : 'ok');
    timingEl.textContent = Math.round(r.ms) + ' ms';
    if (r.json !== null) renderJson(resultEl, JSON.stringify(r.json, null, 2));
    else resultEl.textContent = r.text || '(empty response body)';
  }

  var running = false;
  function run() {
    if (running) return;
    var variables = parseVariables();
    if (variables === INVALID) { variablesEl.focus(); return; }
    var query = queryEl.value;
    if (!query.trim()) {
      resultEl.classList.add('placeholder');
      resultEl.textContent = 'The query editor is empty.';
      return;
    }
    var payload = { query: query };
    if (variables) payload.variables = variables;
    var operationName = operationNameAtCursor(query);
    if (operationName) payload.operationName = operationName;
    running = true;
    runButton.disabled = true;
    statusEl.className = 'pill';
    statusEl.textContent = 'Running\u2026';
    timingEl.textContent = '';
    var started = performance.now();
    post(payload).then(showResult, function (err) {
      statusEl.textContent = 'Network error';
      statusEl.className = 'pill err';
      timingEl.textContent = Math.round(performance.now() - started) + ' ms';
      resultEl.classList.remove('placeholder');
      resultEl.textContent = 'Could not reach ' + ENDPOINT + ': ' + String(err && err.message || err);
    }).then(function () {
      running = false;
      runButton.disabled = false;
    });
  }
  runButton.addEventListener('click', run);

  // ---- schema sidebar --------------------------------------------------------------------
  var types = {};
  var schemaSeq = 0;

  function typeString(ref) {
    if (!ref) return '?';
    if (ref.kind === 'NON_NULL') return typeString(ref.ofType) + '!';
    if (ref.kind === 'LIST') return '[' + typeString(ref.ofType) + ']';
    return ref.name || '?';
  }
  function namedType(ref) {
    while (ref && ref.ofType) ref = ref.ofType;
    return ref ? types[ref.name] : undefined;
  }
  function isRequired(arg) { return arg.type && arg.type.kind === 'NON_NULL' && arg.defaultValue == null; }

  function schemaMessage(text, isError) {
    schemaEl.textContent = '';
    var p = document.createElement('p');
    p.className = 'schema-msg' + (isError ? ' err' : '');
    p.textContent = text;
    schemaEl.appendChild(p);
  }

  function placeholder(ref, depth) {
    if (ref.kind === 'NON_NULL') return placeholder(ref.ofType, depth);
    if (ref.kind === 'LIST') return [];
    var t = types[ref.name];
    if (ref.name === 'Int' || ref.name === 'Float') return 0;
    if (ref.name === 'Boolean') return false;
    if (t && t.kind === 'ENUM' && t.enumValues && t.enumValues.length) return t.enumValues[0].name;
    if (t && t.kind === 'INPUT_OBJECT') {
      var obj = {};
      if (depth < 3) (t.inputFields || []).forEach(function (f) { if (isRequired(f)) obj[f.name] = placeholder(f.type, depth + 1); });
      return obj;
    }
    return '';
  }

  function selectionFor(ref, indent) {
    var t = namedType(ref);
    if (!t || t.kind === 'SCALAR' || t.kind === 'ENUM') return [];
    if (t.kind === 'UNION') return [indent + '__typename'];
    var leaves = (t.fields || []).filter(function (f) {
      var inner = namedType(f.type);
      return !f.isDeprecated && inner && (inner.kind === 'SCALAR' || inner.kind === 'ENUM') && !(f.args || []).some(isRequired);
    });
    leaves.sort(function (a, b) { return (a.name === 'id' ? -1 : 0) - (b.name === 'id' ? -1 : 0); });
    var lines = leaves.slice(0, 8).map(function (f) { return indent + f.name; });
    return lines.length ? lines : [indent + '__typename'];
  }

  function skeleton(kind, field) {
    var args = field.args || [];
    var name = field.name.charAt(0).toUpperCase() + field.name.slice(1);
    var head = kind + ' ' + name;
    if (args.length) head += '(' + args.map(function (a) { return '$' + a.name + ': ' + typeString(a.type); }).join(', ') + ')';
    var call = '  ' + field.name;
    if (args.length) call += '(' + args.map(function (a) { return a.name + ': $' + a.name; }).join(', ') + ')';
    var sel = selectionFor(field.type, '    ');
    var lines = [head + ' {'];
    if (sel.length) lines.push(call + ' {', sel.join('\n'), '  }'); else lines.push(call);
    lines.push('}', '');
    var vars = {};
    args.forEach(function (a) { if (isRequired(a)) vars[a.name] = placeholder(a.type, 0); });
    return { query: lines.join('\n'), variables: Object.keys(vars).length ? JSON.stringify(vars, null, 2) + '\n' : '' };
  }

  function insertSkeleton(kind, field, append) {
    var s = skeleton(kind, field);
    if (append && queryEl.value.trim()) {
      var sep = /\n\s*$/.test(queryEl.value) ? '\n' : '\n\n';
      replaceRange(queryEl, queryEl.value.length, queryEl.value.length, sep + s.query);
      if (s.variables && !variablesEl.value.trim()) replaceRange(variablesEl, 0, variablesEl.value.length, s.variables);
    } else {
      if (s.variables || variablesEl.value.trim()) replaceRange(variablesEl, 0, variablesEl.value.length, s.variables || '{}');
      replaceRange(queryEl, 0, queryEl.value.length, s.query);
    }
    showVarError('');
    var start = queryEl.value.lastIndexOf(s.query);
    queryEl.focus();
    if (start >= 0) queryEl.setSelectionRange(start, start);
  }

  function fieldButton(kind, field) {
    var li = document.createElement('li');
    var b = document.createElement('button');
    b.type = 'button';
    b.title = (field.description ? field.description + '\n\n' : '') +
      (field.isDeprecated ? 'Deprecated: ' + (field.deprecationReason || '') + '\n\n' : '') +
      'Click to open a ' + kind + ' skeleton; Shift-click to append it.';
    if (field.isDeprecated) b.className = 'f-deprecated';
    function part(cls, text) {
      var s = document.createElement('span');
      s.className = cls;
      s.textContent = text;
      b.appendChild(s);
    }
    part('f-name', field.name);
    var args = field.args || [];
    if (args.length) {
      part('f-args', '(');
      args.forEach(function (a, i) {
        part('f-arg', a.name);
        part('f-args', ': ');
        part('f-type', typeString(a.type));
        if (i < args.length - 1) part('f-args', ', ');
      });
      part('f-args', ')');
    }
    part('f-args', ': ');
    part('f-type', typeString(field.type));
    b.addEventListener('click', function (e) { insertSkeleton(kind, field, e.shiftKey); });
    li.appendChild(b);
    li.setAttribute('data-name', field.name.toLowerCase());
    return li;
  }

  function renderSchema(schema) {
    types = {};
    (schema.types || []).forEach(function (t) { if (t && t.name) types[t.name] = t; });
    schemaEl.textContent = '';
    var roots = [['Query', 'query', schema.queryType], ['Mutation', 'mutation', schema.mutationType], ['Subscription', 'subscription', schema.subscriptionType]];
    var any = false;
    roots.forEach(function (root) {
      var t = root[2] && types[root[2].name];
      if (!t || !t.fields || !t.fields.length) return;
      any = true;
      var h = document.createElement('h3');
      var title = document.createElement('span');
      title.textContent = root[0];
      var count = document.createElement('span');
      count.textContent = String(t.fields.length);
      h.appendChild(title);
      h.appendChild(count);
      var ul = document.createElement('ul');
      t.fields.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; })
        .forEach(function (f) { ul.appendChild(fieldButton(root[1], f)); });
      var section = document.createElement('section');
      section.appendChild(h);
      section.appendChild(ul);
      schemaEl.appendChild(section);
    });
    if (!any) schemaMessage('The schema has no root fields.', false);
    applyFilter();
  }

  function applyFilter() {
    var needle = filterEl.value.trim().toLowerCase();
    var sections = schemaEl.querySelectorAll('section');
    for (var i = 0; i < sections.length; i++) {
      var items = sections[i].querySelectorAll('li'), shown = 0;
      for (var j = 0; j < items.length; j++) {
        var match = !needle || items[j].getAttribute('data-name').indexOf(needle) >= 0;
        items[j].style.display = match ? '' : 'none';
        if (match) shown++;
      }
      sections[i].style.display = shown ? '' : 'none';
    }
  }
  filterEl.addEventListener('input', applyFilter);

  function loadSchema() {
    var seq = ++schemaSeq;
    schemaMessage('Loading schema\u2026', false);
    post({ query: INTROSPECTION_QUERY, operationName: 'IntrospectionQuery' }).then(function (r) {
      if (seq !== schemaSeq) return;
      var json = r.json;
      if (json && json.errors && json.errors.length) {
        schemaMessage('Introspection was refused (HTTP ' + r.status + '):\n' + json.errors.map(function (e) {
          return '\u2022 ' + (e && e.message ? e.message : JSON.stringify(e));
        }).join('\n'), true);
      } else if (!json || !json.data || !json.data.__schema) {
        schemaMessage('Introspection failed (HTTP ' + r.status + '):\n' + (r.text || '(empty response)').slice(0, 1000), true);
      } else {
        renderSchema(json.data.__schema);
      }
    }, function (err) {
      if (seq !== schemaSeq) return;
      schemaMessage('Could not reach ' + ENDPOINT + ': ' + String(err && err.message || err), true);
    });
  }
  $('reload-schema').addEventListener('click', loadSchema);

  // ---- credentials -----------------------------------------------------------------------
  var keyTimer = 0;
  keyInput.addEventListener('input', function () {
    clearTimeout(keyTimer);
    keyTimer = setTimeout(loadSchema, 700);
  });
  orgInput.addEventListener('input', function () { store(ORG_STORAGE, orgInput.value.trim()); });
  projectInput.addEventListener('input', function () { store(PROJECT_STORAGE, projectInput.value.trim()); });
  orgInput.addEventListener('change', loadSchema);
  projectInput.addEventListener('change', loadSchema);
  $('toggle-key').addEventListener('click', function () {
    var hidden = keyInput.type === 'password';
    keyInput.type = hidden ? 'text' : 'password';
    this.textContent = hidden ? 'Hide' : 'Show';
  });

  loadSchema();
})();
`;

export function explorerHtml(options: { endpoint: string }): string {
  const constants =
    `var ENDPOINT = ${scriptJson(options.endpoint)};\n` +
    `var INTROSPECTION_QUERY = ${scriptJson(INTROSPECTION_QUERY)};\n`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>Mariner GraphQL explorer</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Mariner GraphQL explorer</h1>
  <span class="endpoint" id="endpoint"></span>
  <div class="creds">
    <label>API key
      <span class="keywrap">
        <input id="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="sk-...">
        <button type="button" id="toggle-key" aria-label="Show or hide the API key">Show</button>
      </span>
    </label>
    <label>OpenAI-Organization <input id="org" autocomplete="off" spellcheck="false" placeholder="optional"></label>
    <label>OpenAI-Project <input id="project" autocomplete="off" spellcheck="false" placeholder="optional"></label>
  </div>
</header>
<main>
  <section class="panel" id="schema-panel" aria-label="Schema">
    <div class="panel-head"><h2>Schema</h2><span class="spacer"></span><button type="button" id="reload-schema">Reload</button></div>
    <div class="filter"><input id="schema-filter" type="search" placeholder="Filter fields" aria-label="Filter fields"></div>
    <div id="schema" aria-live="polite"></div>
    <div class="schema-foot hint">Click a field to open a skeleton; Shift-click appends.</div>
  </section>
  <div class="column">
    <section class="panel" id="query-panel" aria-label="Query">
      <div class="panel-head">
        <h2>Query</h2><span class="spacer"></span>
        <span class="hint"><kbd id="run-hint">Ctrl Enter</kbd></span>
        <button type="button" class="primary" id="run">Run</button>
      </div>
      <textarea id="query" spellcheck="false" autocapitalize="off" autocomplete="off" aria-label="GraphQL query">${escapeHtml(DEFAULT_QUERY)}</textarea>
    </section>
    <section class="panel" id="variables-panel" aria-label="Variables">
      <div class="panel-head"><h2>Variables</h2><span class="spacer"></span><span class="hint">JSON object</span></div>
      <textarea id="variables" spellcheck="false" autocapitalize="off" autocomplete="off" aria-label="Variables (JSON)" placeholder="{}"></textarea>
      <div class="var-error" id="var-error" role="alert"></div>
    </section>
  </div>
  <section class="panel" id="result-panel" aria-label="Result">
    <div class="panel-head"><h2>Result</h2><span class="spacer"></span><span class="pill" id="status"></span><span id="timing"></span></div>
    <pre class="code placeholder" id="result" aria-live="polite">Press Run to send the query.</pre>
  </section>
</main>
<script>
${constants}${SCRIPT}</script>
</body>
</html>
`;
}
