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
    let tries = 0;
    (async function loop() {
      if (await check() || ++tries >= 8) return;
      setTimeout(loop, 1000);
    })();
  }
})();
