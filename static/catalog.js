// The catalogue and the genre / director pages: one paged list of movie cards each.
import * as api from './api.js';
import { emptyState, loading, movieGrid, pager } from './components.js';
import { h, setTitle } from './dom.js';
import { showNotFound } from './router.js';

const SORTS = [['id', 'По порядку'], ['new', 'Сначала новые']];

function pageNumber(query) {
  const page = Number(query.get('page'));
  return Number.isInteger(page) && page > 0 ? page : 1;
}

/** A page address that leaves the defaults (sort by id, page 1) out of the query string. */
function address(path, { sort, page }) {
  const query = new URLSearchParams();
  if (sort === 'new') query.set('sort', 'new');
  if (page > 1) query.set('page', page);
  return query.toString() ? `${path}?${query}` : path;
}

/** Loads page `page` of movies matching `filters` into `view`, with a pager whose links come from `hrefFor`. */
async function pagedMovies(view, filters, page, hrefFor) {
  const status = loading('Загружаем фильмы…');
  view.append(status);
  const result = await api.moviePage(filters, page);
  if (!result.items.length) {
    const text = page > 1 ? 'На этой странице фильмов нет.' : 'Здесь пока нет фильмов.';
    const back = page > 1 ? h('a', { class: 'button button-secondary', href: hrefFor(1) }, 'К первой странице') : null;
    status.replaceWith(emptyState(text, back));
    return;
  }
  const list = [movieGrid(result.items), pager({ ...result, page, pageSize: api.PAGE_SIZE }, hrefFor)];
  if (result.total !== null) list.unshift(h('p', { class: 'muted' }, `Всего фильмов: ${result.total}`));
  status.replaceWith(...list);
}

function sortSwitch(current) {
  return h('nav', { class: 'segmented', 'aria-label': 'Сортировка' },
    SORTS.map(([sort, label]) =>
      h('a', { href: address('/catalog', { sort }), class: 'segment', 'aria-current': sort === current ? 'true' : null }, label)));
}

export async function catalogPage(view, { query }) {
  const sort = query.get('sort') === 'new' ? 'new' : 'id';
  const page = pageNumber(query);
  setTitle(page > 1 ? `Каталог, страница ${page}` : 'Каталог');
  view.append(h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Каталог'), sortSwitch(sort)));
  await pagedMovies(view, sort === 'new' ? { status: 'new' } : {}, page, (n) => address('/catalog', { sort, page: n }));
}

/** A genre or director page: its name as the heading and its movies below; unknown ids get the not-found view. */
async function ownerPage(view, { params, query }, { load, filter, path, kind }) {
  const [id] = params;
  const page = pageNumber(query);
  const status = loading();
  view.append(status);
  let owner;
  try {
    owner = await load(id);
  } catch (error) {
    if (error.status === 404) return showNotFound(view, `${kind} не найден`, 'Такого раздела в каталоге нет.');
    throw error;
  }
  setTitle(owner.name);
  status.replaceWith(h('div', { class: 'page-head' },
    h('div', {}, h('p', { class: 'eyebrow' }, kind), h('h1', { tabindex: '-1' }, owner.name))));
  await pagedMovies(view, { [filter]: id }, page, (n) => address(`${path}/${id}`, { page: n }));
}

export const genrePage = (view, route) =>
  ownerPage(view, route, { load: api.genre, filter: 'genre_id', path: '/genre', kind: 'Жанр' });

export const directorPage = (view, route) =>
  ownerPage(view, route, { load: api.director, filter: 'director_id', path: '/director', kind: 'Режиссёр' });
