// Home: the newest movies, then every genre and director as a link.
import * as api from './api.js';
import { emptyState, errorState, loading, movieGrid } from './components.js';
import { h, setTitle } from './dom.js';

function section(title, headingId) {
  const body = h('div', {}, loading());
  const element = h('section', { class: 'section', 'aria-labelledby': headingId },
    h('h2', { id: headingId }, title), body);
  return { element, body };
}

/** Fills a section's body from `load()`; a failure stays inside that section. */
async function fill({ body }, load, build) {
  try {
    body.replaceChildren(build(await load()));
  } catch (error) {
    if (!(error instanceof api.ApiError)) throw error;
    body.replaceChildren(errorState(error));
  }
}

function chipList(items, pathPrefix, emptyText) {
  if (!items.length) return emptyState(emptyText);
  return h('ul', { class: 'chips' },
    items.map((item) => h('li', {}, h('a', { class: 'chip', href: `${pathPrefix}/${item.id}` }, item.name))));
}

export async function homePage(view) {
  setTitle('');
  const newest = section('Новые фильмы', 'newest-heading');
  const genres = section('Жанры', 'genres-heading');
  const directors = section('Режиссёры', 'directors-heading');
  view.append(
    h('section', { class: 'hero' },
      h('h1', { tabindex: '-1' }, 'Кинотека'),
      h('p', { class: 'hero-text' }, 'Фильмы, трейлеры и ваше избранное в одном месте.'),
      h('p', { class: 'actions' },
        h('a', { class: 'button', href: '/catalog' }, 'Весь каталог'),
        h('a', { class: 'button button-secondary', href: '/catalog?sort=new' }, 'Сначала новые'))),
    newest.element, genres.element, directors.element);

  await Promise.all([
    fill(newest, () => api.moviePage({ status: 'new' }, 1),
      ({ items }) => (items.length ? movieGrid(items) : emptyState('Фильмов пока нет.'))),
    fill(genres, api.genres, (items) => chipList(items, '/genre', 'Жанров пока нет.')),
    fill(directors, api.directors, (items) => chipList(items, '/director', 'Режиссёров пока нет.')),
  ]);
}
