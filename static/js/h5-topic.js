// h5/topic.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  const video = document.getElementById("player");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("status");
  const bar = document.getElementById("watched");
  const startTest = document.getElementById("start-test");
  let seconds = Number(video.dataset.seconds);
  const maxRate = Number(video.dataset.maxRate) || 2;
  const ui = window.weuiUI;
  let watchId = null, token = null, seq = 0, resumeAt = 0, timer = null, toldDone = startTest.hidden === false;
  let player = null;  // an uploaded lecture's source (h5-player.js); null for a catalog URL

  function form(fields) {
    const body = new URLSearchParams(fields);
    body.set("csrf_token", csrf);
    return body;
  }
  function beatForm(extra) {
    // The watch session's signed token stands for the session cookie and the CSRF token.
    // paused / resumed only ever lower what the server credits: a pause earns no time.
    const body = new URLSearchParams({watch_id: watchId, seq: seq, position: video.currentTime, beat: token});
    if (video.paused) body.set("paused", "1");
    if (extra && extra.resumed) body.set("resumed", "1");
    return body;
  }
  function show(state) {
    bar.style.width = Math.min(100, 100 * state.watched_seconds / seconds) + "%";
    if (state.completed) {
      status.textContent = "视频已看完，可以开始测试。";
      startTest.hidden = false;
      if (!toldDone) { toldDone = true; ui.toast("视频已看完"); }
    }
  }
  async function beat(extra) {
    if (watchId === null) return null;
    seq += 1;
    let resp;
    try {
      resp = await fetch(video.dataset.heartbeat, {method: "POST", body: beatForm(extra)});
    } catch (err) {
      // Offline for a moment: the next beat carries the position, nothing watched is lost.
      status.textContent = "网络不稳定，观看进度稍后同步。";
      ui.toptips("网络不稳定，观看进度稍后同步。");
      return null;
    }
    if (resp.status === 403) { watchId = null; await open(); return; }  // the token expired: a new watch session
    if (!resp.ok) return;
    const state = await resp.json();
    if (state.reason === "another video or tab took over") {
      video.pause();
      status.textContent = "你在其他页面打开了视频，这里已暂停计时。";
      watchId = null;
      ui.dialog("已在其他页面播放", "你在其他页面或设备上打开了视频，这里已暂停计时。", [
        {label: "知道了"},
        {label: "在这里继续", primary: true, action: async () => { await open(); video.play(); }},
      ]);
      return;
    }
    if (!state.accepted && state.reason === "ahead of real time") {
      video.currentTime = state.position;  // a seek past what was watched does not count
      status.textContent = "请按顺序观看，不能跳过未看的部分。";
      ui.toptips("请按顺序观看，不能跳过未看的部分。");
    } else if (!state.completed && status.textContent.startsWith("网络不稳定")) {
      status.textContent = "请完整观看视频（中途退出，下次从上次的位置继续）。";
    }
    show(state);
    return state;
  }
  function beacon() {
    // pagehide: the last position reaches the server even as the page goes away.
    if (watchId === null) return;
    seq += 1;
    navigator.sendBeacon(video.dataset.heartbeat, beatForm());
  }
  async function open() {
    const resp = await fetch(video.dataset.watch, {method: "POST", body: form({course: video.dataset.course, topic: video.dataset.topic})});
    if (!resp.ok) {
      const refusal = await resp.json().catch(() => ({}));
      status.textContent = "无法开始播放，请返回重试。";
      ui.dialog("无法开始播放", refusal.message || "请返回专题列表后重试。");
      return;
    }
    const state = await resp.json();
    watchId = state.watch_id;
    token = state.beat_token;
    seq = 0;
    resumeAt = state.position;
    if (state.video_seconds) seconds = state.video_seconds;
    if (resumeAt > 1) status.textContent = "从上次观看的位置继续：" + Math.floor(resumeAt) + " 秒";
    const media = state.media || {kind: "file"};
    if (media.kind === "hls" && (!player || player.version !== media.version)) {
      // A lecture replaced since this page opened plays from the new session's position.
      if (player) player.destroy();
      player = window.xinweiPlayer.start(video, media, {startAt: resumeAt, renew: renewMedia});
    } else {
      const seek = () => { if (resumeAt > 0) video.currentTime = resumeAt; };
      if (video.readyState >= 1) seek(); else video.addEventListener("loadedmetadata", seek, {once: true});
    }
    show(state);
  }
  async function renewMedia() {
    // Fresh links for the same watch session's lecture, after the old ones expired.
    const resp = await fetch(video.dataset.media, {method: "POST", body: form({watch_id: watchId})});
    if (!resp.ok) throw new Error("renew " + resp.status);
    return (await resp.json()).media;
  }
  video.addEventListener("play", () => {
    beat({resumed: true});  // the time it stood paused earns nothing
    if (!timer) timer = setInterval(beat, window.HEARTBEAT_MS || 15000);
  });
  video.addEventListener("pause", () => { clearInterval(timer); timer = null; beat(); });
  video.addEventListener("ended", () => { clearInterval(timer); timer = null; beat(); });
  // The course's fastest speed: faster playback would not be credited anyway.
  video.addEventListener("ratechange", () => {
    if (video.playbackRate > maxRate) video.playbackRate = maxRate;
  });
  // Back from another app or tab: report at once rather than at the next tick.
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !video.paused) beat(); });
  window.addEventListener("pagehide", beacon);
  // Let a test (or a curious developer) send a beat now instead of waiting 15 s.
  window.xinweiBeat = beat;
  window.xinweiReady = () => watchId !== null;
  open();
})();
