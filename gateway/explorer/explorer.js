// The GraphQL explorer's script (index.html). The gateway inlines it into the page (explorer.ts) after
// two constants, ENDPOINT (the path the page was served at) and INTROSPECTION_QUERY, so the page loads
// nothing from anywhere. Data from the server only reaches the DOM as text (textContent, text nodes),
// never parsed as markup. Plain ES5 in one function, run as the page loads.
/* global ENDPOINT, INTROSPECTION_QUERY */
(function () {
  'use strict';
  // The API key lives in this page's memory only, never in localStorage, sessionStorage or a cookie:
  // notebooks run user-chosen images on this origin, and any script there could read those back.
  // After a reload the user enters it again. Earlier versions kept it under this name: remove it.
  var LEGACY_KEY_STORAGE = 'mariner.apiKey';
  var ORG_STORAGE = 'mariner.organization';
  var PROJECT_STORAGE = 'mariner.project';

  function $(id) {
    return document.getElementById(id);
  }
  var keyInput = $('api-key'),
    orgInput = $('org'),
    projectInput = $('project');
  var queryEl = $('query'),
    variablesEl = $('variables'),
    varError = $('var-error');
  var runButton = $('run'),
    statusEl = $('status'),
    timingEl = $('timing'),
    resultEl = $('result');
  var schemaEl = $('schema'),
    filterEl = $('schema-filter');

  $('endpoint').textContent = 'POST ' + ENDPOINT;
  if (/Mac|iPhone|iPad/.test(navigator.platform || '')) $('run-hint').textContent = '\u2318 Enter';

  function load(name) {
    try {
      return localStorage.getItem(name) || '';
    } catch (e) {
      return '';
    }
  }
  function store(name, value) {
    try {
      if (value) localStorage.setItem(name, value);
      else localStorage.removeItem(name);
    } catch (e) {
      /* storage disabled */
    }
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
      method: 'POST',
      headers: requestHeaders(),
      body: JSON.stringify(payload),
      credentials: 'same-origin',
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try {
          json = JSON.parse(text);
        } catch (e) {
          json = null;
        }
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
    try {
      done = text.length > 0 && document.execCommand('insertText', false, text);
    } catch (e) {
      done = false;
    }
    if (!done) {
      el.setRangeText(text, start, end, 'end');
      el.dispatchEvent(new Event('input'));
    }
  }

  function editorKeys(e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      e.preventDefault();
      run();
      return;
    }
    if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      replaceRange(e.target, e.target.selectionStart, e.target.selectionEnd, '  ');
    }
  }
  queryEl.addEventListener('keydown', editorKeys);
  variablesEl.addEventListener('keydown', editorKeys);
  document.addEventListener('keydown', function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter' && e.target !== queryEl && e.target !== variablesEl) {
      e.preventDefault();
      run();
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
    if (!text.trim()) {
      showVarError('');
      return null;
    }
    var value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      var msg = String((e && e.message) || e);
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
    var ops = [],
      m;
    while ((m = re.exec(query))) ops.push({ at: m.index, name: m[3] });
    if (ops.length < 2) return undefined;
    var cursor = queryEl.selectionStart,
      chosen = ops[0];
    for (var i = 0; i < ops.length; i++) if (ops[i].at <= cursor) chosen = ops[i];
    return chosen.name;
  }

  // ---- results ---------------------------------------------------------------------------
  function renderJson(target, text) {
    target.textContent = '';
    if (text.length > 300000) {
      target.textContent = text;
      return;
    }
    var re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
    var last = 0,
      m;
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
    statusEl.textContent =
      'HTTP ' + r.status + (r.statusText ? ' ' + r.statusText : '') + (errorCount ? ' \u00b7 ' + errorCount + (errorCount === 1 ? ' error' : ' errors') : '');
    statusEl.className = 'pill ' + (failed ? 'err' : 'ok');
    timingEl.textContent = Math.round(r.ms) + ' ms';
    if (r.json !== null) renderJson(resultEl, JSON.stringify(r.json, null, 2));
    else resultEl.textContent = r.text || '(empty response body)';
  }

  var running = false;
  function run() {
    if (running) return;
    var variables = parseVariables();
    if (variables === INVALID) {
      variablesEl.focus();
      return;
    }
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
    post(payload)
      .then(showResult, function (err) {
        statusEl.textContent = 'Network error';
        statusEl.className = 'pill err';
        timingEl.textContent = Math.round(performance.now() - started) + ' ms';
        resultEl.classList.remove('placeholder');
        resultEl.textContent = 'Could not reach ' + ENDPOINT + ': ' + String((err && err.message) || err);
      })
      .then(function () {
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
  function isRequired(arg) {
    return arg.type && arg.type.kind === 'NON_NULL' && arg.defaultValue == null;
  }

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
      if (depth < 3)
        (t.inputFields || []).forEach(function (f) {
          if (isRequired(f)) obj[f.name] = placeholder(f.type, depth + 1);
        });
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
    leaves.sort(function (a, b) {
      return (a.name === 'id' ? -1 : 0) - (b.name === 'id' ? -1 : 0);
    });
    var lines = leaves.slice(0, 8).map(function (f) {
      return indent + f.name;
    });
    return lines.length ? lines : [indent + '__typename'];
  }

  function skeleton(kind, field) {
    var args = field.args || [];
    var name = field.name.charAt(0).toUpperCase() + field.name.slice(1);
    var head = kind + ' ' + name;
    if (args.length)
      head +=
        '(' +
        args
          .map(function (a) {
            return '$' + a.name + ': ' + typeString(a.type);
          })
          .join(', ') +
        ')';
    var call = '  ' + field.name;
    if (args.length)
      call +=
        '(' +
        args
          .map(function (a) {
            return a.name + ': $' + a.name;
          })
          .join(', ') +
        ')';
    var sel = selectionFor(field.type, '    ');
    var lines = [head + ' {'];
    if (sel.length) lines.push(call + ' {', sel.join('\n'), '  }');
    else lines.push(call);
    lines.push('}', '');
    var vars = {};
    args.forEach(function (a) {
      if (isRequired(a)) vars[a.name] = placeholder(a.type, 0);
    });
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
    b.title =
      (field.description ? field.description + '\n\n' : '') +
      (field.isDeprecated ? 'Deprecated: ' + (field.deprecationReason || '') + '\n\n' : '') +
      'Click to open a ' +
      kind +
      ' skeleton; Shift-click to append it.';
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
    b.addEventListener('click', function (e) {
      insertSkeleton(kind, field, e.shiftKey);
    });
    li.appendChild(b);
    li.setAttribute('data-name', field.name.toLowerCase());
    return li;
  }

  function renderSchema(schema) {
    types = {};
    (schema.types || []).forEach(function (t) {
      if (t && t.name) types[t.name] = t;
    });
    schemaEl.textContent = '';
    var roots = [
      ['Query', 'query', schema.queryType],
      ['Mutation', 'mutation', schema.mutationType],
      ['Subscription', 'subscription', schema.subscriptionType],
    ];
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
      t.fields
        .slice()
        .sort(function (a, b) {
          return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
        })
        .forEach(function (f) {
          ul.appendChild(fieldButton(root[1], f));
        });
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
      var items = sections[i].querySelectorAll('li'),
        shown = 0;
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
    post({ query: INTROSPECTION_QUERY, operationName: 'IntrospectionQuery' }).then(
      function (r) {
        if (seq !== schemaSeq) return;
        var json = r.json;
        if (json && json.errors && json.errors.length) {
          schemaMessage(
            'Introspection was refused (HTTP ' +
              r.status +
              '):\n' +
              json.errors
                .map(function (e) {
                  return '\u2022 ' + (e && e.message ? e.message : JSON.stringify(e));
                })
                .join('\n'),
            true,
          );
        } else if (!json || !json.data || !json.data.__schema) {
          schemaMessage('Introspection failed (HTTP ' + r.status + '):\n' + (r.text || '(empty response)').slice(0, 1000), true);
        } else {
          renderSchema(json.data.__schema);
        }
      },
      function (err) {
        if (seq !== schemaSeq) return;
        schemaMessage('Could not reach ' + ENDPOINT + ': ' + String((err && err.message) || err), true);
      },
    );
  }
  $('reload-schema').addEventListener('click', loadSchema);

  // ---- credentials -----------------------------------------------------------------------
  var keyTimer = 0;
  keyInput.addEventListener('input', function () {
    clearTimeout(keyTimer);
    keyTimer = setTimeout(loadSchema, 700);
  });
  orgInput.addEventListener('input', function () {
    store(ORG_STORAGE, orgInput.value.trim());
  });
  projectInput.addEventListener('input', function () {
    store(PROJECT_STORAGE, projectInput.value.trim());
  });
  orgInput.addEventListener('change', loadSchema);
  projectInput.addEventListener('change', loadSchema);
  $('toggle-key').addEventListener('click', function () {
    var hidden = keyInput.type === 'password';
    keyInput.type = hidden ? 'text' : 'password';
    this.textContent = hidden ? 'Hide' : 'Show';
  });

  loadSchema();
})();
