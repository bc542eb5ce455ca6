// h5/topic.html: where an uploaded lecture's pictures come from. hls.js over the HLS ladder
// (adaptive, with a quality menu) where the browser has Media Source Extensions; the browser's
// own HLS on iOS (WeChat there plays it natively, and its media stack handles the network); the
// MP4 fallback elsewhere. The watch clock (h5-topic.js) only ever sees the <video> element.
// Loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  const ui = window.weuiUI;
  const RETRY_MAX_MS = 30000;

  function isIOS() {
    // iPadOS presents itself as a Mac with touch.
    return /iP(hone|ad|od)/.test(navigator.userAgent) ||
      (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  }

  function mode() {
    const native = document.createElement("video").canPlayType("application/vnd.apple.mpegurl");
    if (native && isIOS()) return "native";
    if (window.Hls && window.Hls.isSupported()) return "hls";
    return native ? "native" : "mp4";
  }

  // start(video, media, {startAt, renew}): renew() resolves to fresh media links (same version).
  function start(video, media, options) {
    const box = document.getElementById("quality");
    const current = document.getElementById("quality-current");
    const choices = document.getElementById("quality-choices");
    const note = document.getElementById("player-note");
    const how = mode();
    const info = {mode: how, level: -1, auto: true, height: 0, switches: 0, recoveries: 0, errors: []};
    let hls = null, attempts = 0, retryTimer = null, wasPlaying = false;

    if (media.poster) video.poster = media.poster;
    if (media.subtitles) {
      const track = document.createElement("track");
      Object.assign(track, {kind: "subtitles", label: "中文字幕", srclang: "zh", src: media.subtitles, default: true});
      video.appendChild(track);
    }

    function label(level) {
      const q = media.qualities[level];
      return q ? q.label : "";
    }
    function showQuality() {
      if (!hls) return;
      const name = label(info.level);
      current.textContent = info.auto ? "自动" + (name ? "（" + name + "）" : "") : name;
      for (const button of choices.querySelectorAll("button")) {
        const selected = Number(button.dataset.level) === (info.auto ? -1 : info.level);
        button.classList.toggle("weui-btn_primary", selected);
        button.classList.toggle("weui-btn_default", !selected);
        button.setAttribute("aria-pressed", selected ? "true" : "false");
      }
    }
    function buildMenu() {
      choices.textContent = "";
      const levels = [{level: -1, text: "自动"}].concat(media.qualities.map((q, i) => ({level: i, text: q.label})));
      for (const item of levels) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "weui-btn weui-btn_mini weui-btn_default";
        button.dataset.level = String(item.level);
        button.textContent = item.text;
        button.addEventListener("click", () => choose(item.level));
        choices.appendChild(button);
      }
      box.hidden = false;
    }
    function choose(level) {
      if (!hls) return;
      info.auto = level === -1;
      // currentLevel switches now (the buffer ahead is dropped); -1 hands the choice back to ABR.
      hls.currentLevel = level;
      if (!info.auto) info.level = level;
      showQuality();
    }

    function say(text) {
      note.textContent = text;
      note.hidden = !text;
    }
    function recovered() {
      if (attempts > 0) { attempts = 0; say(""); }
    }
    // A network error: tell the student, then try again with fresh links, waiting longer each time.
    function retry(reason) {
      info.errors.push(reason);
      if (retryTimer) return;
      attempts += 1;
      const wait = Math.min(RETRY_MAX_MS, 1000 * Math.pow(2, attempts - 1));
      say("网络不稳定，正在重新连接…");
      if (attempts === 1) ui.toptips("网络不稳定，正在重新连接…");
      retryTimer = setTimeout(async () => {
        retryTimer = null;
        info.recoveries += 1;
        try {
          media = await options.renew();
        } catch (err) {
          retry("renew failed");
          return;
        }
        load(video.currentTime);
      }, wait);
    }

    function load(at) {
      wasPlaying = wasPlaying || !video.paused;
      if (how === "hls") {
        if (hls) hls.destroy();
        hls = new window.Hls({
          startPosition: at,
          // The lowest rung first: the first picture comes fastest on any network, and the
          // bandwidth measured on it lets ABR climb within a segment or two.
          startLevel: 0,
          // Segments are unpacked on the page, not in a Web Worker: the worker is a 118 KB script
          // of its own that hls.js fetches only when the first segment is in, which on a 400 kbit/s
          // link put 2.4 s between the first segment and the first frame (bench/video). Unpacking
          // a 4-second segment takes milliseconds, and a lecture page has little else to do.
          enableWorker: false,
          // At most a minute ahead: a student who stops early has not paid for the rest in
          // mobile data, and a phone keeps little video in memory.
          maxBufferLength: 30,
          maxMaxBufferLength: 60,
          backBufferLength: 30,
        });
        hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
          if (!choices.childElementCount) buildMenu();
          if (!info.auto) hls.currentLevel = info.level;
          if (wasPlaying) video.play().catch(() => {});
        });
        hls.on(window.Hls.Events.LEVEL_SWITCHED, (event, data) => {
          info.level = data.level;
          info.height = (hls.levels[data.level] || {}).height || 0;
          info.switches += 1;
          showQuality();
        });
        hls.on(window.Hls.Events.FRAG_BUFFERED, recovered);
        hls.on(window.Hls.Events.ERROR, (event, data) => {
          if (!data.fatal) return;
          if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && info.recoveries < 3) {
            info.recoveries += 1;
            hls.recoverMediaError();
            return;
          }
          retry(data.details + (data.response ? " " + data.response.code : ""));
        });
        hls.loadSource(media.master);
        hls.attachMedia(video);
        return;
      }
      video.src = how === "native" ? media.master : media.fallback;
      video.addEventListener("loadedmetadata", () => {
        if (at > 0) video.currentTime = at;
        if (wasPlaying) video.play().catch(() => {});
      }, {once: true});
    }
    if (how !== "hls") {
      video.addEventListener("error", () => retry("media error " + (video.error ? video.error.code : "")));
      video.addEventListener("canplay", recovered);
    }
    load(options.startAt || 0);
    window.xinweiPlayerInfo = () => Object.assign({}, info, {buffered: video.buffered.length});
    return {
      version: media.version,
      info: info,
      destroy() { if (hls) hls.destroy(); hls = null; },
    };
  }

  window.xinweiPlayer = {start: start, mode: mode};
})();
