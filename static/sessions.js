// The profile's list of sessions (one per login): where and when, with buttons that end the other ones.
import * as api from './api.js';
import { h } from './dom.js';

// First match wins: Edge, Opera and Yandex also name Chrome and Safari; Android names Linux; iOS names Mac OS X.
const BROWSERS = [
  [/YaBrowser\//, 'Яндекс Браузер'],
  [/Edg(?:e|A|iOS)?\//, 'Edge'],
  [/OPR\/|Opera/, 'Opera'],
  [/Firefox\/|FxiOS\//, 'Firefox'],
  [/Chrome\/|CriOS\//, 'Chrome'],
  [/Safari\//, 'Safari'],
];
const SYSTEMS = [
  [/Windows/, 'Windows'],
  [/iPhone|iPad|iPod/, 'iOS'],
  [/Android/, 'Android'],
  [/CrOS/, 'ChromeOS'],
  [/Macintosh|Mac OS X/, 'macOS'],
  [/Linux/, 'Linux'],
];
const SHORT_AGENT = 60;
const DATE_TIME = new Intl.DateTimeFormat('ru-RU', {
  day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit',
});

function firstMatch(table, text) {
  return table.find(([pattern]) => pattern.test(text))?.[1] ?? null;
}

/** "Firefox, Windows" for a common browser; any other client (an app, curl) by its own words, shortened. */
export function deviceName(userAgent) {
  const known = [firstMatch(BROWSERS, userAgent), firstMatch(SYSTEMS, userAgent)].filter(Boolean);
  if (known.length) return known.join(', ');
  if (!userAgent) return 'Неизвестное устройство';
  return userAgent.length > SHORT_AGENT ? `${userAgent.slice(0, SHORT_AGENT - 1)}…` : userAgent;
}

function moment(utcText) {
  return h('time', { datetime: utcText }, DATE_TIME.format(new Date(utcText)));
}

function fact(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}

function sessionItem(session, end) {
  const name = deviceName(session.user_agent);
  return h('li', { class: 'session', 'data-session-id': session.id },
    h('p', { class: 'session-device', title: session.user_agent || null }, h('span', { class: 'session-name' }, name),
      session.current ? h('span', { class: 'session-current' }, 'это устройство') : null),
    h('dl', { class: 'session-facts' },
      fact('Адрес', session.address || 'неизвестен'),
      fact('Вход', moment(session.created_at)),
      fact('Продлён', session.refreshed_at ? moment(session.refreshed_at) : 'ещё нет')),
    session.current ? null : h('button', {
      type: 'button', class: 'button button-secondary button-small', 'aria-label': `Завершить сеанс: ${name}`,
      onclick: (event) => end(event.currentTarget, () => api.endSession(session.id), 'Сеанс завершён.'),
    }, 'Завершить'));
}

/** The card and its refresh(), which reloads the list (after a password change, say). */
export function sessionsCard(sessions) {
  const list = h('ul', { class: 'session-list' });
  const others = h('div', { class: 'actions' });
  const notice = h('p', { class: 'form-message', role: 'status' });

  const say = (text, kind) => {
    notice.textContent = text;
    notice.className = kind ? `form-message is-${kind}` : 'form-message';
  };

  const show = (items) => {
    // This browser's session first, the others newest first as the API sends them.
    const ordered = [...items.filter((item) => item.current), ...items.filter((item) => !item.current)];
    list.replaceChildren(...ordered.map((item) => sessionItem(item, end)));
    others.replaceChildren(ordered.some((item) => !item.current)
      ? h('button', {
        type: 'button', class: 'button button-secondary',
        onclick: (event) => end(event.currentTarget, api.endOtherSessions, 'Остальные сеансы завершены.'),
      }, 'Завершить все остальные')
      : h('p', { class: 'muted' }, 'Других сеансов нет.'));
  };

  const refresh = async () => {
    try {
      show(await api.sessions());
    } catch (error) {
      if (!(error instanceof api.ApiError)) throw error;
      say(error.message, 'error');
    }
  };

  async function end(button, ending, success) {
    button.disabled = true;
    say('');
    try {
      await ending();
      say(success, 'success');
    } catch (error) {
      button.disabled = false;
      if (!(error instanceof api.ApiError)) throw error;
      say(error.message, 'error');
      if (error.status !== 404) return; // 404: it had ended already, so the list is out of date
    }
    await refresh();
  }

  show(sessions);
  const card = h('section', { class: 'form-card', 'aria-labelledby': 'sessions-title' },
    h('h2', { id: 'sessions-title' }, 'Где выполнен вход'),
    h('p', { class: 'field-hint' }, 'Завершённый сеанс выходит из аккаунта на том устройстве. '
      + 'Чтобы выйти здесь, нажмите «Выйти».'),
    list, notice, others);
  return { card, refresh };
}
