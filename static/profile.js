// Profile: name, surname and favourite genre, the password change form, the sessions, and the user's data: export,
// import, deletion.
import * as api from './api.js';
import { loading } from './components.js';
import { field, h, setTitle, submitting } from './dom.js';
import { navigate } from './router.js';
import { sessionsCard } from './sessions.js';

function profileForm(user, genres) {
  const name = h('input', { type: 'text', name: 'name', autocomplete: 'given-name', maxlength: '100', value: user.name ?? '' });
  const surname = h('input', { type: 'text', name: 'surname', autocomplete: 'family-name', maxlength: '100', value: user.surname ?? '' });
  const genre = h('select', { name: 'favorite_genre', value: String(user.favorite_genre ?? user.favourite_genre ?? '') },
    h('option', { value: '' }, 'Не выбран'),
    genres.map((item) => h('option', { value: String(item.id) }, item.name)));
  const message = h('p', { class: 'form-message', role: 'status' });
  const form = h('form', { class: 'form-card', 'aria-labelledby': 'profile-title' },
    h('h2', { id: 'profile-title' }, 'Личные данные'),
    field('Электронная почта', h('input', { type: 'email', value: user.email ?? '', readonly: true }), 'Почту изменить нельзя.'),
    field('Имя', name),
    field('Фамилия', surname),
    field('Любимый жанр', genre),
    message,
    h('button', { type: 'submit', class: 'button' }, 'Сохранить'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, async () => {
      await api.updateUser({
        name: name.value.trim(),
        surname: surname.value.trim(),
        favorite_genre: genre.value ? Number(genre.value) : null,
      });
      return 'Сохранено.';
    });
  });
  return form;
}

function passwordForm(user, afterChange) {
  const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const fresh = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: '8', maxlength: '128' });
  const confirmation = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const message = h('p', { class: 'form-message', role: 'alert' });
  const form = h('form', { class: 'form-card', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title' }, 'Смена пароля'),
    // Unseen, but it tells password managers which account the new password belongs to.
    h('input', { type: 'email', autocomplete: 'username', value: user.email ?? '', hidden: true, readonly: true }),
    field('Текущий пароль', current),
    field('Новый пароль', fresh, 'От 8 до 128 символов.'),
    field('Новый пароль ещё раз', confirmation),
    message,
    h('button', { type: 'submit', class: 'button' }, 'Сменить пароль'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, async () => {
      const newPassword = fresh.value;
      if (newPassword !== confirmation.value) throw new api.ApiError(400, 'Новые пароли не совпадают.');
      await api.changePassword(current.value, newPassword);
      form.reset();
      // The server revokes every earlier token on a password change, so log in again with the new one.
      try {
        await api.login(user.email, newPassword);
      } catch {
        api.tokens.clear();
        navigate('/login?changed=1&next=/profile');
        return null;
      }
      afterChange();
      return 'Пароль изменён.';
    });
  });
  return form;
}

/** Saves a Blob as a file through a temporary download link (the API needs the bearer token, so no plain link). */
function saveFile(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function readExport(file) {
  try {
    return JSON.parse(await file.text());
  } catch {
    throw new api.ApiError(400, 'В файле не JSON: выберите файл, скачанный кнопкой «Скачать мои данные».');
  }
}

function exportForm(user) {
  const message = h('p', { class: 'form-message', role: 'status' });
  const form = h('form', { class: 'data-form' }, message,
    h('button', { type: 'submit', class: 'button' }, 'Скачать мои данные'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, async () => {
      saveFile(await api.exportData(), `moviesapi-export-${user.id}.json`);
      return 'Файл сохранён.';
    });
  });
  return form;
}

// Ids alone, not the file: its profile and sessions are no business of the import, and a few bytes an id, not a
// title's dozens, keep big lists under the API's 64 KiB body limit. Anything else goes as it is, for the API to refuse.
function favoriteIds(exported) {
  const items = exported?.favorites;
  return Array.isArray(items) ? items.map((item) => item?.id ?? item) : items;
}

function importForm() {
  const file = h('input', { type: 'file', name: 'export', accept: 'application/json,.json', required: true });
  const message = h('p', { class: 'form-message', role: 'status' });
  const form = h('form', { class: 'data-form' },
    field('Избранное из файла', file, 'Файл выгрузки: фильмы добавятся в избранное в том же порядке.'),
    message,
    h('button', { type: 'submit', class: 'button button-secondary' }, 'Импортировать избранное'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, async () => {
      const report = await api.importFavorites({ favorites: favoriteIds(await readExport(file.files[0])) });
      return `Добавлено: ${report.added.length}, уже было: ${report.already.length}, `
        + `нет в каталоге: ${report.unknown.length}.`;
    });
  });
  return form;
}

function deletionForm(user) {
  const password = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const message = h('p', { class: 'form-message', role: 'alert' });
  const form = h('form', {},
    h('input', { type: 'email', autocomplete: 'username', value: user.email ?? '', hidden: true, readonly: true }),
    field('Пароль для подтверждения', password, 'Аккаунт, избранное и все входы удалятся навсегда.'),
    message,
    h('button', { type: 'submit', class: 'button button-danger' }, 'Удалить аккаунт навсегда'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitting(form, message, async () => {
      await api.deleteAccount(password.value);
      api.tokens.clear();
      navigate('/');
      return null;
    });
  });
  return h('details', { class: 'danger-zone' }, h('summary', {}, 'Удалить аккаунт…'), form);
}

function dataCard(user) {
  return h('section', { class: 'form-card', 'aria-labelledby': 'data-title' },
    h('h2', { id: 'data-title' }, 'Ваши данные'),
    exportForm(user), importForm(), deletionForm(user));
}

export async function profilePage(view) {
  setTitle('Профиль');
  if (!api.tokens.loggedIn) throw new api.LoginRequired();
  const status = loading();
  view.append(h('h1', { tabindex: '-1' }, 'Профиль'), status);
  const [user, genres, sessions] = await Promise.all([api.currentUser(), api.genres(), api.sessions()]);
  const { card, refresh } = sessionsCard(sessions);
  status.replaceWith(h('div', { class: 'form-columns' },
    profileForm(user, genres), passwordForm(user, refresh), card, dataCard(user)));
}
