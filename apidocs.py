"""A readable HTML reference rendered from the OpenAPI document and styled by static/docs.css: no script, no
inline style, nothing from other sites, as the pages' Content-Security-Policy (serving.py) requires."""
import html
import re

METHODS = ('get', 'post', 'put', 'patch', 'delete')


def render_html(spec):
    """The whole page: the API's description, an index, every operation, then every schema."""
    info = spec.get('info', {})
    title = esc(info.get('title', 'API'))
    ops = [(path, method, item[method]) for path, item in spec.get('paths', {}).items()
           for method in METHODS if method in item]
    index = ''.join(f'<li><a href="#{anchor(method, path)}">{route(method, path)}</a> {esc(op.get("summary", ""))}'
                    '</li>' for path, method, op in ops)
    schemas = spec.get('components', {}).get('schemas', {})
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title} reference</title><link rel="stylesheet" href="/static/docs.css"></head><body>'
            f'<h1>{title}</h1><p>Version {esc(info.get("version", ""))} · '
            '<a href="/openapi.json">openapi.json</a></p>'
            f'{prose(info.get("description", ""))}<h2>Routes</h2><ul class="toc">{index}</ul>'
            + ''.join(operation(spec, path, method, op) for path, method, op in ops)
            + '<h2>Schemas</h2>'
            + ''.join(f'<h3 id="schema-{esc(name)}">{esc(name)}</h3>{schema_block(spec, schema)}'
                      for name, schema in schemas.items())
            + '</body></html>')


def operation(spec, path, method, op):
    """One route: summary, auth, parameters, request body and every response."""
    lock = '<span class="lock">requires a bearer token</span>' if op.get('security') else ''
    out = [f'<div class="op" id="{anchor(method, path)}"><h3>{route(method, path)}{lock}</h3>'
           f'<p>{esc(op.get("summary", ""))}</p>{prose(op.get("description", ""))}']
    params = [resolve(spec, param) for param in op.get('parameters', [])]
    if params:
        out.append('<h4>Parameters</h4>' + table(['Name', 'In', 'Type', 'Required', 'Description'], [
            [f'<code>{esc(p["name"])}</code>', esc(p['in']), schema_text(p.get('schema', {})),
             'yes' if p.get('required') else '', inline(p.get('description', ''))] for p in params]))
    for media, content in resolve(spec, op.get('requestBody', {})).get('content', {}).items():
        out.append(f'<h4>Request body <code>{esc(media)}</code></h4>{schema_block(spec, content["schema"])}')
    rows = []
    for status, response in op.get('responses', {}).items():
        response = resolve(spec, response)
        bodies = [f'<code>{esc(media)}</code> {schema_text(content.get("schema", {}))}'
                  for media, content in response.get('content', {}).items()]
        rows.append([f'<b>{esc(status)}</b>', inline(response.get('description', '')),
                     '<br>'.join(bodies) or 'no body', ', '.join(f'<code>{esc(h)}</code>' for h in
                                                                  response.get('headers', {}))])
    out.append('<h4>Responses</h4>' + table(['Status', 'Meaning', 'Body', 'Headers'], rows) + '</div>')
    return ''.join(out)


def schema_block(spec, schema):
    """A schema's description, then its fields as a table (one per alternative), or its type in one line."""
    target = resolve(spec, schema)
    link = f'<p>{schema_text(schema)}</p>' if '$ref' in schema else ''
    about = link + prose(target.get('description', ''))
    choices = target.get('oneOf') or target.get('anyOf') or []
    if choices and all('properties' in resolve(spec, choice) for choice in choices):
        return about + '<p>One of:</p>' + '<p>or</p>'.join(schema_block(spec, choice) for choice in choices)
    if 'properties' not in target:
        return about if link else about + f'<p>{schema_text(schema)}</p>'
    required = set(target.get('required', []))
    rows = [[f'<code>{esc(name)}</code>', schema_text(prop), 'yes' if name in required else '',
             inline(prop.get('description', ''))] for name, prop in target['properties'].items()]
    closed = '' if target.get('additionalProperties', True) else '<p>No other fields are allowed.</p>'
    return about + table(['Field', 'Type', 'Required', 'Description'], rows) + closed


def schema_text(schema):
    """A schema in one short line of HTML: its type, references and constraints."""
    if '$ref' in schema:
        name = esc(schema['$ref'].rsplit('/', 1)[-1])
        return f'<a href="#schema-{name}">{name}</a>'
    for key in ('oneOf', 'anyOf'):
        if key in schema:
            return ' | '.join(schema_text(choice) for choice in schema[key])
    if 'const' in schema:
        return f'<code>{esc(schema["const"])}</code>'
    types = schema.get('type', 'any')
    text = ' | '.join(types) if isinstance(types, list) else types
    if text == 'array':
        return 'array of ' + schema_text(schema.get('items', {}))
    limits = [f'{label} {schema[key]}' for key, label in (
        ('format', 'format'), ('minLength', 'min length'), ('maxLength', 'max length'),
        ('minimum', '≥'), ('maximum', '≤'), ('pattern', 'pattern')) if key in schema]
    return esc(text + (f' ({", ".join(limits)})' if limits else ''))


def resolve(spec, obj):
    """Follow local `$ref`s (`#/components/...`) to the object they name."""
    while isinstance(obj, dict) and '$ref' in obj:
        parts = obj['$ref'].removeprefix('#/').split('/')
        obj = spec
        for part in parts:
            obj = obj[part.replace('~1', '/').replace('~0', '~')]
    return obj


def table(headings, rows):
    head = ''.join(f'<th>{heading}</th>' for heading in headings)
    body = ''.join('<tr>' + ''.join(f'<td>{cell}</td>' for cell in row) + '</tr>' for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def route(method, path):
    return f'<span class="method {esc(method)}">{esc(method)}</span> <code>{esc(path)}</code>'


def anchor(method, path):
    return esc(f'{method}-{path}'.replace('/', '-').replace('{', '').replace('}', ''))


def prose(text):
    return ''.join(f'<p>{inline(para)}</p>' for para in text.split('\n\n') if para.strip())


def inline(text):
    """Escape, then render `code` spans: the only markup the document's descriptions use."""
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', esc(text))


def esc(text):
    return html.escape(str(text), quote=True)
