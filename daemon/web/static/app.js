// The listening room: wires the library, the track view, the player, the queue and the compose
// form to the daemon's HTTP API and event stream. Plain ES modules, no build step (docs/web.md).
//
// For other scripts (speaker.js) the page exposes window.dgxPlayer: see player.js for the API and
// the 'dgx:playing' / 'dgx:paused' events.

import { API, get } from './api.js';
import { Player } from './player.js';
import { Library } from './library.js';
import { Detail } from './detail.js';
import { Queue, connectEvents } from './queue.js';
import { Compose } from './compose.js';

const $ = (s) => document.querySelector(s);
const room = $('main.room');
const banner = $('#banner');
const statusEl = $('#status');

/** Say what went wrong, in the daemon's words. */
function showError(err) {
  if (err && err.status === 401) {
    banner.textContent = 'Not signed in: open the page from the URL `dgx-music web` prints (it carries the token once).';
  } else {
    banner.textContent = err && err.text ? err.text : String(err && err.message ? err.message : err);
  }
  banner.hidden = false;
  clearTimeout(showError.timer);
  if (!err || err.status !== 401) showError.timer = setTimeout(() => { banner.hidden = true; }, 8000);
}

/** On a phone one section shows at a time; the tabs pick it (wide screens show all three). */
function showSection(name) {
  room.dataset.section = name;
  for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', b.dataset.show === name);
}
for (const b of document.querySelectorAll('.tabs button')) b.addEventListener('click', () => showSection(b.dataset.show));

const player = new Player($('#audio'));

function openTrack(id, { quiet = false } = {}) {
  library.select(id);
  if (!quiet) {
    detail.show(id);
    showSection('detail');
  }
  history.replaceState(null, '', `#track=${encodeURIComponent(id)}`);
}

const library = new Library($('#library'), { onOpen: (id) => openTrack(id), onError: showError });
const detail = new Detail($('#detail'), player, {
  onChanged: (t) => library.update(t),
  onTag: (tag) => { library.filterTag(tag); showSection('library'); },
  onOpen: (id, opts) => openTrack(id, opts),
  onError: showError,
});
const queue = new Queue($('#queue'), $('#queue-empty'), { onError: showError });
const compose = new Compose($('#compose'), {
  onQueued: (job) => queue.event('job.queued', job),
  onError: showError,
});

window.dgxPlayer = {
  async playTrack(id, position = 0) {
    if (detail.track?.id !== id) openTrack(id);
    await player.playTrack(id, position);
  },
  stop: () => player.stop(),
  pause: () => player.pause(),
  resume: () => player.resume(),
  seek: (seconds) => player.seek(seconds),
  current: () => player.current(),
  audio: player.audio,
};

// -- status line ---------------------------------------------------------------------------
let model = null;
let active = 0;
function renderStatus(connected = true) {
  const m = model ? `${model.model ? String(model.model).split('/').pop() : '?'} (${model.state})` : '';
  statusEl.textContent = connected ? [m, active ? `${active} in queue` : 'queue empty'].filter(Boolean).join(' · ') : 'reconnecting…';
  statusEl.classList.toggle('down', !connected);
}
async function readStatus() {
  try {
    const st = await get(`${API}/status`);
    model = st.model;
    active = st.queue ? st.queue.active : 0;
    renderStatus();
  } catch (err) {
    showError(err);
  }
}

// -- live events ---------------------------------------------------------------------------
let reloadTimer = null;
function reloadLibrarySoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => library.reload(), 150);
}
let wasDown = false;
connectEvents((name, data) => {
  if (queue.event(name, data)) reloadLibrarySoon();
  switch (name) {
    case 'track.added': reloadLibrarySoon(); break;
    case 'track.updated': detail.updated(data); break;
    case 'track.deleted': library.remove(data.id); break;
    case 'stream.gap': queue.reload(); library.reload(); readStatus(); break;
    case 'daemon.shutdown': renderStatus(false); break;
    case 'job.progress': case 'job.stream': break;  // the queue shows these; the status line need not
    default:
      if (name.startsWith('model.') || name.startsWith('job.')) readStatusSoon();
  }
}, (open) => {
  if (open && wasDown) { queue.reload(); library.reload(); readStatus(); }
  wasDown = !open;
  renderStatus(open);
});
let statusTimer = null;
function readStatusSoon() {
  if (statusTimer) return;
  statusTimer = setTimeout(() => { statusTimer = null; readStatus(); }, 500);
}

// -- keys ----------------------------------------------------------------------------------
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement || t.isContentEditable;
  if (typing) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (e.key === ' ' && !(t instanceof HTMLButtonElement)) {
    e.preventDefault();
    const li = t.closest && t.closest('li[data-id]');
    if (li && detail.track?.id !== li.dataset.id) {
      window.dgxPlayer.playTrack(li.dataset.id, 0).catch(showError);  // space on a row plays it
    } else {
      detail.togglePlay();
    }
  } else if (e.key === 'b' || e.key === 'B') {
    detail.toggleVariation();
  } else if (e.key === 'ArrowLeft') {
    detail.seekBy(-5);
  } else if (e.key === 'ArrowRight') {
    detail.seekBy(5);
  } else if (e.key === '/') {
    e.preventDefault();
    showSection('library');
    $('#search').focus();
  }
});

/** `#track=ID` in the address opens that track (links, bookmarks, the back button). */
function openFromHash() {
  const m = /^#track=(.+)$/.exec(location.hash);
  if (m && detail.track?.id !== decodeURIComponent(m[1])) openTrack(decodeURIComponent(m[1]));
}

// -- start -----------------------------------------------------------------------------------
async function start() {
  readStatus();
  queue.reload();
  let openapi = null;
  try {
    openapi = await get('/openapi.json');
  } catch (err) {
    showError(err);
  }
  const sortParam = openapi?.paths?.[`${API}/tracks`]?.get?.parameters?.find((p) => p.name === 'sort');
  library.setSorts(sortParam?.schema?.enum || ['created']);
  await library.reload();
  openFromHash();
  addEventListener('hashchange', openFromHash);
  if (openapi) await compose.init(openapi);
  performance.mark('dgx:ready');  // bench/web_page.py reads it
  document.documentElement.dataset.ready = '1';  // for tests: everything is wired
}
start();
