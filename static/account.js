// Login and registration forms; both return the user to the page they came from.
import * as api from './api.js';
import { field, h, setTitle, submitting } from './dom.js';
import { navigate, safeNext } from './router.js';

function credentialsForm({ title, submitLabel, passwordHint, newPassword, onSubmit, footer }) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true });
  const password = h('input', {
    type: 'password', name: 'password', required: true,
    autocomplete: newPassword ? 'new-password' : 'current-password',
    minlength: newPassword ? '8' : null, maxlength: newPassword ? '128' : null,
  });
  const message = h('p', { class: 'form-message', role: 'alert' });
  const form = h('form', { class: 'form-card', 'aria-labelledby': 'form-title' },
    h('h1', { id: 'form-title', tabindex: '-1' }, title),
    field('Электронная почта', email),
    field('Пароль', password, passwordHint),
    message,
    h('button', { type: 'submit', class: 'button button-wide' }, submitLabel),
    footer);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, () => onSubmit(email.value.trim(), password.value));
  });
  return form;
}

function withNext(path, query) {
  const next = query.get('next');
  return next ? `${path}?next=${encodeURIComponent(safeNext(next))}` : path;
}

export function loginPage(view, { query }) {
  setTitle('Вход');
  if (query.get('changed')) view.append(h('p', { class: 'notice', role: 'status' }, 'Пароль изменён. Войдите с новым паролем.'));
  view.append(credentialsForm({
    title: 'Вход',
    submitLabel: 'Войти',
    onSubmit: async (email, password) => {
      await api.login(email, password);
      await navigate(safeNext(query.get('next')), { replace: true });
    },
    footer: h('p', { class: 'form-footer' }, 'Нет аккаунта? ', h('a', { href: withNext('/register', query) }, 'Зарегистрируйтесь')),
  }));
}

export function registerPage(view, { query }) {
  setTitle('Регистрация');
  view.append(credentialsForm({
    title: 'Регистрация',
    submitLabel: 'Создать аккаунт',
    passwordHint: 'От 8 до 128 символов.',
    newPassword: true,
    onSubmit: async (email, password) => {
      await api.register(email, password);
      await navigate(safeNext(query.get('next')), { replace: true });
    },
    footer: h('p', { class: 'form-footer' }, 'Уже есть аккаунт? ', h('a', { href: withNext('/login', query) }, 'Войдите')),
  }));
}
