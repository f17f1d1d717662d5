// Favourites: the user's bookmarked movies, each with a remove button.
import * as api from './api.js';
import { emptyState, loading, movieGrid } from './components.js';
import { h, setTitle } from './dom.js';

function emptyFavorites() {
  return emptyState('В избранном пока пусто. Откройте фильм и нажмите «В избранное».',
    h('a', { class: 'button', href: '/catalog' }, 'Открыть каталог'));
}

async function removeFromFavorites(button, movie, notice) {
  button.disabled = true;
  try {
    await api.removeFavorite(movie.id);
  } catch (error) {
    if (error.status !== 404) { // 404: already removed elsewhere, so the card goes all the same
      button.disabled = false;
      if (!(error instanceof api.ApiError)) throw error;
      notice.textContent = error.message;
      return;
    }
  }
  const grid = button.closest('.card-grid');
  button.closest('.card').remove();
  notice.textContent = `«${movie.title}» убран из избранного.`;
  if (!grid.children.length) grid.replaceWith(emptyFavorites());
}

export async function savedPage(view) {
  setTitle('Избранное');
  if (!api.tokens.loggedIn) throw new api.LoginRequired();
  const status = loading();
  const notice = h('p', { class: 'form-message', role: 'status' });
  view.append(h('h1', { tabindex: '-1' }, 'Избранное'), notice, status);
  const movies = await api.favorites();
  if (!movies.length) return status.replaceWith(emptyFavorites());
  status.replaceWith(movieGrid(movies, (movie) => [h('button', {
    type: 'button',
    class: 'button button-secondary button-small',
    'aria-label': `Убрать «${movie.title}» из избранного`,
    onclick: (event) => removeFromFavorites(event.currentTarget, movie, notice),
  }, 'Убрать')]));
}
