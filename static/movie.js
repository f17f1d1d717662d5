// The movie page: facts, description, trailer link and the favourite toggle.
import * as api from './api.js';
import { isWebLink, loading, poster, ratingBadge } from './components.js';
import { h, setTitle } from './dom.js';
import { loginUrl, showNotFound } from './router.js';

function facts(movie) {
  const rows = [
    ['Год', movie.year ? String(movie.year) : '—'],
    ['Рейтинг', ratingBadge(movie.rating)],
    ['Жанр', movie.genre ? h('a', { href: `/genre/${movie.genre.id}` }, movie.genre.name) : '—'],
    ['Режиссёр', movie.director ? h('a', { href: `/director/${movie.director.id}` }, movie.director.name) : '—'],
  ];
  return h('dl', { class: 'facts' }, rows.map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, value))));
}

/** "В избранное" / "Убрать из избранного" for a logged-in user, a login link for everyone else.
 *  Returns at once; the button comes alive when the user's favourites have loaded. */
function favoriteControl(movie) {
  const container = h('div', { class: 'favorite' });
  const loginLink = () => h('a', { class: 'button button-secondary', href: loginUrl() }, 'Войдите, чтобы добавить в избранное');
  if (!api.tokens.loggedIn) {
    container.append(loginLink());
    return container;
  }
  const note = h('p', { class: 'form-message', role: 'status' });
  const button = h('button', { type: 'button', class: 'button button-secondary', disabled: true }, 'Проверяем избранное…');
  container.append(button, note);

  let saved;
  const show = () => {
    button.textContent = saved ? '★ Убрать из избранного' : '☆ В избранное';
    button.setAttribute('aria-pressed', String(saved));
    button.disabled = false;
  };
  const fail = (error) => {
    if (error instanceof api.LoginRequired) container.replaceChildren(loginLink());
    else note.textContent = error instanceof api.ApiError ? error.message : 'Не получилось. Попробуйте ещё раз.';
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    note.textContent = '';
    try {
      await (saved ? api.removeFavorite(movie.id) : api.addFavorite(movie.id));
      saved = !saved;
      note.textContent = saved ? 'Добавлено в избранное.' : 'Убрано из избранного.';
      show();
    } catch (error) {
      fail(error);
      button.disabled = false;
    }
  });
  api.favorites()
    .then((favorites) => {
      saved = favorites.some((favorite) => favorite.id === movie.id);
      show();
    })
    .catch(fail);
  return container;
}

export async function moviePage(view, { params }) {
  const status = loading();
  view.append(status);
  let movie;
  try {
    movie = await api.movie(params[0]);
  } catch (error) {
    if (error.status === 404) return showNotFound(view, 'Фильм не найден', 'В каталоге нет такого фильма. Возможно, его удалили.');
    throw error;
  }
  setTitle(movie.title);
  const trailer = isWebLink(movie.trailer)
    ? h('a', { class: 'button', href: movie.trailer, target: '_blank', rel: 'noopener noreferrer' }, '▶ Смотреть трейлер')
    : null;
  const actions = h('div', { class: 'actions' }, trailer, favoriteControl(movie));
  status.replaceWith(h('article', { class: 'movie' },
    h('p', { class: 'back' }, h('a', { href: '/catalog' }, '← Каталог')),
    h('div', { class: 'movie-layout' },
      poster(movie, 'poster poster-large'),
      h('div', { class: 'movie-body' },
        h('h1', { tabindex: '-1' }, movie.title ?? 'Без названия'),
        facts(movie),
        h('p', { class: 'description' }, movie.description || 'Описания пока нет.'),
        actions))));
}
