// h5/order.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  const button = document.getElementById("refresh");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  async function check() {
    const resp = await fetch(button.dataset.url, {method: "POST", headers: {"X-CSRF-Token": token}});
    if (!resp.ok) return false;
    const data = await resp.json();
    if (data.status !== button.dataset.status) { location.replace(location.pathname); return true; }
    return false;
  }
  button.addEventListener("click", check);
  // Back from the payment: the notification may not have arrived yet, so ask WeChat Pay a few times.
  if (new URLSearchParams(location.search).get("pay_result") === "ok") {
    document.getElementById("checking").hidden = false;
    window.weuiUI.loading("正在确认支付结果");
    let tries = 0;
    (async function loop() {
      if (await check()) return;
      if (++tries >= 8) { window.weuiUI.loading(null); return; }
      setTimeout(loop, 1000);
    })();
  }
})();
