// Entry point: the page table and the header navigation.
import { AUTH_EVENT, LoginRequired, logout, tokens } from './api.js';
import { h } from './dom.js';
import { loginPage, registerPage } from './account.js';
import { catalogPage, directorPage, genrePage } from './catalog.js';
import { homePage } from './home.js';
import { moviePage } from './movie.js';
import { profilePage } from './profile.js';
import { loginUrl, navigate, startRouter } from './router.js';
import { savedPage } from './saved.js';

const ROUTES = [
  [/^\/$/, homePage],
  [/^\/catalog\/?$/, catalogPage],
  [/^\/movie\/(\d+)\/?$/, moviePage],
  [/^\/genre\/(\d+)\/?$/, genrePage],
  [/^\/director\/(\d+)\/?$/, directorPage],
  [/^\/login\/?$/, loginPage],
  [/^\/register\/?$/, registerPage],
  [/^\/profile\/?$/, profilePage],
  [/^\/saved\/?$/, savedPage],
];

function navLink(path, label, query = '') {
  const current = window.location.pathname.replace(/(.)\/$/, '$1') === path;
  return h('li', {}, h('a', { href: path + query, class: 'nav-link', 'aria-current': current ? 'page' : null }, label));
}

/** ?next=<this page>, so that logging in or registering brings the user back here. */
function comeBackHere() {
  const { pathname, search } = window.location;
  const onAccountForm = /^\/(login|register)\b/.test(pathname);
  const next = onAccountForm ? new URLSearchParams(search).get('next') : pathname + search;
  return next && next !== '/' ? `?next=${encodeURIComponent(next)}` : '';
}

async function logoutAndGoHome(event) {
  event.currentTarget.disabled = true; // the nav is drawn anew once the tokens are gone
  await logout();
  navigate('/');
}

function renderNav() {
  const items = [navLink('/', 'Главная'), navLink('/catalog', 'Каталог')];
  if (tokens.loggedIn) {
    items.push(navLink('/saved', 'Избранное'), navLink('/profile', 'Профиль'),
      h('li', {}, h('button', { type: 'button', class: 'nav-link nav-button', onclick: logoutAndGoHome }, 'Выйти')));
  } else {
    items.push(navLink('/login', 'Войти', comeBackHere()), navLink('/register', 'Регистрация', comeBackHere()));
  }
  document.getElementById('nav').replaceChildren(...items);
}

// Button handlers (favourites, profile forms) may find the session gone; send the user to log in.
window.addEventListener('unhandledrejection', (event) => {
  if (!(event.reason instanceof LoginRequired)) return;
  event.preventDefault();
  navigate(loginUrl(), { replace: true });
});
window.addEventListener(AUTH_EVENT, renderNav);
window.addEventListener('storage', renderNav);
startRouter(ROUTES, renderNav);
