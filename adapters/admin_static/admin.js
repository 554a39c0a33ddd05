/*
 * kefu admin page: FAQ editor, what the bot could not answer, service figures, follow-ups.
 * API: docs/admin-api.md (login shared with docs/console-api.md). No build step, no external assets.
 *
 * Charts: Chart.js 4.6.1 (MIT), vendored unmodified from the npm package chart.js@4.6.1
 * (dist/chart.umd.min.js, sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==)
 * as vendor/chart.umd.min.js, licence in vendor/chart.js.LICENSE.md.
 *
 * Safety: every text from the server (entries, customer questions, names) is put into the page with
 * textContent / createTextNode only; reply markup (**bold**, "1. " numbered lines, [label](https://…)) is
 * turned into DOM nodes by renderMarkup(). No HTML is ever parsed from data. Every UI text comes from
 * /api/admin/strings (reply_templates/<lang>/admin.json); this file holds only keys.
 */
(() => {
  'use strict';

  const CSRF = { 'X-Requested-With': 'kefu' };
  const MAX_ANSWER = { zh: 600, en: 1200 };  // bot/norms.py MAX_CHARS
  const NORM_CODES = ['informal_you', 'banned_phrase', 'no_courtesy', 'too_long', 'empty'];
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------------------
  // strings and formatting
  // ------------------------------------------------------------------------------------------------

  let S = {};
  const lang = pickLang();
  const locale = lang === 'zh' ? 'zh-CN' : 'en-US';

  function pickLang() {
    const forced = new URLSearchParams(location.search).get('lang');
    if (forced === 'zh' || forced === 'en') return forced;
    const nav = (navigator.languages && navigator.languages[0]) || navigator.language || '';
    return /^en\b/i.test(nav) ? 'en' : 'zh';
  }

  /** The UI text for `key` with {name} placeholders filled in; the key itself if it is missing. */
  function t(key, vars) {
    const raw = Object.prototype.hasOwnProperty.call(S, key) ? S[key] : key;
    if (!vars) return raw;
    return raw.replace(/\{(\w+)\}/g, (m, name) => (vars[name] === undefined || vars[name] === null ? m : String(vars[name])));
  }

  /** `t` with the plural form of `key` for vars.n when the strings have one (`key.one`), else `key`. */
  function tn(key, vars) {
    const form = `${key}.${plurals.select(Number(vars.n))}`;
    return t(Object.prototype.hasOwnProperty.call(S, form) ? form : key, vars);
  }

  /** A label for a server code when the strings know it, else the raw code. */
  function label(prefix, code) {
    const key = prefix + code;
    return Object.prototype.hasOwnProperty.call(S, key) ? S[key] : String(code);
  }

  function applyStrings(root) {
    root.querySelectorAll('[data-i18n]').forEach((n) => { n.textContent = t(n.dataset.i18n); });
    root.querySelectorAll('[data-i18n-placeholder]').forEach((n) => { n.placeholder = t(n.dataset.i18nPlaceholder); });
    root.querySelectorAll('[data-i18n-aria]').forEach((n) => { n.setAttribute('aria-label', t(n.dataset.i18nAria)); });
    root.querySelectorAll('[data-i18n-title]').forEach((n) => { n.title = t(n.dataset.i18nTitle); });
  }

  const plurals = new Intl.PluralRules(locale);
  const nf = new Intl.NumberFormat(locale);
  const pf = new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 });
  const df = new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
  const dtf = new Intl.DateTimeFormat(locale, { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false });
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' });

  const num = (v) => (v === null || v === undefined ? '—' : nf.format(v));
  const pct = (v) => (v === null || v === undefined ? '—' : pf.format(v));
  const dec = (v) => (v === null || v === undefined ? '—' : df.format(v));

  function dur(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    const s = Math.max(0, Number(seconds));
    if (s < 0.05) return t('dur.lt', { s: df.format(0.1) });
    if (s < 10) return t('dur.s_dec', { s: df.format(Math.round(s * 10) / 10) });
    if (s < 60) return t('dur.s', { s: Math.round(s) });
    if (s < 3600) {
      const m = Math.floor(s / 60);
      const rest = Math.round(s - m * 60);
      return rest ? t('dur.ms', { m, s: rest }) : t('dur.m', { m });
    }
    const h = Math.floor(s / 3600);
    return t('dur.hm', { h, m: Math.round((s - h * 3600) / 60) });
  }

  function when(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso || '') : dtf.format(d);
  }

  function ago(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const diff = (d.getTime() - Date.now()) / 1000;
    const abs = Math.abs(diff);
    if (abs < 60) return rtf.format(Math.round(diff), 'second');
    if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
    if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
    return rtf.format(Math.round(diff / 86400), 'day');
  }

  function isoDay(d) {
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }

  /** A customer/conversation id shortened for display (the server masks too; this keeps rows narrow). */
  function shortId(id) {
    const [channel, rest] = String(id || '').includes(':') ? String(id).split(/:(.*)/s) : ['', String(id || '')];
    const part = rest || '';
    const short = part.length <= 10 ? part : `${part.slice(0, 4)}…${part.slice(-4)}`;
    return { channel, short };
  }

  // ------------------------------------------------------------------------------------------------
  // DOM helpers (no HTML parsing anywhere)
  // ------------------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'text') node.textContent = String(v);
        else if (k === 'class') node.className = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
        else if (v === true) node.setAttribute(k, '');
        else node.setAttribute(k, String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c);
    return node;
  }

  function icon(paths, cls) {
    const s = svg('svg', { viewBox: '0 0 16 16', class: cls || 'ico', 'aria-hidden': 'true' });
    for (const d of paths) {
      s.append(svg('path', { d, fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6', 'stroke-linecap': 'round', 'stroke-linejoin': 'round' }));
    }
    return s;
  }

  const ICON = {
    plus: ['M8 3v10', 'M3 8h10'],
    link: ['M6.5 9.5l3-3', 'M7 4.5l1-1a2.8 2.8 0 014 4l-1 1', 'M9 11.5l-1 1a2.8 2.8 0 01-4-4l1-1'],
    x: ['M4 4l8 8', 'M12 4l-8 8'],
    check: ['M3.5 8.5l3 3 6-7'],
    arrow: ['M6 3.5L10.5 8 6 12.5'],
    edit: ['M10.5 3l2.5 2.5L6 12.5H3.5V10z'],
    restore: ['M3 8a5 5 0 109-3', 'M12 2v3H9'],
  };

  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  const INLINE_RE = /\*\*([^*\n]+?)\*\*|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g;

  /** Inline reply markup as nodes: **bold** and [label](http(s)://…); everything else is plain text. */
  function inlineNodes(text) {
    const out = [];
    let last = 0;
    INLINE_RE.lastIndex = 0;
    let m;
    while ((m = INLINE_RE.exec(text)) !== null) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1] !== undefined) {
        out.push(el('strong', { text: m[1] }));
      } else {
        const href = safeUrl(m[3]);
        out.push(href ? el('a', { href, target: '_blank', rel: 'noopener noreferrer', text: m[2] }) : m[0]);
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  /** Reply markup as a fragment of lines, read as the web-chat widget reads it; numbered lines keep their number. */
  function renderMarkup(text) {
    const frag = document.createDocumentFragment();
    for (const line of String(text || '').split('\n')) {
      const n = /^\s*(\d{1,3})\.\s+(.*)$/.exec(line);  // as the web-chat widget reads them
      if (n) {
        frag.append(el('div', { class: 'md-line md-num' },
          el('span', { class: 'md-num-n', text: `${n[1]}.` }), el('span', null, ...inlineNodes(n[2]))));
      } else if (line.trim() === '') {
        frag.append(el('div', { class: 'md-line md-gap' }));
      } else {
        frag.append(el('div', { class: 'md-line' }, ...inlineNodes(line)));
      }
    }
    return frag;
  }

  /** `text` with every case-insensitive occurrence of `q` wrapped in <mark> (nodes, not HTML). */
  function highlight(text, q) {
    const s = String(text || '');
    if (!q) return [s];
    const out = [];
    const lower = s.toLowerCase();
    const needle = q.toLowerCase();
    let i = 0;
    for (;;) {
      const j = lower.indexOf(needle, i);
      if (j < 0) break;
      if (j > i) out.push(s.slice(i, j));
      out.push(el('mark', { text: s.slice(j, j + needle.length) }));
      i = j + needle.length;
    }
    if (i < s.length) out.push(s.slice(i));
    return out;
  }

  /** A server message with any known FAQ entry id in it turned into a link to that entry. */
  function linkIds(message) {
    const text = String(message || '');
    const ids = [...faq.known].filter((id) => text.includes(id)).sort((a, b) => b.length - a.length);
    if (!ids.length) return [text];
    const re = new RegExp(ids.map((id) => id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
    const out = [];
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(entryLink(m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  function entryLink(id, textValue) {
    return el('a', { href: `#faq/${encodeURIComponent(id)}`, class: 'entry-link', dataset: { entry: id }, text: textValue || id });
  }

  function avatarFor(node, key, textSource) {
    const letters = String(textSource || '').replace(/[^\p{L}\p{N}]/gu, '');
    node.textContent = letters.slice(-2) || '?';
    let h = 0;
    for (const ch of String(key || '')) h = (h * 31 + ch.codePointAt(0)) % 360;
    node.style.background = `hsl(${h} 45% 42%)`;
    return node;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  // ------------------------------------------------------------------------------------------------
  // API
  // ------------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, data) {
      super(`HTTP ${status}`);
      this.status = status;
      this.data = data || {};
    }
  }

  /** JSON in and out; state changes carry the CSRF header. 401 anywhere means the session is gone. */
  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = method === 'GET' ? {} : { ...CSRF };
    let payload;
    if (opts.raw !== undefined) {
      payload = opts.raw;
      headers['Content-Type'] = opts.contentType || 'text/plain; charset=utf-8';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
    } catch (err) {
      throw new ApiError(0, { error: 'network' });
    }
    let data = null;
    if (res.status !== 204) {
      const text = await res.text();
      try {
        data = text ? JSON.parse(text) : null;
      } catch (err) {
        data = { error: 'bad_response' };
      }
    }
    if (res.status === 401 && !opts.allow401) {
      sessionLost();
      throw new ApiError(401, data);
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  function errorText(err) {
    if (!(err instanceof ApiError)) return t('err.generic');
    if (err.status === 0) return t('err.network');
    if (err.status === 403) return t('err.forbidden');
    if (err.status === 503) return t('err.unavailable');
    const code = err.data && err.data.error;
    if (code && Object.prototype.hasOwnProperty.call(S, `err.${code}`)) return t(`err.${code}`);
    return t('err.generic_code', { status: err.status, code: code || '' });
  }

  // ------------------------------------------------------------------------------------------------
  // toasts and dialogs
  // ------------------------------------------------------------------------------------------------

  function toast(text, kind) {
    const node = el('div', { class: `toast toast-${kind || 'ok'}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' },
      el('span', { class: 'toast-icon', 'aria-hidden': 'true' }, icon(kind === 'error' ? ICON.x : ICON.check)), el('span', { text }));
    $('toasts').append(node);
    setTimeout(() => node.classList.add('toast-out'), kind === 'error' ? 6000 : 3200);
    setTimeout(() => node.remove(), kind === 'error' ? 6400 : 3600);
  }

  let modalResolve = null;
  /** A yes/no dialog; resolves true when confirmed. */
  function confirmDialog({ title, body, ok, cancel, danger, info }) {
    $('modal-title').textContent = title;
    $('modal-body').replaceChildren(...(Array.isArray(body) ? body : [body || '']));
    $('modal-ok').textContent = ok || t('ok');
    $('modal-cancel').textContent = cancel || t('cancel');
    $('modal-cancel').hidden = !!info;  // a message to acknowledge, not a question
    $('modal-ok').className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
    $('modal').hidden = false;
    setTimeout(() => $('modal-ok').focus(), 0);
    return new Promise((resolve) => { modalResolve = resolve; });
  }

  function closeModal(value) {
    $('modal').hidden = true;
    if (modalResolve) modalResolve(value);
    modalResolve = null;
  }

  // ------------------------------------------------------------------------------------------------
  // login
  // ------------------------------------------------------------------------------------------------

  let me = null;

  function showLogin(message, kind) {
    $('boot').hidden = true;
    $('app').hidden = true;
    $('login-view').hidden = false;
    $('login-denied').hidden = true;
    $('login-fields').hidden = false;
    const box = $('login-error');
    box.hidden = !message;
    box.textContent = message || '';
    box.className = kind === 'info' ? 'form-info' : 'form-error';
    setTimeout(() => $('login-username').focus(), 0);
  }

  function showDenied(agent) {
    $('boot').hidden = true;
    $('app').hidden = true;
    $('login-view').hidden = false;
    $('login-fields').hidden = true;
    $('login-denied').hidden = false;
    $('login-denied-text').textContent = t('login.denied', { name: agent.display_name || agent.username, role: label('role.', agent.role) });
  }

  function sessionLost() {
    if (!me) return;
    me = null;
    faq.dirty = false;
    showLogin(t('login.expired'), 'info');
  }

  async function submitLogin(ev) {
    ev.preventDefault();
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    const box = $('login-error');
    if (!username || !password) {
      box.hidden = false;
      box.className = 'form-error';
      box.textContent = t('login.error.missing');
      return;
    }
    const btn = $('login-submit');
    btn.disabled = true;
    btn.textContent = t('login.submitting');
    try {
      const agent = await api('POST', '/api/auth/login', { username, password }, { allow401: true });
      $('login-password').value = '';
      enter(agent);
    } catch (err) {
      box.hidden = false;
      box.className = 'form-error';
      if (err.status === 401) box.textContent = t('login.error.invalid');
      else if (err.status === 429) box.textContent = t('login.error.throttled', { minutes: Math.ceil(((err.data && err.data.retry_after) || 900) / 60) });
      else box.textContent = errorText(err);
    } finally {
      btn.disabled = false;
      btn.textContent = t('login.submit');
    }
  }

  async function logout() {
    if (faq.dirty && !(await confirmDiscard())) return;
    faq.dirty = false;
    try {
      await api('POST', '/api/auth/logout', undefined, { allow401: true });
    } catch (err) { /* the cookie is cleared below anyway */ }
    me = null;
    showLogin('');
  }

  function enter(agent) {
    if (agent.role !== 'admin') {
      showDenied(agent);
      return;
    }
    me = agent;
    $('boot').hidden = true;
    $('login-view').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = agent.display_name || agent.username;
    avatarFor($('me-avatar'), agent.username, agent.display_name || agent.username);
    route();
    loadFaqList();
    refreshBadges();
  }

  // ------------------------------------------------------------------------------------------------
  // tabs and routing (#faq, #faq/<id>, #unanswered, #figures, #followups)
  // ------------------------------------------------------------------------------------------------

  const TABS = ['faq', 'unanswered', 'figures', 'followups'];
  let currentTab = null;
  let lastHash = '';

  async function route() {
    if (!me) return;
    const hash = decodeURIComponent(location.hash.replace(/^#/, ''));
    const [tab, ...rest] = hash.split('/');
    const name = TABS.includes(tab) ? tab : 'faq';
    const entryId = name === 'faq' && rest.length ? rest.join('/') : null;
    if (entryId && entryId !== faq.openId) {
      if (!(await openEntry(entryId))) {
        history.replaceState(null, '', lastHash || '#faq');
        return;
      }
    }
    lastHash = location.hash || '#faq';
    showTab(name);
  }

  function showTab(name) {
    for (const tab of TABS) {
      const on = tab === name;
      $(`panel-${tab}`).hidden = !on;
      const btn = $(`tab-${tab}`);
      btn.setAttribute('aria-selected', on ? 'true' : 'false');
      btn.classList.toggle('active', on);
    }
    if (name === currentTab) return;
    currentTab = name;
    document.title = `${t(`tab.${name}`)} · ${t('app.title')}`;
    if (name === 'unanswered') loadUnanswered();
    if (name === 'figures') loadFigures();
    if (name === 'followups') loadFollowups();
    if (name === 'faq' && chartsResize) chartsResize();
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  async function refreshBadges() {
    try {
      const data = await api('GET', '/api/followups?status=pending');
      setCount('tab-followups-count', data.items.length);
    } catch (err) { /* badges are a nicety */ }
    try {
      const data = await api('GET', '/api/admin/unanswered?days=7');
      setCount('tab-unanswered-count', data.groups.length);
    } catch (err) { /* idem */ }
  }

  function setCount(id, n) {
    const node = $(id);
    node.hidden = !n;
    node.textContent = n > 99 ? '99+' : String(n);
  }

  // ------------------------------------------------------------------------------------------------
  // FAQ: list
  // ------------------------------------------------------------------------------------------------

  const faq = {
    items: [],
    known: new Set(),       // every entry id seen (for linking ids in server messages)
    categories: new Set(),
    openId: null,           // id of the entry in the editor (null: none or new)
    loaded: null,           // the entry as loaded/saved (its `version` goes with every save)
    isNew: false,
    dirty: false,
    needsOverride: false,
    similar: [],
    tags: [],
    saving: false,
    conflict: null,         // the server's current entry after a 409, while the conflict panel is shown
    close: {},              // lang -> the close faq_answer.j2 adds after every answer (from the norms check)
  };
  let listSeq = 0;

  async function loadFaqList() {
    const seq = ++listSeq;
    const params = new URLSearchParams();
    const q = $('faq-search').value.trim();
    if (q) params.set('q', q);
    for (const [key, id] of [['lang', 'faq-filter-lang'], ['category', 'faq-filter-category'], ['enabled', 'faq-filter-enabled']]) {
      if ($(id).value) params.set(key, $(id).value);
    }
    let data;
    try {
      data = await api('GET', `/api/admin/faq?${params}`);
    } catch (err) {
      if (err.status !== 401) toast(errorText(err), 'error');
      return;
    }
    if (seq !== listSeq) return;
    faq.items = data.items;
    for (const item of data.items) {
      faq.known.add(item.id);
      if (item.category) faq.categories.add(item.category);
    }
    renderCategories();
    renderFaqList(q);
  }

  function renderCategories() {
    const select = $('faq-filter-category');
    const chosen = select.value;
    const cats = [...faq.categories].sort();
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join('\n') !== cats.join('\n')) {
      select.replaceChildren(select.options[0], ...cats.map((c) => el('option', { value: c, text: label('category.', c) })));
      select.value = chosen;
    }
    $('ed-category-list').replaceChildren(...cats.map((c) => el('option', { value: c })));
  }

  function renderFaqList(q) {
    const list = $('faq-list');
    const rows = faq.items.map((item) => {
      const badges = [];
      if (!item.enabled) badges.push(el('span', { class: 'badge badge-muted', text: t('faq.badge.disabled') }));
      if (item.needs_agent) badges.push(el('span', { class: 'badge badge-gold', text: t('faq.badge.needs_agent') }));
      const row = el('li', {
        class: `faq-row${item.id === faq.openId ? ' selected' : ''}${item.enabled ? '' : ' is-disabled'}`,
        role: 'option', tabindex: '0', 'aria-selected': item.id === faq.openId ? 'true' : 'false',
        'data-testid': 'faq-row', 'data-id': item.id,
      },
      el('div', { class: 'faq-row-q' }, ...highlight(item.question, q)),
      el('div', { class: 'faq-row-meta' },
        el('span', { class: 'lang-chip', text: t(item.lang === 'en' ? 'lang.chip_en' : 'lang.chip_zh') }),
        el('span', { class: 'faq-row-id', text: item.id }),
        el('span', { class: 'dot-sep', 'aria-hidden': 'true' }),
        el('span', { text: label('category.', item.category) }),
        el('span', { class: 'dot-sep', 'aria-hidden': 'true' }),
        el('span', { text: tn('faq.row.phrasings', { n: item.similar.length + 1 }) }),
        ...badges));
      row.addEventListener('click', () => go(`#faq/${encodeURIComponent(item.id)}`));
      row.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          go(`#faq/${encodeURIComponent(item.id)}`);
        }
      });
      return row;
    });
    list.replaceChildren(...rows);
    $('faq-list-empty').hidden = rows.length > 0;
    $('faq-count').textContent = tn('faq.count', { n: faq.items.length });
  }

  function markSelected() {
    document.querySelectorAll('#faq-list .faq-row').forEach((row) => {
      const on = row.dataset.id === faq.openId;
      row.classList.toggle('selected', on);
      row.setAttribute('aria-selected', on ? 'true' : 'false');
    });
  }

  // ------------------------------------------------------------------------------------------------
  // FAQ: editor
  // ------------------------------------------------------------------------------------------------

  async function confirmDiscard() {
    return confirmDialog({ title: t('faq.discard.title'), body: t('faq.discard.body'), ok: t('faq.discard.ok'), danger: true });
  }

  /** Load an entry into the editor; false when the admin chose to keep unsaved changes or it failed. */
  async function openEntry(id) {
    if (faq.dirty && !(await confirmDiscard())) return false;
    let entry;
    try {
      entry = await api('GET', `/api/admin/faq/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 404) toast(t('faq.not_found', { id }), 'error');
      else if (err.status !== 401) toast(errorText(err), 'error');
      return false;
    }
    faq.known.add(entry.id);
    fillEditor(entry, false);
    return true;
  }

  function blankEntry(prefill) {
    return {
      id: '', question: '', similar: [], answer: '', category: 'general', lang: lang, tags: [], enabled: true,
      needs_agent: false, ...(prefill || {}),
    };
  }

  async function newEntry(prefill) {
    if (faq.dirty && !(await confirmDiscard())) return;
    fillEditor(blankEntry(prefill), true);
    history.replaceState(null, '', '#faq');
    lastHash = '#faq';
    showTab('faq');
    if (prefill && prefill.question) markDirty();
    setTimeout(() => $(prefill && prefill.question ? 'ed-id' : 'ed-question').focus(), 0);
  }

  function fillEditor(entry, isNew) {
    $('faq-main').scrollTop = 0;
    faq.isNew = isNew;
    faq.loaded = isNew ? null : entry;
    faq.openId = isNew ? null : entry.id;
    faq.similar = [...(entry.similar || [])];
    faq.tags = [...(entry.tags || [])];
    faq.needsOverride = false;
    $('faq-placeholder').hidden = true;
    $('faq-editor').hidden = false;
    $('ed-id').value = entry.id || '';
    $('ed-id').readOnly = !isNew;
    $('ed-id').closest('.field').classList.toggle('field-readonly', !isNew);
    $('ed-question').value = entry.question || '';
    $('ed-answer').value = entry.answer || '';
    $('ed-category').value = entry.category || 'general';
    $('ed-lang').value = entry.lang === 'en' ? 'en' : 'zh';
    $('ed-enabled').checked = entry.enabled !== false;
    $('ed-needs-agent').checked = !!entry.needs_agent;
    $('ed-override-reason').value = '';
    $('ed-override').hidden = true;
    $('try-result').hidden = true;
    hideConflict();
    clearErrors();
    showWarnings([]);
    renderSimilar();
    renderTags();
    renderHeader();
    renderPreview();
    setDirty(false);
    markSelected();
    checkNormsLive();
  }

  function closeEditor() {
    faq.openId = null;
    faq.loaded = null;
    faq.isNew = false;
    setDirty(false);
    $('faq-editor').hidden = true;
    $('faq-placeholder').hidden = false;
    markSelected();
  }

  function renderHeader() {
    const entry = faq.loaded;
    $('ed-title').textContent = faq.isNew ? t('faq.new_title') : entry.question;
    const status = $('ed-status');
    if (faq.isNew) {
      status.className = 'badge badge-new';
      status.textContent = t('faq.badge.new');
    } else {
      status.className = `badge ${entry.enabled ? 'badge-ok' : 'badge-muted'}`;
      status.textContent = entry.enabled ? t('faq.badge.enabled') : t('faq.badge.disabled');
    }
    $('ed-needs-agent-badge').hidden = faq.isNew || !entry.needs_agent;
    $('ed-meta').textContent = faq.isNew ? '' : t('faq.meta', {
      version: entry.version, user: entry.updated_by || '—', time: entry.updated_at ? when(entry.updated_at) : '—',
    });
    $('ed-history').hidden = faq.isNew;
    $('ed-delete').hidden = faq.isNew;
    const toggle = $('ed-toggle');
    toggle.hidden = faq.isNew;
    if (!faq.isNew) toggle.textContent = entry.enabled ? t('faq.disable') : t('faq.enable');
    $('ed-save').textContent = faq.isNew ? t('faq.create') : t('faq.save');
  }

  function setDirty(on) {
    faq.dirty = on;
    $('ed-dirty').hidden = !on;
    $('ed-toggle').disabled = on;
    $('ed-toggle').title = on ? t('faq.toggle_dirty') : '';
  }

  function markDirty() {
    if (!faq.dirty) setDirty(true);
  }

  /** The entry as the form has it now (only the fields the API takes). */
  function readForm() {
    return {
      id: $('ed-id').value.trim(),
      category: $('ed-category').value.trim() || 'general',
      lang: $('ed-lang').value,
      question: $('ed-question').value.trim(),
      similar: faq.similar.map((s) => s.trim()).filter(Boolean),
      answer: $('ed-answer').value.trim(),
      enabled: $('ed-enabled').checked,
      tags: faq.tags.slice(),
      needs_agent: $('ed-needs-agent').checked,
    };
  }

  function renderSimilar() {
    const list = $('ed-similar');
    const rows = faq.similar.map((text, i) => {
      const input = el('input', { value: text, 'data-testid': 'faq-similar-item', 'aria-label': t('faq.similar.item', { n: i + 1 }), autocomplete: 'off' });
      input.value = text;
      input.addEventListener('input', () => {
        faq.similar[i] = input.value;
        markDirty();
      });
      const remove = el('button', { type: 'button', class: 'btn-icon', 'data-testid': 'faq-similar-remove', 'aria-label': t('faq.similar.remove'), title: t('faq.similar.remove') }, icon(ICON.x));
      remove.addEventListener('click', () => {
        faq.similar.splice(i, 1);
        markDirty();
        renderSimilar();
      });
      return el('li', { class: 'phrasing' }, el('span', { class: 'phrasing-n', text: String(i + 1) }), input, remove);
    });
    list.replaceChildren(...rows);
    if (!rows.length) list.append(el('li', { class: 'phrasing-empty muted small', text: t('faq.similar.empty') }));
  }

  function addSimilar() {
    const input = $('ed-similar-new');
    const text = input.value.trim();
    if (!text) return;
    faq.similar.push(text);
    input.value = '';
    markDirty();
    renderSimilar();
    input.focus();
  }

  function renderTags() {
    const box = $('ed-tags');
    const input = $('ed-tags-input');
    const chips = faq.tags.map((tag, i) => {
      const remove = el('button', { type: 'button', class: 'chip-x', 'aria-label': t('faq.tags.remove', { tag }) }, icon(ICON.x));
      remove.addEventListener('click', () => {
        faq.tags.splice(i, 1);
        markDirty();
        renderTags();
      });
      return el('span', { class: 'chip', 'data-testid': 'faq-tag' }, el('span', { text: tag }), remove);
    });
    box.replaceChildren(...chips, input);
  }

  function commitTag() {
    const input = $('ed-tags-input');
    const parts = input.value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
    if (!parts.length) return;
    for (const p of parts) if (!faq.tags.includes(p)) faq.tags.push(p);
    input.value = '';
    markDirty();
    renderTags();
    input.focus();
  }

  function renderPreview() {
    const q = $('ed-question').value.trim();
    const a = $('ed-answer').value;
    const qBubble = $('pv-question');
    qBubble.textContent = q || t('faq.preview.question_placeholder');
    qBubble.classList.toggle('placeholder-text', !q);
    const aBubble = $('pv-answer');
    if (a.trim()) {
      // The customer gets the answer with the close the bot adds (faq_answer.j2), so the preview shows it.
      const close = faq.close[$('ed-lang').value];
      aBubble.replaceChildren(renderMarkup(a));
      if (close) {
        aBubble.append(el('div', { class: 'md-gap' }), el('div', { class: 'md-line preview-added',
          'data-testid': 'faq-preview-close', title: t('faq.preview.added'), text: close }));
      }
      aBubble.classList.remove('placeholder-text');
    } else {
      aBubble.replaceChildren(t('faq.preview.answer_placeholder'));
      aBubble.classList.add('placeholder-text');
    }
    const max = MAX_ANSWER[$('ed-lang').value] || 1200;
    const count = $('ed-answer-count');
    count.textContent = t('faq.answer_count', { n: a.trim().length, max });
    count.classList.toggle('over', a.trim().length > max);
  }

  // Live reply-norms hints while typing (the console's check endpoint; never blocking here either).
  let normsSeq = 0;
  const checkNormsLive = debounce(async () => {
    const seq = ++normsSeq;
    const text = $('ed-answer').value.trim();
    const box = $('ed-norms-live');
    // While the save's blocking norms error is shown it says the same thing; the hint returns on the next edit.
    if (!text || $('ed-answer').getAttribute('aria-invalid') === 'true') {
      box.hidden = true;
      return;
    }
    try {
      const lang = $('ed-lang').value;
      const data = await api('POST', '/api/console/check', { text, lang, kind: 'answer' });
      if (seq !== normsSeq) return;
      if (data && typeof data.close === 'string' && faq.close[lang] !== data.close) {
        faq.close[lang] = data.close;
        renderPreview();
      }
      const warnings = (data && data.warnings) || [];
      box.hidden = false;
      box.className = `norms-live ${warnings.length ? 'has-warn' : 'ok'}`;
      if (!warnings.length) {
        box.replaceChildren(el('span', { class: 'norms-ico', 'aria-hidden': 'true' }, icon(ICON.check)), el('span', { text: t('norms.ok') }));
      } else {
        box.replaceChildren(el('span', { class: 'norms-ico', 'aria-hidden': 'true', text: '!' }),
          el('span', null, t('norms.warn'), ' ', ...warnings.map((w, i) => el('span', { class: 'norm-item' },
            i ? t('norms.sep') : '', w.detail ? t('norms.item', { label: label('norms.', w.code), detail: w.detail }) : label('norms.', w.code)))));
      }
    } catch (err) {
      box.hidden = true;
    }
  }, 400);

  // ---- errors, warnings, conflict ----

  function clearErrors() {
    document.querySelectorAll('#faq-editor .field-error').forEach((n) => n.remove());
    document.querySelectorAll('#faq-editor [aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
    document.querySelectorAll('#faq-editor .field.has-error').forEach((n) => n.classList.remove('has-error'));
    $('ed-form-error').hidden = true;
    $('ed-form-error').replaceChildren();
  }

  /** An edited field's old error no longer applies (the override box stays until the next save). */
  function clearFieldError(inputId) {
    const field = Object.keys(FIELD_INPUT).find((f) => FIELD_INPUT[f] === inputId);
    const container = field && document.querySelector(`#faq-editor [data-field="${field}"]`);
    if (!container || !container.classList.contains('has-error')) return;
    container.classList.remove('has-error');
    container.querySelectorAll('.field-error').forEach((n) => n.remove());
    $(inputId).removeAttribute('aria-invalid');
  }

  const FIELD_INPUT = {
    id: 'ed-id', question: 'ed-question', similar: 'ed-similar-new', answer: 'ed-answer', category: 'ed-category',
    lang: 'ed-lang', tags: 'ed-tags-input', enabled: 'ed-enabled', needs_agent: 'ed-needs-agent',
  };

  /** A norms message from the API ("code: detail; code: detail") as readable, localized parts. */
  function normsParts(message) {
    const parts = String(message).split(/;\s*/).map((p) => {
      const m = /^([a-z_]+):\s*(.*)$/.exec(p);
      return m && NORM_CODES.includes(m[1]) ? { code: m[1], detail: m[2] } : null;
    });
    return parts.every(Boolean) ? parts : null;
  }

  function showFieldErrors(fields) {
    let first = null;
    const general = [];
    for (const [field, message] of Object.entries(fields || {})) {
      const inputId = FIELD_INPUT[field];
      const container = inputId ? document.querySelector(`#faq-editor [data-field="${field}"]`) : null;
      if (!container) {
        general.push(el('div', null, el('strong', { text: `${label('faq.field.', field)}: ` }), ...linkIds(message)));
        continue;
      }
      container.classList.add('has-error');
      const input = $(inputId);
      input.setAttribute('aria-invalid', 'true');
      const errNode = el('p', { class: 'field-error', role: 'alert', 'data-testid': 'faq-error', 'data-field': field });
      const norms = field === 'answer' ? normsParts(message) : null;
      if (norms) {
        faq.needsOverride = true;
        normsSeq += 1;  // a live check still in flight must not re-show the hint under the error
        $('ed-norms-live').hidden = true;
        errNode.append(el('span', { class: 'field-error-title', text: t('faq.norms_blocked') }));
        const ul = el('ul', { class: 'norms-list' });
        for (const n of norms) {
          ul.append(el('li', { 'data-code': n.code }, el('strong', { text: label('norms.', n.code) }), n.detail ? ` — ${n.detail}` : ''));
        }
        errNode.append(ul);
      } else {
        errNode.append(...linkIds(message));
      }
      const anchor = field === 'answer' ? $('ed-answer').nextElementSibling : (field === 'similar' ? container.querySelector('.phrasing-add') : input.closest('.chips') || input);
      anchor.after(errNode);
      first = first || input;
    }
    if (general.length) {
      $('ed-form-error').replaceChildren(...general);
      $('ed-form-error').hidden = false;
    }
    $('ed-override').hidden = !faq.needsOverride;
    if (faq.needsOverride) {
      setTimeout(() => $('ed-override-reason').focus(), 0);
    } else if (first) {
      first.focus();
    }
  }

  function showWarnings(warnings) {
    const list = $('ed-warning-list');
    const near = (warnings || []).filter((w) => w.code === 'near_duplicate');
    list.replaceChildren(...near.map((w) => el('li', { 'data-testid': 'faq-warning' },
      el('span', { text: t('faq.warn.near_duplicate', { phrasing: w.phrasing, score: pct(w.score) }) }), ' ',
      entryLink(w.other_id, t('faq.warn.open_other', { id: w.other_id })))));
    $('ed-warnings').hidden = near.length === 0;
  }

  function summaryFlags(entry) {
    const flags = [label('category.', entry.category || 'general'), label('lang.', entry.lang || 'zh'),
      entry.enabled === false ? t('faq.badge.disabled') : t('faq.badge.enabled')];
    if (entry.needs_agent) flags.push(t('faq.badge.needs_agent'));
    if (entry.tags && entry.tags.length) flags.push(entry.tags.join(' · '));
    return flags.join(' · ');
  }

  /** An entry as compact rows; with `other`, the rows that differ from it are marked. */
  function entrySummary(entry, other) {
    const box = document.createDocumentFragment();
    const differs = (get) => other !== undefined && (!other || get(entry) !== get(other));
    const row = (key, value, get) => el('div', { class: `sum-row${differs(get) ? ' sum-diff' : ''}` },
      el('div', { class: 'sum-k', text: t(key) }), value);
    box.append(row('faq.field.question', el('div', { class: 'sum-v', text: entry.question || '' }), (e) => e.question || ''));
    box.append(row('faq.field.similar', el('div', { class: 'sum-v' },
      ...(entry.similar && entry.similar.length ? entry.similar.map((s) => el('span', { class: 'chip chip-static', text: s })) : [el('span', { class: 'muted', text: '—' })])),
    (e) => (e.similar || []).join('\n')));
    box.append(row('faq.field.answer', el('div', { class: 'sum-v markup' }, renderMarkup(entry.answer || '')), (e) => e.answer || ''));
    box.append(row('faq.summary.other', el('div', { class: 'sum-v muted', text: summaryFlags(entry) }), summaryFlags));
    return box;
  }

  function showConflict(current) {
    faq.conflict = current;
    const box = $('faq-conflict');
    if (!current) {
      $('conflict-text').textContent = t('faq.conflict.deleted');
      $('conflict-theirs').replaceChildren(el('p', { class: 'muted', text: t('faq.conflict.deleted_short') }));
      $('conflict-overwrite').hidden = true;
    } else {
      $('conflict-text').textContent = t('faq.conflict.body', {
        user: current.updated_by || '—', time: current.updated_at ? when(current.updated_at) : '—', version: current.version,
      });
      $('conflict-theirs').replaceChildren(entrySummary(current, readForm()));
      $('conflict-overwrite').hidden = false;
    }
    $('conflict-mine').replaceChildren(entrySummary(readForm(), current || null));
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
  }

  function hideConflict() {
    faq.conflict = null;
    $('faq-conflict').hidden = true;
  }

  // ---- save, toggle, delete ----

  async function save(ev) {
    if (ev) ev.preventDefault();
    if (faq.saving) return;
    clearErrors();
    const entry = readForm();
    const body = { ...entry };
    const reason = $('ed-override-reason').value.trim();
    if (!$('ed-override').hidden && reason) body.override_reason = reason;
    if (!faq.isNew) body.version = faq.loaded.version;
    faq.saving = true;
    const btn = $('ed-save');
    btn.disabled = true;
    btn.classList.add('busy');
    try {
      const saved = faq.isNew
        ? await api('POST', '/api/admin/faq', body)
        : await api('PUT', `/api/admin/faq/${encodeURIComponent(faq.loaded.id)}`, body);
      const warnings = saved.warnings || [];
      const wasNew = faq.isNew;
      const clean = { ...saved };
      delete clean.warnings;
      fillEditor(clean, false);
      showWarnings(warnings);
      toast(wasNew ? t('faq.created', { id: clean.id }) : t('faq.saved'));
      history.replaceState(null, '', `#faq/${encodeURIComponent(clean.id)}`);
      lastHash = location.hash;
      loadFaqList();
    } catch (err) {
      if (err.status === 409 && err.data && err.data.error === 'conflict') {
        showConflict(err.data.current || null);
      } else if (err.status === 422) {
        showFieldErrors(err.data.fields || {});
        showWarnings(err.data.warnings || []);
      } else if (err.status === 404) {
        showConflict(null);
      } else if (err.status !== 401) {
        $('ed-form-error').replaceChildren(errorText(err));
        $('ed-form-error').hidden = false;
      }
    } finally {
      faq.saving = false;
      btn.disabled = false;
      btn.classList.remove('busy');
    }
  }

  async function conflictReload() {
    const current = faq.conflict;
    if (!current) {
      closeEditor();
      hideConflict();
      loadFaqList();
      history.replaceState(null, '', '#faq');
      return;
    }
    fillEditor(current, false);
    toast(t('faq.conflict.reloaded', { version: current.version }));
    loadFaqList();
  }

  async function conflictKeepMine() {
    const current = faq.conflict;
    if (!current) return;
    const ok = await confirmDialog({
      title: t('faq.conflict.keep_title'), body: t('faq.conflict.keep_body', { user: current.updated_by || '—', version: current.version }),
      ok: t('faq.conflict.keep_ok'), danger: true,
    });
    if (!ok) return;
    faq.loaded = { ...faq.loaded, version: current.version };
    hideConflict();
    await save();
  }

  async function toggleEnabled() {
    if (!faq.loaded || faq.dirty) return;
    const action = faq.loaded.enabled ? 'disable' : 'enable';
    try {
      const saved = await api('POST', `/api/admin/faq/${encodeURIComponent(faq.loaded.id)}/${action}`, { version: faq.loaded.version });
      fillEditor(saved, false);
      toast(action === 'disable' ? t('faq.disabled_toast') : t('faq.enabled_toast'));
      loadFaqList();
    } catch (err) {
      if (err.status === 409) showConflict(err.data.current || null);
      else if (err.status !== 401) toast(errorText(err), 'error');
    }
  }

  async function deleteEntry() {
    if (!faq.loaded) return;
    const entry = faq.loaded;
    const ok = await confirmDialog({
      title: t('faq.delete_title'), body: t('faq.delete_body', { question: entry.question, id: entry.id }),
      ok: t('faq.delete'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', `/api/admin/faq/${encodeURIComponent(entry.id)}?version=${entry.version}`);
      setDirty(false);
      closeEditor();
      history.replaceState(null, '', '#faq');
      lastHash = '#faq';
      toast(t('faq.deleted', { id: entry.id }));
      loadFaqList();
    } catch (err) {
      if (err.status === 409) showConflict(err.data.current || null);
      else if (err.status !== 401) toast(errorText(err), 'error');
    }
  }

  // ---- history ----

  async function openHistory() {
    if (!faq.loaded) return;
    const entry = faq.loaded;
    $('drawer-sub').textContent = `${entry.id} · ${entry.question}`;
    const list = $('history-list');
    list.replaceChildren(el('li', { class: 'history-loading' }, el('span', { class: 'spinner spinner-sm' })));
    $('drawer').hidden = false;
    let data;
    try {
      data = await api('GET', `/api/admin/faq/${encodeURIComponent(entry.id)}/versions`);
    } catch (err) {
      list.replaceChildren(el('li', { class: 'muted', text: errorText(err) }));
      return;
    }
    const items = [...data.items].sort((a, b) => b.version - a.version);
    list.replaceChildren(...items.map((v) => historyItem(v, entry)));
    $('drawer').querySelector('.drawer-panel').focus();
  }

  function historyItem(v, entry) {
    const isCurrent = v.version === entry.version;
    const details = el('div', { class: 'history-entry', hidden: true }, entrySummary(v.entry || {}));
    const toggle = el('button', { type: 'button', class: 'btn btn-sm btn-subtle', 'aria-expanded': 'false', text: t('history.show') });
    toggle.addEventListener('click', () => {
      details.hidden = !details.hidden;
      toggle.setAttribute('aria-expanded', details.hidden ? 'false' : 'true');
      toggle.textContent = details.hidden ? t('history.show') : t('history.hide');
    });
    const actions = [toggle];
    if (!isCurrent && v.change !== 'deleted' && v.entry) {
      const restore = el('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'history-restore', 'data-version': v.version },
        icon(ICON.restore), t('history.restore'));
      restore.addEventListener('click', () => restoreVersion(v));
      actions.push(restore);
    }
    return el('li', { class: `history-item${isCurrent ? ' current' : ''}`, 'data-testid': 'history-item', 'data-version': v.version },
      el('div', { class: 'history-dot', 'aria-hidden': 'true' }),
      el('div', { class: 'history-body' },
        el('div', { class: 'history-top' },
          el('span', { class: 'history-v', text: `v${v.version}` }),
          el('span', { class: `badge badge-change change-${v.change}`, text: label('change.', v.change) }),
          isCurrent ? el('span', { class: 'badge badge-ok', text: t('history.current') }) : null,
          el('span', { class: 'spacer' }),
          el('span', { class: 'muted small', text: when(v.updated_at) })),
        el('div', { class: 'history-who muted small', text: t('history.by', { user: v.updated_by || '—' }) }),
        v.override_reason ? el('div', { class: 'history-reason' }, el('span', { class: 'muted', text: `${t('history.reason')} ` }), el('span', { text: v.override_reason })) : null,
        el('div', { class: 'history-actions' }, ...actions),
        details));
  }

  async function restoreVersion(v) {
    if (!faq.loaded) return;
    const ok = await confirmDialog({
      title: t('history.restore_title', { version: v.version }),
      body: faq.dirty ? t('history.restore_body_dirty') : t('history.restore_body'),
      ok: t('history.restore'),
    });
    if (!ok) return;
    try {
      const saved = await api('POST', `/api/admin/faq/${encodeURIComponent(faq.loaded.id)}/restore`,
        { version: v.version, current_version: faq.loaded.version });
      closeDrawer();
      fillEditor(saved, false);
      toast(t('history.restored', { version: v.version }));
      loadFaqList();
    } catch (err) {
      if (err.status === 409) {
        closeDrawer();
        showConflict(err.data.current || null);
      } else if (err.status === 422) {
        toast(Object.values(err.data.fields || {}).join(' ') || errorText(err), 'error');
      } else if (err.status !== 401) {
        toast(errorText(err), 'error');
      }
    }
  }

  function closeDrawer() {
    $('drawer').hidden = true;
  }

  // ---- try it ----

  async function tryIt() {
    const text = $('try-input').value.trim();
    const box = $('try-result');
    if (!text) {
      $('try-input').focus();
      return;
    }
    const body = { text };
    const withDraft = $('try-draft').checked && !$('faq-editor').hidden;
    let draftId = null;
    if (withDraft) {
      const draft = readForm();
      draft.id = draft.id || '__draft__';
      draftId = draft.id;
      body.draft = draft;
    }
    const btn = $('try-submit');
    btn.disabled = true;
    box.hidden = false;
    box.classList.add('loading');
    try {
      const data = await api('POST', '/api/admin/try', body);
      renderTry(data, draftId);
    } catch (err) {
      if (err.status === 401) return;
      const fields = (err.data && err.data.fields) || {};
      const msg = fields.draft ? t('try.draft_invalid', { message: fields.draft }) : (fields.text || errorText(err));
      box.replaceChildren(el('div', { class: 'notice notice-error', text: msg }));
    } finally {
      btn.disabled = false;
      box.classList.remove('loading');
    }
  }

  function renderTry(data, draftId) {
    const box = $('try-result');
    const decision = data.decision || 'fallback';
    const head = el('div', { class: 'try-head' },
      el('span', { class: `decision decision-${decision}`, 'data-testid': 'try-decision', 'data-decision': decision, text: label('decision.', decision) }),
      el('span', { class: 'muted small', text: label('decision_hint.', decision) }));
    const parts = [head];
    if (data.answer_preview) {
      parts.push(el('div', { class: 'chat-row' }, el('span', { class: 'chat-avatar', 'aria-hidden': 'true', text: 'k' }),
        el('div', { class: 'bubble bubble-bot markup', 'data-testid': 'try-preview' }, renderMarkup(data.answer_preview))));
    }
    const cands = data.candidates || [];
    if (cands.length) {
      const top = cands[0].score || 1;
      parts.push(el('div', { class: 'try-sub', text: t('try.candidates') }));
      parts.push(el('ol', { class: 'cands' }, ...cands.map((c) => {
        const isDraft = draftId && c.id === draftId;
        const name = isDraft ? t('try.your_draft') : c.id;
        return el('li', { class: `cand${isDraft ? ' cand-draft' : ''}`, 'data-testid': 'try-candidate', 'data-id': c.id },
          el('div', { class: 'cand-top' },
            el('span', { class: 'cand-q', text: c.question || '' }),
            el('span', { class: 'cand-score', text: dec(c.score) })),
          el('div', { class: 'cand-bar' }, el('span', { style: `width:${Math.max(3, Math.min(100, (c.score / Math.max(top, 1)) * 100))}%` })),
          el('div', { class: 'cand-id' }, isDraft || c.id === '__draft__' ? el('span', { class: 'muted', text: name }) : entryLink(c.id)));
      })));
    } else {
      parts.push(el('p', { class: 'muted small', text: t('try.no_candidates') }));
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  // ---- import / export ----

  function setupIo() {
    const btn = $('faq-io');
    const menu = $('faq-io-menu');
    const close = () => {
      menu.hidden = true;
      btn.setAttribute('aria-expanded', 'false');
    };
    btn.addEventListener('click', (ev) => {
      ev.stopPropagation();
      menu.hidden = !menu.hidden;
      btn.setAttribute('aria-expanded', menu.hidden ? 'false' : 'true');
    });
    document.addEventListener('click', (ev) => {
      if (!menu.hidden && !menu.contains(ev.target)) close();
    });
    menu.querySelectorAll('[data-export]').forEach((a) => {
      a.href = `/api/admin/faq/export?format=${a.dataset.export}`;
      a.setAttribute('download', `faq.${a.dataset.export}`);
      a.addEventListener('click', () => setTimeout(close, 0));
    });
    $('faq-import').addEventListener('click', () => {
      close();
      $('faq-import-file').click();
    });
    $('faq-import-file').addEventListener('change', importFile);
  }

  async function importFile() {
    const input = $('faq-import-file');
    const file = input.files && input.files[0];
    input.value = '';
    if (!file) return;
    const ext = (file.name.split('.').pop() || '').toLowerCase();
    const format = { yml: 'yaml', yaml: 'yaml', json: 'json', jsonl: 'jsonl', csv: 'csv' }[ext];
    if (!format) {
      toast(t('import.bad_ext'), 'error');
      return;
    }
    const ok = await confirmDialog({ title: t('import.title'), body: t('import.confirm', { name: file.name }), ok: t('import.ok') });
    if (!ok) return;
    let text;
    try {
      text = await file.text();
    } catch (err) {
      toast(t('import.read_failed'), 'error');
      return;
    }
    try {
      const result = await api('POST', `/api/admin/faq/import?format=${format}`, undefined, { raw: text });
      const body = [el('p', { text: t('import.result', { created: result.created, updated: result.updated, errors: result.errors.length }) })];
      if (result.errors.length) {
        body.push(el('ul', { class: 'import-errors', 'data-testid': 'import-errors' }, ...result.errors.map((e) => el('li', null,
          el('strong', { text: e.id || '?' }), ': ',
          Object.entries(e.fields || {}).map(([f, m]) => `${label('faq.field.', f)} — ${m}`).join('; ')))));
      }
      await confirmDialog({ title: t('import.done'), body, ok: t('ok'), info: true });
      loadFaqList();
    } catch (err) {
      if (err.status === 422) toast(t('import.invalid', { message: (err.data.fields && err.data.fields.file) || '' }), 'error');
      else if (err.status !== 401) toast(errorText(err), 'error');
    }
  }

  function setupEditor() {
    $('faq-editor').addEventListener('submit', save);
    for (const id of ['ed-question', 'ed-answer', 'ed-category', 'ed-id']) {
      $(id).addEventListener('input', () => {
        markDirty();
        renderPreview();
        clearFieldError(id);
        if (id === 'ed-answer') checkNormsLive();
      });
    }
    for (const id of ['ed-lang', 'ed-enabled', 'ed-needs-agent']) {
      $(id).addEventListener('change', () => {
        markDirty();
        renderPreview();
        if (id === 'ed-lang') checkNormsLive();
      });
    }
    $('ed-override-reason').addEventListener('input', markDirty);
    $('ed-similar-add').addEventListener('click', addSimilar);
    $('ed-similar-new').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        addSimilar();
      }
    });
    $('ed-tags-input').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ',') {
        ev.preventDefault();
        commitTag();
      } else if (ev.key === 'Backspace' && !ev.target.value && faq.tags.length) {
        faq.tags.pop();
        markDirty();
        renderTags();
      }
    });
    $('ed-tags-input').addEventListener('blur', commitTag);
    $('ed-tags').addEventListener('click', (ev) => {
      if (ev.target === $('ed-tags')) $('ed-tags-input').focus();
    });
    $('ed-history').addEventListener('click', openHistory);
    $('ed-toggle').addEventListener('click', toggleEnabled);
    $('ed-delete').addEventListener('click', deleteEntry);
    $('conflict-reload').addEventListener('click', conflictReload);
    $('conflict-overwrite').addEventListener('click', conflictKeepMine);
    $('try-submit').addEventListener('click', tryIt);
    $('try-input').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        tryIt();
      }
    });
    $('faq-new').addEventListener('click', () => newEntry());
    const reload = debounce(loadFaqList, 200);
    $('faq-search').addEventListener('input', reload);
    for (const id of ['faq-filter-lang', 'faq-filter-category', 'faq-filter-enabled']) $(id).addEventListener('change', loadFaqList);
    // the live norms line sits under the answer's hint
    $('ed-answer').parentElement.querySelector('.hint').after(el('div', { id: 'ed-norms-live', class: 'norms-live', 'data-testid': 'faq-norms-live', 'aria-live': 'polite', hidden: true }));
    document.addEventListener('click', (ev) => {
      const link = ev.target.closest && ev.target.closest('a.entry-link');
      if (!link) return;
      ev.preventDefault();
      closeDrawer();
      go(`#faq/${encodeURIComponent(link.dataset.entry)}`);
    });
    setupIo();
  }

  // ------------------------------------------------------------------------------------------------
  // Unanswered
  // ------------------------------------------------------------------------------------------------

  let unDays = 7;

  async function loadUnanswered() {
    document.querySelectorAll('#un-days button').forEach((b) => b.setAttribute('aria-pressed', b.dataset.days === String(unDays) ? 'true' : 'false'));
    const list = $('un-groups');
    list.replaceChildren(...skeletons(3, 'skeleton-card'));
    $('neg-list').replaceChildren(...skeletons(2, 'skeleton-card'));
    try {
      const [groups, ratings] = await Promise.all([
        api('GET', `/api/admin/unanswered?days=${unDays}`),
        api('GET', `/api/admin/negative-ratings?days=${Math.max(30, unDays)}`),
      ]);
      renderGroups(groups.groups || []);
      renderRatings(ratings.items || []);
      if (unDays === 7) setCount('tab-unanswered-count', (groups.groups || []).length);
    } catch (err) {
      if (err.status === 401) return;
      list.replaceChildren(el('li', { class: 'notice notice-error', text: errorText(err) }));
      $('neg-list').replaceChildren();
    }
  }

  function skeletons(n, cls) {
    return Array.from({ length: n }, () => el('li', { class: `skeleton ${cls}`, 'aria-hidden': 'true' }));
  }

  function renderGroups(groups) {
    $('un-groups-count').textContent = String(groups.length);
    $('un-empty').hidden = groups.length > 0;
    const max = Math.max(1, ...groups.map((g) => g.count));
    $('un-groups').replaceChildren(...groups.map((g, i) => groupCard(g, i, max)));
  }

  function groupCard(g, index, max) {
    const examples = g.examples || [];
    const card = el('li', { class: 'card un-card', 'data-testid': 'unanswered-group', 'data-index': index });
    const actions = el('div', { class: 'un-actions' });
    const addBtn = el('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'unanswered-add' }, icon(ICON.link), t('un.add_phrasing'));
    const newBtn = el('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'unanswered-new' }, icon(ICON.plus), t('un.new_entry'));
    actions.append(addBtn, newBtn);
    const panel = el('div', { class: 'un-panel', hidden: true });
    addBtn.addEventListener('click', () => {
      if (panel.hidden) {
        panel.replaceChildren(phrasingPicker(g, card, panel));
        panel.hidden = false;
        addBtn.setAttribute('aria-expanded', 'true');
        const input = panel.querySelector('[data-testid="unanswered-entry-search"]');
        if (input) input.focus();
      } else {
        panel.hidden = true;
        addBtn.setAttribute('aria-expanded', 'false');
      }
    });
    newBtn.addEventListener('click', () => {
      const first = examples[0] || '';
      newEntry({
        question: first, similar: examples.slice(1),
        lang: /[\u3400-\u9fff]/.test(examples.join('')) ? 'zh' : (/[a-z]/i.test(first) ? 'en' : lang),
      });
    });
    card.append(
      el('div', { class: 'un-count' },
        el('span', { class: 'un-count-n', 'data-testid': 'unanswered-count', text: num(g.count) }),
        el('span', { class: 'un-count-l', text: t('un.times') }),
        el('span', { class: 'un-count-bar' }, el('span', { style: `height:${Math.max(8, (g.count / max) * 100)}%` }))),
      el('div', { class: 'un-body' },
        el('div', { class: 'un-top' },
          el('span', { class: `decision decision-${g.decision}`, text: label('decision.', g.decision) }),
          g.suggested_id ? el('span', { class: 'muted small' }, t('un.suggested'), ' ', entryLink(g.suggested_id)) : null,
          el('span', { class: 'spacer' }),
          el('span', { class: 'muted small', title: when(g.last_at), text: t('un.last', { when: ago(g.last_at) }) })),
        el('ul', { class: 'un-examples' }, ...examples.map((x, i) => el('li', { class: i === 0 ? 'first' : '', 'data-testid': 'unanswered-example', text: x }))),
        actions, panel));
    return card;
  }

  /** "Add as a phrasing of entry X": the text (one of the examples, editable) and X chosen by search. */
  function phrasingPicker(g, card, panel) {
    const examples = g.examples || [];
    let chosen = null;
    const textInput = el('input', { class: 'input', value: examples[0] || '', 'data-testid': 'unanswered-text', 'aria-label': t('un.text_label'), autocomplete: 'off' });
    textInput.value = examples[0] || '';
    const exampleChips = examples.length > 1 ? el('div', { class: 'un-chip-row' }, ...examples.map((x) => {
      const chip = el('button', { type: 'button', class: 'chip chip-btn', text: x });
      chip.addEventListener('click', () => { textInput.value = x; });
      return chip;
    })) : null;
    const search = el('input', { type: 'search', class: 'input', 'data-testid': 'unanswered-entry-search', placeholder: t('un.search_entry'), 'aria-label': t('un.search_entry'), autocomplete: 'off' });
    const results = el('ul', { class: 'picker-results', role: 'listbox', 'data-testid': 'unanswered-entry-results' });
    const chosenBox = el('div', { class: 'picker-chosen muted small' });
    const confirm = el('button', { type: 'button', class: 'btn btn-primary btn-sm', 'data-testid': 'unanswered-confirm', disabled: true, text: t('un.confirm') });
    const error = el('div', { class: 'field-error', role: 'alert', hidden: true });

    function choose(entry) {
      chosen = entry;
      confirm.disabled = !entry;
      chosenBox.replaceChildren(entry ? el('span', null, t('un.chosen'), ' ', el('strong', { text: entry.question }), ` (${entry.id})`) : '');
      results.querySelectorAll('li').forEach((li) => li.classList.toggle('selected', entry && li.dataset.id === entry.id));
    }

    let seq = 0;
    async function find(q, preferId) {
      const mine = ++seq;
      let data;
      try {
        data = await api('GET', `/api/admin/faq?q=${encodeURIComponent(q)}`);
      } catch (err) {
        return;
      }
      if (mine !== seq) return;
      let items = data.items.slice(0, 8);
      if (preferId) {
        const hit = data.items.find((x) => x.id === preferId);
        if (hit) items = [hit, ...items.filter((x) => x.id !== preferId)].slice(0, 8);
      }
      results.replaceChildren(...items.map((item) => {
        const li = el('li', { role: 'option', tabindex: '0', 'data-id': item.id, 'data-testid': 'unanswered-entry-option' },
          el('span', { class: 'picker-q', text: item.question }), el('span', { class: 'picker-id', text: item.id }));
        li.addEventListener('click', () => choose(item));
        li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') choose(item); });
        return li;
      }));
      if (!items.length) results.append(el('li', { class: 'muted small picker-none', text: t('un.no_match') }));
      if (preferId) choose(items.find((x) => x.id === preferId) || null);
      else if (chosen) choose(items.find((x) => x.id === chosen.id) || chosen);
    }
    const refind = debounce(() => find(search.value.trim()), 200);
    search.addEventListener('input', refind);
    if (g.suggested_id) {
      const known = faq.items.find((x) => x.id === g.suggested_id);
      search.value = known ? known.question : g.suggested_id;
      find('', g.suggested_id);
    } else {
      find('');
    }

    confirm.addEventListener('click', async () => {
      const text = textInput.value.trim();
      if (!chosen || !text) return;
      error.hidden = true;
      confirm.disabled = true;
      try {
        let entry = await api('GET', `/api/admin/faq/${encodeURIComponent(chosen.id)}`);
        let saved;
        try {
          saved = await api('POST', `/api/admin/faq/${encodeURIComponent(chosen.id)}/phrasings`, { text, version: entry.version });
        } catch (err) {
          // Adding a phrasing changes nothing else, so a concurrent edit is safe to build on: retry once
          // against the version the server says is current.
          if (err.status !== 409 || !err.data.current) throw err;
          entry = err.data.current;
          saved = await api('POST', `/api/admin/faq/${encodeURIComponent(chosen.id)}/phrasings`, { text, version: entry.version });
        }
        card.classList.add('done');
        card.querySelector('[data-testid="unanswered-add"]').disabled = true;
        panel.replaceChildren(el('div', { class: 'notice notice-ok', 'data-testid': 'unanswered-added' },
          icon(ICON.check), ' ', t('un.added', { text }), ' ', entryLink(saved.id, saved.question)));
        toast(t('un.added_toast'));
        if (faq.openId === saved.id && !faq.dirty) fillEditor({ ...saved, warnings: undefined }, false);
        loadFaqList();
      } catch (err) {
        confirm.disabled = false;
        if (err.status === 401) return;
        error.hidden = false;
        const fields = (err.data && err.data.fields) || {};
        const msgs = Object.values(fields);
        error.replaceChildren(...(msgs.length ? linkIds(msgs.join(' ')) : [errorText(err)]));
      }
    });

    return el('div', { class: 'picker' },
      el('label', { class: 'picker-label', text: t('un.text_label') }), textInput, exampleChips,
      el('label', { class: 'picker-label', text: t('un.entry_label') }), search, results, chosenBox, error,
      el('div', { class: 'picker-actions' }, confirm));
  }

  function renderRatings(items) {
    $('neg-count').textContent = String(items.length);
    $('neg-empty').hidden = items.length > 0;
    $('neg-list').replaceChildren(...items.map((r) => {
      const id = shortId(r.conversation_id);
      return el('li', { class: 'card neg-card', 'data-testid': 'negative-rating' },
        el('div', { class: 'neg-top' },
          stars(r.score),
          el('span', { class: 'channel-chip', text: label('channel.', id.channel) }),
          el('span', { class: 'mono small muted', title: r.conversation_id, text: id.short }),
          el('span', { class: 'spacer' }),
          el('span', { class: 'muted small', title: when(r.at), text: ago(r.at) })),
        r.faq_id
          ? el('div', { class: 'neg-faq' },
            el('div', { class: 'neg-label muted small', text: t('neg.answered_with') }),
            el('div', { class: 'neg-q' }, entryLink(r.faq_id, r.question || r.faq_id)),
            el('div', { class: 'neg-answer markup' }, renderMarkup(r.answer_excerpt || '')))
          : el('div', { class: 'neg-faq muted small', text: t('neg.no_faq') }));
    }));
  }

  function stars(score) {
    const s = Math.max(0, Math.min(5, Number(score) || 0));
    return el('span', { class: `stars stars-${s}`, 'aria-label': tn('stars', { n: s }), title: tn('stars', { n: s }) },
      ...Array.from({ length: 5 }, (_, i) => el('span', { class: i < s ? 'star on' : 'star', 'aria-hidden': 'true', text: '★' })));
  }

  // ------------------------------------------------------------------------------------------------
  // Figures
  // ------------------------------------------------------------------------------------------------

  const COLORS = {
    brand: '#2457d6', web: '#2457d6', wechat: '#16a34a', terminal: '#8b95a7', other: '#b4bccb',
    ok: '#16a34a', warn: '#d97706', danger: '#dc2626', violet: '#7c3aed', grid: '#eef1f6', text: '#5f6b7d',
  };
  const charts = {};
  let chartsResize = null;
  let figSeq = 0;

  function figureRange() {
    return { from: $('fig-from').value, to: $('fig-to').value, channel: $('fig-channel').value };
  }

  function setPreset(days) {
    const to = new Date();
    const from = new Date();
    from.setDate(to.getDate() - (days - 1));
    $('fig-from').value = isoDay(from);
    $('fig-to').value = isoDay(to);
  }

  function markPreset() {
    const { from, to } = figureRange();
    const days = Math.round((new Date(to) - new Date(from)) / 86400000) + 1;
    const today = isoDay(new Date());
    document.querySelectorAll('#fig-presets button').forEach((b) => b.setAttribute('aria-pressed', to === today && String(days) === b.dataset.preset ? 'true' : 'false'));
  }

  async function loadFigures() {
    const seq = ++figSeq;
    const { from, to, channel } = figureRange();
    markPreset();
    const params = new URLSearchParams({ from, to });
    if (channel) params.set('channel', channel);
    $('fig-csv').href = `/api/admin/figures.csv?${params}`;
    $('fig-error').hidden = true;
    $('panel-figures').classList.add('loading');
    let data;
    try {
      data = await api('GET', `/api/admin/figures?${params}`);
    } catch (err) {
      if (err.status === 401 || seq !== figSeq) return;
      $('fig-error').textContent = err.status === 400 ? t('fig.bad_range') : errorText(err);
      $('fig-error').hidden = false;
      $('panel-figures').classList.remove('loading');
      return;
    }
    if (seq !== figSeq) return;
    $('panel-figures').classList.remove('loading');
    $('fig-range-text').textContent = t('fig.range', {
      from: data.range.from, to: data.range.to, channel: data.range.channel ? label('channel.', data.range.channel) : t('fig.channel_all'),
    });
    renderAlerts(data.alerts || []);
    renderKpis(data);
    renderCharts(data);
    renderAgents(data.agents || []);
  }

  function renderAlerts(alerts) {
    const box = $('fig-alerts');
    $('tab-figures-alert').hidden = !alerts.length;
    box.hidden = !alerts.length;
    box.replaceChildren(el('span', { class: 'alerts-icon', 'aria-hidden': 'true', text: '!' }),
      el('div', { class: 'alerts-body' },
        el('strong', { text: tn('fig.alerts_title', { n: alerts.length }) }),
        el('ul', null, ...alerts.map((a) => el('li', { 'data-testid': 'figures-alert', 'data-figure': a.figure },
          t(a.direction === 'above' ? 'fig.alert_above' : 'fig.alert_below', {
            figure: label('kpi.', a.figure), value: pct(a.value), threshold: pct(a.threshold),
          }))))));
  }

  function series(data, key) {
    return (data.daily || []).map((d) => d[key]);
  }

  /** Every day of the range (the API lists only days with conversations). */
  function days(data) {
    const out = [];
    const start = new Date(`${data.range.from}T00:00:00`);
    const end = new Date(`${data.range.to}T00:00:00`);
    for (let d = new Date(start); d <= end && out.length < 400; d.setDate(d.getDate() + 1)) out.push(isoDay(d));
    return out;
  }

  function sparkline(values, color) {
    const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
    const w = 100;
    const h = 28;
    const s = svg('svg', { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none', class: 'spark', 'aria-hidden': 'true' });
    if (pts.length < 2) return s;
    const xs = values.length - 1 || 1;
    const vals = pts.map(([, v]) => v);
    const lo = Math.min(...vals);
    const hi = Math.max(...vals);
    const span = hi - lo || 1;
    const coords = pts.map(([i, v]) => [(i / xs) * w, h - 3 - ((v - lo) / span) * (h - 6)]);
    const line = coords.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
    const area = `${line} L${coords[coords.length - 1][0].toFixed(1)},${h} L${coords[0][0].toFixed(1)},${h} Z`;
    s.append(svg('path', { d: area, fill: color, 'fill-opacity': '0.10', stroke: 'none' }));
    s.append(svg('path', { d: line, fill: 'none', stroke: color, 'stroke-width': '1.6', 'vector-effect': 'non-scaling-stroke', 'stroke-linejoin': 'round' }));
    return s;
  }

  function renderKpis(data) {
    const T = data.totals || {};
    const fr = data.first_response || { bot: {}, agent: {} };
    const alerted = new Map((data.alerts || []).map((a) => [a.figure, a]));
    const filled = fillDaily(data);
    const cards = [
      { key: 'conversations', value: num(T.conversations), sub: tn('kpi.sub.complaints', { n: T.complaints }), spark: filled.map((d) => d.conversations), color: COLORS.brand },
      { key: 'bot_resolved_rate', value: pct(T.bot_resolved_rate), sub: t('kpi.sub.bot_resolved'), spark: filled.map((d) => d.bot_resolved_rate), color: COLORS.ok },
      { key: 'handoff_rate', value: pct(T.handoff_rate), sub: t('kpi.sub.handoff'), spark: filled.map((d) => d.handoff_rate), color: COLORS.warn },
      { key: 'first_contact_resolution', value: pct(T.first_contact_resolution), sub: t('kpi.sub.fcr') },
      { key: 'satisfaction_share', value: pct(T.satisfaction_share), sub: T.satisfaction_avg === null || T.satisfaction_avg === undefined ? t('kpi.sub.no_ratings') : t('kpi.sub.satisfaction', { avg: dec(T.satisfaction_avg) }), spark: filled.map((d) => d.satisfaction_avg), color: COLORS.violet },
      { key: 'first_response_bot', value: dur(fr.bot && fr.bot.median), sub: t('kpi.sub.p90', { v: dur(fr.bot && fr.bot.p90) }) },
      { key: 'first_response_agent', value: dur(fr.agent && fr.agent.median), sub: t('kpi.sub.p90', { v: dur(fr.agent && fr.agent.p90) }) },
      { key: 'reply_timeliness_rate', value: pct(T.reply_timeliness_rate), sub: t('kpi.sub.timeliness') },
      { key: 'followup_completion', value: pct(T.followup_completion), sub: t('kpi.sub.followup') },
      { key: 'tickets_open', value: num(T.tickets_open), overdue: T.tickets_overdue },
    ];
    for (const c of cards) if (c.value === '—' && c.key !== 'satisfaction_share') c.sub = t('kpi.sub.no_data');
    $('kpis').replaceChildren(...cards.map((c) => {
      const alert = alerted.get(c.key);
      const card = el('div', { class: `kpi${alert ? ' kpi-alert' : ''}`, 'data-testid': `kpi-${c.key}`, 'data-alert': alert ? 'true' : 'false' },
        el('div', { class: 'kpi-label' }, el('span', { class: 'kpi-name', title: t(`kpi.${c.key}`), text: t(`kpi.${c.key}`) }),
          alert ? el('span', { class: 'kpi-flag', title: t(alert.direction === 'above' ? 'fig.alert_above' : 'fig.alert_below', { figure: t(`kpi.${c.key}`), value: pct(alert.value), threshold: pct(alert.threshold) }), text: t(alert.direction === 'above' ? 'kpi.flag_above' : 'kpi.flag_below', { threshold: pct(alert.threshold) }) }) : null),
        el('div', { class: 'kpi-value', 'data-testid': `kpi-${c.key}-value`, text: c.value }));
      if (c.key === 'tickets_open') {
        const over = Number(c.overdue || 0);
        card.append(el('div', { class: `kpi-sub${over ? ' kpi-sub-danger' : ''}`, 'data-testid': 'kpi-tickets_overdue' },
          over ? el('span', { class: 'pulse', 'aria-hidden': 'true' }) : null, t('kpi.sub.overdue', { n: num(over) })));
        if (over) card.classList.add('kpi-warn');
      } else {
        card.append(el('div', { class: 'kpi-sub', text: c.sub }));
      }
      if (c.spark && c.spark.some((v) => v)) card.append(sparkline(c.spark, alert ? COLORS.danger : c.color));
      return card;
    }));
  }

  function fillDaily(data) {
    const byDay = new Map((data.daily || []).map((d) => [d.day, d]));
    return days(data).map((day) => byDay.get(day) || { day, conversations: 0, by_channel: {}, handoff_rate: null, bot_resolved_rate: null, satisfaction_avg: null });
  }

  function shortDay(iso) {
    const [, m, d] = iso.split('-');
    return lang === 'zh' ? `${Number(m)}/${Number(d)}` : `${Number(m)}/${Number(d)}`;
  }

  function chartDefaults() {
    const C = window.Chart;
    C.defaults.font.family = getComputedStyle(document.body).fontFamily;
    C.defaults.font.size = 12;
    C.defaults.color = COLORS.text;
    C.defaults.borderColor = COLORS.grid;
    C.defaults.animation = false;
    C.defaults.maintainAspectRatio = false;
    C.defaults.responsive = true;
    C.defaults.plugins.legend.labels.boxWidth = 10;
    C.defaults.plugins.legend.labels.boxHeight = 10;
    C.defaults.plugins.legend.labels.usePointStyle = true;
    C.defaults.plugins.tooltip.backgroundColor = '#101a2e';
    C.defaults.plugins.tooltip.padding = 10;
    C.defaults.plugins.tooltip.cornerRadius = 8;
    C.defaults.plugins.tooltip.titleFont = { weight: '600' };
    C.defaults.plugins.tooltip.boxPadding = 4;
  }

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    const canvas = $(id);
    charts[id] = new window.Chart(canvas, config);
    const box = canvas.closest('.chart-box');
    const empty = config.empty;
    let note = box.querySelector('.chart-empty');
    if (empty && !note) {
      note = el('div', { class: 'chart-empty', text: t('chart.no_data') });
      box.append(note);
    } else if (!empty && note) {
      note.remove();
    }
  }

  function renderCharts(data) {
    if (!window.Chart) return;
    const filled = fillDaily(data);
    const labels = filled.map((d) => shortDay(d.day));
    const titles = filled.map((d) => d.day);
    const tooltipTitle = (items) => (items.length ? titles[items[0].dataIndex] : '');
    const channels = [...new Set(filled.flatMap((d) => Object.keys(d.by_channel || {})))]
      .sort((a, b) => ['web', 'wechat', 'terminal'].indexOf(a) - ['web', 'wechat', 'terminal'].indexOf(b));
    const total = filled.reduce((n, d) => n + d.conversations, 0);

    draw('chart-daily', {
      type: 'bar',
      empty: total === 0,
      data: {
        labels,
        datasets: (channels.length ? channels : ['web']).map((ch) => ({
          label: label('channel.', ch),
          data: filled.map((d) => (d.by_channel || {})[ch] || 0),
          backgroundColor: COLORS[ch] || COLORS.other,
          borderRadius: 3,
          maxBarThickness: 28,
          stack: 'all',
        })),
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: { position: 'top', align: 'end' },
          tooltip: { callbacks: { title: tooltipTitle, footer: (items) => t('chart.total', { n: items.reduce((n, i) => n + i.parsed.y, 0) }) } },
        },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, border: { display: false } },
        },
      },
    });

    const percentAxis = { min: 0, max: 1, ticks: { callback: (v) => pf.format(v), stepSize: 0.25 }, border: { display: false } };
    draw('chart-rates', {
      type: 'line',
      empty: total === 0,
      data: {
        labels,
        datasets: [
          { label: t('kpi.bot_resolved_rate'), data: filled.map((d) => d.bot_resolved_rate), borderColor: COLORS.ok, backgroundColor: 'rgba(22,163,74,.08)', fill: 'origin', tension: 0.3, pointRadius: 3, pointHoverRadius: 4, borderWidth: 2, spanGaps: true },
          { label: t('kpi.handoff_rate'), data: filled.map((d) => d.handoff_rate), borderColor: COLORS.warn, backgroundColor: 'transparent', tension: 0.3, pointRadius: 3, pointHoverRadius: 4, borderWidth: 2, spanGaps: true },
        ],
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: { position: 'top', align: 'end' },
          tooltip: { callbacks: { title: tooltipTitle, label: (c) => `${c.dataset.label}: ${pct(c.parsed.y)}` } },
        },
        scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } }, y: percentAxis },
      },
    });

    const sat = filled.map((d) => d.satisfaction_avg);
    draw('chart-sat-trend', {
      type: 'line',
      empty: sat.every((v) => v === null || v === undefined),
      data: {
        labels,
        datasets: [{ label: t('chart.satisfaction_avg'), data: sat, borderColor: COLORS.violet, backgroundColor: 'rgba(124,58,237,.10)', fill: 'origin', tension: 0.3, pointRadius: 3, pointHoverRadius: 4, borderWidth: 2, spanGaps: true }],
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: tooltipTitle, label: (c) => t('chart.avg_stars', { v: dec(c.parsed.y) }) } } },
        scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 16 } }, y: { min: 1, max: 5, ticks: { stepSize: 1 }, border: { display: false } } },
      },
    });

    const distribution = data.satisfaction_distribution || {};
    const distValues = ['1', '2', '3', '4', '5'].map((k) => distribution[k] || 0);
    const ratings = distValues.reduce((a, b) => a + b, 0);
    draw('chart-sat-dist', {
      type: 'bar',
      empty: ratings === 0,
      data: {
        labels: ['1★', '2★', '3★', '4★', '5★'],
        datasets: [{ label: t('chart.ratings'), data: distValues, backgroundColor: ['#dc2626', '#f97316', '#facc15', '#84cc16', '#16a34a'], borderRadius: 4, maxBarThickness: 34 }],
      },
      options: {
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => t('chart.ratings_share', { n: c.parsed.y, share: pct(ratings ? c.parsed.y / ratings : 0) }) } } },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 }, border: { display: false } } },
      },
    });

    const complaints = Object.entries(data.complaints_by_category || {}).sort((a, b) => b[1] - a[1]);
    const complaintTotal = complaints.reduce((n, [, v]) => n + v, 0);
    $('complaints-total').textContent = t('chart.complaints_total', { n: num(complaintTotal) });
    const severity = data.complaints_by_severity || {};
    draw('chart-complaints', {
      type: 'bar',
      empty: complaintTotal === 0,
      data: {
        labels: complaints.map(([c]) => label('category.', c)),
        datasets: [{ label: t('chart.complaints'), data: complaints.map(([, v]) => v), backgroundColor: complaints.map((_, i) => `rgba(220,38,38,${Math.max(0.35, 0.9 - i * 0.13)})`), borderRadius: 4, maxBarThickness: 22 }],
      },
      options: {
        indexAxis: 'y',
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (c) => t('chart.complaints_share', { n: c.parsed.x, share: pct(complaintTotal ? c.parsed.x / complaintTotal : 0) }) } },
          subtitle: {
            display: Object.keys(severity).length > 0, position: 'bottom', align: 'start',
            text: Object.entries(severity).map(([k, v]) => `${label('severity.', k)} ${v}`).join(' · '),
          },
        },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 }, border: { display: false } }, y: { grid: { display: false } } },
      },
    });
  }

  function renderAgents(agents) {
    const body = $('agents-body');
    if (!agents.length) {
      body.replaceChildren(el('tr', null, el('td', { colspan: '5', class: 'muted empty-cell', text: t('agents.empty') })));
      return;
    }
    const sorted = [...agents].sort((a, b) => (b.score || 0) - (a.score || 0));
    body.replaceChildren(...sorted.map((a) => el('tr', { 'data-testid': 'agent-row' },
      el('td', null, el('span', { class: 'agent-cell' }, avatarFor(el('span', { class: 'avatar avatar-xs', 'aria-hidden': 'true' }), a.username, a.display_name || a.username),
        el('span', { text: a.display_name || a.username, title: a.username }))),
      el('td', { class: 'num', text: num(a.conversations) }),
      el('td', { class: 'num' }, a.satisfaction_avg === null || a.satisfaction_avg === undefined ? '—' : el('span', null, dec(a.satisfaction_avg), el('span', { class: 'star on small-star', 'aria-hidden': 'true', text: ' ★' }))),
      el('td', { class: 'num', text: dur(a.first_response_median) }),
      el('td', null, el('div', { class: 'score' },
        el('div', { class: 'score-bar' }, el('span', { class: scoreClass(a.score), style: `width:${Math.max(0, Math.min(100, a.score || 0))}%` })),
        el('span', { class: 'score-n', text: dec(a.score) }))))));
  }

  function scoreClass(score) {
    if (score >= 80) return 'good';
    if (score >= 60) return 'mid';
    return 'low';
  }

  function setupFigures() {
    setPreset(30);
    document.querySelectorAll('#fig-presets button').forEach((b) => b.addEventListener('click', () => {
      setPreset(Number(b.dataset.preset));
      loadFigures();
    }));
    for (const id of ['fig-from', 'fig-to', 'fig-channel']) $(id).addEventListener('change', loadFigures);
    chartsResize = () => Object.values(charts).forEach((c) => c.resize());
  }

  // ------------------------------------------------------------------------------------------------
  // Follow-ups
  // ------------------------------------------------------------------------------------------------

  async function loadFollowups() {
    const status = $('fu-status').value;
    const body = $('fu-body');
    let data;
    try {
      data = await api('GET', `/api/followups?status=${encodeURIComponent(status)}`);
    } catch (err) {
      if (err.status !== 401) body.replaceChildren(el('tr', null, el('td', { colspan: '6', class: 'notice notice-error', text: errorText(err) })));
      return;
    }
    const items = [...data.items].sort((a, b) => (a.due_at || 0) - (b.due_at || 0));
    if (status === 'pending') setCount('tab-followups-count', items.length);
    $('fu-empty').hidden = items.length > 0;
    body.replaceChildren(...items.map(followupRow));
  }

  function followupRow(job) {
    const id = shortId(job.conversation_id);
    const due = job.due || (job.due_at ? new Date(job.due_at * 1000).toISOString() : '');
    const row = el('tr', { 'data-testid': 'followup-row', 'data-id': job.id },
      el('td', null, el('span', { class: `kind kind-${job.kind}` }, el('span', { class: 'kind-dot', 'aria-hidden': 'true' }), label('fu.kind.', job.kind))),
      el('td', null, el('span', { class: 'channel-chip', text: label('channel.', id.channel) }), ' ',
        el('span', { class: 'mono small', title: job.conversation_id, text: id.short })),
      el('td', null, el('div', { text: when(due) }), el('div', { class: 'muted small', text: ago(due) })),
      el('td', { class: 'num', text: num(job.attempts || 0) }),
      el('td', { class: 'muted small', text: job.created_at ? when(job.created_at) : '—' }),
      el('td', { class: 'actions-cell' }));
    if (job.status === 'pending') {
      const btn = el('button', { type: 'button', class: 'btn btn-sm btn-danger-outline', 'data-testid': 'followup-cancel', text: t('fu.cancel') });
      btn.addEventListener('click', () => cancelFollowup(job, row));
      row.lastChild.append(btn);
    } else {
      row.lastChild.append(el('span', { class: `badge badge-status status-${job.status}`, text: label('fu.status.', job.status) }));
    }
    return row;
  }

  async function cancelFollowup(job, row) {
    const ok = await confirmDialog({
      title: t('fu.cancel_title'), body: t('fu.cancel_body', { kind: label('fu.kind.', job.kind), when: when(job.due) }),
      ok: t('fu.cancel_ok'), cancel: t('fu.cancel_keep'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', `/api/followups/${encodeURIComponent(job.id)}`);
      row.classList.add('row-out');
      setTimeout(() => {
        row.remove();
        const left = document.querySelectorAll('#fu-body [data-testid="followup-row"]').length;
        $('fu-empty').hidden = left > 0;
        if ($('fu-status').value === 'pending') setCount('tab-followups-count', left);
      }, 250);
      toast(t('fu.cancelled'));
    } catch (err) {
      if (err.status === 401) return;
      toast(err.status === 409 ? t('fu.not_pending', { status: label('fu.status.', err.data.status || '') }) : errorText(err), 'error');
      loadFollowups();
    }
  }

  // ------------------------------------------------------------------------------------------------
  // boot
  // ------------------------------------------------------------------------------------------------

  function setupChrome() {
    $('login-form').addEventListener('submit', submitLogin);
    $('login-switch').addEventListener('click', async () => {
      try {
        await api('POST', '/api/auth/logout', undefined, { allow401: true });
      } catch (err) { /* ignore */ }
      showLogin('');
    });
    $('logout').addEventListener('click', logout);
    for (const tab of TABS) $(`tab-${tab}`).addEventListener('click', () => go(`#${tab === 'faq' && faq.openId ? `faq/${encodeURIComponent(faq.openId)}` : tab}`));
    document.querySelector('.tabs').addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
      const i = TABS.indexOf(currentTab);
      const next = TABS[(i + (ev.key === 'ArrowRight' ? 1 : TABS.length - 1)) % TABS.length];
      $(`tab-${next}`).focus();
      $(`tab-${next}`).click();
    });
    window.addEventListener('hashchange', route);
    $('modal-ok').addEventListener('click', () => closeModal(true));
    $('modal-cancel').addEventListener('click', () => closeModal(false));
    $('drawer').addEventListener('click', (ev) => { if (ev.target.closest('[data-close]')) closeDrawer(); });
    $('drawer').querySelector('.drawer-panel').tabIndex = -1;
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        if (!$('modal').hidden) closeModal(false);
        else if (!$('drawer').hidden) closeDrawer();
      }
      if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 's' && currentTab === 'faq' && !$('faq-editor').hidden) {
        ev.preventDefault();
        save();
      }
      if (ev.key === '/' && currentTab === 'faq' && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
        ev.preventDefault();
        $('faq-search').focus();
      }
    });
    window.addEventListener('beforeunload', (ev) => {
      if (faq.dirty) {
        ev.preventDefault();
        ev.returnValue = '';
      }
    });
    document.querySelectorAll('#un-days button').forEach((b) => b.addEventListener('click', () => {
      unDays = Number(b.dataset.days);
      loadUnanswered();
    }));
    $('fu-status').addEventListener('change', loadFollowups);
    $('fu-refresh').addEventListener('click', loadFollowups);
  }

  async function boot() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    try {
      const res = await fetch(`/api/admin/strings?lang=${lang}`, { credentials: 'same-origin' });
      S = await res.json();
    } catch (err) {
      S = {};
    }
    document.title = t('app.title');
    applyStrings(document);
    if (window.Chart) chartDefaults();
    setupChrome();
    setupEditor();
    setupFigures();
    let agent = null;
    try {
      agent = await api('GET', '/api/auth/me', undefined, { allow401: true });
    } catch (err) {
      if (err.status !== 401) {
        showLogin(errorText(err));
        return;
      }
    }
    if (agent) enter(agent);
    else showLogin('');
  }

  boot();
})();
