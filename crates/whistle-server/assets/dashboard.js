// whistle supervisor dashboard: vanilla JS, no framework, no build step, no CDN.
//
// It reads a supervisor's bearer token from the URL fragment (#token=…) — a fragment is
// never sent to the server nor to a Referer — keeps it in sessionStorage (this tab only)
// and removes it from the address bar. It polls GET /api/dashboard every 2 s and renders
// the JSON with DOM calls only (textContent, never innerHTML: case data is user input).
// Countdowns move every second between polls, based on the server's `seconds_left`, so
// a wrong clock on the supervisor's machine does not move them.
'use strict';

(function () {
  const TOKEN_KEY = 'whistle.token';
  const WINDOW_KEY = 'whistle.window';
  const POLL_MS = 2000;
  const WINDOWS = ['1h', '24h', '7d'];
  // The CLI and summaries show UTC+8 (exact for Asia/Shanghai, no DST); so does the page.
  const OFFSET_MS = 8 * 3600 * 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const LEVELS = {
    NEIGHBOUR: '邻里 Neighbour',
    UNIT: '单元 Unit',
    BRANCH: '支部 Branch',
    ESCALATED: '提级 Escalated',
  };
  const MILESTONES = {
    respond: '签收 respond',
    on_site: '到场 on site',
    resolve: '办结 resolve',
  };

  const $ = (id) => document.getElementById(id);

  // sessionStorage can be unavailable (storage disabled): fall back to this tab's memory.
  let memoryToken = null;
  function storageGet(key) {
    try { return window.sessionStorage.getItem(key); } catch (_) { return null; }
  }
  function storageSet(key, value) {
    try {
      if (value === null) window.sessionStorage.removeItem(key);
      else window.sessionStorage.setItem(key, value);
    } catch (_) { /* memory only */ }
  }
  function getToken() { return storageGet(TOKEN_KEY) || memoryToken; }
  function setToken(t) { memoryToken = t; storageSet(TOKEN_KEY, t); }

  // Move #token=… out of the address bar (and so out of history and bookmarks).
  function takeTokenFromFragment() {
    const hash = window.location.hash.replace(/^#/, '');
    if (!hash) return;
    const params = new URLSearchParams(hash);
    const token = params.get('token');
    if (token === null) return;
    if (token.trim() !== '') setToken(token.trim());
    params.delete('token');
    const rest = params.toString();
    const url = window.location.pathname + window.location.search + (rest ? '#' + rest : '');
    try { window.history.replaceState(null, '', url); } catch (_) { window.location.hash = rest; }
  }

  // ── formatting ────────────────────────────────────────────────────────────
  function pad(n) { return String(n).padStart(2, '0'); }

  // "2026-11-22 17:08:00" in UTC+8, or null for a missing/unparsable time.
  function beijing(iso) {
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return null;
    const d = new Date(ms + OFFSET_MS);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) +
      ' ' + pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds());
  }

  function percent(rate) {
    if (rate === null || rate === undefined || !Number.isFinite(rate)) return '—';
    const p = rate * 100;
    return (p === 100 || p === 0 ? p.toFixed(0) : p.toFixed(1)) + '%';
  }

  function rateClass(rate) {
    if (rate === null || rate === undefined || !Number.isFinite(rate)) return '';
    if (rate >= 0.9) return 'good';
    if (rate >= 0.7) return 'fair';
    return 'poor';
  }

  function count(n) {
    return Number.isFinite(n) ? String(n) : '—';
  }

  // Whole seconds as "1d 4h", "2h 05m", "7m 12s" or "45s".
  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
    let s = Math.floor(Math.abs(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + pad(m) + 'm';
    if (m > 0) return m + 'm ' + pad(s) + 's';
    return s + 's';
  }

  function leftText(seconds) {
    return seconds >= 0
      ? '剩余 ' + duration(seconds) + ' left'
      : '超时 ' + duration(seconds) + ' overdue';
  }

  function handlerText(h) {
    if (!h) return '待认领 unclaimed';
    const i = h.indexOf(':');
    const kind = i < 0 ? '' : h.slice(0, i);
    const id = i < 0 ? h : h.slice(i + 1);
    return kind === 'department' ? '部门 ' + id : id;
  }

  // ── DOM helpers (text only) ───────────────────────────────────────────────
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) {
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function timeEl(iso, short) {
    const full = beijing(iso);
    if (full === null) return el('span', {}, ['—']);
    return el('time', { datetime: iso, title: full + ' (UTC+8)' }, [short ? full.slice(5) : full]);
  }

  // ── state ─────────────────────────────────────────────────────────────────
  let windowChoice = WINDOWS.includes(storageGet(WINDOW_KEY)) ? storageGet(WINDOW_KEY) : '24h';
  let timer = null;
  let generation = 0; // a poll started before a window change must not render after it
  let fetchedAt = 0; // performance.now() of the data the countdowns are based on

  function setStatus(state, text) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function showAuth(detail) {
    $('main').hidden = true;
    $('auth').hidden = false;
    if (detail) $('auth-detail').textContent = detail;
    setStatus('error', '未授权 Not signed in');
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const gen = ++generation;
    const token = getToken();
    if (!token) {
      showAuth(null);
      return;
    }
    const url = '/api/dashboard?window=' + encodeURIComponent(windowChoice);
    let resp;
    try {
      resp = await fetch(url, {
        headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      if (gen === generation) {
        setStatus('error', '连接中断 Server unreachable');
        schedule();
      }
      return;
    }
    if (gen !== generation) return;
    if (resp.status === 401 || resp.status === 403) {
      setToken(null);
      showAuth(resp.status === 401
        ? '令牌无效 The token was refused (401). Enter a supervisor token, or open /#token=<supervisor token>.'
        : '此令牌无督办权限 This token is not a supervisor\'s (403). Enter a supervisor token.');
      return;
    }
    if (!resp.ok) {
      setStatus('error', '服务错误 HTTP ' + resp.status);
      schedule();
      return;
    }
    let data;
    try {
      data = await resp.json();
    } catch (e) {
      setStatus('error', '数据无法解析 Unreadable response');
      schedule();
      return;
    }
    if (gen !== generation) return;
    try {
      render(data);
      setStatus('live', '实时 Live');
    } catch (e) {
      setStatus('error', '显示出错 Render error: ' + e.message);
    }
    schedule();
  }

  // ── rendering ─────────────────────────────────────────────────────────────
  function render(d) {
    $('auth').hidden = true;
    $('main').hidden = false;
    fetchedAt = performance.now();
    $('scope').textContent = d.scope || '—';
    const updated = $('updated');
    updated.textContent = beijing(d.now) || '—';
    updated.setAttribute('datetime', d.now || '');
    $('range').textContent = (beijing(d.from) || '—') + ' → ' + (beijing(d.to) || '—') + ' (' + windowChoice + ')';
    renderTiles(d.totals || {});
    renderCases('at-risk', d.at_risk || []);
    renderCases('breached', d.breached || []);
    renderFunnel(d.funnel || []);
    renderMilestones(d.milestones || []);
    renderDepartments(d.departments || []);
    renderTrend(d.trend || []);
  }

  function renderTiles(t) {
    for (const node of document.querySelectorAll('.tiles [data-field]')) {
      const f = node.dataset.field;
      const v = t[f];
      if (f.endsWith('_rate')) {
        node.textContent = percent(v);
        if (node.classList.contains('value')) node.className = 'value ' + rateClass(v);
      } else {
        node.textContent = count(v);
      }
    }
  }

  function renderCases(id, items) {
    const body = $(id);
    const rows = items.map((c) => el('tr', {
      'data-testid': 'case-' + c.case_id,
      'data-case-id': c.case_id,
    }, [
      el('td', {}, [el('code', { title: c.case_id }, [c.case_id])]),
      el('td', { title: c.category }, [c.category_name || c.category || '—']),
      el('td', { title: c.compound }, [c.compound_name || c.compound || '—']),
      el('td', {}, [el('span', { class: 'level ' + c.level }, [LEVELS[c.level] || c.level || '—'])]),
      el('td', { 'data-testid': 'handler' }, [handlerText(c.handler)]),
      el('td', { 'data-testid': 'milestone', 'data-milestone': c.milestone }, [MILESTONES[c.milestone] || c.milestone || '—']),
      el('td', { 'data-testid': 'deadline' }, [timeEl(c.deadline, true)]),
      el('td', {
        'data-testid': 'time-left',
        class: 'left' + (c.seconds_left < 0 ? ' overdue' : ''),
        'data-seconds-left': String(c.seconds_left),
      }, [leftText(c.seconds_left)]),
    ]));
    body.replaceChildren(...rows);
    $(id + '-empty').hidden = items.length > 0;
    document.querySelector('[data-testid="' + id + '-count"]').textContent = String(items.length);
  }

  // Between polls, count each clock down from the server's figure.
  function tick() {
    const elapsed = (performance.now() - fetchedAt) / 1000;
    for (const cell of document.querySelectorAll('td[data-seconds-left]')) {
      const base = Number(cell.dataset.secondsLeft);
      if (!Number.isFinite(base)) continue;
      const left = Math.round(base - elapsed);
      cell.textContent = leftText(left);
      cell.classList.toggle('overdue', left < 0);
    }
  }

  function renderFunnel(rows) {
    const order = ['NEIGHBOUR', 'UNIT', 'BRANCH', 'ESCALATED'];
    const byLevel = new Map(rows.map((r) => [r.level, r.cases]));
    const levels = order.concat(rows.map((r) => r.level).filter((l) => !order.includes(l)));
    const total = levels.reduce((s, l) => s + (byLevel.get(l) || 0), 0);
    const max = Math.max(1, ...levels.map((l) => byLevel.get(l) || 0));
    const out = levels.map((l) => {
      const n = byLevel.get(l) || 0;
      const share = total > 0 ? Math.round((n / total) * 100) + '%' : '';
      const fill = el('div', { class: 'fill' });
      fill.style.width = ((n / max) * 100).toFixed(1) + '%';
      return el('div', { class: 'row ' + l, 'data-testid': 'funnel-' + l, title: share }, [
        el('span', {}, [LEVELS[l] || l]),
        el('div', { class: 'track' }, [fill]),
        el('span', { class: 'n' }, [String(n)]),
      ]);
    });
    $('funnel').replaceChildren(...out);
  }

  function renderMilestones(rows) {
    // In the order a case meets them; unknown milestones after, as sent.
    const rank = (m) => {
      const i = Object.keys(MILESTONES).indexOf(m.milestone);
      return i < 0 ? Object.keys(MILESTONES).length : i;
    };
    const sorted = rows.slice().sort((a, b) => rank(a) - rank(b));
    $('milestones').replaceChildren(...sorted.map((m) => el('tr', { 'data-testid': 'milestone-' + m.milestone }, [
      el('td', {}, [MILESTONES[m.milestone] || m.milestone]),
      el('td', { class: 'num' }, [count(m.decided)]),
      el('td', { class: 'num' }, [count(m.on_time) + ' (' + percent(m.on_time_rate) + ')']),
      el('td', { class: 'num' }, [duration(m.p50_seconds)]),
      el('td', { class: 'num' }, [duration(m.p90_seconds)]),
      el('td', { class: 'num' }, [count(m.breaches)]),
    ])));
  }

  function renderDepartments(rows) {
    $('departments').replaceChildren(...rows.map((d, i) => {
      const r = d.rates || {};
      const rate = (v) => el('td', { class: 'num ' + rateClass(v) }, [percent(v)]);
      return el('tr', { 'data-testid': 'department-' + d.key }, [
        el('td', { class: 'num' }, [String(i + 1)]),
        el('td', { title: d.key }, [d.label || d.key]),
        el('td', { class: 'num' }, [count(r.cases)]),
        el('td', { class: 'num' }, [count(r.open)]),
        rate(r.response_rate),
        rate(r.resolution_rate),
        rate(r.satisfaction_rate),
        el('td', { class: 'num' }, [count(r.breaches)]),
        el('td', { class: 'num' }, [count(r.at_risk)]),
      ]);
    }));
    $('departments-empty').hidden = rows.length > 0;
  }

  // Reported and resolved as paired bars per bucket, breaches as a line over them.
  function renderTrend(buckets) {
    const W = 1000, H = 180, L = 30, R = 10, T = 10, B = 24;
    const root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'aria-label': 'reported, resolved and breaches per bucket' });
    const n = buckets.length;
    const max = Math.max(1, ...buckets.map((b) => Math.max(b.reported || 0, b.resolved || 0, b.breaches || 0)));
    const plotW = W - L - R, plotH = H - T - B;
    const step = n > 0 ? plotW / n : plotW;
    const y = (v) => T + plotH - (v / max) * plotH;
    root.append(svg('line', { class: 'axis', x1: L, y1: T + plotH, x2: W - R, y2: T + plotH }));
    root.append(svg('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, String(max)));
    root.append(svg('text', { x: L - 4, y: T + plotH, 'text-anchor': 'end' }, '0'));
    // Daily buckets when they are a day or more apart (the API switches past 48 h).
    const daily = n > 1 && (Date.parse(buckets[1].start) - Date.parse(buckets[0].start)) >= 86400e3;
    const labelEvery = Math.max(1, Math.ceil(n / 12));
    const points = [];
    buckets.forEach((b, i) => {
      const x0 = L + i * step;
      const bw = Math.max(1, step * 0.38);
      const title = (beijing(b.start) || '') + ': ' + (b.reported || 0) + ' reported, ' +
        (b.resolved || 0) + ' resolved, ' + (b.breaches || 0) + ' breaches';
      const g = svg('g', { 'data-testid': 'trend-bucket' });
      g.append(svg('title', {}, title));
      g.append(svg('rect', { class: 'reported', x: x0 + step * 0.1, y: y(b.reported || 0), width: bw, height: T + plotH - y(b.reported || 0) }));
      g.append(svg('rect', { class: 'resolved', x: x0 + step * 0.1 + bw, y: y(b.resolved || 0), width: bw, height: T + plotH - y(b.resolved || 0) }));
      root.append(g);
      points.push([x0 + step / 2, y(b.breaches || 0)]);
      if (i % labelEvery === 0) {
        const full = beijing(b.start) || '';
        root.append(svg('text', { x: x0 + step / 2, y: H - 6, 'text-anchor': 'middle' },
          daily ? full.slice(5, 10) : full.slice(11, 16)));
      }
    });
    if (points.length > 0) {
      root.append(svg('polyline', { class: 'breaches', points: points.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' ') }));
      for (const [px, py] of points) root.append(svg('circle', { class: 'dot', cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5 }));
    }
    $('trend').replaceChildren(root);
  }

  // ── start ─────────────────────────────────────────────────────────────────
  function start() {
    takeTokenFromFragment();
    const select = $('window');
    select.value = windowChoice;
    select.addEventListener('change', () => {
      windowChoice = WINDOWS.includes(select.value) ? select.value : '24h';
      storageSet(WINDOW_KEY, windowChoice);
      window.clearTimeout(timer);
      poll();
    });
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('token-input');
      const t = input.value.trim();
      input.value = '';
      if (t === '') return;
      setToken(t);
      poll();
    });
    // Someone pasting a new #token=… into this tab's address bar.
    window.addEventListener('hashchange', () => { takeTokenFromFragment(); poll(); });
    window.setInterval(tick, 1000);
    poll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
