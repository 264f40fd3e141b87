// The stats dashboard for bureau staff: plain modern JS, no build step, under a content security policy of
// 'self' (no inline script or style; DOM text is set with textContent only, never innerHTML: hot terms come
// from what petitioners wrote). Figures come from the stats API (CONTRACT.md, Stats) with the operator key,
// sent as Authorization: Bearer and kept in sessionStorage, never in a URL. Charts are drawn by Apache ECharts
// (static/vendor/echarts.min.js) with the Sichuan city boundaries of ECharts 4.9's map data
// (static/vendor/sichuan.json), both bundled at install time; without them the page shows every figure but
// the charts, and says why.
'use strict';

(() => {
  const KEY_STORAGE = 'xinfang.stats.operatorKey';
  // Served by the console (`/dashboard/`, meta xinfang-session): the person's session cookie stands for the key,
  // and the console adds who asks; every URL here is relative to the page, so the same file works at both places.
  const SESSION = document.querySelector('meta[name="xinfang-session"]') !== null;
  const POLL_MS = 30_000;
  const TERMS_EVERY = 5; // hot terms (one request per category) every fifth poll, and when not for the filters
  const TZ = 'Asia/Shanghai';
  const LANGS = ['zh-CN', 'en'];
  const DATE = /^\d{4}-\d{2}-\d{2}$/;
  const FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif';
  const PALETTE = ['#b3261e', '#1f5f8b', '#d48806', '#389e0d', '#6f42c1', '#08979c', '#8c8c8c', '#c41d7f'];

  const $ = (id) => document.getElementById(id);

  const state = {
    lang: 'zh-CN',
    strings: {}, // by language: the parsed i18n/<lang>.json
    key: null,
    filters: { from: '', to: '', category: '', city: '' },
    volumeBy: 'channel',
    mapMode: 'volume',
    data: null, // the last answers of the API, so a language switch re-renders without fetching
    terms: null,
    polls: 0,
    controller: null,
    timer: null,
    charts: {},
    geo: null, // { names: {code: feature name} } once the Sichuan map is registered
    echarts: null,
    applied: null, // the language the page's fixed text is in
  };

  // --- text --------------------------------------------------------------------------------------------------

  const dict = () => state.strings[state.lang] || state.strings['zh-CN'] || { ui: {} };

  function t(key, vars) {
    let text = (dict().ui || {})[key];
    if (text === undefined) text = key;
    for (const [name, value] of Object.entries(vars || {})) text = text.split(`{${name}}`).join(String(value));
    return text;
  }

  function label(kind, code) {
    if (code === null || code === undefined || code === '') return t('unknown');
    const names = dict()[kind] || {};
    return names[code] || String(code);
  }

  const cityCodes = () => Object.keys((state.strings['zh-CN'] || {}).city || {});
  const categoryCodes = () => Object.keys((state.strings['zh-CN'] || {}).category || {});

  function number(value) {
    if (value === null || value === undefined) return t('kpi.none');
    return new Intl.NumberFormat(state.lang).format(value);
  }

  function percent(rate) {
    if (rate === null || rate === undefined) return t('kpi.none');
    return new Intl.NumberFormat(state.lang, {
      style: 'percent',
      minimumFractionDigits: 1,
      maximumFractionDigits: 1,
    }).format(rate);
  }

  function beijingTime(iso) {
    const parts = new Intl.DateTimeFormat('en-CA', {
      timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
      hourCycle: 'h23',
    }).formatToParts(new Date(iso));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  }

  async function loadStrings(lang) {
    if (state.strings[lang]) return;
    const response = await fetch(new URL(`static/i18n/${lang}.json`, document.baseURI), { cache: 'no-cache' });
    if (!response.ok) throw new Error(`i18n/${lang}.json: ${response.status}`);
    state.strings[lang] = await response.json();
  }

  function applyStrings() {
    document.documentElement.lang = state.lang;
    if (state.applied === state.lang || !state.strings[state.lang]) return; // or keep the page's own text
    state.applied = state.lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-aria-label]')) {
      el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
    }
    $('lang-switch').lang = state.lang === 'en' ? 'zh-CN' : 'en';
    fillSelect($('filter-category'), categoryCodes(), 'category');
    fillSelect($('filter-city'), cityCodes(), 'city');
  }

  function fillSelect(select, codes, kind) {
    const chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const code of codes) select.add(new Option(label(kind, code), code));
    select.value = codes.includes(chosen) ? chosen : '';
  }

  // --- dates (Beijing days as YYYY-MM-DD) --------------------------------------------------------------------

  function beijingToday() {
    return new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' })
      .format(new Date());
  }

  function addDays(day, days) {
    const [y, m, d] = day.split('-').map(Number);
    return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
  }

  function mondayOf(day) {
    const [y, m, d] = day.split('-').map(Number);
    const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7; // Monday 0
    return addDays(day, -weekday);
  }

  function daysBetween(from, to) {
    const days = [];
    for (let day = from; day <= to && days.length < 1200; day = addDays(day, 1)) days.push(day);
    return days;
  }

  // --- the filters, in the URL (never the key) ---------------------------------------------------------------

  function defaultFilters() {
    const to = beijingToday();
    return { from: addDays(to, -29), to, category: '', city: '' }; // the API's own default period
  }

  function readUrl() {
    const params = new URLSearchParams(location.search);
    const lang = params.get('lang');
    if (LANGS.includes(lang)) state.lang = lang;
    else if (LANGS.includes(document.documentElement.lang)) state.lang = document.documentElement.lang;
    const f = defaultFilters();
    const from = params.get('from');
    const to = params.get('to');
    if (DATE.test(from || '')) f.from = from;
    if (DATE.test(to || '')) f.to = to;
    if (/^[a-z-]{1,32}$/.test(params.get('category') || '')) f.category = params.get('category');
    if (/^51\d{2}$/.test(params.get('city') || '')) f.city = params.get('city');
    state.filters = f;
  }

  function writeUrl() {
    const params = new URLSearchParams();
    if (state.lang !== 'zh-CN') params.set('lang', state.lang);
    const f = state.filters;
    const d = defaultFilters();
    if (f.from !== d.from || f.to !== d.to) {
      params.set('from', f.from);
      params.set('to', f.to);
    }
    if (f.category) params.set('category', f.category);
    if (f.city) params.set('city', f.city);
    const query = params.toString();
    history.replaceState(null, '', query ? `?${query}` : location.pathname);
  }

  function showFilters() {
    const f = state.filters;
    $('filter-from').value = f.from;
    $('filter-to').value = f.to;
    $('filter-category').value = categoryCodes().includes(f.category) ? f.category : '';
    $('filter-city').value = cityCodes().includes(f.city) ? f.city : '';
    f.category = $('filter-category').value;
    f.city = $('filter-city').value;
    $('filter-from').max = f.to;
    $('filter-to').min = f.from;
  }

  function readFilters() {
    const from = $('filter-from').value;
    const to = $('filter-to').value;
    if (!DATE.test(from) || !DATE.test(to) || from > to) return false;
    state.filters = { from, to, category: $('filter-category').value, city: $('filter-city').value };
    $('filter-from').max = to;
    $('filter-to').min = from;
    return true;
  }

  // --- the API -----------------------------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, params, signal) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== '' && value !== null && value !== undefined) url.searchParams.set(name, value);
    }
    const response = await fetch(url, {
      headers: SESSION ? { Accept: 'application/json' } : { Authorization: `Bearer ${state.key}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: SESSION ? 'same-origin' : 'omit',
      signal,
    });
    if (response.status === 401) throw new Unauthorized();
    if (!response.ok) {
      let detail = '';
      try {
        const body = await response.json();
        detail = typeof body.detail === 'string' ? body.detail : '';
      } catch (_) {
        /* not JSON */
      }
      throw new Error(`${url.pathname}: ${response.status} ${detail}`.trim());
    }
    return response.json();
  }

  async function fetchAll(signal, withTerms) {
    const f = state.filters;
    const today = beijingToday();
    const monday = mondayOf(today);
    // KPI tiles: by the one dimension filtered on (the API filters no other way), else over every channel.
    const kpiBy = f.category ? 'category' : f.city ? 'region' : 'channel';
    const summary = (from, to, groupBy) => api('v1/stats/summary', { group_by: groupBy, from, to }, signal);
    const period = (groupBy) => summary(f.from, f.to, groupBy);
    const days = daysBetween(f.from, f.to).length;
    const interval = days <= 2 ? 'hour' : 'day';
    const [todayRows, weekRows, periodRows, regionRows, series, units, alerts] = await Promise.all([
      summary(today, today, kpiBy),
      summary(monday, today, kpiBy),
      kpiBy === 'region' ? null : period(kpiBy),
      period('region'),
      api('v1/stats/timeseries', {
        metric: 'registered', interval, from: f.from, to: f.to, group_by: state.volumeBy,
      }, signal),
      api('v1/stats/units', { from: f.from, to: f.to, limit: 20 }, signal),
      api('v1/stats/alerts', { state: 'open' }, signal),
    ]);
    const data = {
      filters: { ...f },
      today,
      monday,
      kpiBy,
      todayRows: todayRows.rows,
      weekRows: weekRows.rows,
      periodRows: (periodRows || regionRows).rows,
      regionRows: regionRows.rows,
      interval,
      volumeBy: state.volumeBy,
      series: series.series,
      units: units.units,
      alerts,
    };
    let terms = null;
    if (withTerms) {
      const categories = f.category ? [f.category] : categoryCodes();
      const answers = await Promise.all(categories.map((category) => api('v1/stats/hot-terms', {
        window: 'P7D', category, region: f.city, top: f.category ? 15 : 6,
      }, signal)));
      terms = { filters: { ...f }, lists: categories.map((category, i) => ({ category, terms: answers[i].terms })) };
    }
    return { data, terms };
  }

  // --- refreshing --------------------------------------------------------------------------------------------

  function termsCurrent() {
    const had = state.terms && state.terms.filters;
    return Boolean(had) && had.category === state.filters.category && had.city === state.filters.city;
  }

  async function refresh() {
    if (!state.key) {
      showSignin(false);
      return;
    }
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    // Terms are fetched whenever those in hand are not for the current category and city (the only filters
    // they depend on), not only by a filter change's refresh: a newer refresh (a poll, a switch) aborts it.
    const withTerms = !termsCurrent() || state.polls % TERMS_EVERY === 0;
    state.polls += 1;
    setStatus(t('status.loading'));
    try {
      const answer = await fetchAll(controller.signal, withTerms);
      if (controller !== state.controller) return;
      state.data = answer.data;
      if (answer.terms) state.terms = answer.terms;
      $('error-note').hidden = true;
      render();
      const now = new Intl.DateTimeFormat(state.lang, { timeZone: TZ, timeStyle: 'medium', hourCycle: 'h23' })
        .format(new Date());
      setStatus(t('status.updated', { time: now }));
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof Unauthorized) {
        if (SESSION) {
          location.assign(new URL('../', document.baseURI)); // the session ended: the console's sign-in
          return;
        }
        signOut(true);
        return;
      }
      const offline = error instanceof TypeError; // fetch's network failure
      const message = offline ? t('status.offline', { seconds: POLL_MS / 1000 }) : t('status.error', {
        error: error.message,
      });
      $('error-note').textContent = message;
      $('error-note').hidden = false;
      setStatus('');
    } finally {
      if (controller === state.controller) state.controller = null;
    }
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  function startPolling() {
    if (state.timer) clearInterval(state.timer); // the refresh under way goes on
    state.timer = setInterval(() => {
      if (!document.hidden) refresh();
    }, POLL_MS);
  }

  function stopPolling() {
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    if (state.controller) state.controller.abort();
    state.controller = null;
  }

  // --- sign-in -----------------------------------------------------------------------------------------------

  function showSignin(rejected) {
    stopPolling();
    $('dashboard').hidden = true;
    $('signout').hidden = true;
    $('signin-panel').hidden = false;
    $('signin-error').hidden = !rejected;
    $('signin-key').value = '';
    $('signin-key').focus();
  }

  function showDashboard() {
    $('signin-panel').hidden = true;
    $('dashboard').hidden = false;
    $('signout').hidden = SESSION; // in the console, signing out is the console's
    for (const c of Object.values(state.charts)) c.resize();
    refresh();
    startPolling();
  }

  function signOut(rejected) {
    state.key = null;
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled */
    }
    state.data = null;
    state.terms = null;
    showSignin(rejected);
  }

  function signIn(event) {
    event.preventDefault();
    const key = $('signin-key').value.trim();
    $('signin-key').value = '';
    if (!key) return;
    state.key = key;
    try {
      sessionStorage.setItem(KEY_STORAGE, key);
    } catch (_) {
      /* storage disabled: the key lasts as long as the page */
    }
    showDashboard();
  }

  // --- rendering ---------------------------------------------------------------------------------------------

  function render() {
    applyStrings();
    if (!state.data) return;
    renderKpis();
    renderScopes();
    renderVolume();
    renderMap();
    renderCityTable();
    renderUnits();
    renderAlerts();
    renderTerms();
  }

  function totals(rows, key) {
    // Rows of one dimension: the one row of `key`, or (no key) all rows added up. A row's on-time count is
    // its rate times its concluded (the API rounds the rate to 4 places: exact below 10,000 concluded).
    const chosen = key === null ? rows : rows.filter((r) => r.key === key);
    const sum = { registered: 0, concluded: 0, overdue: 0, onTime: 0 };
    for (const r of chosen) {
      sum.registered += r.registered;
      sum.concluded += r.concluded;
      sum.overdue += r.overdue;
      if (r.on_time_rate !== null) sum.onTime += Math.round(r.on_time_rate * r.concluded);
    }
    sum.rate = chosen.length === 1 ? chosen[0].on_time_rate : sum.concluded ? sum.onTime / sum.concluded : null;
    return sum;
  }

  function setKpi(id, value, note) {
    const tile = $(id);
    tile.querySelector('.kpi-value').textContent = value;
    tile.querySelector('.kpi-note').textContent = note;
  }

  function renderKpis() {
    const d = state.data;
    const key = d.kpiBy === 'channel' ? null : d.kpiBy === 'category' ? d.filters.category : d.filters.city;
    const today = totals(d.todayRows, key);
    const week = totals(d.weekRows, key);
    const period = totals(d.periodRows, key);
    setKpi('kpi-today', number(today.registered), t('kpi.today.note', { date: d.today }));
    setKpi('kpi-week', number(week.registered), t('kpi.week.note', { from: d.monday, to: d.today }));
    setKpi('kpi-on-time', percent(period.rate), t('kpi.onTime.note', { concluded: number(period.concluded) }));
    setKpi('kpi-overdue', number(period.overdue), t('kpi.overdue.note'));
    $('kpi-overdue').classList.toggle('kpi-alarm', period.overdue > 0);
  }

  function scopeNote(id, unapplied) {
    const el = $(id);
    const names = unapplied.filter(Boolean);
    el.hidden = names.length === 0;
    el.textContent = names.length ? t('note.unfiltered', { filters: names.join(t('note.and')) }) : '';
  }

  function renderScopes() {
    const f = state.data.filters;
    const category = f.category ? t('filters.category') : null;
    const city = f.city ? t('filters.city') : null;
    scopeNote('kpi-scope', f.category && f.city ? [city] : []);
    scopeNote('volume-scope', [category, city]);
    scopeNote('map-scope', [category]);
    scopeNote('units-scope', [category, city]);
  }

  function chart(id) {
    if (!state.echarts) return null;
    let c = state.charts[id];
    if (!c) {
      c = state.echarts.init($(id), null, { renderer: 'canvas' });
      state.charts[id] = c;
      if (id === 'map-chart') c.on('click', (params) => toggleCity(params.data && params.data.code));
    }
    return c;
  }

  const baseOption = () => ({
    animation: false,
    color: PALETTE,
    textStyle: { fontFamily: FONT },
  });

  function renderVolume() {
    const c = chart('volume-chart');
    if (!c) return;
    const d = state.data;
    const hourly = d.interval === 'hour';
    const slots = [];
    for (const day of daysBetween(d.filters.from, d.filters.to)) {
      if (!hourly) slots.push(day);
      else for (let h = 0; h < 24; h += 1) slots.push(`${day}T${String(h).padStart(2, '0')}`);
    }
    const index = new Map(slots.map((s, i) => [s, i]));
    const kind = d.volumeBy === 'office' ? 'office' : 'channel';
    const series = d.series.map((s) => {
      const values = new Array(slots.length).fill(0);
      for (const p of s.points) {
        const i = index.get(p.t.slice(0, hourly ? 13 : 10));
        if (i !== undefined) values[i] += p.value;
      }
      return {
        name: label(kind, s.key),
        code: s.key,
        type: 'bar',
        stack: 'registered',
        data: values,
        emphasis: { focus: 'series' },
        barMaxWidth: 28,
      };
    });
    c.setOption({
      ...baseOption(),
      tooltip: { trigger: 'axis', renderMode: 'richText', axisPointer: { type: 'shadow' } },
      legend: { type: 'scroll', top: 0 },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: {
        type: 'category',
        data: slots.map((s) => (hourly ? `${s.slice(5, 10)} ${s.slice(11)}:00` : s.slice(5))),
      },
      yAxis: { type: 'value', minInterval: 1 },
      series,
    }, { notMerge: true });
  }

  function cityFigures() {
    const d = state.data;
    const byCode = new Map(d.regionRows.map((r) => [r.key, r]));
    const alerts = new Map();
    for (const a of d.alerts) {
      if (a.region_code) {
        const code = String(a.region_code).slice(0, 4);
        alerts.set(code, (alerts.get(code) || 0) + 1);
      }
    }
    return cityCodes().map((code) => {
      const r = byCode.get(code);
      return {
        code,
        registered: r ? r.registered : 0,
        overdue: r ? r.overdue : 0,
        rate: r ? r.on_time_rate : null,
        alerts: alerts.get(code) || 0,
      };
    });
  }

  function renderMap() {
    const c = state.geo ? chart('map-chart') : null;
    if (!c) return;
    const figures = cityFigures();
    const surge = state.mapMode === 'surge';
    const nameMap = Object.fromEntries(Object.entries(state.geo.names).map(([code, name]) => [name, label('city', code)]));
    const max = Math.max(1, ...figures.map((f) => f.registered));
    const visualMap = surge
      ? {
        type: 'piecewise',
        left: 8,
        bottom: 8,
        pieces: [
          { value: 0, label: t('none'), color: '#e6ebf0' },
          { min: 1, label: t('alert.open'), color: '#d4380d' },
        ],
      }
      : {
        type: 'continuous',
        min: 0,
        max,
        left: 8,
        bottom: 8,
        calculable: false,
        text: [number(max), '0'],
        inRange: { color: ['#f6ece9', '#e8a598', '#b3261e'] },
      };
    c.setOption({
      ...baseOption(),
      tooltip: {
        trigger: 'item',
        renderMode: 'richText',
        formatter: (p) => {
          const f = p.data;
          if (!f) return p.name;
          return surge ? `${p.name}\n${t('col.alerts')}: ${number(f.alerts)}`
            : `${p.name}\n${t('col.registered')}: ${number(f.registered)}\n${t('col.overdue')}: ${number(f.overdue)}`;
        },
      },
      visualMap,
      series: [{
        type: 'map',
        map: 'sichuan',
        nameMap,
        roam: false,
        layoutCenter: ['50%', '50%'],
        layoutSize: '98%',
        selectedMode: 'single',
        label: { show: true, fontSize: 10, color: '#333' },
        emphasis: { label: { show: true }, itemStyle: { areaColor: '#f0c14b' } },
        select: { itemStyle: { areaColor: '#f0c14b', borderColor: '#333', borderWidth: 1.5 } },
        data: figures.map((f) => ({
          name: label('city', f.code),
          code: f.code,
          value: surge ? f.alerts : f.registered,
          registered: f.registered,
          overdue: f.overdue,
          alerts: f.alerts,
          selected: f.code === state.data.filters.city,
        })),
      }],
    }, { notMerge: true });
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function fillTable(table, rows, emptyText, columns) {
    const body = table.tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow();
      const td = cell(tr, emptyText, 'empty');
      td.colSpan = columns;
      return [];
    }
    return rows.map(() => body.insertRow());
  }

  function renderCityTable() {
    const figures = cityFigures().sort((a, b) => b.registered - a.registered || a.code.localeCompare(b.code));
    const rows = fillTable($('city-table'), figures, t('empty'), 5);
    figures.forEach((f, i) => {
      const tr = rows[i];
      tr.dataset.code = f.code;
      if (f.code === state.data.filters.city) tr.classList.add('selected');
      cell(tr, label('city', f.code));
      cell(tr, number(f.registered), 'num');
      cell(tr, number(f.overdue), 'num');
      cell(tr, percent(f.rate), 'num');
      cell(tr, number(f.alerts), f.alerts ? 'num alarm' : 'num');
    });
  }

  function renderUnits() {
    const units = state.data.units;
    const rows = fillTable($('units-table'), units, t('empty'), 6);
    units.forEach((u, i) => {
      const tr = rows[i];
      tr.dataset.unit = u.unit;
      cell(tr, number(i + 1), 'num');
      cell(tr, label('unit', u.unit));
      cell(tr, number(u.transferred), 'num');
      cell(tr, percent(u.on_time_rate), 'num');
      cell(tr, number(u.overdue), u.overdue ? 'num alarm' : 'num');
      cell(tr, number(u.open), 'num');
    });
  }

  function renderAlerts() {
    const alerts = state.data.alerts;
    const rows = fillTable($('alerts-table'), alerts, t('empty.alerts'), 5);
    alerts.forEach((a, i) => {
      const tr = rows[i];
      tr.dataset.alert = a.alert_id;
      const subject = a.region_code ? label('city', String(a.region_code).slice(0, 4)) : label('category', a.category);
      cell(tr, subject);
      cell(tr, t(`window.${a.window}`) === `window.${a.window}` ? a.window : t(`window.${a.window}`));
      cell(tr, number(a.observed), 'num');
      cell(tr, new Intl.NumberFormat(state.lang, { maximumFractionDigits: 1 }).format(a.baseline), 'num');
      cell(tr, beijingTime(a.opened_at));
    });
  }

  function renderTerms() {
    const box = $('terms');
    box.replaceChildren();
    const lists = state.terms ? state.terms.lists.filter((l) => l.terms.length) : [];
    if (!lists.length) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = t('empty.terms');
      box.append(p);
      return;
    }
    for (const list of lists) {
      const card = document.createElement('article');
      card.className = 'terms-card';
      card.dataset.category = list.category;
      const h = document.createElement('h3');
      h.textContent = label('category', list.category);
      const ol = document.createElement('ol');
      for (const term of list.terms) {
        const li = document.createElement('li');
        const word = document.createElement('span');
        word.className = 'term';
        word.textContent = term.term;
        const count = document.createElement('span');
        count.className = 'term-count';
        count.textContent = number(term.count);
        li.append(word, count);
        ol.append(li);
      }
      card.append(h, ol);
      box.append(card);
    }
  }

  // --- interaction -------------------------------------------------------------------------------------------

  function filtersChanged() {
    if (!readFilters()) return;
    writeUrl();
    refresh();
  }

  function toggleCity(code) {
    if (!code) return;
    $('filter-city').value = $('filter-city').value === code ? '' : code;
    filtersChanged();
  }

  async function switchLanguage() {
    const lang = state.lang === 'en' ? 'zh-CN' : 'en';
    try {
      await loadStrings(lang);
    } catch (error) {
      $('error-note').textContent = error.message;
      $('error-note').hidden = false;
      return;
    }
    state.lang = lang;
    writeUrl();
    render();
    if (!$('dashboard').hidden) refresh();
  }

  async function loadCharts() {
    if (!window.echarts) {
      $('vendor-note').hidden = false;
      $('vendor-note').textContent = t('note.vendor');
      document.body.classList.add('no-charts');
      $('city-details').open = true; // the cities' figures, without the map
      return;
    }
    state.echarts = window.echarts;
    try {
      const response = await fetch(new URL('static/vendor/sichuan.json', document.baseURI));
      if (!response.ok) throw new Error(String(response.status));
      const geo = await response.json();
      // ECharts 4.9's map data: features with id "510100" and properties.name "成都市", the coordinates
      // UTF8Encoding-compressed (registerMap decodes them).
      const names = {};
      for (const feature of geo.features || []) names[String(feature.id).slice(0, 4)] = feature.properties.name;
      state.echarts.registerMap('sichuan', geo);
      state.geo = { names };
    } catch (_) {
      $('map-note').hidden = false;
      document.body.classList.add('no-map');
      $('city-details').open = true;
    }
  }

  async function start() {
    readUrl();
    try {
      await Promise.all([...new Set(['zh-CN', state.lang])].map(loadStrings)); // zh-CN: the codes' list
    } catch (error) {
      $('error-note').textContent = error.message;
      $('error-note').hidden = false;
    }
    applyStrings();
    showFilters();
    writeUrl();
    await loadCharts();

    $('signin').addEventListener('submit', signIn);
    $('signout').addEventListener('click', () => signOut(false));
    $('lang-switch').addEventListener('click', switchLanguage);
    $('filters').addEventListener('change', filtersChanged);
    $('filters').addEventListener('submit', (event) => event.preventDefault());
    $('filters').addEventListener('reset', (event) => {
      event.preventDefault();
      state.filters = defaultFilters();
      showFilters();
      filtersChanged();
    });
    for (const input of document.querySelectorAll('input[name="volume-by"]')) {
      input.addEventListener('change', () => {
        state.volumeBy = input.value;
        refresh();
      });
    }
    for (const input of document.querySelectorAll('input[name="map-mode"]')) {
      input.addEventListener('change', () => {
        state.mapMode = input.value;
        if (state.data) renderMap();
      });
    }
    window.addEventListener('resize', () => {
      for (const c of Object.values(state.charts)) c.resize();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && state.key && state.timer) refresh();
    });

    if (SESSION) {
      state.key = 'session'; // a marker: the cookie goes with every request, no key is ever in the page
      $('signout').hidden = true;
    } else {
      try {
        state.key = sessionStorage.getItem(KEY_STORAGE);
      } catch (_) {
        state.key = null;
      }
    }
    if (state.key) showDashboard();
    else showSignin(false);
  }

  start();
})();
