// The library list: the daemon's full-text search, sort, favourite and tag filters, paged by cursor.

import { API, get, query } from './api.js';
import { clock } from './player.js';

const PAGE = 50;

export class Library {
  /** `onOpen(track)`: a row was chosen; `onError(err)`: the daemon refused a listing. */
  constructor(root, { onOpen, onError }) {
    this.el = {
      search: root.querySelector('#search'),
      sort: root.querySelector('#sort'),
      order: root.querySelector('#order'),
      fav: root.querySelector('#fav-only'),
      tag: root.querySelector('#tag-filter'),
      list: root.querySelector('#tracks'),
      more: root.querySelector('#more'),
      count: root.querySelector('#lib-count'),
    };
    this.onOpen = onOpen;
    this.onError = onError;
    this.tracks = new Map();  // id -> track, what the list shows
    this.selected = null;
    this.cursor = null;
    this.order = 'desc';
    this.seq = 0;  // answers to an older search are dropped
    let timer = null;
    const soon = () => { clearTimeout(timer); timer = setTimeout(() => this.reload(), 200); };
    this.el.search.addEventListener('input', soon);
    this.el.tag.addEventListener('input', soon);
    this.el.sort.addEventListener('change', () => this.reload());
    this.el.fav.addEventListener('change', () => this.reload());
    this.el.order.addEventListener('click', () => {
      this.order = this.order === 'desc' ? 'asc' : 'desc';
      this.el.order.textContent = this.order === 'desc' ? '↓' : '↑';
      this.reload();
    });
    root.querySelector('#filters').addEventListener('submit', (e) => { e.preventDefault(); this.reload(); });
    this.el.more.addEventListener('click', () => this.load(true));
    this.el.list.addEventListener('click', (e) => {
      const li = e.target.closest('li[data-id]');
      if (li) this.open(li.dataset.id);
    });
    this.el.list.addEventListener('keydown', (e) => {
      const li = e.target.closest('li[data-id]');
      if (!li) return;
      if (e.key === 'Enter') { e.preventDefault(); this.open(li.dataset.id); }
      if (e.key === 'ArrowDown' && li.nextElementSibling) { e.preventDefault(); li.nextElementSibling.focus(); }
      if (e.key === 'ArrowUp' && li.previousElementSibling) { e.preventDefault(); li.previousElementSibling.focus(); }
    });
  }

  /** The sort choices, from the OpenAPI document's enum for GET /api/v1/tracks?sort=. */
  setSorts(sorts) {
    const labels = { relevance: 'best match', created: 'newest', duration: 'length', bpm: 'BPM', rating: 'rating', title: 'title' };
    this.el.sort.replaceChildren(new Option('auto', ''), ...sorts.map((s) => new Option(labels[s] || s, s)));
  }

  /** Filter by `tag` (a tag chip was clicked). */
  filterTag(tag) {
    this.el.tag.value = tag;
    this.reload();
  }

  params() {
    const search = this.el.search.value.trim();
    let sort = this.el.sort.value;
    // auto: best match first while searching for words, else newest first.
    if (!sort) sort = /[\p{L}\p{N}]/u.test(search) ? 'relevance' : 'created';
    return {
      search, sort, order: this.order, limit: PAGE,
      favorite: this.el.fav.checked ? 'true' : '',
      tag: this.el.tag.value.trim(),
    };
  }

  async reload() { await this.load(false); }

  async load(more) {
    const seq = ++this.seq;
    const params = this.params();
    if (more && this.cursor) params.cursor = this.cursor;
    let page;
    try {
      page = await get(`${API}/tracks${query(params)}`);
    } catch (err) {
      if (seq === this.seq) this.onError(err);
      return;
    }
    if (seq !== this.seq) return;
    if (!more) {
      this.tracks.clear();
      this.el.list.replaceChildren();
      const n = page.total;
      // total_exact false: counting stopped at a bound, so more than n match ("10,000+ tracks")
      const plus = page.total_exact === false ? '+' : '';
      let text = n === null || n === undefined ? '' : `${n.toLocaleString('en')}${plus} track${n === 1 && !plus ? '' : 's'}`;
      if (page.stale) {  // the daemon's database is away: this is what it last saw (issue 21)
        const at = page.stale_since ? new Date(page.stale_since * 1000).toTimeString().slice(0, 5) : '?';
        text += `${text ? ' · ' : ''}database away — showing what this host last saw at ${at}`;
      }
      this.el.count.textContent = text;
      this.el.count.classList.toggle('stale', !!page.stale);
    }
    for (const t of page.tracks) {
      this.tracks.set(t.id, t);
      this.el.list.append(this.row(t));
    }
    this.cursor = page.next_cursor;
    this.el.more.hidden = !this.cursor;
  }

  row(t) {
    const li = document.createElement('li');
    li.dataset.id = t.id;
    li.tabIndex = 0;
    if (t.id === this.selected) li.classList.add('selected');
    const title = span('t-title', t.title || t.prompt);
    if (t.favorite) title.prepend(span('fav-mark', '♥ '));
    title.append(span('t-id', ` ${t.id}`));
    li.append(
      title,
      span('t-dur', clock(t.duration)),
      span('t-bpm', t.bpm ? `${Math.round(t.bpm)} bpm` : '–'),
      span('t-key', t.key || '–'),
      span('t-rating', t.rating ? '★'.repeat(t.rating) : ''),
    );
    li.title = `${t.id}: ${t.prompt}`;
    return li;
  }

  /** A track changed (an event or our own edit): redraw its row if it is listed. */
  update(t) {
    if (!this.tracks.has(t.id)) return;
    this.tracks.set(t.id, t);
    const old = this.el.list.querySelector(`li[data-id="${CSS.escape(t.id)}"]`);
    if (old) old.replaceWith(this.row(t));
  }

  remove(id) {
    this.tracks.delete(id);
    this.el.list.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
  }

  select(id) {
    this.selected = id;
    for (const li of this.el.list.querySelectorAll('li.selected')) li.classList.remove('selected');
    this.el.list.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.classList.add('selected');
  }

  open(id) {
    this.select(id);
    this.onOpen(id);
  }
}

export function span(cls, text) {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  return s;
}
