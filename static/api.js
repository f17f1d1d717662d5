// The moviesapi JSON API as plain functions, plus the token pair kept in localStorage.

const ACCESS_KEY = 'moviesapi.access';
const REFRESH_KEY = 'moviesapi.refresh';
export const PAGE_SIZE = 12;
export const AUTH_EVENT = 'moviesapi:auth';
const LOGOUT_WAIT_MS = 5000;

const FALLBACK_MESSAGES = {
  0: 'Нет связи с сервером. Проверьте подключение и попробуйте ещё раз.',
  400: 'Проверьте введённые данные.',
  401: 'Нужно войти заново.',
  403: 'Недостаточно прав.',
  404: 'Не найдено.',
  409: 'Такая запись уже есть.',
  429: 'Слишком много запросов. Подождите немного.',
};

/** An API answer that was not 2xx; `message` is safe to show to a person. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The user has no valid tokens left: the page should send them to the login form. */
export class LoginRequired extends Error {}

export const tokens = {
  get access() { return localStorage.getItem(ACCESS_KEY); },
  get loggedIn() { return Boolean(localStorage.getItem(REFRESH_KEY)); },
  save({ access_token, refresh_token }) {
    localStorage.setItem(ACCESS_KEY, access_token);
    localStorage.setItem(REFRESH_KEY, refresh_token);
    window.dispatchEvent(new Event(AUTH_EVENT));
  },
  clear() {
    localStorage.removeItem(ACCESS_KEY);
    localStorage.removeItem(REFRESH_KEY);
    window.dispatchEvent(new Event(AUTH_EVENT));
  },
};

async function send(method, path, body, accessToken, signal) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  try {
    return await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch {
    throw new ApiError(0, FALLBACK_MESSAGES[0]);
  }
}

async function readJson(response) {
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// Our 429s say how long to wait; a proxy's may only send Retry-After (in seconds), so the fallback reads it.
function waitFrom(response) {
  const seconds = Number(response.headers.get('Retry-After'));
  if (response.status !== 429 || !Number.isInteger(seconds) || seconds <= 0) return null;
  return `Слишком много запросов; повторите через ${seconds < 60 ? `${seconds} с` : `${Math.ceil(seconds / 60)} мин`}.`;
}

async function errorFrom(response) {
  const data = await readJson(response);
  const message = typeof data?.message === 'string' && data.message.trim()
    ? data.message
    : waitFrom(response) ?? FALLBACK_MESSAGES[response.status] ?? 'Что-то пошло не так. Попробуйте позже.';
  return new ApiError(response.status, message);
}

let pendingSwap = null;

// Refresh tokens are single-use: parallel 401s must share one swap, or the second one looks like token reuse.
function swapTokensOnce() {
  pendingSwap ??= swapTokens().finally(() => { pendingSwap = null; });
  return pendingSwap;
}

async function swapTokens() {
  const refresh_token = localStorage.getItem(REFRESH_KEY);
  if (!refresh_token) return false;
  // The access token was just refused, so it proves nothing; the API accepts the refresh token alone.
  const response = await send('PUT', '/auth/login', { refresh_token });
  if (!response.ok) return false;
  tokens.save(await response.json());
  return true;
}

/** Sends one request; with `auth`, swaps the token pair once on a 401 and retries. Throws ApiError or LoginRequired. */
export async function request(method, path, { body, auth = false } = {}) {
  let response = await send(method, path, body, auth ? tokens.access : null);
  if (auth && response.status === 401) {
    if (await swapTokensOnce()) response = await send(method, path, body, tokens.access);
    if (response.status === 401) {
      tokens.clear();
      throw new LoginRequired();
    }
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function getJson(path, options) {
  return readJson(await request('GET', path, options));
}

function hasNextPage(response, page, items) {
  const link = response.headers.get('Link');
  if (link) return /rel="?next"?/.test(link);
  const total = Number.parseInt(response.headers.get('X-Total-Count'), 10);
  if (Number.isFinite(total)) return page * PAGE_SIZE < total;
  return items.length === PAGE_SIZE; // no paging headers: an empty next page marks the end
}

/** One page of movies; `filters` are API query parameters such as {status: 'new'} or {genre_id: 3}. */
export async function moviePage(filters, page) {
  const query = new URLSearchParams({ ...filters, page });
  const response = await request('GET', `/movies/?${query}`);
  const items = (await readJson(response)) ?? [];
  const total = Number.parseInt(response.headers.get('X-Total-Count'), 10);
  return { items, total: Number.isFinite(total) ? total : null, hasNext: hasNextPage(response, page, items) };
}

export const movie = (id) => getJson(`/movies/${id}`);
export const genres = () => getJson('/genres/');
export const genre = (id) => getJson(`/genres/${id}`);
export const directors = () => getJson('/directors/');
export const director = (id) => getJson(`/directors/${id}`);

export async function login(email, password) {
  const response = await request('POST', '/auth/login', { body: { email, password } });
  tokens.save(await response.json());
}

export async function register(email, password) {
  await request('POST', '/auth/register', { body: { email, password } });
  await login(email, password);
}

/** Ends this browser's session on the server, then forgets the tokens: also when the server could not be told
 *  (no connection, a token it refuses), since staying logged in is never what "Выйти" means. */
export async function logout() {
  await pendingSwap?.catch(() => false); // a swap under way would save its pair after we forget ours
  const refresh_token = localStorage.getItem(REFRESH_KEY);
  if (refresh_token) {
    await send('POST', '/auth/logout', { refresh_token }, null, AbortSignal.timeout(LOGOUT_WAIT_MS)).catch(() => null);
  }
  tokens.clear();
}

export const currentUser = () => getJson('/user/', { auth: true });
export const updateUser = (changes) => request('PATCH', '/user/', { body: changes, auth: true }).then(readJson);
export const changePassword = (current, fresh) =>
  request('PUT', '/user/password', { body: { password_1: current, password_2: fresh }, auth: true });

/** Everything stored about the user, as a JSON file's Blob. */
export const exportData = () => request('GET', '/user/export', { auth: true }).then((response) => response.blob());
export const importFavorites = (document) =>
  request('POST', '/favorites/movies/import', { body: document, auth: true }).then(readJson);
export const deleteAccount = (password) => request('DELETE', '/user/', { body: { password }, auth: true });

/** The user's live sessions, newest first; `current` marks this browser's. */
export const sessions = () => getJson('/auth/sessions', { auth: true });
export const endSession = (id) => request('DELETE', `/auth/sessions/${encodeURIComponent(id)}`, { auth: true });
export const endOtherSessions = () => request('DELETE', '/auth/sessions', { auth: true });

export const favorites = () => getJson('/favorites/movies/', { auth: true });
export const addFavorite = (movieId) => request('POST', `/favorites/movies/${movieId}`, { auth: true });
export const removeFavorite = (movieId) => request('DELETE', `/favorites/movies/${movieId}`, { auth: true });
