/* kefu agent console (docs/console-api.md). Vanilla ES2020, no build step, no external assets.
 *
 * Safety rule: nothing that comes from the server (customer text, bot and agent replies, names, ids) is ever
 * parsed as HTML. Every node is built with createElement and filled with textContent / append(string);
 * reply markup (**bold**, "1. " numbered lines, [label](https://…)) is turned into DOM nodes the same way.
 * Every visible text is a key in reply_templates/<lang>/console.json, served by GET /api/console/strings.
 */
'use strict';

(() => {
  const API = '/api/console';
  const CONV_PATH = (id) => `${API}/conversations/${encodeURIComponent(id).replace(/%3A/gi, ':')}`;
  const WAIT_WARN_SECONDS = 180;
  const WAIT_LATE_SECONDS = 300;
  const CHECK_DEBOUNCE_MS = 350;
  const CANNED_DEBOUNCE_MS = 250;
  const TYPING_REPEAT_MS = 3000;
  const TYPING_IDLE_MS = 4000;
  const PING_MS = 25000;
  const LOGGED_OUT = 4001;  // close code of a socket whose session ended (adapters/console.py)
  const SYSTEM_TYPES = new Set(['queued', 'agent_joined', 'transferred', 'released', 'closed', 'handoff_requested',
    'complaint', 'ticket_created', 'handoff_cancelled', 'rating', 'delivery_failed']);
  const CATEGORIES = ['product_quality', 'service_attitude', 'logistics', 'after_sales', 'other'];

  const state = {
    lang: 'zh',
    locale: 'zh-CN',
    strings: {},
    me: null,
    queue: [],
    mine: [],
    agents: [],
    currentId: null,
    detail: null,
    rendered: [],          // seqs rendered in the open history, in order
    lastDay: null,
    drafts: new Map(),
    seen: new Map(),        // conversation id -> server unread count already seen by this agent
    noteMode: false,
    sending: false,
    ws: null,
    wsRetry: 0,
    wsRetryAt: 0,
    wsTimer: null,
    pingTimer: null,
    watched: new Set(),
    alerts: [],
    typingTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------
  // strings

  function has(key) {
    return Object.prototype.hasOwnProperty.call(state.strings, key);
  }

  function t(key, vars) {
    let text = has(key) ? String(state.strings[key]) : key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        (vars[name] === undefined || vars[name] === null ? whole : String(vars[name])));
    }
    return text;
  }

  /** A label for a server code when the strings know it, else the raw code. */
  function label(prefix, code) {
    if (code === undefined || code === null || code === '') return '';
    return has(prefix + code) ? t(prefix + code) : String(code);
  }

  function pickLang() {
    const forced = new URLSearchParams(location.search).get('lang');
    if (forced === 'zh' || forced === 'en') return forced;
    const nav = (navigator.language || '').toLowerCase();
    return nav.startsWith('en') ? 'en' : 'zh';
  }

  async function loadStrings() {
    state.lang = pickLang();
    state.locale = state.lang === 'zh' ? 'zh-CN' : 'en-US';
    try {
      const resp = await fetch(`${API}/strings?lang=${state.lang}`, { credentials: 'same-origin' });
      if (resp.ok) state.strings = await resp.json();
    } catch (err) {
      // Offline or server down: keys stay visible, the page still works.
    }
    applyStrings(document);
  }

  function applyStrings(root) {
    root.querySelectorAll('[data-i18n]').forEach((n) => { n.textContent = t(n.dataset.i18n); });
    root.querySelectorAll('[data-i18n-placeholder]').forEach((n) => { n.placeholder = t(n.dataset.i18nPlaceholder); });
    root.querySelectorAll('[data-i18n-title]').forEach((n) => { n.title = t(n.dataset.i18nTitle); });
    root.querySelectorAll('[data-i18n-aria]').forEach((n) => { n.setAttribute('aria-label', t(n.dataset.i18nAria)); });
    document.title = t('app.title');
    document.documentElement.lang = state.lang === 'zh' ? 'zh-CN' : 'en';
  }

  // ---------------------------------------------------------------------------------------------
  // DOM helpers: text only, never HTML

  function el(tag, opts, ...children) {
    const node = document.createElement(tag);
    if (opts) {
      for (const [key, value] of Object.entries(opts)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = String(value);
        else if (key === 'testid') node.dataset.testid = value;
        else if (key === 'data') Object.entries(value).forEach(([k, v]) => { if (v !== undefined && v !== null) node.dataset[k] = String(v); });
        else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child !== undefined && child !== null && child !== false) node.append(child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // What a picture, link or location message carried: links open in a new tab, nothing is embedded.
  function mediaLine(media) {
    const line = el('span', { class: 'media', testid: 'media' });
    const link = (href, text) => {
      const url = safeUrl(href);
      return url ? el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text }) : null;
    };
    if (media.pic_url) line.append(link(media.pic_url, t('media.picture')) || '');
    if (media.url) line.append(link(media.url, media.title || t('media.link')) || '');
    if (media.latitude && media.longitude) {
      line.append(el('span', { text: t('media.location', { label: media.label || '', lat: media.latitude, lng: media.longitude }) }));
    }
    return line;
  }

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

  /** Reply markup (bot and agent texts) as a fragment of lines; numbered lines keep their number. */
  function renderMarkup(text) {
    const frag = document.createDocumentFragment();
    for (const line of String(text).split('\n')) {
      const num = /^\s*(\d{1,3})[.、]\s+(.*)$/.exec(line);
      if (num) {
        frag.append(el('div', { class: 'md-line md-num' },
          el('span', { class: 'md-num-n', text: `${num[1]}.` }), el('span', null, ...inlineNodes(num[2]))));
      } else {
        frag.append(el('div', { class: 'md-line' }, ...inlineNodes(line)));
      }
    }
    return frag;
  }

  function hashHue(text) {
    let h = 0;
    for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function avatarFor(node, key, textSource) {
    const letters = String(textSource || '').replace(/[^\p{L}\p{N}]/gu, '');
    node.textContent = letters.slice(-2) || '?';
    node.style.background = `hsl(${hashHue(key || '')} 45% 42%)`;
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** A small inline icon (static shapes, no server data). */
  function lockIcon() {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('class', 'ico');
    svg.setAttribute('aria-hidden', 'true');
    const body = document.createElementNS(SVG_NS, 'rect');
    for (const [k, v] of Object.entries({ x: 3, y: 7, width: 10, height: 7.5, rx: 1.6, fill: 'currentColor' })) body.setAttribute(k, String(v));
    const shackle = document.createElementNS(SVG_NS, 'path');
    for (const [k, v] of Object.entries({ d: 'M5.2 7V5.1a2.8 2.8 0 0 1 5.6 0V7', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.6 })) shackle.setAttribute(k, String(v));
    svg.append(body, shackle);
    return svg;
  }

  function badge(text, cls, testid) {
    return el('span', { class: `badge ${cls || ''}`, text, testid });
  }

  function priorityBadge(priority) {
    const p = priority || 'normal';
    return badge(label('priority.', p), `badge-priority-${p}`, 'priority-badge');
  }

  function agentName(username) {
    if (!username) return '';
    if (state.me && username === state.me.username) return state.me.display_name || username;
    const a = state.agents.find((x) => x.username === username);
    return a ? a.display_name || username : username;
  }

  function maskConv(id) {
    const part = String(id || '').split(':').slice(1).join(':');
    return part.length <= 8 ? `${part.slice(0, 2)}***` : `${part.slice(0, 4)}…${part.slice(-4)}`;
  }

  function customerOf(id) {
    const hit = state.queue.find((q) => q.conversation_id === id) || state.mine.find((c) => c.conversation_id === id);
    if (hit) return hit.customer;
    if (state.detail && state.detail.conversation_id === id) return state.detail.customer;
    return maskConv(id);
  }

  // ---------------------------------------------------------------------------------------------
  // time

  function parseTime(iso) {
    const d = iso ? new Date(iso) : null;
    return d && !Number.isNaN(d.getTime()) ? d : null;
  }

  function fmtClock(iso) {
    const d = parseTime(iso);
    return d ? new Intl.DateTimeFormat(state.locale, { hour: '2-digit', minute: '2-digit', hour12: false }).format(d) : '';
  }

  function fmtDay(d) {
    return new Intl.DateTimeFormat(state.locale, { month: 'short', day: 'numeric', weekday: 'short' }).format(d);
  }

  function fmtDateTime(iso) {
    const d = parseTime(iso);
    return d ? new Intl.DateTimeFormat(state.locale, {
      month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
    }).format(d) : '';
  }

  function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return t('dur.s', { s });
    if (s < 3600) return t('dur.ms', { m: Math.floor(s / 60), s: s % 60 });
    return t('dur.hm', { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  }

  function updateWaits() {
    const now = Date.now();
    document.querySelectorAll('.wait[data-since]').forEach((node) => {
      const since = parseTime(node.dataset.since);
      if (!since) return;
      const secs = (now - since.getTime()) / 1000;
      node.textContent = t('queue.waiting', { t: fmtDuration(secs) });
      node.dataset.level = secs >= WAIT_LATE_SECONDS ? 'late' : secs >= WAIT_WARN_SECONDS ? 'warn' : 'ok';
    });
    if (state.wsRetryAt && !state.ws) {
      const left = Math.max(0, Math.ceil((state.wsRetryAt - now) / 1000));
      $('conn-text').textContent = t('conn.reconnecting', { s: left });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      init.headers['X-Requested-With'] = 'kefu';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, data: { error: 'network' } };
    }
    let data = {};
    if (resp.status !== 204) {
      try {
        data = (await resp.json()) || {};
      } catch (err) {
        data = {};
      }
    }
    if (resp.status === 401 && state.me && !path.startsWith('/api/auth/')) sessionLost();
    return { ok: resp.ok, status: resp.status, data };
  }

  function errorText(res) {
    const code = (res.data && res.data.error) || (res.status === 0 ? 'network' : `http_${res.status}`);
    if (has(`err.${code}`)) return t(`err.${code}`);
    const message = res.data && typeof res.data.message === 'string' ? res.data.message.trim() : '';
    return message || t('err.generic', { code });
  }

  function toast(text, kind) {
    // The same message again (a button clicked twice) replaces its toast instead of stacking another.
    for (const old of $('toasts').children) if (old.textContent === text) old.remove();
    const node = el('div', { class: `toast ${kind === 'error' ? 'toast-error' : ''}`, role: kind === 'error' ? 'alert' : 'status', text });
    $('toasts').append(node);
    setTimeout(() => node.remove(), kind === 'error' ? 6000 : 3500);
  }

  // ---------------------------------------------------------------------------------------------
  // login

  function showLogin(message) {
    $('boot').hidden = true;
    $('app').hidden = true;
    $('login-view').hidden = false;
    const err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('login-password').value = '';
    $('login-username').focus();
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    const button = $('login-submit');
    if (!username || !password) {
      (username ? $('login-password') : $('login-username')).focus();
      return;
    }
    button.disabled = true;
    button.textContent = t('login.submitting');
    const res = await api('POST', '/api/auth/login', { username, password });
    button.disabled = false;
    button.textContent = t('login.submit');
    if (res.ok) {
      $('login-error').hidden = true;
      $('login-password').value = '';
      startWorkspace(res.data);
      return;
    }
    let message;
    if (res.status === 401) message = t('login.error.invalid');
    else if (res.status === 429) message = t('login.error.throttled', { minutes: Math.max(1, Math.ceil((res.data.retry_after || 60) / 60)) });
    else message = t('login.error.generic');
    showLogin(message);
    $('login-username').value = username;
    $('login-password').focus();
  }

  function sessionLost(key = 'err.login_required') {
    if (!state.me) return;
    stopWorkspace();
    showLogin(t(key));
  }

  async function logout() {
    stopTyping();
    await api('POST', '/api/auth/logout');
    stopWorkspace();
    showLogin('');
  }

  // ---------------------------------------------------------------------------------------------
  // workspace lifecycle

  function startWorkspace(me) {
    state.me = me;
    $('login-view').hidden = true;
    $('boot').hidden = true;
    $('app').hidden = false;
    renderMe();
    $('mine-title').textContent = t(me.role === 'admin' ? 'mine.title_admin' : 'mine.title');
    showEmpty();
    connect();
    refreshAgents();
    refreshQueue();
    refreshMine();
  }

  function stopWorkspace() {
    state.me = null;
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close();
    clearTimeout(state.wsTimer);
    clearInterval(state.pingTimer);
    state.wsRetryAt = 0;
    state.currentId = null;
    state.detail = null;
    state.queue = [];
    state.mine = [];
    state.alerts = [];
    state.drafts.clear();
    state.seen.clear();
    $('app').hidden = true;
    closeDialogs();
  }

  function renderMe() {
    const me = state.me;
    $('me-name').textContent = me.display_name || me.username;
    $('me-role').textContent = label('role.', me.role);
    avatarFor($('me-avatar'), me.username, me.display_name || me.username);
    const toggle = $('status-toggle');
    toggle.dataset.status = me.status === 'away' ? 'away' : 'online';
    toggle.setAttribute('aria-pressed', String(me.status !== 'away'));
    $('status-text').textContent = t(me.status === 'away' ? 'status.away' : 'status.online');
  }

  async function toggleStatus() {
    const next = state.me.status === 'away' ? 'online' : 'away';
    const res = await api('POST', `${API}/status`, { status: next });
    if (!res.ok) { toast(errorText(res), 'error'); return; }
    state.me = { ...state.me, status: res.data.status || next };
    renderMe();
  }

  async function refreshAgents() {
    const res = await api('GET', `${API}/agents`);
    if (res.ok) state.agents = Array.isArray(res.data.items) ? res.data.items : [];
  }

  async function refreshQueue() {
    const res = await api('GET', `${API}/queue`);
    if (res.ok) { state.queue = res.data.items || []; renderQueue(); }
  }

  async function refreshMine() {
    const res = await api('GET', `${API}/conversations`);
    if (!res.ok) return;
    state.mine = res.data.items || [];
    for (const c of state.mine) watch(c.conversation_id);
    renderMine();
  }

  // ---------------------------------------------------------------------------------------------
  // WebSocket with reconnect backoff

  function setConn(kind) {
    $('conn').dataset.state = kind;
    if (kind === 'live') $('conn-text').textContent = t('conn.live');
    else if (kind === 'connecting') $('conn-text').textContent = t('conn.connecting');
    else updateWaits();
  }

  function connect() {
    clearTimeout(state.wsTimer);
    state.wsRetryAt = 0;
    setConn('connecting');
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/console`);
    state.ws = ws;
    state.watched = new Set();
    let opened = false;
    ws.addEventListener('open', () => {
      if (state.ws !== ws) return;
      opened = true;
      const reconnected = state.wsRetry > 0;
      state.wsRetry = 0;
      setConn('live');
      if (state.currentId) watch(state.currentId);
      for (const c of state.mine) watch(c.conversation_id);
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(() => send({ type: 'ping' }), PING_MS);
      if (reconnected) {
        refreshMine();
        if (state.currentId) loadDetail();
      }
    });
    ws.addEventListener('message', (event) => {
      if (state.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch (err) { return; }
      if (frame && typeof frame === 'object') onFrame(frame);
    });
    ws.addEventListener('close', (event) => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearInterval(state.pingTimer);
      if (!state.me) return;
      if (event.code === LOGGED_OUT) { sessionLost('err.logged_out'); return; }
      if (!opened) state.wsRetry = Math.max(state.wsRetry, 1);
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const base = Math.min(30000, 1000 * 2 ** state.wsRetry);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    state.wsRetry += 1;
    state.wsRetryAt = Date.now() + delay;
    setConn('reconnecting');
    state.wsTimer = setTimeout(async () => {
      if (!state.me) return;
      const me = await api('GET', '/api/auth/me');
      if (me.status === 401) { sessionLost(); return; }
      if (state.me) connect();
    }, delay);
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function watch(id) {
    if (!id || state.watched.has(id)) return;
    if (send({ type: 'watch', conversation_id: id })) state.watched.add(id);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case 'queue':
        state.queue = Array.isArray(frame.items) ? frame.items : [];
        renderQueue();
        break;
      case 'message':
        onMessageFrame(frame);
        break;
      case 'conversation':
        onConversationFrame(frame);
        break;
      case 'typing':
        if (frame.conversation_id === state.currentId && frame.from === 'customer') showTyping(Boolean(frame.on));
        break;
      case 'alert':
        onAlert(frame);
        break;
      default:
        break;
    }
  }

  function onMessageFrame(frame) {
    const id = frame.conversation_id;
    const item = frame.item || {};
    const mine = state.mine.find((c) => c.conversation_id === id);
    if (mine && !item.note && (item.from === 'customer' || item.type === 'agent_message')) {
      mine.last_message = item.text || mine.last_message;
      mine.last_at = item.at || mine.last_at;
      if (item.from === 'customer') mine.unread = (mine.unread || 0) + 1;
      else mine.unread = 0;
      renderMine();
    }
    if (id === state.currentId && state.detail) {
      if (item.from === 'customer') showTyping(false);
      addItems([item]);
    }
  }

  async function onConversationFrame(frame) {
    const id = frame.conversation_id;
    if (state.me && frame.agent === state.me.username && frame.transferred_from
        && frame.transferred_from !== state.me.username) {
      toast(t('toast.transferred_to_me', { name: agentName(frame.transferred_from) }));
    }
    await refreshMine();
    if (id === state.currentId) await loadDetail();
  }

  // ---------------------------------------------------------------------------------------------
  // alerts (supervisors see all; an agent sees those about conversations they hold)

  function onAlert(frame) {
    const kind = frame.kind || 'generic';
    const id = frame.conversation_id;
    const concernsMe = state.mine.some((c) => c.conversation_id === id && c.agent === state.me.username);
    if (state.me.role !== 'admin' && !concernsMe) return;
    state.alerts = state.alerts.filter((a) => !(a.kind === kind && a.conversation_id === id));
    state.alerts.push({ kind, conversation_id: id, minutes: frame.minutes, customer: customerOf(id) });
    renderAlert();
  }

  function renderAlert() {
    const banner = $('alert-banner');
    const current = state.alerts[state.alerts.length - 1];
    if (!current) { banner.hidden = true; return; }
    const key = has(`alert.${current.kind}`) ? `alert.${current.kind}` : 'alert.generic';
    $('alert-text').textContent = t(key, { customer: current.customer, minutes: current.minutes === undefined ? '?' : current.minutes });
    banner.dataset.kind = current.kind;
    banner.dataset.conversationId = current.conversation_id || '';
    const more = $('alert-more');
    more.hidden = state.alerts.length < 2;
    more.textContent = t('alert.more', { n: state.alerts.length - 1 });
    $('alert-open').hidden = !current.conversation_id;
    banner.hidden = false;
  }

  function dismissAlert() {
    state.alerts.pop();
    renderAlert();
  }

  // ---------------------------------------------------------------------------------------------
  // left pane: queue and my conversations

  function onItemKey(event, id) {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      openConversation(id);
    } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const items = Array.from(document.querySelectorAll('.sidebar .conv-item'));
      const at = items.indexOf(event.currentTarget);
      const next = items[at + (event.key === 'ArrowDown' ? 1 : -1)];
      if (next) next.focus();
    }
  }

  function renderQueue() {
    const list = $('queue-list');
    clear(list);
    for (const q of state.queue) {
      const id = q.conversation_id;
      const waitNode = el('span', { class: 'wait', data: { since: q.waiting_since || '' }, testid: 'queue-wait' });
      const item = el('li', {
        class: 'conv-item', tabindex: '0', role: 'button', testid: 'queue-item',
        data: { conversationId: id, priority: q.priority || 'normal' },
        'aria-current': id === state.currentId ? 'true' : 'false',
        onclick: () => openConversation(id),
        onkeydown: (e) => onItemKey(e, id),
      },
      avatarFor(el('span', { class: 'avatar avatar-xs', 'aria-hidden': 'true' }), id, q.customer),
      el('div', { class: 'conv-main' },
        el('div', { class: 'conv-line' },
          el('span', { class: 'conv-name', text: q.customer }),
          badge(label('channel.', q.channel), 'badge-channel badge-sm'),
          el('span', { class: 'spacer' }),
          priorityBadge(q.priority)),
        q.preview ? el('div', { class: 'conv-preview', text: q.preview }) : null,
        el('div', { class: 'conv-meta' },
          el('span', { class: 'queue-pos', testid: 'queue-position', text: t('queue.position', { n: q.position }) }),
          el('span', { 'aria-hidden': 'true', text: '·' }),
          waitNode)));
      if (q.reason) item.title = label('reason.', q.reason);
      list.append(item);
    }
    $('queue-count').textContent = String(state.queue.length);
    $('queue-empty').hidden = state.queue.length > 0;
    updateWaits();
  }

  function displayUnread(c) {
    const id = c.conversation_id;
    const unread = c.unread || 0;
    if (id === state.currentId || unread < (state.seen.get(id) || 0)) state.seen.set(id, unread);
    return Math.max(0, unread - (state.seen.get(id) || 0));
  }

  function renderMine() {
    const list = $('mine-list');
    clear(list);
    for (const c of state.mine) {
      const id = c.conversation_id;
      const unread = displayUnread(c);
      const item = el('li', {
        class: 'conv-item', tabindex: '0', role: 'button', testid: 'my-conversation',
        data: { conversationId: id, unread },
        'aria-current': id === state.currentId ? 'true' : 'false',
        onclick: () => openConversation(id),
        onkeydown: (e) => onItemKey(e, id),
      },
      avatarFor(el('span', { class: 'avatar avatar-xs', 'aria-hidden': 'true' }), id, c.customer),
      el('div', { class: 'conv-main' },
        el('div', { class: 'conv-line' },
          el('span', { class: 'conv-name', text: c.customer }),
          badge(label('channel.', c.channel), 'badge-channel badge-sm'),
          el('span', { class: 'spacer' }),
          el('span', { class: 'conv-time', text: fmtClock(c.last_at) })),
        el('div', { class: 'conv-line' },
          el('span', { class: 'conv-preview', text: c.last_message || '' }),
          el('span', { class: 'spacer' }),
          unread > 0 ? el('span', { class: 'unread', testid: 'unread', text: String(unread), 'aria-label': t('mine.unread', { n: unread }) }) : null),
        c.status !== 'agent' || (state.me && state.me.role === 'admin' && c.agent)
          ? el('div', { class: 'conv-meta' },
            c.status !== 'agent' ? badge(label('cstatus.', c.status), `badge-status-${c.status}`) : null,
            state.me && state.me.role === 'admin' && c.agent ? el('span', { text: agentName(c.agent) }) : null)
          : null));
      list.append(item);
    }
    if (state.detail) renderClaim();
    $('mine-count').textContent = String(state.mine.length);
    $('mine-empty').hidden = state.mine.length > 0;
  }

  function markCurrentInLists() {
    document.querySelectorAll('.sidebar .conv-item').forEach((n) => {
      n.setAttribute('aria-current', n.dataset.conversationId === state.currentId ? 'true' : 'false');
    });
  }

  // ---------------------------------------------------------------------------------------------
  // middle pane: the open conversation

  function showEmpty() {
    $('conv-empty').hidden = false;
    $('conv-view').hidden = true;
  }

  async function openConversation(id) {
    if (!id) return;
    if (state.currentId !== id) {
      saveDraft();
      stopTyping();
      closeCanned();
      state.currentId = id;
      state.detail = null;
      state.rendered = [];
      state.noteMode = false;
      clear($('history'));
      hideNorms();
      showTyping(false);
      $('reply-input').value = state.drafts.get(id) || '';
      $('details').classList.remove('is-open');
      $('details-toggle').setAttribute('aria-expanded', 'false');
    }
    watch(id);
    markCurrentInLists();
    renderMine();
    await loadDetail();
  }

  async function loadDetail() {
    const id = state.currentId;
    if (!id) return;
    const res = await api('GET', CONV_PATH(id));
    if (state.currentId !== id) return;
    if (!res.ok) {
      if (res.status !== 401) toast(errorText(res), 'error');
      if (res.status === 404) { state.currentId = null; showEmpty(); }
      return;
    }
    const fresh = !state.detail;
    state.detail = { ...res.data, events: [] };
    $('conv-empty').hidden = true;
    $('conv-view').hidden = false;
    renderHeader();
    renderDetails();
    renderComposer();
    const events = Array.isArray(res.data.events) ? res.data.events : [];
    // Append what is new when it continues the rendered history; otherwise (something vanished or slots in
    // before the last rendered item) rebuild it in order.
    const known = new Set(state.rendered);
    const lastSeq = state.rendered.length ? state.rendered[state.rendered.length - 1] : -1;
    const consistent = events.filter((e) => known.has(e.seq)).length === state.rendered.length
      && !events.some((e) => !known.has(e.seq) && e.seq < lastSeq);
    if (!consistent) { clear($('history')); state.rendered = []; state.lastDay = null; }
    state.detail.events = events;
    addItems(events, fresh);
    if (fresh) scrollToBottom(true);
  }

  function isHolder() {
    const d = state.detail;
    if (!d || !state.me) return false;
    return d.status === 'agent' && (d.agent === state.me.username || state.me.role === 'admin');
  }

  function convLang() {
    const d = state.detail;
    const lang = d && d.classification && d.classification.lang;
    return lang === 'en' || lang === 'zh' ? lang : state.lang;
  }

  function renderHeader() {
    const d = state.detail;
    const cls = d.classification || {};
    avatarFor($('conv-avatar'), d.conversation_id, d.customer);
    $('conv-title').textContent = d.customer;
    const badges = $('conv-badges');
    clear(badges);
    badges.append(badge(label('channel.', d.channel), 'badge-channel', 'channel-badge'));
    badges.append(badge(label('cstatus.', d.status), `badge-status-${d.status}`, 'status-badge'));
    if (cls.priority) badges.append(priorityBadge(cls.priority));
    if (cls.handoff_reason) badges.append(badge(label('reason.', cls.handoff_reason), 'badge-outline', 'reason-badge'));
    for (const c of cls.complaints || []) {
      const text = `${label('category.', c.category) || t('category.other')} · ${label('severity.', c.severity)}`;
      badges.append(badge(text, c.severity === 'major' ? 'badge-complaint-major' : 'badge-complaint', 'complaint-badge'));
    }
    if (cls.lang) badges.append(badge(label('lang.', cls.lang), 'badge-outline'));
    if (d.status === 'agent' && d.agent && d.agent !== (state.me && state.me.username)) {
      badges.append(badge(agentName(d.agent), 'badge-outline', 'agent-badge'));
    }
    const holder = isHolder();
    $('claim').hidden = d.status !== 'queued';
    renderClaim();
    $('transfer').hidden = !holder;
    $('release').hidden = !holder;
    $('close').hidden = !holder;
  }

  /** How many conversations this agent holds: the server refuses a claim at max_concurrent. */
  function held() {
    return state.mine.filter((c) => c.status === 'agent' && c.agent === state.me.username).length;
  }

  /** At the limit the claim button is off and says why, instead of failing on every click. */
  function renderClaim() {
    const limit = state.me && state.me.max_concurrent;
    const full = Boolean(state.detail && state.detail.status === 'queued' && limit && held() >= limit);
    $('claim').disabled = full;
    $('claim-limit').hidden = !full;
    $('claim-limit').textContent = full ? t('claim.limit', { n: limit }) : '';
  }

  function renderDetails() {
    const d = state.detail;
    const cls = d.classification || {};
    $('d-id').textContent = d.customer;
    $('d-channel').textContent = label('channel.', d.channel);
    $('d-lang').textContent = cls.lang ? label('lang.', cls.lang) : t('details.none');
    $('d-status').textContent = label('cstatus.', d.status);
    $('d-agent').textContent = d.agent ? agentName(d.agent) : t('details.none');
    const prio = $('d-priority');
    clear(prio);
    prio.append(cls.priority ? priorityBadge(cls.priority) : t('details.none'));
    $('d-reason').textContent = cls.handoff_reason ? label('reason.', cls.handoff_reason) : t('details.none');
    const comp = $('d-complaints');
    clear(comp);
    if (!cls.complaints || !cls.complaints.length) comp.append(t('details.none'));
    for (const c of cls.complaints || []) {
      comp.append(badge(`${label('category.', c.category) || t('category.other')} · ${label('severity.', c.severity)}`,
        c.severity === 'major' ? 'badge-complaint-major' : 'badge-complaint'));
    }
    const list = $('tickets');
    clear(list);
    const tickets = Array.isArray(d.tickets) ? d.tickets : [];
    for (const tk of tickets) {
      list.append(el('li', { class: 'ticket', testid: 'ticket', data: { ticketId: tk.id } },
        el('div', { class: 'ticket-head' },
          el('span', { class: 'ticket-id', text: tk.id }),
          badge(label('ticket.status.', tk.status), tk.status === 'open' ? 'badge-status-queued' : 'badge-status-closed')),
        el('div', null, badge(label('ticket.kind.', tk.kind), 'badge-outline'),
          tk.order_no ? el('span', { class: 'ticket-due', text: ` ${tk.order_no}` }) : null),
        // The contact is shown whole only here: a callback needs it (the history masks it).
        tk.contact ? el('div', { class: 'ticket-line', testid: 'ticket-contact', text: t('tickets.contact', { contact: tk.contact }) }) : null,
        tk.message ? el('div', { class: 'ticket-line', testid: 'ticket-message', text: t('tickets.message', { message: tk.message }) }) : null,
        // What the agent must come back on: the question the bot could not answer, the item and reason of a return.
        ...['question', 'product', 'reason'].filter((f) => typeof tk[f] === 'string' && tk[f]).map((f) =>
          el('div', { class: 'ticket-line', testid: `ticket-${f}`, text: t(`tickets.${f}`, { [f]: tk[f] }) })),
        tk.due_at && tk.status === 'open' ? el('div', { class: 'ticket-due', text: t('tickets.due', { time: fmtDateTime(tk.due_at) }) }) : null));
    }
    $('tickets-count').textContent = String(tickets.length);
    $('tickets-empty').hidden = tickets.length > 0;
  }

  // -- history items --------------------------------------------------------------------------

  function nearBottom() {
    const h = $('history');
    return h.scrollHeight - h.scrollTop - h.clientHeight < 80;
  }

  function scrollToBottom(force) {
    const h = $('history');
    if (force || nearBottom()) h.scrollTop = h.scrollHeight;
  }

  function addItems(items, quiet) {
    const history = $('history');
    const stick = quiet || nearBottom();
    let mine = false;
    for (const item of items) {
      if (typeof item.seq !== 'number' || state.rendered.includes(item.seq)) continue;
      const lastSeq = state.rendered.length ? state.rendered[state.rendered.length - 1] : -1;
      if (item.seq < lastSeq) {  // arrived out of order: rebuild from the reloaded detail
        loadDetail();
        return;
      }
      if (state.detail && !state.detail.events.some((e) => e.seq === item.seq)) state.detail.events.push(item);
      const at = parseTime(item.at);
      const day = at ? at.toDateString() : null;
      if (day && day !== state.lastDay) {
        history.append(el('div', { class: 'day-sep', text: fmtDay(at) }));
        state.lastDay = day;
      }
      history.append(renderItem(item));
      state.rendered.push(item.seq);
      if (item.from === 'agent' && item.agent === (state.me && state.me.username)) mine = true;
    }
    if (stick || mine) scrollToBottom(true);
  }

  function itemKind(item) {
    if (SYSTEM_TYPES.has(item.type)) return 'system';
    if (item.note || item.type === 'internal_note') return 'note';
    if (item.from === 'customer' || item.type === 'customer_message') return 'customer';
    if (item.from === 'agent' || item.type === 'agent_message') return 'agent';
    if (item.from === 'bot' || item.type === 'bot_reply') return 'bot';
    return 'system';
  }

  function renderItem(item) {
    const kind = itemKind(item);
    const attrs = {
      testid: 'history-item',
      data: { from: kind === 'note' ? 'agent' : kind, type: item.type, seq: item.seq, note: kind === 'note' ? 'true' : null },
    };
    const time = fmtClock(item.at);
    if (kind === 'system') {
      return el('div', { ...attrs, class: 'sys' }, el('span', { text: systemText(item) }), el('span', { class: 'sys-time', text: time }));
    }
    if (kind === 'note') {
      return el('div', { ...attrs, class: 'msg msg-note' },
        el('div', { class: 'note' },
          el('div', { class: 'note-head' },
            lockIcon(),
            el('strong', { text: t('from.note') }),
            el('span', { text: agentName(item.agent) }),
            el('span', { text: time }),
            el('span', { class: 'spacer' }),
            el('span', { text: t('from.note_hint') })),
          el('div', { class: 'note-text', text: item.text || '' })));
    }
    if (kind === 'customer') {
      const bubble = el('div', { class: 'bubble', testid: 'bubble' });
      if (item.kind && item.kind !== 'text') bubble.append(el('span', { class: 'kind-tag', text: t('msg.kind', { kind: item.kind }) }));
      bubble.append(String(item.text || ''));  // customer text: literally, never markup, never HTML
      if (item.media) bubble.append(mediaLine(item.media));
      return el('div', { ...attrs, class: 'msg msg-customer' },
        el('div', { class: 'msg-col' },
          el('div', { class: 'msg-head' }, el('span', { class: 'msg-who', text: t('from.customer') }), el('span', { text: time })),
          bubble));
    }
    const bubble = el('div', { class: 'bubble', testid: 'bubble' }, renderMarkup(item.text || ''));
    if (kind === 'agent') {
      return el('div', { ...attrs, class: 'msg msg-agent' },
        avatarFor(el('span', { class: 'msg-avatar msg-avatar-agent', 'aria-hidden': 'true' }), item.agent || '', agentName(item.agent)),
        el('div', { class: 'msg-col' },
          el('div', { class: 'msg-head' }, el('span', { text: time }), el('span', { class: 'msg-who', text: agentName(item.agent) || t('from.agent') })),
          bubble));
    }
    // bot
    const meta = el('div', { class: 'bot-meta', testid: 'bot-meta' });
    if (item.faq_id) meta.append(el('span', { testid: 'faq-id', text: t('bot.faq', { id: item.faq_id }) }));
    if (typeof item.score === 'number') meta.append(el('span', { testid: 'faq-score', text: t('bot.score', { score: item.score.toFixed(2) }) }));
    const cands = candidateText(item.candidates);
    if (cands) meta.append(el('span', { testid: 'faq-candidates', text: t('bot.candidates', { ids: cands }) }));
    if (!item.faq_id && item.intent) meta.append(el('span', { text: t('bot.intent', { intent: item.intent }) }));
    return el('div', { ...attrs, class: 'msg msg-bot' },
      el('span', { class: 'msg-avatar msg-avatar-bot', 'aria-hidden': 'true', text: 'AI' }),
      el('div', { class: 'msg-col' },
        el('div', { class: 'msg-head' }, el('span', { text: time }), el('span', { class: 'msg-who', text: t('from.bot') })),
        bubble,
        meta.childNodes.length ? meta : null));
  }

  function candidateText(candidates) {
    if (!Array.isArray(candidates) || !candidates.length) return '';
    return candidates.slice(0, 5).map((c) => {
      if (Array.isArray(c)) return typeof c[1] === 'number' ? `${c[0]} ${c[1].toFixed(2)}` : String(c[0]);
      if (c && typeof c === 'object') return typeof c.score === 'number' ? `${c.id || c.faq_id} ${c.score.toFixed(2)}` : String(c.id || c.faq_id);
      return String(c);
    }).join(', ');
  }

  function systemText(item) {
    switch (item.type) {
      case 'queued': return t('sys.queued', { priority: label('priority.', item.priority || 'normal') });
      case 'agent_joined': return t('sys.agent_joined', { agent: agentName(item.agent) });
      case 'transferred': {
        return t('sys.transferred', { from: agentName(item.from_agent || item.by), to: agentName(item.to) });
      }
      case 'released': return t('sys.released', { agent: agentName(item.agent) });
      case 'closed': {
        let closed = t('sys.closed');
        if (item.resolved === true) closed = t('sys.closed_resolved');
        else if (item.resolved === false) closed = t('sys.closed_unresolved');
        return item.category ? t('sys.closed_complaint', { closed, category: label('category.', item.category) }) : closed;
      }
      case 'handoff_requested': return t('sys.handoff_requested', { reason: label('reason.', item.reason) });
      case 'complaint': return t('sys.complaint', {
        category: label('category.', item.category) || t('category.other'), severity: label('severity.', item.severity),
      });
      case 'ticket_created': return t('sys.ticket_created', { id: item.ticket_id || '' });
      case 'handoff_cancelled': return t('sys.handoff_cancelled');
      case 'rating': return t('sys.rating', { score: item.score });
      case 'delivery_failed': return t('sys.delivery_failed', { code: item.errcode });
      default: return t('sys.other', { type: item.type });
    }
  }

  function showTyping(on) {
    clearTimeout(state.typingTimer);
    $('typing').hidden = !on;
    if (on) state.typingTimer = setTimeout(() => { $('typing').hidden = true; }, 8000);
  }

  // ---------------------------------------------------------------------------------------------
  // composer: reply / note, norms hint, typing, canned replies

  function renderComposer() {
    const d = state.detail;
    const holder = isHolder();
    const input = $('reply-input');
    const composer = $('composer');
    const note = state.noteMode;
    composer.classList.toggle('is-note', note);
    $('note-toggle').setAttribute('aria-pressed', String(note));
    $('note-toggle').disabled = !d;
    $('note-hint').hidden = !note;
    const writable = holder || note;
    input.disabled = !writable;
    input.placeholder = note ? t('composer.placeholder_note') : t('composer.placeholder');
    $('send').textContent = state.sending ? t('composer.sending') : t(note ? 'action.add_note' : 'action.send');
    $('send').disabled = !writable || state.sending;
    $('canned-toggle').disabled = !holder || note;
    const ro = $('composer-readonly');
    let message = '';
    if (d && !holder && !note) {
      if (d.status === 'queued') message = t('composer.readonly_queued');
      else if (d.status === 'agent') message = t('composer.readonly_other', { agent: agentName(d.agent) });
      else if (d.status === 'closed') message = t('composer.readonly_closed');
      else message = t('composer.readonly_bot');
    }
    ro.textContent = message;
    ro.hidden = !message;
    if (note || !holder) hideNorms();
    document.documentElement.style.setProperty('--composer-h', `${composer.offsetHeight || 130}px`);
  }

  function saveDraft() {
    if (state.currentId) state.drafts.set(state.currentId, $('reply-input').value);
  }

  function toggleNote() {
    state.noteMode = !state.noteMode;
    renderComposer();
    if (!state.noteMode) scheduleCheck();
    $('reply-input').focus();
  }

  let checkTimer = null;
  let checkSeq = 0;

  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(runCheck, CHECK_DEBOUNCE_MS);
  }

  async function runCheck() {
    const text = $('reply-input').value;
    const seq = ++checkSeq;
    if (state.noteMode || !isHolder() || !text.trim()) { hideNorms(); return; }
    const res = await api('POST', `${API}/check`, { text, lang: convLang() });
    if (seq !== checkSeq || !res.ok) return;
    showNorms(res.data.warnings || [], false);
  }

  function warningText(w) {
    const key = `warn.${w.code}`;
    return has(key) ? t(key, { detail: w.detail }) : t('warn.other', { detail: w.detail || w.code });
  }

  function showNorms(warnings, afterSend) {
    const box = $('norms-warning');
    if (!warnings.length) { hideNorms(); return; }
    $('norms-title').textContent = afterSend ? t('norms.sent_with') : t('norms.title');
    const stick = nearBottom();
    const list = $('norms-list');
    clear(list);
    const seen = new Set();
    // "自己看" inside "你自己看" is one problem: keep the longer phrase only.
    const phrases = warnings.filter((w) => w.code === 'banned_phrase').map((w) => String(w.detail || ''));
    const shown = warnings.filter((w) => w.code !== 'banned_phrase'
      || !phrases.some((p) => p !== w.detail && p.includes(String(w.detail || ''))));
    for (const w of shown) {
      const text = warningText(w);
      if (seen.has(text)) continue;
      seen.add(text);
      list.append(el('li', { text, data: { code: w.code } }));
    }
    box.hidden = false;
    renderComposerHeight();
    if (stick) scrollToBottom(true);
  }

  function hideNorms() {
    const box = $('norms-warning');
    if (box.hidden) return;
    const stick = nearBottom();
    box.hidden = true;
    renderComposerHeight();
    if (stick) scrollToBottom(true);
  }

  function renderComposerHeight() {
    const composer = $('composer');
    document.documentElement.style.setProperty('--composer-h', `${composer.offsetHeight || 130}px`);
  }

  // typing indicator for the customer, throttled
  let typingOn = false;
  let typingSentAt = 0;
  let typingIdle = null;
  let typingConv = null;

  function postTyping(id, on) {
    api('POST', `${CONV_PATH(id)}/typing`, { on });
  }

  function noteTyping() {
    if (state.noteMode || !isHolder()) return;
    const now = Date.now();
    if (!typingOn || now - typingSentAt > TYPING_REPEAT_MS) {
      typingOn = true;
      typingSentAt = now;
      typingConv = state.currentId;
      postTyping(typingConv, true);
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingOn && typingConv) postTyping(typingConv, false);
    typingOn = false;
    typingConv = null;
  }

  async function sendCurrent() {
    const input = $('reply-input');
    const text = input.value;
    const id = state.currentId;
    if (!id || !text.trim() || state.sending) return;
    const note = state.noteMode;
    if (!note && !isHolder()) return;
    state.sending = true;
    renderComposer();
    const res = await api('POST', `${CONV_PATH(id)}/${note ? 'note' : 'reply'}`, { text });
    state.sending = false;
    renderComposer();
    if (!res.ok) {
      toast(errorText(res), 'error');
      return;
    }
    if (state.currentId === id) {
      input.value = '';
      state.drafts.delete(id);
      if (!note) {
        stopTyping();
        checkSeq += 1;
        clearTimeout(checkTimer);
        const warnings = Array.isArray(res.data.warnings) ? res.data.warnings : [];
        if (warnings.length) showNorms(warnings, true); else hideNorms();
      }
      input.focus();
      await loadDetail();
    }
  }

  function onInputKey(event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      sendCurrent();
    } else if (event.key === '/' && !event.target.value && isHolder() && !state.noteMode) {
      event.preventDefault();
      openCanned();
    } else if (event.key === 'Escape') {
      closeCanned();
    }
  }

  function onInput() {
    saveDraft();
    if (!$('reply-input').value.trim()) { checkSeq += 1; hideNorms(); }
    noteTyping();
    scheduleCheck();
  }

  // canned replies
  let cannedTimer = null;
  let cannedSeq = 0;
  let cannedItems = [];
  let cannedIndex = 0;

  function openCanned() {
    if (!isHolder() || state.noteMode) return;
    const panel = $('canned-panel');
    panel.hidden = false;
    $('canned-toggle').setAttribute('aria-expanded', 'true');
    $('canned-search').value = '';
    loadCanned('');
    $('canned-search').focus();
  }

  function closeCanned() {
    const panel = $('canned-panel');
    if (panel.hidden) return;
    panel.hidden = true;
    $('canned-toggle').setAttribute('aria-expanded', 'false');
  }

  async function loadCanned(q) {
    const seq = ++cannedSeq;
    const status = $('canned-status');
    status.hidden = false;
    status.textContent = t('canned.loading');
    const res = await api('GET', `${API}/canned?q=${encodeURIComponent(q)}&lang=${convLang()}`);
    if (seq !== cannedSeq) return;
    cannedItems = res.ok && Array.isArray(res.data.items) ? res.data.items : [];
    cannedIndex = 0;
    renderCanned();
  }

  function renderCanned() {
    const list = $('canned-list');
    clear(list);
    cannedItems.forEach((c, i) => {
      const title = c.source === 'template' && has(`canned.t.${c.id}`) ? t(`canned.t.${c.id}`) : c.title;
      const node = el('li', {
        class: 'canned-item', role: 'option', id: `canned-${i}`, testid: 'canned-item',
        'aria-selected': i === cannedIndex ? 'true' : 'false',
        onmousedown: (e) => e.preventDefault(),
        onclick: () => insertCanned(i),
      },
      el('div', { class: 'canned-item-head' },
        el('span', { class: 'canned-item-title', text: title }),
        badge(label('canned.source.', c.source), c.source === 'faq' ? 'badge-channel' : 'badge-outline')),
      el('div', { class: 'canned-item-text', text: c.text }));
      list.append(node);
    });
    const status = $('canned-status');
    status.hidden = cannedItems.length > 0;
    status.textContent = t('canned.empty');
    $('canned-search').setAttribute('aria-activedescendant', cannedItems.length ? `canned-${cannedIndex}` : '');
  }

  function moveCanned(delta) {
    if (!cannedItems.length) return;
    cannedIndex = (cannedIndex + delta + cannedItems.length) % cannedItems.length;
    renderCanned();
    const node = $(`canned-${cannedIndex}`);
    if (node) node.scrollIntoView({ block: 'nearest' });
  }

  function insertCanned(i) {
    const item = cannedItems[i];
    if (!item) return;
    const input = $('reply-input');
    const text = String(item.text || '');
    const current = input.value === '/' ? '' : input.value;
    const start = input.value === '/' ? 0 : input.selectionStart;
    const end = input.value === '/' ? 0 : input.selectionEnd;
    input.value = current.slice(0, start) + text + current.slice(end);
    closeCanned();
    input.focus();
    input.selectionStart = input.selectionEnd = start + text.length;
    onInput();
  }

  function onCannedKey(event) {
    if (event.key === 'ArrowDown') { event.preventDefault(); moveCanned(1); }
    else if (event.key === 'ArrowUp') { event.preventDefault(); moveCanned(-1); }
    else if (event.key === 'Enter') { event.preventDefault(); insertCanned(cannedIndex); }
    else if (event.key === 'Escape') { event.preventDefault(); closeCanned(); $('reply-input').focus(); }
  }

  // ---------------------------------------------------------------------------------------------
  // actions: claim, transfer, release, close

  async function action(path, body, okKey, okVars) {
    const id = state.currentId;
    if (!id) return false;
    const res = await api('POST', `${CONV_PATH(id)}/${path}`, body);
    if (!res.ok) {
      toast(errorText(res), 'error');
      if (res.status === 409 || res.status === 403) { refreshQueue(); loadDetail(); }
      return false;
    }
    if (okKey) toast(t(okKey, okVars));
    await Promise.all([refreshMine(), loadDetail()]);
    return true;
  }

  async function claim() {
    $('claim').disabled = true;
    const ok = await action('claim', {}, 'toast.claimed');
    $('claim').disabled = false;
    if (state.detail) renderClaim();
    if (ok) $('reply-input').focus();
  }

  async function release() {
    stopTyping();
    await action('release', {}, 'toast.released');
  }

  function openClose() {
    const d = state.detail;
    if (!d) return;
    const select = $('close-category');
    clear(select);
    select.append(el('option', { value: '', text: t('close.category_none') }));
    for (const c of CATEGORIES) select.append(el('option', { value: c, text: t(`category.${c}`) }));
    const complaint = ((d.classification && d.classification.complaints) || []).find((c) => CATEGORIES.includes(c.category));
    select.value = complaint ? complaint.category : '';
    $('close-resolved').value = 'true';
    $('close-dialog').showModal();
    $('close-resolved').focus();
  }

  async function confirmClose(event) {
    event.preventDefault();
    const button = $('close-confirm');
    button.disabled = true;
    stopTyping();
    const category = $('close-category').value || null;
    const ok = await action('close', { resolved: $('close-resolved').value === 'true', category }, 'toast.closed');
    button.disabled = false;
    if (ok) $('close-dialog').close();
  }

  async function openTransfer() {
    await refreshAgents();
    const list = $('transfer-list');
    clear(list);
    const others = state.agents.filter((a) => a.username !== state.me.username);
    for (const a of others) {
      const status = a.status === 'away' ? 'away' : 'online';
      list.append(el('li', null, el('button', {
        type: 'button', class: 'agent-btn', testid: 'transfer-agent', data: { username: a.username },
        disabled: a.active === false, onclick: () => doTransfer(a),
      },
      avatarFor(el('span', { class: 'avatar avatar-sm', 'aria-hidden': 'true' }), a.username, a.display_name || a.username),
      el('span', { class: 'agent-name' }, a.display_name || a.username, el('span', { class: 'agent-user', text: a.username })),
      a.active === false ? el('span', { class: 'presence', text: t('transfer.inactive') })
        : el('span', { class: 'presence', data: { status }, text: t(`status.${status}`) }))));
    }
    $('transfer-empty').hidden = others.length > 0;
    $('transfer-dialog').showModal();
    const first = list.querySelector('button:not(:disabled)');
    if (first) first.focus();
  }

  async function doTransfer(agent) {
    stopTyping();
    const ok = await action('transfer', { to: agent.username }, 'toast.transferred', { name: agent.display_name || agent.username });
    if (ok) $('transfer-dialog').close();
  }

  function closeDialogs() {
    for (const id of ['close-dialog', 'transfer-dialog']) if ($(id).open) $(id).close();
    closeCanned();
  }

  function toggleDetails() {
    const open = !$('details').classList.contains('is-open');
    $('details').classList.toggle('is-open', open);
    $('details-toggle').setAttribute('aria-expanded', String(open));
  }

  // ---------------------------------------------------------------------------------------------
  // boot

  function bind() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    $('logout').addEventListener('click', logout);
    $('status-toggle').addEventListener('click', toggleStatus);
    $('alert-dismiss').addEventListener('click', dismissAlert);
    $('alert-open').addEventListener('click', () => {
      const a = state.alerts[state.alerts.length - 1];
      if (a && a.conversation_id) openConversation(a.conversation_id);
    });
    $('claim').addEventListener('click', claim);
    $('release').addEventListener('click', release);
    $('close').addEventListener('click', openClose);
    $('transfer').addEventListener('click', openTransfer);
    $('details-toggle').addEventListener('click', toggleDetails);
    $('close-form').addEventListener('submit', confirmClose);
    $('close-cancel').addEventListener('click', () => $('close-dialog').close());
    $('send').addEventListener('click', sendCurrent);
    $('note-toggle').addEventListener('click', toggleNote);
    $('canned-toggle').addEventListener('click', () => ($('canned-panel').hidden ? openCanned() : closeCanned()));
    $('canned-search').addEventListener('keydown', onCannedKey);
    $('canned-search').addEventListener('input', () => {
      clearTimeout(cannedTimer);
      cannedTimer = setTimeout(() => loadCanned($('canned-search').value.trim()), CANNED_DEBOUNCE_MS);
    });
    const input = $('reply-input');
    input.addEventListener('keydown', onInputKey);
    input.addEventListener('input', onInput);
    input.addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== input) stopTyping(); }, 0));
    document.addEventListener('mousedown', (event) => {
      const panel = $('canned-panel');
      if (!panel.hidden && !panel.contains(event.target) && !$('canned-toggle').contains(event.target)) closeCanned();
    });
    window.addEventListener('beforeunload', stopTyping);
    setInterval(updateWaits, 1000);
  }

  async function boot() {
    bind();
    await loadStrings();
    const res = await api('GET', '/api/auth/me');
    if (res.ok) startWorkspace(res.data);
    else showLogin('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
