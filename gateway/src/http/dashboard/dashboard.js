// Tether dashboard: polls the admin API (/api/overview, /api/queues) every
// two seconds, draws the tiles, two charts and the queue table, and redrives
// dead-letter queues. Plain DOM and <canvas>; no libraries, no build step.
'use strict';
(() => {
  const POLL_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000; // the charts show at most the last five minutes
  const MIN_WINDOW_MS = 60 * 1000; // and at least one, so a fresh page fills up quickly
  const AUTH_KEY = 'tether.dashboard.auth';
  const COLORS = { mqtt: '#0e9f6e', amqp: '#d97706', enq: '#2563eb', del: '#9333ea' };

  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat('en-US');

  let auth = sessionStorage.getItem(AUTH_KEY);
  let generation = 0; // bumped on sign-in and sign-out: answers to older polls are dropped
  let timer = null;
  let polling = false;
  let pollAgain = false;
  let lastTotals = null; // {t, enq, del}: the previous overview, for rates
  let samples = []; // {t, mqtt, amqp, enq, del} for the charts
  let queues = []; // the last /api/queues answer
  const rows = new Map(); // queue key -> {tr, cells, button}

  // ---- the admin API ----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function basic(user, password) {
    // btoa only takes Latin-1; encode UTF-8 first so any username works.
    const bytes = new TextEncoder().encode(user + ':' + password);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return 'Basic ' + btoa(bin);
  }

  async function api(path, method = 'GET', credential = auth) {
    let res;
    try {
      res = await fetch(path, {
        method,
        cache: 'no-store',
        credentials: 'omit',
        headers: {
          Authorization: credential || '',
          // Keeps the gateway from answering 401 with WWW-Authenticate, which
          // would make the browser open its own password dialog.
          'X-Requested-With': 'XMLHttpRequest',
          Accept: 'application/json',
        },
      });
    } catch (e) {
      throw new ApiError(0, 'unreachable', 'Cannot reach the gateway (' + e.message + ').');
    }
    const text = await res.text();
    let body = null;
    if (text) {
      try { body = JSON.parse(text); } catch (_) { body = null; }
    }
    if (!res.ok) {
      const message = body && body.message
        ? body.message
        : `${method} ${path} answered ${res.status} ${res.statusText}`.trim();
      throw new ApiError(res.status, (body && body.error) || 'http_' + res.status, message);
    }
    return body;
  }

  function queuePath(q, action) {
    return '/api/queues/' + encodeURIComponent(q.vhost) + '/' + encodeURIComponent(q.name) +
      (action ? '/' + action : '');
  }

  // ---- signing in and out -------------------------------------------------------

  function showLogin(message) {
    generation++;
    clearTimeout(timer);
    $('app').hidden = true;
    $('logout').hidden = true;
    $('login-wrap').hidden = false;
    setStatus('', '');
    const err = $('login-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('login-submit').disabled = false;
    (message && $('username').value ? $('password') : $('username')).focus();
  }

  function start() {
    generation++;
    lastTotals = null;
    samples = [];
    $('login-wrap').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    drawCharts();
    poll();
  }

  function refusedMessage(e) {
    if (e.status === 401) return 'The gateway refused this username or password (401).';
    if (e.status === 403) return 'This user may not use the admin API (403): it needs the administrator tag.';
    return e.message;
  }

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const credential = basic($('username').value, $('password').value);
    $('login-submit').disabled = true;
    try {
      await api('/api/overview', 'GET', credential);
    } catch (e) {
      showLogin(refusedMessage(e));
      return;
    }
    auth = credential;
    sessionStorage.setItem(AUTH_KEY, auth);
    $('password').value = '';
    start();
  });

  function signOut(message) {
    auth = null;
    sessionStorage.removeItem(AUTH_KEY);
    showLogin(message);
  }

  $('logout').addEventListener('click', () => signOut(''));

  // ---- polling --------------------------------------------------------------------

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  async function poll() {
    if (!auth) return;
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    const gen = generation;
    try {
      const kind = $('kind').value;
      const [overview, list] = await Promise.all([
        api('/api/overview'),
        api('/api/queues' + (kind ? '?kind=' + encodeURIComponent(kind) : '')),
      ]);
      if (gen !== generation) return;
      renderOverview(overview);
      queues = Array.isArray(list) ? list : [];
      renderQueues();
      $('banner').hidden = true;
      setStatus('live', 'live · updated ' + new Date().toLocaleTimeString('en-GB'));
    } catch (e) {
      if (gen !== generation) return;
      if (e.status === 401 || e.status === 403) {
        signOut(refusedMessage(e));
        return;
      }
      showBanner(e.message);
      setStatus('down', 'unreachable');
    } finally {
      polling = false;
      // A poll asked for while this one ran (a new sign-in, a kind change)
      // runs now; otherwise the next one in two seconds, unless signed out.
      if (pollAgain) schedule(0);
      else if (gen === generation) schedule(POLL_MS);
      pollAgain = false;
    }
  }

  function setStatus(cls, text) {
    const s = $('status');
    s.className = 'status ' + cls;
    s.textContent = text;
  }

  function showBanner(text) {
    const b = $('banner');
    b.textContent = text;
    b.hidden = false;
  }

  // ---- overview tiles and charts -------------------------------------------------

  function uptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    return `${m}m ${Math.floor(s % 60)}s`;
  }

  function renderOverview(o) {
    const c = o.connections || {};
    $('t-mqtt').textContent = fmt.format(c.mqtt || 0);
    $('t-amqp').textContent = fmt.format(c.amqp || 0);
    $('t-queues').textContent = fmt.format(o.queues || 0);
    $('t-ready').textContent = fmt.format(o.messages_ready || 0);
    $('t-inflight').textContent = fmt.format(o.messages_in_flight || 0);
    $('t-dead').textContent = fmt.format(o.dead_lettered_total || 0);
    $('t-dead').parentElement.classList.toggle('alert', (o.dead_lettered_total || 0) > 0);
    $('meta').textContent = `v${o.version} · up ${uptime(o.uptime_seconds || 0)}`;

    // Rates come from successive totals; a total that went down (a queue was
    // deleted) counts as no traffic rather than a negative rate.
    const now = Date.now();
    const totals = { t: now, enq: o.enqueued_total || 0, del: o.delivered_total || 0 };
    let enq = null, del = null;
    if (lastTotals && now > lastTotals.t) {
      const dt = (now - lastTotals.t) / 1000;
      enq = Math.max(0, totals.enq - lastTotals.enq) / dt;
      del = Math.max(0, totals.del - lastTotals.del) / dt;
    }
    lastTotals = totals;
    samples.push({ t: now, mqtt: c.mqtt || 0, amqp: c.amqp || 0, enq, del });
    while (samples.length && samples[0].t < now - WINDOW_MS - POLL_MS) samples.shift();
    drawCharts();
  }

  function drawCharts() {
    drawChart($('chart-connections'), [['mqtt', COLORS.mqtt], ['amqp', COLORS.amqp]], true);
    drawChart($('chart-rates'), [['enq', COLORS.enq], ['del', COLORS.del]], false);
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function compact(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  function ago(ms) {
    const s = Math.round(ms / 1000), m = Math.floor(s / 60);
    if (!m) return s + 's';
    return s % 60 ? `${m}m${s % 60}s` : m + 'm';
  }

  function drawChart(canvas, series, integer) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const left = 46, right = w - 8, top = 8, bottom = h - 20;
    const now = Date.now();
    const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, samples.length ? now - samples[0].t : 0));
    const x = (t) => right - (now - t) / span * (right - left);

    let max = 0;
    for (const s of samples) for (const [k] of series) if (s[k] != null) max = Math.max(max, s[k]);
    // Four grid steps; counts get whole-number steps.
    max = integer ? 4 * Math.max(1, Math.ceil(niceMax(max) / 4)) : niceMax(max);
    const y = (v) => bottom - v / max * (bottom - top);

    // Grid and axis labels.
    ctx.strokeStyle = '#e3e7ee';
    ctx.fillStyle = '#667085';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(right, yy);
      ctx.stroke();
      ctx.fillText(compact(v), left - 6, yy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const step = [10e3, 15e3, 30e3, 60e3].find((st) => span / st <= 6) || 60e3;
    for (let back = 0; back <= span; back += step) {
      const xx = Math.min(Math.max(x(now - back), left + 12), right - 12);
      ctx.fillText(back === 0 ? 'now' : '-' + ago(back), xx, bottom + 6);
    }

    const points = (k) => samples.filter((s) => s[k] != null && s.t >= now - span - POLL_MS);
    if (points(series[0][0]).length < 2) {
      ctx.textBaseline = 'middle';
      ctx.fillText('collecting data…', (left + right) / 2, (top + bottom) / 2);
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2, right - left, bottom - top + 4);
    ctx.clip();
    for (const [k, color] of series) {
      const pts = points(k);
      if (pts.length < 2) continue;
      ctx.beginPath();
      pts.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(s[k])) : ctx.moveTo(x(s.t), y(s[k]))));
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.stroke();
      ctx.lineTo(x(pts[pts.length - 1].t), bottom);
      ctx.lineTo(x(pts[0].t), bottom);
      ctx.closePath();
      ctx.globalAlpha = 0.07;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    ctx.restore();
  }

  window.addEventListener('resize', drawCharts);

  // ---- the queue table --------------------------------------------------------------

  const COLUMNS = ['name', 'kind', 'ready', 'in_flight', 'delayed', 'consumers', 'target', 'dead_lettered', 'in_rate', 'out_rate', 'action'];
  const NUMERIC = new Set(['ready', 'in_flight', 'delayed', 'consumers', 'dead_lettered', 'in_rate', 'out_rate']);

  const key = (q) => q.vhost + '\u0000' + q.name;
  const isDlq = (q) => Array.isArray(q.dead_letter_sources) && q.dead_letter_sources.length > 0;

  function rate(v) {
    if (!v) return '0';
    return v < 10 ? v.toFixed(1) : fmt.format(Math.round(v));
  }

  function makeRow(q) {
    const tr = document.createElement('tr');
    const cells = {};
    for (const c of COLUMNS) {
      const td = document.createElement('td');
      td.dataset.col = c;
      if (NUMERIC.has(c)) td.className = 'n';
      cells[c] = td;
      tr.appendChild(td);
    }
    cells.name.classList.add('name');
    cells.target.classList.add('target');
    cells.action.classList.add('act');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small danger redrive';
    button.textContent = 'Redrive';
    button.addEventListener('click', () => redrive(tr.queue, button));
    return { tr, cells, button };
  }

  function setNumber(td, v, hot) {
    const text = fmt.format(v || 0);
    if (td.textContent !== text) td.textContent = text;
    td.classList.toggle('zero', !v);
    td.classList.toggle('hot', !!hot && v > 0);
  }

  function updateRow(row, q) {
    const { tr, cells, button } = row;
    tr.queue = q;
    tr.dataset.queue = q.name;
    tr.dataset.vhost = q.vhost;
    const dlq = isDlq(q);
    tr.classList.toggle('dlq', dlq);

    const name = cells.name;
    name.textContent = '';
    if (q.vhost !== '/') {
      const v = document.createElement('span');
      v.className = 'vhost';
      v.textContent = q.vhost;
      name.appendChild(v);
    }
    name.appendChild(document.createTextNode(q.name));
    name.title = q.name;
    if (dlq) {
      const b = document.createElement('span');
      b.className = 'badge dlq';
      b.textContent = 'DLQ';
      b.title = 'Dead-letter queue of ' + q.dead_letter_sources.join(', ');
      name.appendChild(b);
    }
    cells.kind.innerHTML = '';
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = (q.kind || '') + (q.fifo ? ' fifo' : '');
    cells.kind.appendChild(kind);

    setNumber(cells.ready, q.messages, dlq);
    setNumber(cells.in_flight, q.messages_in_flight);
    setNumber(cells.delayed, q.messages_delayed);
    setNumber(cells.consumers, q.consumers);
    setNumber(cells.dead_lettered, q.stats && q.stats.dead_lettered, true);
    cells.target.textContent = q.dead_letter_target
      ? q.dead_letter_target + (q.max_receive_count ? ` after ${q.max_receive_count} receive${q.max_receive_count === 1 ? '' : 's'}` : '')
      : '';
    const rates = q.rates || {};
    cells.in_rate.textContent = rate(rates.enqueued_per_second);
    cells.out_rate.textContent = rate(rates.delivered_per_second);

    if (dlq) {
      if (!button.isConnected) cells.action.appendChild(button);
      const total = (q.messages || 0) + (q.messages_delayed || 0) + (q.messages_in_flight || 0);
      if (!button.busy) {
        button.disabled = total === 0;
        button.title = total === 0
          ? 'Nothing to redrive'
          : 'Move these messages back to ' + q.dead_letter_sources.join(', ');
      }
    } else if (button.isConnected) {
      button.remove();
    }
  }

  // Sorting: a click on a column heading sorts by it; a second click reverses.
  let sortKey = 'name';
  let sortDir = 1;
  const SORT_VALUE = {
    name: (q) => q.vhost + '\u0000' + q.name,
    kind: (q) => q.kind || '',
    ready: (q) => q.messages || 0,
    in_flight: (q) => q.messages_in_flight || 0,
    delayed: (q) => q.messages_delayed || 0,
    consumers: (q) => q.consumers || 0,
    target: (q) => q.dead_letter_target || '',
    dead_lettered: (q) => (q.stats && q.stats.dead_lettered) || 0,
    in_rate: (q) => (q.rates && q.rates.enqueued_per_second) || 0,
    out_rate: (q) => (q.rates && q.rates.delivered_per_second) || 0,
  };

  function compareQueues(a, b) {
    const va = SORT_VALUE[sortKey](a), vb = SORT_VALUE[sortKey](b);
    if (va < vb) return -sortDir;
    if (va > vb) return sortDir;
    return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
  }

  for (const th of document.querySelectorAll('#queues th[data-sort]')) {
    th.tabIndex = 0;
    th.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        th.click();
      }
    });
    th.addEventListener('click', () => {
      const k = th.dataset.sort;
      // Names sort A to Z first; numbers largest first.
      sortDir = k === sortKey ? -sortDir : (k === 'name' || k === 'kind' || k === 'target' ? 1 : -1);
      sortKey = k;
      for (const other of document.querySelectorAll('#queues th[data-sort]')) other.removeAttribute('aria-sort');
      th.setAttribute('aria-sort', sortDir === 1 ? 'ascending' : 'descending');
      renderQueues();
    });
  }

  function renderQueues() {
    const filter = $('filter').value.trim().toLowerCase();
    const shown = queues
      .filter((q) => !filter || q.name.toLowerCase().includes(filter))
      .sort(compareQueues);
    const tbody = $('queues').tBodies[0];
    const keep = new Set();
    const order = [];
    for (const q of shown) {
      const k = key(q);
      keep.add(k);
      let row = rows.get(k);
      if (!row) {
        row = makeRow(q);
        rows.set(k, row);
      }
      updateRow(row, q);
      order.push(row.tr);
    }
    for (const [k, row] of rows) {
      if (!keep.has(k)) {
        row.tr.remove();
        rows.delete(k);
      }
    }
    // Reorder only when needed: moving a row under the pointer can eat a click.
    const current = Array.from(tbody.children);
    if (current.length !== order.length || current.some((tr, i) => tr !== order[i])) {
      for (const tr of order) tbody.appendChild(tr);
    }
    $('empty').hidden = shown.length > 0;
    $('empty').textContent = queues.length ? 'No queue matches the filter.' : 'No queues yet.';
  }

  $('filter').addEventListener('input', renderQueues);
  $('kind').addEventListener('change', () => poll());

  // ---- redrive -------------------------------------------------------------------

  function confirmRedrive(q) {
    const dlg = $('confirm');
    const count = (q.messages || 0) + (q.messages_delayed || 0) + (q.messages_in_flight || 0);
    $('confirm-queue').textContent = q.name;
    $('confirm-text').textContent =
      `Move ${fmt.format(count)} message${count === 1 ? '' : 's'} from ${q.name} back to the queue they were ` +
      `dead-lettered from (${q.dead_letter_sources.join(', ')}).`;
    return new Promise((resolve) => {
      const done = (ok) => {
        $('confirm-ok').onclick = $('confirm-cancel').onclick = dlg.onclose = null;
        if (dlg.open) dlg.close();
        resolve(ok);
      };
      $('confirm-ok').onclick = () => done(true);
      $('confirm-cancel').onclick = () => done(false);
      dlg.onclose = () => done(false);
      dlg.showModal();
      $('confirm-ok').focus();
    });
  }

  async function redrive(q, button) {
    if (!q || !(await confirmRedrive(q))) return;
    button.busy = true;
    button.disabled = true;
    button.textContent = 'Redriving…';
    try {
      const r = await api(queuePath(q, 'redrive'), 'POST');
      const moved = (r && r.moved) || 0;
      toast(`Moved ${fmt.format(moved)} message${moved === 1 ? '' : 's'} from ${q.name} back to ${q.dead_letter_sources.join(', ')}.`);
    } catch (e) {
      if (e.status === 401) {
        signOut(refusedMessage(e));
        return;
      }
      toast(`Redrive of ${q.name} failed: ${e.message}`, true);
    } finally {
      button.busy = false;
      button.textContent = 'Redrive';
    }
    poll();
  }

  function toast(text, bad) {
    const t = document.createElement('div');
    t.className = 'toast' + (bad ? ' bad' : '');
    t.setAttribute('role', bad ? 'alert' : 'status');
    t.textContent = text;
    t.title = 'Click to dismiss';
    t.addEventListener('click', () => t.remove());
    $('toasts').appendChild(t);
    setTimeout(() => t.remove(), 15000);
  }

  // ---- start -----------------------------------------------------------------------

  if (auth) start();
  else showLogin('');
})();
