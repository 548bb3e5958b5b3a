// The page's player (one <audio> element) and the waveform it draws its playhead on.
//
// Other scripts (speaker.js: the tab as the TUI's and CLI's speaker) drive it through
//
//   window.dgxPlayer.playTrack(id, position = 0) -> Promise   load a library track, start at `position` s
//   window.dgxPlayer.stop()                                   pause and forget the track
//   window.dgxPlayer.pause() / .resume()
//   window.dgxPlayer.seek(seconds)
//   window.dgxPlayer.current() -> {trackId (also track_id), position, duration, paused, playing} or null
//   window.dgxPlayer.audio                                    the <audio> element itself
//
// and hear about it through window events:
//
//   'dgx:playing'  detail {trackId, position}   playback started or resumed
//   'dgx:paused'   detail {trackId, position}   paused, stopped or ended
//
// The page itself also dispatches 'dgx:play-request' (detail {trackId, position}) before it starts a
// track, so a speaker script can tell a user's click from a remote request.

import { audioUrl } from './api.js';

export class Player {
  constructor(audio) {
    this.audio = audio;
    this.trackId = null;
    audio.addEventListener('playing', () => this._emit('dgx:playing'));
    audio.addEventListener('pause', () => this._emit('dgx:paused'));
  }

  _emit(name) {
    if (this.trackId === null) return;
    window.dispatchEvent(new CustomEvent(name, { detail: { trackId: this.trackId, position: this.audio.currentTime } }));
  }

  /** Load track `id` (unless it is already loaded) and play it from `position` seconds. */
  async playTrack(id, position = 0) {
    const a = this.audio;
    if (this.trackId !== id) {
      this.trackId = id;
      a.src = audioUrl(id);
      a.load();
      await loaded(a);
    }
    if (position !== null && position !== undefined) a.currentTime = Math.max(0, Math.min(position, a.duration || position));
    await a.play();
  }

  /** Switch to track `id` at the same position, playing if it was playing (A/B comparison). */
  async switchTo(id) {
    if (id === this.trackId) return;
    const a = this.audio;
    const pos = a.currentTime;
    const wasPlaying = !a.paused;
    this.trackId = id;
    a.src = audioUrl(id);
    a.load();
    await loaded(a);
    a.currentTime = Math.min(pos, a.duration || pos);
    if (wasPlaying) await a.play();
  }

  pause() { this.audio.pause(); }
  async resume() { if (this.trackId !== null) await this.audio.play(); }

  stop() {
    this.audio.pause();
    this._emit('dgx:paused');
    this.trackId = null;
    this.audio.removeAttribute('src');
    this.audio.load();
  }

  seek(seconds) {
    const a = this.audio;
    a.currentTime = Math.max(0, Math.min(seconds, a.duration || seconds));
  }

  current() {
    if (this.trackId === null) return null;
    const a = this.audio;
    const playing = !a.paused && !a.ended;
    // Both spellings: speaker.js reports track_id and playing to the daemon as they are.
    return { trackId: this.trackId, track_id: this.trackId, position: a.currentTime, duration: a.duration || 0,
      paused: !playing, playing };
  }
}

/** Resolve once `audio` knows its duration (or reject with the media error). */
function loaded(audio) {
  if (audio.readyState >= 1) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => { cleanup(); resolve(); };
    const fail = () => { cleanup(); reject(new Error('the audio could not be loaded')); };
    const cleanup = () => {
      audio.removeEventListener('loadedmetadata', done);
      audio.removeEventListener('error', fail);
    };
    audio.addEventListener('loadedmetadata', done);
    audio.addEventListener('error', fail);
  });
}

/** A waveform from the daemon's stored peaks ([min, max] pairs, -1..1), with a playhead. */
export class Waveform {
  constructor(canvas, onSeek) {
    this.canvas = canvas;
    this.peaks = [];
    this.fraction = 0;
    this.onSeek = onSeek;
    canvas.addEventListener('click', (e) => {
      const r = canvas.getBoundingClientRect();
      if (r.width > 0) this.onSeek(Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)));
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setPeaks(peaks) {
    this.peaks = Array.isArray(peaks) ? peaks : [];
    this.fraction = 0;
    this.draw();
  }

  setPosition(fraction) {
    const f = Number.isFinite(fraction) ? Math.max(0, Math.min(1, fraction)) : 0;
    if (Math.abs(f - this.fraction) * this.canvas.width < 0.5) return;
    this.fraction = f;
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const g = c.getContext('2d');
    const style = getComputedStyle(c);
    const played = style.getPropertyValue('--wave-played').trim() || '#6cc4ff';
    const rest = style.getPropertyValue('--wave-rest').trim() || '#55607a';
    const head = style.getPropertyValue('--wave-head').trim() || '#ffffff';
    g.clearRect(0, 0, w, h);
    const n = this.peaks.length;
    const mid = h / 2;
    const headX = Math.round(this.fraction * w);
    if (n === 0) {
      g.fillStyle = rest;
      g.fillRect(0, mid - dpr / 2, w, dpr);
    }
    for (let x = 0; x < w && n > 0; x++) {
      // The peaks of the pixels' span of the track: the extremes of every pair that falls in it.
      const i0 = Math.floor((x / w) * n);
      const i1 = Math.max(i0 + 1, Math.floor(((x + 1) / w) * n));
      let lo = 0, hi = 0;
      for (let i = i0; i < i1 && i < n; i++) {
        const p = this.peaks[i];
        if (p[0] < lo) lo = p[0];
        if (p[1] > hi) hi = p[1];
      }
      const top = mid - Math.max(hi, 0.01) * mid;
      const bottom = mid - Math.min(lo, -0.01) * mid;
      g.fillStyle = x < headX ? played : rest;
      g.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
    g.fillStyle = head;
    g.fillRect(Math.min(headX, w - dpr), 0, dpr * 1.5, h);
  }
}

/** m:ss for `seconds`. */
export function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '0:00';
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
