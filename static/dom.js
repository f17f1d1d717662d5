// A tiny element builder. Text from the API always goes in as text nodes, never as HTML.
import { ApiError } from './api.js';

/** h('a', {href: '/', class: 'x', onclick: fn}, 'text', childNode) — null, undefined and false are skipped. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false || key === 'value') continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'class') element.className = value;
    else element.setAttribute(key, value === true ? '' : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  if (props.value !== undefined && props.value !== null) element.value = props.value;
  return element;
}

export function setTitle(title) {
  document.title = title ? `${title} — Кинотека` : 'Кинотека';
}

let fieldCount = 0;

/** A labelled form control: <div><label for=id>…</label><input id=id …><p hint></div>. */
export function field(label, control, hint) {
  const id = `field-${++fieldCount}`;
  control.id = id;
  const hintElement = hint ? h('p', { class: 'field-hint', id: `${id}-hint` }, hint) : null;
  if (hintElement) control.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintElement);
}

/** Runs `action` with the submit button disabled; shows its error (or success text) in `message`. */
export async function submitting(form, message, action) {
  const button = form.querySelector('button[type="submit"]');
  message.textContent = '';
  message.className = 'form-message';
  button.disabled = true;
  try {
    const success = await action();
    if (success) {
      message.textContent = success;
      message.classList.add('is-success');
    }
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    message.textContent = error.message;
    message.classList.add('is-error');
  } finally {
    button.disabled = false;
  }
}
