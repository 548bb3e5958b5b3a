// DGX Music: this browser tab is a speaker for the daemon (docs/protocol.md, "Speaker tabs").
//
// It connects /api/v1/speaker/ws (and reconnects), tells the daemon when the tab is focused or becomes
// visible (the most recently focused tab plays), and obeys its commands: play a library track (through
// the page's window.dgxPlayer when the listening room provides one, else an <audio> element of its own),
// stop, seek, and play a running MusicGen job's stream: binary messages of 16-bit PCM, each scheduled
// right after the last with Web Audio. No build step, nothing fetched from elsewhere.
(function () {
  "use strict";
  if (window.dgxSpeaker) return; // loaded twice: one speaker per tab

  var WS_PATH = "/api/v1/speaker/ws";
  var LEAD = 0.05; // seconds between a chunk's arrival and its start when nothing is queued before it
  var ws = null;
  var retry = 0;
  var tabId = null;
  var connected = false;
  var ctx = null;
  var analyser = null;
  var stream = null; // {jobId, variation, played (frames), nextTime, sources, chunks, ended}
  var own = null; // the standalone <audio> element
  var blocked = null; // an action the browser's autoplay policy refused, retried on the next click
  var counters = {chunks: 0, seconds: 0, commands: 0, streamStartedAt: null, firstChunkAt: null};

  // ------------------------------------------------------------------ the track player
  function ownAudio() {
    if (!own) {
      own = document.createElement("audio");
      own.id = "dgx-speaker-audio";
      own.preload = "auto";
      own.style.display = "none";
      (document.body || document.documentElement).appendChild(own);
    }
    return own;
  }

  var standalone = {
    trackId: null,
    playTrack: function (id, position) {
      var a = ownAudio();
      standalone.trackId = id;
      a.src = "/api/v1/tracks/" + encodeURIComponent(id) + "/audio";
      if (position > 0) {
        a.addEventListener("loadedmetadata", function () { a.currentTime = position; }, {once: true});
      }
      return a.play();
    },
    stop: function () {
      if (!own) return;
      own.pause();
      own.removeAttribute("src");
      own.load();
      standalone.trackId = null;
    },
    seek: function (seconds) {
      if (!own) return;
      own.currentTime = seconds;
      if (own.paused && standalone.trackId) return own.play();
    },
    current: function () {
      if (!own || !standalone.trackId) return null;
      return {track_id: standalone.trackId, position: own.currentTime, duration: own.duration || 0,
              playing: !own.paused && !own.ended};
    }
  };

  function player() {
    var p = window.dgxPlayer;
    return p && typeof p.playTrack === "function" ? p : standalone;
  }

  // ------------------------------------------------------------------ autoplay
  function refused(err, retryFn) {
    if (!err || err.name !== "NotAllowedError") return;
    blocked = retryFn;
    showNotice("Click anywhere on this page to let it play sound (the browser asks for a click once).");
    report({error: "autoplay blocked: click the page once"});
  }

  function showNotice(text) {
    var el = document.getElementById("dgx-speaker-notice");
    if (!el) {
      el = document.createElement("div");
      el.id = "dgx-speaker-notice";
      el.setAttribute("role", "status");
      el.style.cssText = "position:fixed;left:0;right:0;bottom:0;padding:.75em;background:#222;color:#fff;" +
        "font:14px sans-serif;text-align:center;z-index:1000;cursor:pointer";
      (document.body || document.documentElement).appendChild(el);
    }
    el.textContent = text;
    el.hidden = false;
  }

  document.addEventListener("click", function () {
    var el = document.getElementById("dgx-speaker-notice");
    if (el) el.hidden = true;
    if (ctx && ctx.state === "suspended") ctx.resume();
    if (blocked) { var fn = blocked; blocked = null; fn(); }
  }, true);

  function attempt(fn) {
    try {
      var r = fn();
      if (r && typeof r.catch === "function") r.catch(function (e) { refused(e, function () { attempt(fn); }); });
    } catch (e) { refused(e, function () { attempt(fn); }); }
  }

  // ------------------------------------------------------------------ live streams (Web Audio)
  function ensureContext() {
    if (!ctx) {
      var AC = window.AudioContext || window.webkitAudioContext;
      ctx = new AC();
      analyser = ctx.createAnalyser();
      analyser.fftSize = 2048;
      analyser.connect(ctx.destination);
    }
    if (ctx.state === "suspended") {
      ctx.resume().catch(function () {});
      if (ctx.state === "suspended") refused({name: "NotAllowedError"}, function () { ctx.resume(); });
    }
    return ctx;
  }

  function stopStream() {
    if (!stream) return;
    stream.sources.forEach(function (s) { try { s.stop(); } catch (e) { /* already ended */ } });
    stream = null;
  }

  function startStream(msg) {
    stopStream();
    player().stop();
    ensureContext();
    stream = {jobId: msg.job_id, variation: msg.variation || 0, played: 0, nextTime: 0, sources: new Set(),
              chunks: 0, ended: null};
    counters.streamStartedAt = performance.now();
    counters.firstChunkAt = null;
    report({});
  }

  function onChunk(buf) {
    var n = new DataView(buf).getUint32(0, true);
    var head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    if (!stream || head.job_id !== stream.jobId || head.variation !== stream.variation) return;
    var ch = head.channels, sr = head.sample_rate;
    var pcm = new Int16Array(buf, 4 + n, head.frames * ch);
    // An earlier offset replaces what followed it (the engine started over): what was played stays
    // played, the rest goes on from here. A later offset leaves a gap of silence.
    var skip = Math.max(0, stream.played - head.offset);
    var gap = Math.max(0, head.offset - stream.played);
    var frames = head.frames - skip;
    if (frames <= 0) return;
    var ab = ctx.createBuffer(ch, frames, sr);
    for (var c = 0; c < ch; c++) {
      var out = ab.getChannelData(c);
      for (var i = 0; i < frames; i++) out[i] = pcm[(i + skip) * ch + c] / 32768;
    }
    var now = ctx.currentTime;
    if (stream.nextTime < now + 0.01) stream.nextTime = now + LEAD; // the first chunk, or after a stall
    var at = stream.nextTime + gap / sr;
    var src = ctx.createBufferSource();
    src.buffer = ab;
    src.connect(analyser);
    src.start(at);
    var s = stream;
    s.sources.add(src);
    src.onended = function () { s.sources.delete(src); if (s.ended && !s.sources.size) report({}); };
    s.nextTime = at + frames / sr;
    s.played = head.offset + head.frames;
    s.chunks += 1;
    counters.chunks += 1;
    counters.seconds += frames / sr;
    if (counters.firstChunkAt === null) { counters.firstChunkAt = performance.now(); report({}); }
  }

  // ------------------------------------------------------------------ state, reported to the daemon
  function state() {
    if (stream) {
      return {mode: "stream", job_id: stream.jobId, playing: stream.sources.size > 0 || !stream.ended,
              chunks: stream.chunks, position: ctx ? Math.max(0, ctx.currentTime) : 0};
    }
    var cur = player().current();
    if (!cur) return {mode: null, playing: false};
    return {mode: "track", track_id: cur.track_id, playing: !!cur.playing, position: cur.position || 0,
            duration: cur.duration || 0};
  }

  function report(extra) {
    var s = state();
    for (var k in extra) s[k] = extra[k];
    s.type = "state";
    send(s);
    window.dispatchEvent(new CustomEvent("dgx-speaker", {detail: {connected: connected, tab: tabId, state: s}}));
  }

  ["play", "playing", "pause", "ended", "seeked", "error"].forEach(function (name) {
    // Media events do not bubble, but the document sees them while capturing: any player on the page.
    document.addEventListener(name, function () { if (!stream) report({}); }, true);
  });

  // ------------------------------------------------------------------ the connection
  function send(obj) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }

  function focusReport() {
    send({type: "focus", focused: document.hasFocus(), visible: document.visibilityState === "visible"});
  }

  function onCommand(msg) {
    counters.commands += 1;
    switch (msg.cmd) {
      case "hello":
        tabId = msg.tab;
        break;
      case "play":
        stopStream();
        attempt(function () { return player().playTrack(msg.track_id, msg.position || 0); });
        break;
      case "stop":
        stopStream();
        player().stop();
        report({});
        break;
      case "seek":
        attempt(function () { return player().seek(msg.seconds); });
        break;
      case "stream":
        startStream(msg);
        break;
      case "stream_end":
        if (stream && stream.jobId === msg.job_id) {
          stream.ended = msg.reason || "complete";
          report({ended: stream.ended});
        }
        break;
    }
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + WS_PATH;
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      connected = true;
      retry = 0;
      send({type: "hello", focused: document.hasFocus(), visible: document.visibilityState === "visible"});
      report({});
    };
    ws.onmessage = function (ev) {
      if (typeof ev.data === "string") {
        var msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        onCommand(msg);
      } else {
        onChunk(ev.data);
      }
    };
    ws.onclose = function () {
      connected = false;
      tabId = null;
      window.dispatchEvent(new CustomEvent("dgx-speaker", {detail: {connected: false, tab: null}}));
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, Math.min(5000, 250 * Math.pow(2, retry - 1)));
    };
  }

  window.addEventListener("focus", focusReport);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") focusReport();
  });

  window.dgxSpeaker = {
    // For the page and for tests: connection, what plays, and how much stream audio was scheduled.
    connected: function () { return connected; },
    tab: function () { return tabId; },
    state: state,
    counters: function () { return Object.assign({}, counters); },
    audio: function () { // the element that plays tracks: the room's player's, else this script's own
      var p = window.dgxPlayer;
      return p && p.audio instanceof HTMLMediaElement ? p.audio : own;
    },
    level: function () { // the loudest sample now reaching the output (0 when silent)
      if (!analyser) return 0;
      var data = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(data);
      var m = 0;
      for (var i = 0; i < data.length; i++) m = Math.max(m, Math.abs(data[i]));
      return m;
    }
  };
  connect();
})();
