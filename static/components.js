// Pieces shared by several pages: movie cards, the pager and the loading / empty / error states.
import { ApiError } from './api.js';
import { h } from './dom.js';

const YOUTUBE_ID = /(?:youtube\.com\/(?:watch\?(?:.*&)?v=|embed\/|shorts\/)|youtu\.be\/)([\w-]{11})/;

function youtubeId(url) {
  return typeof url === 'string' ? url.match(YOUTUBE_ID)?.[1] ?? null : null;
}

export function isWebLink(url) {
  return typeof url === 'string' && /^https?:\/\//i.test(url);
}

/** A rating badge: "★ 8.6", or "нет оценки" for 0, which the catalogue uses for a movie not rated yet. */
export function ratingBadge(rating) {
  const rated = typeof rating === 'number' && rating > 0;
  return h('span', { class: rated ? 'rating' : 'muted' }, rated ? `★ ${rating.toFixed(1)}` : 'нет оценки');
}

/** A fixed 16:9 box with a coloured placeholder; the YouTube thumbnail covers it once (and if) it loads. */
export function poster(movie, className = 'poster') {
  const box = h('div', { class: className },
    h('span', { class: 'poster-initial', 'aria-hidden': 'true' }, (movie.title ?? '').trim().charAt(0)));
  box.style.setProperty('--hue', String((movie.id * 47) % 360));
  const videoId = youtubeId(movie.trailer);
  if (videoId) {
    // alt is empty on purpose: the title is printed right beside the picture.
    const image = h('img', {
      src: `https://img.youtube.com/vi/${videoId}/hqdefault.jpg`, alt: '', loading: 'lazy',
      decoding: 'async', referrerpolicy: 'no-referrer', onerror: () => image.remove(),
    });
    box.append(image);
  }
  return box;
}

function movieMeta(movie) {
  return h('p', { class: 'card-meta' },
    movie.year ? h('span', {}, String(movie.year)) : null,
    ratingBadge(movie.rating));
}

export function movieCard(movie, ...actions) {
  return h('li', { class: 'card', 'data-movie-id': String(movie.id) },
    h('a', { class: 'card-link', href: `/movie/${movie.id}` },
      poster(movie),
      h('span', { class: 'card-title' }, movie.title ?? 'Без названия')),
    movieMeta(movie),
    actions.length ? h('div', { class: 'card-actions' }, actions) : null);
}

export function movieGrid(movies, actionsFor = () => []) {
  return h('ul', { class: 'card-grid' }, movies.map((movie) => movieCard(movie, ...actionsFor(movie))));
}

export function loading(text = 'Загрузка…') {
  return h('p', { class: 'state state-loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

export function emptyState(text, link) {
  return h('div', { class: 'state state-empty' }, h('p', {}, text), link ?? null);
}

/** An API failure's message, or a generic one for a bug: a script's own error text is no use to a person. */
export function errorState(error) {
  return h('div', { class: 'state state-error', role: 'alert' },
    h('p', {}, error instanceof ApiError ? error.message : 'Что-то пошло не так. Попробуйте обновить страницу.'),
    h('button', { type: 'button', class: 'button button-secondary', onclick: () => window.location.reload() }, 'Обновить страницу'));
}

export function notFoundView(title = 'Страница не найдена', text = 'Такой страницы нет. Возможно, ссылка устарела или в адресе опечатка.') {
  return h('section', { class: 'not-found' },
    h('p', { class: 'not-found-code', 'aria-hidden': 'true' }, '404'),
    h('h1', { tabindex: '-1' }, title),
    h('p', {}, text),
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: '/' }, 'На главную'),
      h('a', { class: 'button button-secondary', href: '/catalog' }, 'Открыть каталог')));
}

/** Previous / next links; `hrefFor(n)` builds the address of page n. */
export function pager({ page, hasNext, total, pageSize }, hrefFor) {
  const pages = total === null ? null : Math.max(1, Math.ceil(total / pageSize));
  const label = pages ? `Страница ${page} из ${pages}` : `Страница ${page}`;
  return h('nav', { class: 'pager', 'aria-label': 'Страницы каталога' },
    page > 1
      ? h('a', { class: 'button button-secondary', href: hrefFor(page - 1), rel: 'prev' }, '← Назад')
      : h('span', { class: 'pager-spacer' }),
    h('span', { class: 'pager-label' }, label),
    hasNext
      ? h('a', { class: 'button button-secondary', href: hrefFor(page + 1), rel: 'next' }, 'Вперёд →')
      : h('span', { class: 'pager-spacer' }));
}
