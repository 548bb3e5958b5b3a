// The queue, live: the daemon's active jobs, then the event stream (Server-Sent Events) moves them
// along: progress with ETA, post-processing, done, failed, cancelled. Cancel from here.

import { API, call, get } from './api.js';
import { clock } from './player.js';

/** Every event the page follows; EventSource needs one listener per event name. */
export const EVENTS = [
  'job.queued', 'job.started', 'job.progress', 'job.processing', 'job.finished', 'job.failed',
  'job.cancelled', 'job.moved', 'job.stream', 'job.pruned', 'track.added', 'track.updated',
  'track.deleted', 'model.loading', 'model.loaded', 'model.unloaded', 'model.crashed',
  'daemon.shutdown', 'daemon.disk', 'daemon.dropped', 'stream.gap',
];

/** Open the daemon's event stream and call `onEvent(name, data)` for each event; `onState(open)`
 * when the connection opens or drops (the browser reconnects by itself, resuming by event id). */
export function connectEvents(onEvent, onState) {
  const es = new EventSource(`${API}/events?topics=job,track,model,daemon`);  // same origin: the cookie goes along
  for (const name of EVENTS) {
    es.addEventListener(name, (m) => {
      let data = {};
      try { data = JSON.parse(m.data); } catch { /* keep {} */ }
      onEvent(name, data);
    });
  }
  es.addEventListener('open', () => onState(true));
  es.addEventListener('error', () => onState(false));
  return es;
}

export class Queue {
  constructor(list, empty, { onError }) {
    this.list = list;
    this.empty = empty;
    this.onError = onError;
    this.jobs = new Map();  // id -> job (active ones, and ended ones for a moment)
    list.addEventListener('click', async (e) => {
      const b = e.target.closest('button[data-cancel]');
      if (!b) return;
      b.disabled = true;
      try {
        await call('POST', `${API}/jobs/${b.dataset.cancel}/cancel`);
      } catch (err) {
        b.disabled = false;
        this.onError(err);
      }
    });
  }

  /** Read the active jobs again (at start, and after the event stream lost events). */
  async reload() {
    try {
      const { jobs } = await get(`${API}/jobs`);
      this.jobs = new Map(jobs.map((j) => [j.id, j]));
      this.render();
    } catch (err) {
      this.onError(err);
    }
  }

  /** Apply one event; true when the library should be read again. */
  event(name, d) {
    const j = this.jobs.get(d.id);
    switch (name) {
      case 'job.queued':
        this.jobs.set(d.id, d);
        this.render();
        return false;
      case 'job.started':
        if (j) { j.state = 'running'; j.progress = null; this.renderOne(j); }
        return false;
      case 'job.progress':
        if (j) {
          j.state = 'running';
          j.progress = { step: d.step, total: d.total, elapsed: d.elapsed, eta: d.eta };
          this.renderOne(j);
        }
        return false;
      case 'job.processing':
        if (j) { j.state = 'processing'; this.renderOne(j); }
        return false;
      case 'job.moved':
        if (j) { j.position = d.position; this.render(); }
        return false;
      case 'job.finished':
        this.end(d.id, 'done');
        return true;
      case 'job.cancelled':
        this.end(d.id, 'cancelled');
        return false;
      case 'job.failed':
        if (d.retrying) {
          if (j) { j.state = 'queued'; j.error = d.error; j.progress = null; this.renderOne(j); }
        } else {
          this.end(d.id, 'failed', d.error);
        }
        return false;
      default:
        return false;
    }
  }

  /** A job ended: show how for a few seconds, then drop it from the list. */
  end(id, state, error) {
    const j = this.jobs.get(id);
    if (!j) return;
    j.state = state;
    j.error = error || null;
    j.progress = null;
    this.renderOne(j);
    setTimeout(() => {
      if (this.jobs.get(id)?.state === state) {
        this.jobs.delete(id);
        this.render();
      }
    }, state === 'failed' ? 15000 : 4000);
  }

  render() {
    const order = { running: 0, processing: 0, queued: 1 };
    const jobs = [...this.jobs.values()].sort((a, b) =>
      (order[a.state] ?? -1) - (order[b.state] ?? -1) || (a.position ?? 0) - (b.position ?? 0) || a.id - b.id);
    this.list.replaceChildren(...jobs.map((j) => this.row(j)));
    this.empty.hidden = jobs.length > 0;
  }

  renderOne(j) {
    const old = this.list.querySelector(`li[data-job="${j.id}"]`);
    if (old) old.replaceWith(this.row(j));
    else this.render();
  }

  row(j) {
    const li = document.createElement('li');
    li.dataset.job = String(j.id);
    li.dataset.state = j.state;
    const head = document.createElement('div');
    head.className = 'q-head';
    const title = document.createElement('span');
    title.className = 'q-prompt';
    title.textContent = `#${j.id} ${j.prompt}`;
    title.title = j.prompt;
    const state = document.createElement('span');
    state.className = 'q-state';
    state.textContent = j.state;
    head.append(title, state);
    li.append(head);
    const p = j.progress;
    if (j.state === 'running' || j.state === 'processing') {
      const bar = document.createElement('progress');
      bar.max = 1;
      if (p && p.total) bar.value = Math.min(1, p.step / p.total);
      else if (j.state === 'processing') bar.value = 1;
      else bar.removeAttribute('value');  // indeterminate: loading the model
      li.append(bar);
    }
    const info = document.createElement('div');
    info.className = 'q-info small muted';
    const count = j.count > 1 ? `${j.count} × ` : '';
    const dur = j.params && j.params.duration ? clock(j.params.duration) : '';
    const bits = [count + dur];
    if (p && p.total) {
      bits.push(`${Math.round((100 * p.step) / p.total)}%`);
      bits.push(p.eta === null || p.eta === undefined ? 'ETA …' : `ETA ${clock(Math.ceil(p.eta))}`);
    }
    if (j.error) bits.push(j.error);
    info.textContent = bits.filter(Boolean).join(' · ');
    li.append(info);
    if (['queued', 'running', 'processing'].includes(j.state)) {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.cancel = String(j.id);
      b.className = 'cancel';
      b.textContent = 'Cancel';
      b.setAttribute('aria-label', `cancel job ${j.id}`);
      li.append(b);
    }
    return li;
  }
}
