// Hospital Hub qc task board: a doctor's tasks, live over the WebSocket /ws/qc/tasks, plus a chart of the statistics.
// Plain browser JavaScript, no build step, no external resources.
(function () {
  'use strict';

  const params = new URLSearchParams(location.search);
  const doctor = params.get('doctor') || sessionStorage.getItem('hubDoctor');
  const key = params.get('key') || sessionStorage.getItem('hubKey');
  const hospital = params.get('hospital');
  const days = Number(params.get('days') || 30);
  const CLOSED = new Set(['COMPLETED_ON_TIME', 'COMPLETED_LATE', 'CANCELLED']);
  const SVG = 'http://www.w3.org/2000/svg';

  const tasks = new Map(); // task id -> task
  let cursor = null;       // last qc_task_event id received
  let retry = 500;
  let statsTimer = null;

  const $ = (id) => document.getElementById(id);

  if (!doctor || !key) {
    const form = $('login');
    form.hidden = false;
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      sessionStorage.setItem('hubDoctor', form.doctor.value);
      sessionStorage.setItem('hubKey', form.key.value);
      location.search = '?doctor=' + encodeURIComponent(form.doctor.value);
    });
    return;
  }
  $('who').textContent = '· ' + doctor;

  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = !msg;
  }

  async function api(path) {
    const r = await fetch(path, { headers: { 'X-Api-Key': key, Accept: 'application/json' } });
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (ignored) { /* not JSON */ }
      throw new Error(path.split('?')[0] + ': ' + msg);
    }
    return r.json();
  }

  // ---- Tasks ----------------------------------------------------------------------------------------------------------

  async function loadTasks() {
    let q = '/api/v1/qc/tasks?limit=500&doctor=' + encodeURIComponent(doctor);
    if (hospital) q += '&hospital=' + encodeURIComponent(hospital);
    const page = await api(q);
    for (const t of page.items) {
      tasks.set(t.id, { id: t.id, documentType: t.documentType, rule: t.rule, visitId: t.visitId, patientId: t.patientId,
        dueAt: t.dueAt, status: t.status, at: t.updatedAt });
    }
    render();
  }

  function apply(m) {
    const t = tasks.get(m.taskId) || { id: m.taskId };
    t.documentType = m.documentType || t.documentType;
    t.rule = m.rule || t.rule;
    t.visitId = m.visitId;
    t.patientId = m.patientId || t.patientId;
    if (m.dueAt) t.dueAt = m.dueAt;
    t.status = m.status;
    t.at = m.at;
    tasks.set(m.taskId, t);
    render();
    scheduleStats();
  }

  function span(ms) {
    let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm ' + s + 's';
  }

  function timeText(t) {
    if (CLOSED.has(t.status)) return t.status === 'CANCELLED' ? 'cancelled' : 'done';
    const left = Date.parse(t.dueAt) - Date.now();
    return left >= 0 ? span(left) + ' left' : span(left) + ' overdue';
  }

  function row(t) {
    const tr = document.createElement('tr');
    tr.dataset.task = t.id;
    const overdue = !CLOSED.has(t.status) && Date.parse(t.dueAt) < Date.now();
    tr.className = (CLOSED.has(t.status) ? 'closed ' : '') + (overdue ? 'OVERDUE' : t.status);
    const cells = [t.documentType, (t.patientId || '') + ' / ' + (t.visitId || ''), new Date(t.dueAt).toLocaleString(),
      timeText(t), t.status];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 3) td.className = 'left';
      if (i === 4) td.className = 'status';
      tr.appendChild(td);
    });
    const td = document.createElement('td');
    const a = document.createElement('a');
    a.href = '/api/v1/qc/tasks/' + encodeURIComponent(t.id);
    a.textContent = '#' + t.id;
    td.appendChild(a);
    tr.appendChild(td);
    return tr;
  }

  function render() {
    const list = [...tasks.values()].filter((t) => t.dueAt).sort((a, b) =>
      (CLOSED.has(a.status) - CLOSED.has(b.status)) || (Date.parse(a.dueAt) - Date.parse(b.dueAt)) || (a.id - b.id));
    const body = $('tasks').tBodies[0];
    body.replaceChildren(...list.map(row));
    $('empty').hidden = list.length > 0;
  }

  setInterval(() => {
    for (const tr of $('tasks').tBodies[0].rows) {
      const t = tasks.get(Number(tr.dataset.task));
      if (t) tr.querySelector('.left').textContent = timeText(t);
    }
  }, 1000);

  // ---- Push -----------------------------------------------------------------------------------------------------------

  function connect() {
    let url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/qc/tasks?doctor='
      + encodeURIComponent(doctor) + '&key=' + encodeURIComponent(key);
    if (hospital) url += '&hospital=' + encodeURIComponent(hospital);
    if (cursor !== null) url += '&cursor=' + cursor;
    const first = cursor === null;
    const ws = new WebSocket(url);
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'ready') {
        cursor = m.cursor;
        retry = 500;
        const c = $('conn');
        c.textContent = 'live';
        c.className = 'conn on';
        if (first) {
          // the snapshot is read after the push position is known: later changes arrive live (and re-apply harmlessly)
          loadTasks().then(() => showError('')).catch((err) => showError(err.message));
        }
      } else if (m.type === 'task-event') {
        cursor = m.id;
        apply(m);
      }
    };
    ws.onclose = () => {
      const c = $('conn');
      c.textContent = 'offline, reconnecting';
      c.className = 'conn off';
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  // ---- Statistics chart -----------------------------------------------------------------------------------------------

  function scheduleStats() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(() => loadStats().catch((err) => showError(err.message)), 1000);
  }

  async function loadStats() {
    const now = Date.now();
    const from = new Date(now - days * 86400000).toISOString();
    const to = new Date(now + days * 86400000).toISOString();
    let q = '/api/v1/qc/statistics?groupBy=department&from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to);
    if (hospital) q += '&hospital=' + encodeURIComponent(hospital);
    const report = await api(q);
    $('window').textContent = '(tasks due ' + from.slice(0, 10) + ' to ' + to.slice(0, 10) + ')';
    drawChart(report.rows);
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // One bar per department: its height is the task count, stacked on time / late / overdue open / open;
  // the label above it is the on-time rate.
  function drawChart(rows) {
    const parts = [['onTime', '#2e7d32', 'on time'], ['late', '#f9a825', 'late'], ['overdueOpen', '#c62828', 'overdue open'],
      ['open', '#90a4ae', 'open']];
    const w = 70, gap = 30, h = 200, top = 24, left = 40;
    const width = left + Math.max(rows.length, 1) * (w + gap) + 120;
    const svg = el('svg', { width, height: h + top + 50, role: 'img', 'aria-label': 'tasks per department' });
    const max = Math.max(1, ...rows.map((r) => r.tasks));
    svg.appendChild(el('line', { x1: left - 4, y1: top + h, x2: width - 120, y2: top + h, stroke: '#444' }));
    svg.appendChild(el('text', { x: 0, y: top + 8 }, String(max)));
    svg.appendChild(el('text', { x: 0, y: top + h }, '0'));
    rows.forEach((r, i) => {
      const x = left + i * (w + gap);
      let y = top + h;
      for (const [field, color, label] of parts) {
        const bh = (r[field] || 0) / max * h;
        if (bh > 0) {
          y -= bh;
          const bar = el('rect', { x, y, width: w, height: bh, fill: color, class: 'bar ' + field });
          bar.appendChild(el('title', {}, r.group + ': ' + r[field] + ' ' + label));
          svg.appendChild(bar);
        }
      }
      const rate = r.onTimeRate === null || r.onTimeRate === undefined ? 'n/a' : Math.round(r.onTimeRate * 100) + '%';
      svg.appendChild(el('text', { x: x + w / 2, y: y - 4, 'text-anchor': 'middle', class: 'rate' }, rate));
      svg.appendChild(el('text', { x: x + w / 2, y: top + h + 16, 'text-anchor': 'middle', class: 'group' }, r.group || '(none)'));
      svg.appendChild(el('text', { x: x + w / 2, y: top + h + 30, 'text-anchor': 'middle' }, r.overdueOpen + ' overdue'));
    });
    parts.forEach(([, color, label], i) => {
      const lx = width - 110, ly = top + i * 18;
      svg.appendChild(el('rect', { x: lx, y: ly, width: 12, height: 12, fill: color }));
      svg.appendChild(el('text', { x: lx + 16, y: ly + 10 }, label));
    });
    $('chart').replaceChildren(svg);
  }

  connect();
  loadStats().catch((err) => showError(err.message));
})();
