"""A readable, self-contained HTML reference rendered from the OpenAPI document (no external assets)."""
import html
import re

METHODS = ('get', 'post', 'put', 'patch', 'delete')

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #222; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { margin-bottom: 0; } h2 { border-bottom: 2px solid #ddd; margin-top: 2.5rem; }
code { font: 13px ui-monospace, monospace; background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; }
a { color: #0550ae; text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #eee; padding: .3rem .5rem; }
th { font-weight: 600; background: #fafafa; }
.op { border: 1px solid #ddd; border-radius: 6px; padding: .25rem 1rem .5rem; margin: 1rem 0; }
.method { display: inline-block; min-width: 4.5rem; font-weight: 700; text-transform: uppercase; }
.get { color: #1a7f37; } .post { color: #0550ae; } .put, .patch { color: #9a6700; } .delete { color: #cf222e; }
.lock { font-size: 13px; color: #9a6700; margin-left: .5rem; }
h4 { margin: .75rem 0 .25rem; } ul.toc { columns: 2; padding-left: 1.2rem; }
"""


def render_html(spec):
    """The whole page: the API's description, an index, every operation, then every schema."""
    info = spec.get('info', {})
    ops = [(path, method, item[method]) for path, item in spec.get('paths', {}).items()
           for method in METHODS if method in item]
    index = ''.join(f'<li><a href="#{anchor(m, p)}"><span class="method {m}">{m}</span> <code>{esc(p)}</code></a>'
                    f' {esc(op.get("summary", ""))}</li>' for p, m, op in ops)
    schemas = spec.get('components', {}).get('schemas', {})
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(info.get("title", "API"))} reference</title><style>{CSS}</style></head><body>'
            f'<h1>{esc(info.get("title", "API"))}</h1><p>Version {esc(info.get("version", ""))} · '
            f'<a href="/openapi.json">openapi.json</a></p>{prose(info.get("description", ""))}'
            f'<h2>Routes</h2><ul class="toc">{index}</ul>'
            + ''.join(operation(spec, p, m, op) for p, m, op in ops)
            + '<h2>Schemas</h2>'
            + ''.join(f'<h3 id="schema-{esc(name)}">{esc(name)}</h3>{prose(s.get("description", ""))}'
                      f'{schema_block(spec, s)}' for name, s in schemas.items())
            + '</body></html>')


def operation(spec, path, method, op):
    """One route: summary, auth, parameters, request body and every response."""
    lock = '<span class="lock">🔒 Bearer token</span>' if op.get('security') else ''
    out = [f'<div class="op" id="{anchor(method, path)}"><h3><span class="method {method}">{method}</span> '
           f'<code>{esc(path)}</code>{lock}</h3><p>{esc(op.get("summary", ""))}</p>',
           prose(op.get('description', ''))]
    params = [resolve(spec, p) for p in op.get('parameters', [])]
    if params:
        rows = ''.join(f'<tr><td><code>{esc(p["name"])}</code></td><td>{esc(p["in"])}</td>'
                       f'<td>{schema_text(p.get("schema", {}))}</td><td>{"yes" if p.get("required") else ""}</td>'
                       f'<td>{inline(p.get("description", ""))}</td></tr>' for p in params)
        out.append('<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th>'
                   f'<th>Description</th></tr>{rows}</table>')
    body = resolve(spec, op.get('requestBody', {}))
    for media, content in body.get('content', {}).items():
        out.append(f'<h4>Request body <code>{esc(media)}</code></h4>{schema_block(spec, content["schema"])}')
    rows = []
    for status, response in op.get('responses', {}).items():
        response = resolve(spec, response)
        kinds = [f'<code>{esc(media)}</code> {schema_text(c.get("schema", {}))}'
                 for media, c in response.get('content', {}).items()]
        headers = [f'<code>{esc(name)}</code>' for name in response.get('headers', {})]
        rows.append(f'<tr><td><b>{esc(status)}</b></td><td>{inline(response.get("description", ""))}</td>'
                    f'<td>{"<br>".join(kinds) or "no body"}</td><td>{", ".join(headers)}</td></tr>')
    out.append('<h4>Responses</h4><table><tr><th>Status</th><th>Meaning</th><th>Body</th><th>Headers</th></tr>'
               + ''.join(rows) + '</table></div>')
    return ''.join(out)


def schema_block(spec, schema):
    """An object schema as a table of its properties; anything else as one line."""
    target = resolve(spec, schema)
    if 'properties' not in target:
        return f'<p>{schema_text(schema)}</p>'
    required = set(target.get('required', []))
    rows = ''.join(f'<tr><td><code>{esc(name)}</code></td><td>{schema_text(prop)}</td>'
                   f'<td>{"yes" if name in required else ""}</td><td>{inline(prop.get("description", ""))}</td></tr>'
                   for name, prop in target['properties'].items())
    extra = '' if target.get('additionalProperties', True) else '<p>No other fields are allowed.</p>'
    link = f'<p>{schema_text(schema)}</p>' if '$ref' in schema else ''
    return (f'{link}<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>'
            f'{rows}</table>{extra}')


def schema_text(schema):
    """A schema in one short line of HTML: its type, references and constraints."""
    if '$ref' in schema:
        name = schema['$ref'].rsplit('/', 1)[-1]
        return f'<a href="#schema-{esc(name)}">{esc(name)}</a>'
    for key in ('oneOf', 'anyOf'):
        if key in schema:
            return ' | '.join(schema_text(s) for s in schema[key])
    if 'const' in schema:
        return f'<code>{esc(repr_json(schema["const"]))}</code>'
    types = schema.get('type', 'any')
    text = ' | '.join(types) if isinstance(types, list) else types
    if text == 'array':
        return 'array of ' + schema_text(schema.get('items', {}))
    limits = [f'{label} {schema[key]}' for key, label in (
        ('format', 'format'), ('minLength', 'min length'), ('maxLength', 'max length'),
        ('minimum', '≥'), ('maximum', '≤'), ('pattern', 'pattern')) if key in schema]
    return esc(text + (f' ({", ".join(str(x) for x in limits)})' if limits else ''))


def resolve(spec, obj):
    """Follow local `$ref`s (`#/components/...`) to the object they name."""
    while isinstance(obj, dict) and '$ref' in obj:
        node = spec
        for part in obj['$ref'].lstrip('#/').split('/'):
            node = node[part.replace('~1', '/').replace('~0', '~')]
        obj = node
    return obj


def prose(text):
    return ''.join(f'<p>{inline(para)}</p>' for para in text.split('\n\n') if para.strip())


def inline(text):
    """Escape, then render `code` spans: the only markup the document's descriptions use."""
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', esc(text))


def anchor(method, path):
    return esc(f'{method}-{path}'.replace('/', '-').replace('{', '').replace('}', ''))


def repr_json(value):
    return f'"{value}"' if isinstance(value, str) else str(value)


def esc(text):
    return html.escape(str(text), quote=True)
