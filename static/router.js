// History-API routing: pages are real <a href> links; clicks on them are intercepted and rendered here.
import { LoginRequired } from './api.js';
import { errorState, notFoundView } from './components.js';
import { setTitle } from './dom.js';

let routes = [];
let onRender = () => {};
let renderCount = 0;

/** The address to come back to after logging in: `next` if the browser resolves it to this site, else home.
 *  Resolving, not pattern-matching, catches what the URL parser reads as another host, such as `/\evil.example/`. */
export function safeNext(next) {
  if (typeof next !== 'string') return '/';
  try {
    const url = new URL(next, window.location.origin);
    if (url.origin === window.location.origin) return url.pathname + url.search + url.hash;
  } catch {
    // not a URL at all
  }
  return '/';
}

export function loginUrl(next = window.location.pathname + window.location.search) {
  return `/login?next=${encodeURIComponent(next)}`;
}

export function navigate(url, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  return render();
}

function findRoute(pathname) {
  for (const [pattern, page] of routes) {
    const match = pathname.match(pattern);
    if (match) return [page, match.slice(1)];
  }
  return null;
}

async function render() {
  const url = new URL(window.location.href);
  const view = document.createElement('div');
  view.className = 'view';
  document.getElementById('main').replaceChildren(view);
  onRender(url);
  const firstRender = renderCount++ === 0;
  const [page, params] = findRoute(url.pathname) ?? [notFoundPage, []];
  try {
    await page(view, { params, query: url.searchParams });
  } catch (error) {
    if (!view.isConnected) return; // the user has already moved on to another page
    if (error instanceof LoginRequired) return navigate(loginUrl(url.pathname + url.search), { replace: true });
    console.error(error);
    view.replaceChildren(errorState(error));
  }
  if (!firstRender && view.isConnected) (view.querySelector('h1') ?? document.getElementById('main')).focus();
}

export function showNotFound(view, title, text) {
  setTitle('Не найдено');
  view.replaceChildren(notFoundView(title, text));
}

function notFoundPage(view) {
  showNotFound(view);
}

function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin || !findRoute(url.pathname)) return; // e.g. /docs: a server page
  if (url.pathname === window.location.pathname && url.search === window.location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
  window.scrollTo(0, 0);
}

/** routes: [[RegExp, async page(view, {params, query})], ...]; onRenderStart(url) runs before each page.
 *  Paths no route matches get the not-found view. */
export function startRouter(routeTable, onRenderStart) {
  routes = routeTable;
  onRender = onRenderStart;
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', render);
  return render();
}
