// Profile: name, surname and favourite genre, plus the password change form.
import * as api from './api.js';
import { loading } from './components.js';
import { field, h, setTitle, submitting } from './dom.js';
import { navigate } from './router.js';

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

function passwordForm(user) {
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
      return 'Пароль изменён.';
    });
  });
  return form;
}

export async function profilePage(view) {
  setTitle('Профиль');
  if (!api.tokens.loggedIn) throw new api.LoginRequired();
  const status = loading();
  view.append(h('h1', { tabindex: '-1' }, 'Профиль'), status);
  const [user, genres] = await Promise.all([api.currentUser(), api.genres()]);
  status.replaceWith(h('div', { class: 'form-columns' }, profileForm(user, genres), passwordForm(user)));
}
