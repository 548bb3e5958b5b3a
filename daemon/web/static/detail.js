// One track: waveform with playhead, transport, A/B between a job's variations, rating,
// favourite, tags, rename, downloads, prompt, lyrics, parameters and lineage.

import { API, call, get, query, audioUrl } from './api.js';
import { Waveform, clock } from './player.js';

const LETTERS = 'ABCDEFGHIJKLMNOP';

export class Detail {
  /** `player`: the page's Player; `onChanged(track)`: a track was edited here; `onTag(tag)`: filter
   * the library by a tag; `onError(err)`: the daemon refused something. */
  constructor(root, player, { onChanged, onTag, onOpen, onError }) {
    this.root = root;
    this.player = player;
    this.onChanged = onChanged;
    this.onTag = onTag;
    this.onOpen = onOpen;
    this.onError = onError;
    this.track = null;
    this.variations = [];  // ids of the shown track's job's tracks, in index order
    this.cache = new Map();  // id -> track with peaks
    const $ = (s) => root.querySelector(s);
    this.el = {
      empty: $('.empty'), body: $('.track'), title: $('#title'), fav: $('#fav'), meta: $('#meta'),
      wave: $('#wave'), play: $('#play'), time: $('#time'), ab: $('#ab'), stars: $('#stars'),
      tags: $('#tags'), tagForm: $('#tag-add'), tagInput: $('#tag-input'), wav: $('#dl-wav'),
      flac: $('#dl-flac'), prompt: $('#prompt'), lyricsBox: $('#lyrics-box'), lyrics: $('#lyrics'),
      params: $('#params'), lineage: $('#lineage'),
    };
    this.wave = new Waveform(this.el.wave, (f) => this.seekFraction(f));
    for (let i = 1; i <= 5; i++) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'star';
      b.dataset.rating = String(i);
      b.setAttribute('aria-label', `rate ${i}`);
      b.textContent = '☆';
      this.el.stars.append(b);
    }
    this.el.stars.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-rating]');
      if (!b || !this.track) return;
      const r = Number(b.dataset.rating);
      this.edit({ rating: this.track.rating === r ? 0 : r });  // the same star again clears it
    });
    this.el.fav.addEventListener('click', () => this.track && this.edit({ favorite: !this.track.favorite }));
    this.el.title.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); this.el.title.blur(); }
      if (e.key === 'Escape') { this.el.title.value = this.track?.title || ''; this.el.title.blur(); }
    });
    this.el.title.addEventListener('change', () => {
      const t = this.el.title.value.trim();
      if (this.track && t && t !== this.track.title) this.edit({ title: t });
    });
    this.el.tagForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const tag = this.el.tagInput.value.trim();
      if (tag && this.track) this.edit({ tags_add: [tag] }).then((ok) => { if (ok) this.el.tagInput.value = ''; });
    });
    this.el.tags.addEventListener('click', (e) => {
      const x = e.target.closest('button[data-remove]');
      if (x && this.track) { this.edit({ tags_remove: [x.dataset.remove] }); return; }
      const chip = e.target.closest('button[data-tag]');
      if (chip) this.onTag(chip.dataset.tag);
    });
    this.el.play.addEventListener('click', () => this.togglePlay());
    this.el.ab.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-id]');
      if (b) this.switchVariation(b.dataset.id);
    });
    this.el.lineage.addEventListener('click', (e) => {
      const a = e.target.closest('a[data-id]');
      if (a) { e.preventDefault(); this.onOpen(a.dataset.id); }
    });
    const a = player.audio;
    for (const ev of ['play', 'pause', 'ended', 'loadedmetadata', 'seeked', 'emptied']) {
      a.addEventListener(ev, () => this.tick());
    }
    const frame = () => {
      if (!a.paused) { this.tick(); requestAnimationFrame(frame); }
    };
    a.addEventListener('playing', () => requestAnimationFrame(frame));
  }

  async fetchTrack(id) {
    if (!this.cache.has(id)) this.cache.set(id, await get(`${API}/tracks/${encodeURIComponent(id)}`));
    return this.cache.get(id);
  }

  /** Show track `id` (fetched with its peaks), its variations and its lineage. */
  async show(id) {
    let track;
    try {
      track = await this.fetchTrack(id);
    } catch (err) {
      this.onError(err);
      return;
    }
    this.render(track);
    this.loadVariations(track);
    this.loadLineage(track.id);
  }

  render(t) {
    const same = this.track?.id === t.id;
    this.track = t;
    this.el.empty.hidden = true;
    this.el.body.hidden = false;
    // An answer to another edit must not undo a title being typed.
    if (!(same && document.activeElement === this.el.title)) this.el.title.value = t.title || '';
    this.el.fav.textContent = t.favorite ? '♥' : '♡';
    this.el.fav.setAttribute('aria-pressed', String(!!t.favorite));
    this.el.fav.classList.toggle('on', !!t.favorite);
    const facts = [
      t.id, clock(t.duration),
      t.bpm ? `${Math.round(t.bpm)} BPM` : null, t.key,
      t.lufs !== null && t.lufs !== undefined ? `${t.lufs} LUFS` : null,
      `${t.sample_rate / 1000} kHz ${t.channels === 1 ? 'mono' : 'stereo'}`,
      new Date(t.created * 1000).toLocaleString(),
    ];
    this.el.meta.textContent = facts.filter(Boolean).join(' · ');
    for (const b of this.el.stars.children) {
      const on = Number(b.dataset.rating) <= t.rating;
      b.textContent = on ? '★' : '☆';
      b.classList.toggle('on', on);
    }
    this.el.tags.replaceChildren(...t.tags.map((tag) => {
      const chip = document.createElement('span');
      chip.className = 'tag';
      const name = document.createElement('button');
      name.type = 'button';
      name.dataset.tag = tag;
      name.textContent = tag;
      name.title = 'show tracks with this tag';
      const x = document.createElement('button');
      x.type = 'button';
      x.dataset.remove = tag;
      x.textContent = '×';
      x.setAttribute('aria-label', `remove tag ${tag}`);
      chip.append(name, x);
      return chip;
    }));
    const base = (t.title || t.id).replace(/[\\/:*?"<>|]+/g, '_');
    this.el.wav.href = audioUrl(t.id);
    this.el.wav.download = `${base}.wav`;
    this.el.flac.href = `${API}/tracks/${encodeURIComponent(t.id)}/export${query({ format: 'flac' })}`;
    this.el.flac.download = `${base}.flac`;
    this.el.prompt.textContent = t.prompt;
    this.el.lyricsBox.hidden = !t.lyrics;
    this.el.lyrics.textContent = t.lyrics || '';
    const params = { model: t.model, family: t.family, seed: t.seed, ...t.params };
    if (t.language) params.language = t.language;
    this.el.params.replaceChildren(...Object.entries(params)
      .filter(([, v]) => v !== null && v !== undefined && v !== '')
      .flatMap(([k, v]) => [el('dt', k), el('dd', typeof v === 'object' ? JSON.stringify(v) : String(v))]));
    this.wave.setPeaks(t.peaks || []);
    this.renderVariations();
    this.tick();
  }

  async loadVariations(t) {
    if (t.job_id === null || t.job_id === undefined) { this.variations = [t.id]; this.renderVariations(); return; }
    try {
      const page = await get(`${API}/tracks${query({ job_id: t.job_id, sort: 'created', order: 'asc', limit: 16 })}`);
      if (this.track?.id !== t.id) return;
      this.variations = page.tracks.sort((a, b) => a.index - b.index).map((x) => x.id);
    } catch (err) {
      this.variations = [t.id];
    }
    this.renderVariations();
  }

  renderVariations() {
    const ids = this.variations.includes(this.track?.id) ? this.variations : [this.track?.id];
    if (ids.length < 2) { this.el.ab.replaceChildren(); return; }
    this.el.ab.replaceChildren(...ids.map((id, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.id = id;
      b.textContent = LETTERS[i] || String(i + 1);
      b.title = `variation ${id} (B switches at the same position)`;
      b.classList.toggle('on', id === this.track.id);
      return b;
    }));
  }

  async loadLineage(id) {
    let lin;
    try {
      lin = await get(`${API}/tracks/${encodeURIComponent(id)}/lineage`);
    } catch (err) {
      this.el.lineage.textContent = '—';
      return;
    }
    if (this.track?.id !== id) return;
    const parts = [];
    if (lin.source) {
      const s = lin.source;
      const p = el('p', `${s.operation || 'made'} from `);
      if (s.id && s.exists !== false) p.append(link(s.id, s.title || s.name || s.id));
      else p.append(s.name || 'an uploaded file', s.exists === false ? ' (deleted)' : '');
      if (s.part) p.append(` · part ${s.part}`);
      parts.push(p);
    }
    if (lin.derived && lin.derived.length) {
      const ul = el('ul', '');
      for (const d of lin.derived) {
        const li = el('li', '');
        li.append(link(d.id, d.title || d.id), ` · ${d.operation}${d.part ? ' ' + d.part : ''} · ${clock(d.duration)}`);
        ul.append(li);
      }
      parts.push(el('p', 'made from this track:'), ul);
    }
    if (!parts.length) parts.push(el('span', 'an original: no source, nothing made from it yet'));
    this.el.lineage.replaceChildren(...parts);
  }

  /** PATCH the shown track with `body`; true when the daemon took it. */
  async edit(body) {
    const id = this.track.id;
    try {
      const t = await call('PATCH', `${API}/tracks/${encodeURIComponent(id)}`, body);
      this.updated(t);
      return true;
    } catch (err) {
      this.onError(err);
      if (body.title !== undefined) this.el.title.value = this.track.title;
      return false;
    }
  }

  /** A track changed (our edit or a `track.updated` event): keep its peaks, redraw if shown. */
  updated(t) {
    const old = this.cache.get(t.id);
    if (old) this.cache.set(t.id, { ...t, peaks: t.peaks || old.peaks });
    if (this.track?.id === t.id) this.render(this.cache.get(t.id) || t);
    this.onChanged(t);
  }

  isCurrent() { return this.track !== null && this.player.trackId === this.track.id; }

  async togglePlay() {
    if (!this.track) return;
    const a = this.player.audio;
    try {
      if (this.isCurrent() && !a.paused) this.player.pause();
      else if (this.isCurrent()) await this.player.resume();
      else await this.player.playTrack(this.track.id, 0);
    } catch (err) {
      this.onError(err);
    }
  }

  async seekFraction(f) {
    if (!this.track) return;
    const seconds = f * (this.track.duration || 0);
    try {
      if (this.isCurrent()) this.player.seek(seconds);
      else await this.player.playTrack(this.track.id, seconds);
    } catch (err) {
      this.onError(err);
    }
  }

  seekBy(delta) {
    if (this.isCurrent()) this.player.seek(this.player.audio.currentTime + delta);
  }

  /** Show and hear variation `id` of the same job, at the playing position (A/B). */
  async switchVariation(id) {
    const playingThis = this.isCurrent();
    try {
      const t = await this.fetchTrack(id);
      this.render(t);
      if (playingThis) await this.player.switchTo(id);
      this.onOpen(id, { quiet: true });
    } catch (err) {
      this.onError(err);
    }
  }

  /** The next variation (the B key): A -> B -> ... -> A. */
  toggleVariation() {
    if (!this.track || this.variations.length < 2) return;
    const i = this.variations.indexOf(this.track.id);
    this.switchVariation(this.variations[(i + 1) % this.variations.length]);
  }

  tick() {
    const a = this.player.audio;
    const mine = this.isCurrent();
    const pos = mine ? a.currentTime : 0;
    const dur = this.track ? this.track.duration : 0;
    this.el.time.textContent = `${clock(pos)} / ${clock(dur)}`;
    const playing = mine && !a.paused;
    this.el.play.textContent = playing ? '❚❚' : '▶';
    this.el.play.setAttribute('aria-label', playing ? 'pause' : 'play');
    this.wave.setPosition(dur ? pos / dur : 0);
  }
}

function el(tag, text) {
  const e = document.createElement(tag);
  e.textContent = text;
  return e;
}

function link(id, text) {
  const a = document.createElement('a');
  a.href = `#track=${encodeURIComponent(id)}`;
  a.dataset.id = id;
  a.textContent = text;
  return a;
}
