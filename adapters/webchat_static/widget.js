/* kefu web-chat widget. Plain ES2020, no dependencies, no build step.
 *
 * Embed with one tag (docs/webchat-protocol.md):
 *   <script src="https://bot.example/static/webchat/widget.js" data-server="https://bot.example"
 *           data-lang="zh" data-color="#c0392b" async></script>
 *
 * Safety: every text from the server or the customer reaches the page through textContent or a text node.
 * Reply markup (**bold**, numbered lines, [label](https://…)) is parsed here into elements; nothing is ever
 * parsed as HTML. Every visible text comes from reply_templates/<lang>/widget.json via the config endpoint.
 */
(function () {
  'use strict';

  if (window.kefuWidget) return; // the tag was pasted twice: one widget is enough

  const SCRIPT = document.currentScript ||
    Array.from(document.querySelectorAll('script[src]')).reverse().find((s) => /\/widget\.js(\?|#|$)/.test(s.src));
  if (!SCRIPT) return;

  const SCRIPT_URL = new URL(SCRIPT.src, location.href);
  const SERVER = (SCRIPT.dataset.server || SCRIPT_URL.origin).replace(/\/+$/, '');
  const CSS_URL = new URL('widget.css', SCRIPT_URL).href;
  const REQUESTED_LANG = baseLang(SCRIPT.dataset.lang || document.documentElement.lang || 'zh');
  const ACCENT = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(SCRIPT.dataset.color || '') ? SCRIPT.dataset.color : '#2457d6';

  const KEY_TOKEN = 'kefu.token';
  const KEY_OUTBOX = 'kefu.outbox';
  const KEY_LABELS = 'kefu.labels';       // client id -> suggestion label, so a reload shows what was clicked
  const KEY_CONFIG = 'kefu.config.';      // + lang: last good config, used when the config request fails
  const KEY_OPEN = 'kefu.open';           // sessionStorage: the panel stays open across page loads in a tab

  const BACKOFF_MIN = 500;                // ms, first reconnect delay
  const BACKOFF_MAX = 15000;              // ms, cap
  const GOING_AWAY_DELAY = 300;           // ms (+ jitter) after close code 1001: the server is restarting
  const PING_EVERY = 25000;
  const PONG_WITHIN = 10000;              // no frame at all this long after a ping: the socket is dead
  const WELCOME_WITHIN = 10000;
  const ACK_WITHIN = 20000;               // an unacked message this long: reconnect, the outbox resends it
  const RETRY_MIN = 5000;                 // ms, first retry after rate_limited
  const RETRY_MAX = 60000;
  const TYPING_EVERY = 3000;              // typing:on at most this often
  const TYPING_IDLE = 4000;               // typing:off after this long without a keystroke
  const TYPING_SHOW_MAX = 30000;          // hide a typing indicator the server forgot to switch off
  const PHONE_MAX = 479;                  // px: at or under this width the panel is full-screen
  const MAX_LABELS = 200;

  /* ------------------------------------------------------------------ storage ------------------------- */

  const memory = {};
  function store(kind) {
    let s = null;
    try { s = window[kind]; s.getItem('kefu.probe'); } catch (e) { s = null; }
    return {
      get(key) { try { return s ? s.getItem(key) : (memory[kind + key] ?? null); } catch (e) { return null; } },
      set(key, value) {
        try { if (s) s.setItem(key, value); else memory[kind + key] = value; } catch (e) { memory[kind + key] = value; }
      },
      remove(key) { try { if (s) s.removeItem(key); } catch (e) { /* ignore */ } delete memory[kind + key]; },
    };
  }
  const local = store('localStorage');
  const session = store('sessionStorage');

  function readJson(key, fallback) {
    try {
      const raw = local.get(key);
      return raw ? JSON.parse(raw) : fallback;
    } catch (e) {
      return fallback;
    }
  }

  // The outbox is read and written through every time, never cached: other tabs of the same shop share it.
  const outbox = {
    all() {
      const list = readJson(KEY_OUTBOX, []);
      return Array.isArray(list) ? list.filter((m) => m && typeof m.id === 'string' && typeof m.text === 'string') : [];
    },
    save(list) { if (list.length) local.set(KEY_OUTBOX, JSON.stringify(list)); else local.remove(KEY_OUTBOX); },
    add(entry) { const list = outbox.all(); list.push(entry); outbox.save(list); },
    remove(id) { outbox.save(outbox.all().filter((m) => m.id !== id)); },
    update(id, patch) { outbox.save(outbox.all().map((m) => (m.id === id ? Object.assign({}, m, patch) : m))); },
    has(id) { return outbox.all().some((m) => m.id === id); },
  };

  function rememberLabel(id, label) {
    const labels = readJson(KEY_LABELS, {});
    labels[id] = label;
    const ids = Object.keys(labels);
    for (const old of ids.slice(0, Math.max(0, ids.length - MAX_LABELS))) delete labels[old];
    local.set(KEY_LABELS, JSON.stringify(labels));
  }

  /* ------------------------------------------------------------------ helpers ------------------------- */

  function baseLang(value) {
    return String(value).trim().toLowerCase().split(/[-_]/)[0] || 'zh';
  }

  function newId() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    // randomUUID exists only in secure contexts; a shop on plain http still gets a v4 UUID.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function charCount(text) { return Array.from(text).length; } // code points, as the server counts

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ICONS = {
    chat: 'M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.2 3.6c-.6.5-1.3.1-1.3-.6V16A2.5 2.5 0 0 1 4 13.5v-8Z',
    down: 'M6 9l6 6 6-6',
    close: 'M6 6l12 12M18 6L6 18',
    send: 'M4.5 12 3.2 4.6c-.1-.8.7-1.4 1.4-1L20.3 11c.8.4.8 1.5 0 1.9L4.6 20.4c-.7.4-1.5-.2-1.4-1L4.5 12Zm0 0H12',
    retry: 'M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6',
    alert: 'M12 8v5m0 3.5v.5M10.3 3.9 2.6 17.5A2 2 0 0 0 4.3 20.5h15.4a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z',
    arrow: 'M12 5v14m-6-6 6 6 6-6',
  };
  function icon(name, cls) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'kf-icon ' + (cls || ''));
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.append(path);
    return svg;
  }

  /* ------------------------------------------------------------------ colour ---------------------------- */

  function rgb(hex) {
    let h = hex.slice(1);
    if (h.length === 3) h = h.replace(/./g, '$&$&');
    return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
  }
  function toHex(c) { return '#' + c.map((x) => Math.round(Math.max(0, Math.min(255, x))).toString(16).padStart(2, '0')).join(''); }
  function luminance(c) {
    const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  function contrast(a, b) {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  }
  function mix(a, b, t) { return a.map((v, i) => v + (b[i] - v) * t); }

  /** CSS variables from the shop's accent so that every pairing passes WCAG AA (4.5:1). */
  function palette(hex) {
    const accent = rgb(hex);
    const white = [255, 255, 255];
    const ink = [17, 24, 39];
    const onAccent = contrast(accent, white) >= contrast(accent, ink) ? white : ink;
    // Accent used as text on the light surfaces (links, chips): darken until it reads on #f1f3f7.
    let text = accent;
    for (let i = 0; i < 20 && contrast(text, [241, 243, 247]) < 4.8; i++) text = mix(text, [0, 0, 0], 0.08);
    const deep = onAccent === white ? mix(accent, [0, 0, 0], 0.18) : mix(accent, white, 0.18);
    return {
      '--kf-accent': toHex(accent),
      '--kf-accent-deep': toHex(deep),
      '--kf-on-accent': toHex(onAccent),
      '--kf-accent-text': toHex(text),
      '--kf-accent-soft': toHex(mix(accent, white, 0.9)),
      '--kf-accent-ring': `rgba(${accent.map(Math.round).join(',')},.22)`,
    };
  }

  /* ------------------------------------------------------------------ reply markup ---------------------- */

  const LIST_LINE = /^\s*(\d{1,3})\.\s+(.*)$/;
  const INLINE = /\*\*([^*\n]+?)\*\*|\[([^\]\n]+)\]\(([^)\s]+)\)/g;

  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function renderInline(text, parent, linkHintId) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) {
        const strong = el('strong');
        renderInline(m[1], strong, linkHintId);
        parent.append(strong);
      } else {
        const href = safeUrl(m[3]);
        if (href) {
          parent.append(el('a', { href, target: '_blank', rel: 'noopener noreferrer', 'aria-describedby': linkHintId,
            text: m[2] }));
        } else {
          parent.append(document.createTextNode(m[0]));
        }
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  /** Bot/agent text → DOM: **bold**, runs of "1. " lines as <ol>, [label](http…) links, newlines as <br>. */
  function renderMarkup(text, parent, linkHintId) {
    const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
    let br = false;
    for (let i = 0; i < lines.length;) {
      let m = LIST_LINE.exec(lines[i]);
      if (m) {
        const ol = el('ol');
        const start = parseInt(m[1], 10);
        if (start !== 1) ol.start = start;
        while (i < lines.length && (m = LIST_LINE.exec(lines[i]))) {
          const li = el('li');
          renderInline(m[2], li, linkHintId);
          ol.append(li);
          i++;
        }
        parent.append(ol);
        br = false;
        continue;
      }
      if (br) parent.append(el('br'));
      renderInline(lines[i], parent, linkHintId);
      br = true;
      i++;
    }
  }

  /* ------------------------------------------------------------------ the widget ------------------------ */

  let conf = null;          // {shop_name, lang, strings, max_message_chars}
  let ui = null;            // element references
  const state = {
    open: false,
    conn: 'idle',           // idle | connecting | ready | waiting | offline
    ws: null,
    attempt: 0,
    retryAt: 0,             // when the next reconnect is due (ms epoch)
    welcomed: false,
    inflight: null,         // client id sent on this socket and not yet acked
    rateRetry: 0,           // consecutive rate_limited answers
    unread: 0,
    lastSpeaker: null,
    timers: {},
    typingSentAt: 0,
    typingOn: false,
    bottomLock: true,       // the log follows new messages while the reader is at the bottom
    mine: new Set(),        // outbox ids this tab sends: its own, and whatever was waiting when it was welcomed
  };

  // Keys picked by a code from the server, spelled out so that every key the widget uses appears as t('…').
  const FROM = {
    customer: () => t('from.customer'), bot: () => t('from.bot'), agent: () => t('from.agent'), system: () => t('from.system'),
  };
  const TYPING = { bot: () => t('typing.bot'), agent: () => t('typing.agent') };
  const ERRORS = {
    too_large: () => t('error.too_large'), rate_limited: () => t('error.rate_limited'), bad_frame: () => t('error.bad_frame'),
    not_ready: () => t('error.not_ready'), unavailable: () => t('error.unavailable'),
  };

  function t(key, vars) {
    let s = conf && conf.strings && typeof conf.strings[key] === 'string' ? conf.strings[key] : '';
    if (vars) s = s.replace(/\{(\w+)\}/g, (all, name) => (name in vars ? String(vars[name]) : all));
    return s;
  }

  function timer(name, ms, fn) {
    clearTimeout(state.timers[name]);
    state.timers[name] = ms === null ? undefined : setTimeout(fn, ms);
  }

  async function loadConfig() {
    const url = `${SERVER}/api/webchat/config?lang=${encodeURIComponent(REQUESTED_LANG)}`;
    try {
      const res = await fetch(url, { credentials: 'omit', cache: 'no-cache' });
      if (!res.ok) throw new Error(String(res.status));
      const data = await res.json();
      if (!data || typeof data.strings !== 'object') throw new Error('bad config');
      local.set(KEY_CONFIG + REQUESTED_LANG, JSON.stringify(data));
      return data;
    } catch (e) {
      return readJson(KEY_CONFIG + REQUESTED_LANG, null);
    }
  }

  async function start() {
    let wait = 2000;
    while (!(conf = await loadConfig())) {
      await new Promise((r) => setTimeout(r, wait)); // server unreachable and nothing cached: try again quietly
      wait = Math.min(wait * 2, 60000);
    }
    conf.max_message_chars = Number(conf.max_message_chars) > 0 ? Number(conf.max_message_chars) : 2000;
    conf.lang = conf.lang || REQUESTED_LANG;
    await build();
    window.addEventListener('online', () => { if (state.conn === 'offline' || state.conn === 'waiting') connectNow(); });
    window.addEventListener('offline', () => { if (state.conn !== 'ready') setConn('offline'); });
    window.addEventListener('storage', onStorage);
    window.addEventListener('resize', () => {
      if (!state.open) return;
      ui.panel.setAttribute('aria-modal', isPhone() ? 'true' : 'false');
      lockPageScroll(isPhone());
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.conn === 'waiting') connectNow();
    });
    // A returning visitor (token) or unsent messages: connect at once, so agent replies and the outbox flow.
    if (local.get(KEY_TOKEN) || outbox.all().length || session.get(KEY_OPEN) === '1') connect();
    if (session.get(KEY_OPEN) === '1') openPanel(false);
  }

  function build() {
    const host = el('div', { id: 'kefu-webchat', 'data-kefu': 'webchat' });
    // The shop's CSS cannot reach inside the shadow root, but it can style the host: pin the host down.
    host.style.setProperty('all', 'initial', 'important');
    host.style.setProperty('display', 'none', 'important'); // until widget.css has loaded: no unstyled flash
    for (const [k, v] of Object.entries(palette(ACCENT))) host.style.setProperty(k, v);
    const root = host.attachShadow({ mode: 'open' }); // open: the shop's tests and ours can reach inside
    const css = el('link', { rel: 'stylesheet', href: CSS_URL });
    const loaded = new Promise((resolve) => { css.onload = resolve; css.onerror = resolve; });
    root.append(css);

    const uid = 'kf' + Math.random().toString(36).slice(2, 8);
    const ids = { panel: uid + '-panel', title: uid + '-title', status: uid + '-status', hint: uid + '-hint',
      link: uid + '-link', notice: uid + '-notice', dialog: uid + '-dialog' };

    const launcher = el('button', {
      type: 'button', class: 'kf-launcher', 'data-testid': 'widget-launcher', 'aria-controls': ids.panel,
      'aria-expanded': 'false', 'aria-label': t('launcher.open'), title: t('panel.title'),
      onclick: () => (state.open ? closePanel(true) : openPanel(true)),
    }, icon('chat', 'kf-icon-chat'), icon('down', 'kf-icon-down'),
    el('span', { class: 'kf-badge', 'data-testid': 'widget-unread', hidden: true, 'aria-hidden': 'true' }));

    const status = el('p', { class: 'kf-status', id: ids.status, 'data-testid': 'widget-status', 'data-state': 'idle' },
      el('span', { class: 'kf-dot', 'aria-hidden': 'true' }), el('span', { class: 'kf-status-text' }));
    const closeBtn = el('button', { type: 'button', class: 'kf-iconbtn', 'data-testid': 'widget-close',
      'aria-label': t('close'), title: t('close'), onclick: () => closePanel(true) }, icon('close'));
    const initial = (conf.shop_name || t('panel.title')).trim().slice(0, 1);
    const header = el('header', { class: 'kf-header' },
      el('div', { class: 'kf-avatar', 'aria-hidden': 'true' }, initial),
      el('div', { class: 'kf-heading' },
        el('h2', { class: 'kf-title', id: ids.title, text: conf.shop_name || t('panel.title') }), status),
      closeBtn);

    const retry = el('button', { type: 'button', class: 'kf-linkbtn', 'data-testid': 'widget-retry', text: t('retry'),
      onclick: () => connectNow() });
    const banner = el('div', { class: 'kf-banner', 'data-testid': 'widget-banner', role: 'status', hidden: true },
      icon('alert'), el('span', { class: 'kf-banner-text' }), retry);

    const empty = el('div', { class: 'kf-empty', 'data-testid': 'widget-empty' },
      el('div', { class: 'kf-empty-mark', 'aria-hidden': 'true' }, icon('chat')),
      el('p', { class: 'kf-empty-title', text: t('empty.title') }),
      el('p', { class: 'kf-empty-body', text: t('empty.body') }));
    const list = el('div', { class: 'kf-list' });
    const typing = el('div', { class: 'kf-typing', 'data-testid': 'widget-typing', hidden: true },
      el('span', { class: 'kf-dots', 'aria-hidden': 'true' }, el('i'), el('i'), el('i')),
      el('span', { class: 'kf-typing-text' }));
    const log = el('div', { class: 'kf-log', 'data-testid': 'widget-log', role: 'region', 'aria-label': t('log.label'),
      tabindex: '0' }, empty, list, typing);
    log.addEventListener('scroll', () => {
      state.bottomLock = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      if (state.bottomLock) ui.jump.hidden = true;
    }, { passive: true });
    const jump = el('button', { type: 'button', class: 'kf-jump', 'data-testid': 'widget-new-messages', hidden: true,
      onclick: () => scrollToBottom(true) }, icon('arrow'), el('span', { text: t('new_messages') }));

    const input = el('textarea', {
      class: 'kf-input', 'data-testid': 'widget-input', rows: '1', 'aria-label': t('input.label'),
      placeholder: t('input.placeholder'), 'aria-describedby': ids.hint + ' ' + ids.notice, enterkeyhint: 'send',
      autocomplete: 'off',
    });
    input.addEventListener('keydown', onInputKey);
    input.addEventListener('input', onInput);
    input.addEventListener('blur', () => sendTyping(false));
    const send = el('button', { type: 'submit', class: 'kf-send', 'data-testid': 'widget-send', 'aria-label': t('send'),
      title: t('send') }, icon('send'));
    const counter = el('span', { class: 'kf-counter', 'data-testid': 'widget-counter', hidden: true, 'aria-hidden': 'true' });
    const notice = el('p', { class: 'kf-notice', id: ids.notice, 'data-testid': 'widget-notice', role: 'status',
      'aria-live': 'polite' });
    const form = el('form', { class: 'kf-composer', novalidate: true, onsubmit: (e) => { e.preventDefault(); submit(); } },
      el('div', { class: 'kf-field' }, input, counter, send), notice);

    const footer = el('p', { class: 'kf-footer', text: t('footer.privacy') });
    const panel = el('section', {
      class: 'kf-panel', id: ids.panel, 'data-testid': 'widget-panel', role: 'dialog', 'aria-modal': 'false',
      'aria-labelledby': ids.title + ' ' + ids.dialog, 'aria-describedby': ids.status, hidden: true,
      lang: conf.lang,
    }, header, banner, el('div', { class: 'kf-body' }, log, jump), form, footer,
    el('span', { class: 'kf-sr', id: ids.hint, text: t('input.hint') }),
    el('span', { class: 'kf-sr', id: ids.link, text: t('link.new_window') }),
    el('span', { class: 'kf-sr', id: ids.dialog, text: t('panel.dialog') }));
    panel.addEventListener('keydown', onPanelKey);

    const live = el('div', { class: 'kf-sr', 'data-testid': 'widget-live', 'aria-live': 'polite', 'aria-atomic': 'false',
      lang: conf.lang });

    const frame = el('div', { class: 'kf-root', lang: conf.lang }, panel, launcher, live);
    root.append(frame);
    ui = { host, root, frame, launcher, panel, status, banner, log, list, empty, typing, jump, input, send, counter, notice,
      ids };
    (document.body || document.documentElement).append(host);
    setConn(state.conn);
    return loaded.then(() => host.style.setProperty('display', 'block', 'important'));
  }

  /* ------------------------------------------------------------------ open / close / keyboard ---------- */

  function isPhone() { return window.innerWidth <= PHONE_MAX; }

  function openPanel(focus) {
    if (!ui) { session.set(KEY_OPEN, '1'); return; } // opened through the API before the config arrived
    state.open = true;
    session.set(KEY_OPEN, '1');
    ui.panel.hidden = false;
    ui.frame.classList.add('kf-open');
    ui.launcher.setAttribute('aria-expanded', 'true');
    ui.panel.setAttribute('aria-modal', isPhone() ? 'true' : 'false');
    if (isPhone()) lockPageScroll(true);
    state.unread = 0;
    updateLauncher();
    if (state.conn === 'idle') connect();
    scrollToBottom(true);
    if (focus) requestAnimationFrame(() => ui.input.focus({ preventScroll: true }));
  }

  function closePanel(focusLauncher) {
    if (!ui || !state.open) return;
    state.open = false;
    session.remove(KEY_OPEN);
    ui.panel.hidden = true;
    ui.frame.classList.remove('kf-open');
    ui.launcher.setAttribute('aria-expanded', 'false');
    lockPageScroll(false);
    sendTyping(false);
    updateLauncher();
    if (focusLauncher) ui.launcher.focus();
  }

  let savedOverflow = null;
  function lockPageScroll(on) {
    const s = document.documentElement.style;
    if (on && savedOverflow === null) { savedOverflow = s.overflow; s.overflow = 'hidden'; }
    if (!on && savedOverflow !== null) { s.overflow = savedOverflow; savedOverflow = null; }
  }

  function updateLauncher() {
    const badge = ui.launcher.querySelector('.kf-badge');
    badge.hidden = state.open || state.unread === 0;
    badge.textContent = state.unread > 99 ? '99+' : String(state.unread);
    let label = state.open ? t('launcher.close') : t('launcher.open');
    if (!state.open && state.unread) label += ' (' + t('launcher.unread', { n: state.unread }) + ')';
    ui.launcher.setAttribute('aria-label', label);
  }

  function onPanelKey(e) {
    if (e.key === 'Escape' && !e.isComposing) {
      e.preventDefault();
      closePanel(true);
      return;
    }
    if (e.key === 'Tab' && isPhone()) { // full-screen on a phone: keep focus inside the panel
      const items = Array.from(ui.panel.querySelectorAll('button:not([disabled]), textarea, a[href], [tabindex="0"]'))
        .filter((n) => !n.closest('[hidden]'));
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      const active = ui.root.activeElement;
      if (e.shiftKey && active === first) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && active === last) { e.preventDefault(); first.focus(); }
    }
  }

  function onInputKey(e) {
    // isComposing / 229: Enter that confirms a Chinese IME candidate must not send.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  }

  function onInput() {
    ui.frame.classList.toggle('kf-has-text', ui.input.value.trim() !== '');
    autosize();
    updateCounter();
    if (ui.input.value.trim()) {
      const now = Date.now();
      if (!state.typingOn || now - state.typingSentAt > TYPING_EVERY) sendTyping(true);
      timer('typingIdle', TYPING_IDLE, () => sendTyping(false));
    } else {
      sendTyping(false);
    }
  }

  function sendTyping(on) {
    if (!on) timer('typingIdle', null);
    if (on === state.typingOn && !on) return;
    state.typingOn = on;
    if (on) state.typingSentAt = Date.now();
    if (state.conn === 'ready') frameOut({ type: 'typing', on });
  }

  function autosize() {
    const input = ui.input;
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight, 132) + 'px';
  }

  function updateCounter() {
    const n = charCount(ui.input.value);
    const max = conf.max_message_chars;
    ui.counter.hidden = n < max * 0.8;
    ui.counter.textContent = t('counter', { n, max });
    ui.counter.classList.toggle('kf-over', n > max);
    if (n <= max && ui.notice.dataset.kind === 'too_long') showNotice('');
  }

  function showNotice(text, kind, ms) {
    ui.notice.textContent = text;
    ui.notice.dataset.kind = text ? kind || 'info' : '';
    timer('notice', text && ms ? ms : null, () => showNotice(''));
  }

  /* ------------------------------------------------------------------ sending -------------------------- */

  function submit() {
    const text = ui.input.value.trim();
    if (!text) { ui.input.focus(); return; }
    if (charCount(text) > conf.max_message_chars) {
      showNotice(t('too_long', { max: conf.max_message_chars }), 'too_long');
      ui.input.focus();
      return;
    }
    ui.input.value = '';
    ui.frame.classList.remove('kf-has-text');
    autosize();
    updateCounter();
    sendTyping(false);
    showNotice('');
    queueMessage(text, null);
    ui.input.focus();
  }

  function queueMessage(text, label) {
    const now = Date.now();
    // The server asked us to slow down and earlier messages are still waiting: this one queues behind them.
    if (outbox.all().some((m) => m.retryAt && m.retryAt > now)) showNotice(t('too_fast'), 'warn', 6000);
    const entry = { id: newId(), text, at: new Date(now).toISOString() };
    if (label !== null && label !== text) {
      entry.label = label;
      rememberLabel(entry.id, label);
    }
    outbox.add(entry);
    state.mine.add(entry.id);
    retireSuggestions();
    renderItem({ from: 'customer', id: entry.id, client_id: entry.id, text: label ?? text, at: entry.at }, 'sending');
    scrollToBottom(true);
    if (state.conn === 'idle') connect();
    else flush();
  }

  /** Send the oldest unsent outbox message, one at a time: acks come back in order, so the thread keeps its order. */
  function flush() {
    if (state.conn !== 'ready' || state.inflight) return;
    const now = Date.now();
    // Another open tab sends its own messages; this one leaves them alone until its next welcome.
    const next = outbox.all().find((m) => !m.failed && state.mine.has(m.id));
    if (!next) return;
    if (next.retryAt && next.retryAt > now) {
      timer('flush', next.retryAt - now, flush);
      return;
    }
    state.inflight = next.id;
    frameOut({ type: 'message', id: next.id, text: next.text });
    timer('ack', ACK_WITHIN, () => { if (state.ws) state.ws.close(4000, 'ack timeout'); });
  }

  function onAck(msg) {
    if (typeof msg.id !== 'string') return;
    outbox.remove(msg.id);
    markBubble(msg.id, 'sent');
    if (state.inflight === msg.id) {
      state.inflight = null;
      state.rateRetry = 0;
      timer('ack', null);
    }
    flush();
  }

  function onError(msg) {
    const code = String(msg.code || '');
    const text = typeof msg.message === 'string' && msg.message.trim() ? msg.message
      : (ERRORS[code] ? ERRORS[code]() : t('error.generic'));
    const id = typeof msg.id === 'string' ? msg.id : null;
    if (id && state.inflight === id) { state.inflight = null; timer('ack', null); }
    if (id && (code === 'too_large' || code === 'bad_frame')) {
      // Refused for good: out of the outbox; the bubble offers to edit and send again.
      outbox.remove(id);
      markBubble(id, 'failed', text);
      showNotice(text, 'error', 12000);
      flush();
      return;
    }
    if (code === 'not_ready') {
      showNotice(text, 'info', 6000);
      hello();
      return;
    }
    if (id) {
      // rate_limited, unavailable or anything new: the message stays in the outbox and goes again later.
      const delay = Math.min(RETRY_MAX, RETRY_MIN * 2 ** state.rateRetry) * (0.8 + Math.random() * 0.4);
      state.rateRetry++;
      outbox.update(id, { retryAt: Date.now() + delay });
      showNotice(text, 'warn', Math.max(6000, delay));
      timer('flush', delay, flush);
      return;
    }
    showNotice(text, 'error', 8000);
  }

  function editFailed(id) {
    const row = ui.list.querySelector(`[data-row="${CSS.escape(id)}"]`);
    const bubble = row && row.querySelector('[data-testid="widget-message"]');
    if (!row || !bubble) return;
    const value = bubble.textContent;
    row.remove();
    ui.input.value = ui.input.value ? value + '\n' + ui.input.value : value;
    onInput();
    ui.input.focus();
  }

  /* ------------------------------------------------------------------ connection ----------------------- */

  function wsUrl() {
    const u = new URL(SERVER + '/ws/chat');
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.href;
  }

  function connect() {
    if (state.ws) return;
    timer('reconnect', null);
    timer('countdown', null);
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect(false);
      return;
    }
    state.ws = ws;
    state.welcomed = false;
    state.inflight = null;
    setConn(navigator.onLine ? 'connecting' : 'offline');
    ws.onopen = () => { if (state.ws === ws) hello(); };
    ws.onmessage = (ev) => { if (state.ws === ws) onFrame(ev.data); };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      teardown();
      scheduleReconnect(ev.code === 1001);
    };
    timer('welcome', WELCOME_WITHIN, () => { if (state.ws === ws && !state.welcomed) ws.close(4001, 'no welcome'); });
  }

  function hello() {
    frameOut({ type: 'hello', token: local.get(KEY_TOKEN) || null, lang: conf.lang });
  }

  function teardown() {
    const ws = state.ws;
    state.ws = null;
    state.welcomed = false;
    state.inflight = null;
    state.typingOn = false;
    for (const name of ['welcome', 'ping', 'pong', 'ack', 'flush', 'typingShow']) timer(name, null);
    showTyping(null);
    if (ws) { ws.onopen = ws.onmessage = ws.onclose = null; try { ws.close(); } catch (e) { /* ignore */ } }
  }

  function scheduleReconnect(goingAway) {
    if (!navigator.onLine) {
      // Back online fires 'online' and reconnects at once; a slow retry covers a browser that never says so.
      setConn('offline');
      timer('reconnect', BACKOFF_MAX, connect);
      return;
    }
    // Exponential backoff with jitter; a server that is going away (1001) is retried almost at once.
    const base = goingAway ? GOING_AWAY_DELAY : Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** state.attempt);
    const delay = goingAway ? base + Math.random() * 400 : base / 2 + Math.random() * base / 2;
    state.attempt++;
    state.retryAt = Date.now() + delay;
    setConn('waiting');
    timer('reconnect', delay, connect);
    tickCountdown();
  }

  function tickCountdown() {
    if (state.conn !== 'waiting') return;
    const s = Math.ceil((state.retryAt - Date.now()) / 1000);
    setStatusText(s >= 2 ? t('status.reconnecting_in', { s }) : t('status.reconnecting'));
    timer('countdown', 1000, tickCountdown);
  }

  function connectNow() {
    if (state.ws && state.conn !== 'waiting') return;
    state.attempt = 0;
    teardown();
    connect();
  }

  function frameOut(frame) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
  }

  function keepalive() {
    timer('ping', PING_EVERY, () => {
      if (!frameOut({ type: 'ping' })) return;
      timer('pong', PONG_WITHIN, () => { if (state.ws) state.ws.close(4002, 'no pong'); });
      keepalive();
    });
  }

  function setConn(conn) {
    state.conn = conn;
    if (!ui) return;
    ui.status.dataset.state = conn;
    ui.frame.dataset.conn = conn;
    const texts = { idle: t('panel.subtitle'), connecting: t('status.connecting'), ready: t('status.online'),
      waiting: t('status.reconnecting'), offline: t('status.offline') };
    setStatusText(texts[conn]);
    const troubled = conn === 'waiting' || conn === 'offline';
    ui.banner.hidden = !troubled;
    ui.banner.dataset.state = conn;
    ui.banner.querySelector('.kf-banner-text').textContent = conn === 'offline' ? t('banner.offline') : t('banner.reconnecting');
  }

  function setStatusText(text) {
    ui.status.querySelector('.kf-status-text').textContent = text;
  }

  function onFrame(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch (e) { return; }
    if (!msg || typeof msg !== 'object') return;
    timer('pong', null); // any frame proves the socket is alive
    switch (msg.type) {
      case 'welcome': onWelcome(msg); break;
      case 'ack': onAck(msg); break;
      case 'reply': onReply(msg); break;
      case 'typing': showTyping(msg.on ? msg.from : null); break;
      case 'notice': onNotice(msg); break;
      case 'error': onError(msg); break;
      default: break; // pong and anything newer
    }
  }

  function onWelcome(msg) {
    if (typeof msg.token === 'string') local.set(KEY_TOKEN, msg.token);
    const history = Array.isArray(msg.history) ? msg.history : [];
    // Whatever the server already holds is delivered: drop it from the outbox, resend the rest with the same id.
    const held = new Set(history.filter((h) => h && h.from === 'customer' && h.client_id).map((h) => h.client_id));
    outbox.save(outbox.all().filter((m) => !held.has(m.id)));
    for (const m of outbox.all()) state.mine.add(m.id);
    renderAll(history);
    state.welcomed = true;
    state.attempt = 0;
    timer('welcome', null);
    setConn('ready');
    keepalive();
    flush();
  }

  function onReply(msg) {
    showTyping(null);
    renderItem(msg, null);
    announce(msg);
    if (!state.open) {
      state.unread++;
      updateLauncher();
    }
    scrollToBottom(false);
  }

  function onNotice(msg) {
    const item = { from: 'system', id: msg.id || '', text: msg.text, at: msg.at };
    renderItem(item, null);
    announce(item);
    scrollToBottom(false);
  }

  function onStorage(e) {
    if (!ui) return;
    if (e.key === KEY_OUTBOX) { // another tab typed a message, or got its ack
      const list = outbox.all();
      for (const m of list) { // shown here too, as that tab's customer bubble; the answer follows on this socket
        if (!ui.list.querySelector(`[data-row="${CSS.escape(m.id)}"]`)) {
          renderItem({ from: 'customer', id: m.id, client_id: m.id, text: m.label ?? m.text, at: m.at }, 'sending');
          scrollToBottom(false);
        }
      }
      const pending = new Set(list.map((m) => m.id));
      for (const b of ui.list.querySelectorAll('[data-testid="widget-message"][data-state="sending"]')) {
        if (!pending.has(b.dataset.id)) markBubble(b.dataset.id, 'sent');
      }
    }
  }

  /* ------------------------------------------------------------------ rendering ------------------------ */

  function renderAll(history) {
    // Refused messages are out of the outbox but stay on screen, so the customer can still edit them.
    const failed = Array.from(ui.list.querySelectorAll('[data-testid="widget-message"][data-state="failed"]'))
      .map((b) => ({ id: b.dataset.id, text: b.textContent, at: b.closest('.kf-row').dataset.at }));
    ui.list.replaceChildren();
    state.lastSpeaker = null;
    const labels = readJson(KEY_LABELS, {});
    history.forEach((item, i) => {
      if (!item || typeof item !== 'object') return;
      const shown = item.from === 'customer' && item.client_id && labels[item.client_id] ? labels[item.client_id] : item.text;
      // Suggestions already answered by a later customer message stay visible but disabled.
      const answered = history.slice(i + 1).some((h) => h && h.from === 'customer');
      renderItem(Object.assign({}, item, { text: shown, quiet: true }), null, answered);
    });
    for (const m of outbox.all()) {
      renderItem({ from: 'customer', id: m.id, client_id: m.id, text: m.label || m.text, at: m.at, quiet: true }, 'sending');
    }
    for (const f of failed) {
      renderItem({ from: 'customer', id: f.id, client_id: f.id, text: f.text, at: f.at, quiet: true }, 'failed');
    }
    ui.empty.hidden = ui.list.childElementCount > 0;
    state.bottomLock = true;
    scrollToBottom(true);
  }

  function formatTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    const opts = sameDay ? { hour: '2-digit', minute: '2-digit' }
      : { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    try { return new Intl.DateTimeFormat(conf.lang, opts).format(d); } catch (e) { return d.toLocaleTimeString(); }
  }

  /** One thread item. `sendState` is set for the customer's own messages: sending | sent | failed. */
  function renderItem(item, sendState, answered) {
    const from = ['customer', 'bot', 'agent', 'system'].includes(item.from) ? item.from : 'system';
    const text = typeof item.text === 'string' ? item.text : '';
    const key = from === 'customer' ? (item.client_id || item.id || '') : (item.id || '');
    if (from === 'customer' && key && ui.list.querySelector(`[data-row="${CSS.escape(key)}"]`)) {
      if (sendState !== 'sending') markBubble(key, sendState || 'sent');
      return;
    }
    ui.empty.hidden = true;

    if (from === 'system') {
      // Shop notices (queue place, agent joined, back to the bot) use reply markup too: built as DOM, never HTML.
      const note = el('div', { class: 'kf-system', 'data-testid': 'widget-message', 'data-from': 'system', 'data-id': key });
      renderMarkup(text, note, ui.ids.link);
      const line = el('div', { class: 'kf-row kf-row-system' + (item.quiet ? ' kf-quiet' : ''), 'data-row': key }, note);
      ui.list.append(line);
      state.lastSpeaker = null;
      return;
    }

    const at = typeof item.at === 'string' ? item.at : '';
    const prev = state.lastSpeaker;
    const continued = prev && prev.from === from && at && prev.at && Math.abs(Date.parse(at) - Date.parse(prev.at)) < 180000;
    state.lastSpeaker = { from, at };

    const bubble = el('div', { class: 'kf-bubble', 'data-testid': 'widget-message', 'data-from': from, 'data-id': key });
    if (from === 'customer') {
      bubble.textContent = text; // literally, whatever it contains
      bubble.dataset.state = sendState || 'sent';
    } else {
      renderMarkup(text, bubble, ui.ids.link);
    }

    const row = el('div', { class: `kf-row kf-row-${from}` + (continued ? ' kf-cont' : '') + (item.quiet ? ' kf-quiet' : ''),
      'data-row': key,
      'data-at': at || null });
    const who = el('p', { class: 'kf-who' }, el('span', { class: 'kf-who-name', text: FROM[from]() }),
      el('time', { class: 'kf-time', datetime: at || null, text: formatTime(at) }));
    row.append(who, bubble);

    if (from === 'customer') {
      row.append(el('p', { class: 'kf-meta', 'data-testid': 'widget-message-meta' }));
    }
    const suggestions = Array.isArray(item.suggestions) ? item.suggestions.filter((s) => s && (s.label || s.value)) : [];
    if (suggestions.length) {
      const group = el('div', { class: 'kf-suggestions', role: 'group', 'aria-label': t('suggestions.label'),
        'data-testid': 'widget-suggestions' });
      for (const s of suggestions) {
        const label = String(s.label ?? s.value);
        const value = String(s.value ?? s.label);
        group.append(el('button', { type: 'button', class: 'kf-chip', 'data-testid': 'widget-suggestion',
          'data-value': value, disabled: !!answered, text: label,
          onclick: (e) => pickSuggestion(group, e.currentTarget, label, value) }));
      }
      if (answered) group.dataset.used = 'true';
      row.append(group);
    }
    ui.list.append(row);
    if (from === 'customer') markBubble(key, bubble.dataset.state);
  }

  function pickSuggestion(group, button, label, value) {
    if (group.dataset.used) return;
    button.classList.add('kf-picked');
    queueMessage(value, label);
  }

  /** Once the customer has said something, earlier choice buttons are spent. */
  function retireSuggestions() {
    for (const group of ui.list.querySelectorAll('.kf-suggestions:not([data-used])')) {
      group.dataset.used = 'true';
      for (const b of group.querySelectorAll('button')) b.disabled = true;
    }
  }

  function markBubble(id, sendState, reason) {
    const row = ui.list.querySelector(`[data-row="${CSS.escape(id)}"]`);
    const bubble = row && row.querySelector('[data-testid="widget-message"]');
    if (!bubble || bubble.dataset.from !== 'customer') return;
    bubble.dataset.state = sendState;
    row.dataset.state = sendState;
    const meta = row.querySelector('.kf-meta');
    meta.replaceChildren();
    if (sendState === 'sending') {
      meta.append(el('span', { class: 'kf-spinner', 'aria-hidden': 'true' }), el('span', { text: t('msg.sending') }));
    } else if (sendState === 'failed') {
      meta.append(icon('alert'), el('span', { text: t('msg.failed') }));
      if (reason) meta.append(el('span', { class: 'kf-sr', text: reason }));
      meta.append(el('button', { type: 'button', class: 'kf-linkbtn', 'data-testid': 'widget-message-edit',
        text: t('msg.edit'), onclick: () => editFailed(id) }));
    }
  }

  function showTyping(from) {
    if (!ui) return;
    const on = from === 'bot' || from === 'agent';
    ui.typing.hidden = !on;
    ui.typing.dataset.from = on ? from : '';
    ui.typing.querySelector('.kf-typing-text').textContent = on ? TYPING[from]() : '';
    timer('typingShow', on ? TYPING_SHOW_MAX : null, () => showTyping(null));
    if (on) scrollToBottom(false);
  }

  function announce(item) {
    const who = (FROM[item.from] || FROM.system)();
    const text = String(item.text || '').replace(/\*\*/g, '').replace(/\[([^\]\n]+)\]\([^)\s]+\)/g, '$1');
    const line = el('p', { text: t('announce', { who, text }) });
    const live = ui.frame.querySelector('[data-testid="widget-live"]');
    live.append(line);
    while (live.childElementCount > 3) live.firstElementChild.remove();
  }

  function scrollToBottom(force) {
    if (!ui) return;
    const log = ui.log;
    if (force || state.bottomLock) {
      requestAnimationFrame(() => { log.scrollTop = log.scrollHeight; });
      ui.jump.hidden = true;
      state.bottomLock = true;
    } else {
      ui.jump.hidden = false;
    }
  }

  /* ------------------------------------------------------------------ public API ----------------------- */

  window.kefuWidget = Object.freeze({
    open() { openPanel(true); },
    close() { closePanel(false); },
    toggle() { if (state.open) closePanel(false); else openPanel(true); },
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
  else start();
})();
