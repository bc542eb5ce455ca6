// h5/certificate.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
(function () {
  const button = document.getElementById("pay"), problem = document.getElementById("pay-error");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const ui = window.weuiUI;
  function fail(text) {
    ui.loading(null);
    problem.textContent = text; problem.hidden = false; button.disabled = false;
    ui.dialog("暂时无法支付", text);
  }
  button.addEventListener("click", async function () {
    button.disabled = true;
    ui.loading("正在发起支付");
    let resp;
    const body = new FormData();
    body.append("page_url", location.href.split("#")[0]);
    const phone = document.getElementById("phone");
    if (phone) body.append("phone", phone.value);
    try { resp = await fetch(button.dataset.url, {method: "POST", headers: {"X-CSRF-Token": token}, body: body}); }
    catch (e) { return fail("网络不稳定，请稍后再试。"); }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) return fail(data.message || "暂时无法支付，请稍后再试。");
    ui.loading(null);
    const back = (ok) => location.href = data.order_url + (ok ? "?pay_result=ok" : "");
    if (typeof WeixinJSBridge !== "undefined") {
      WeixinJSBridge.invoke("getBrandWCPayRequest", data.params,
        (res) => back(res.err_msg === "get_brand_wcpay_request:ok"));
    } else if (window.wx && data.config) {
      wx.config(Object.assign({debug: false}, data.config));
      wx.ready(() => wx.chooseWXPay({timestamp: data.params.timeStamp, nonceStr: data.params.nonceStr,
        package: data.params.package, signType: data.params.signType, paySign: data.params.paySign,
        success: () => back(true), cancel: () => back(false), fail: () => back(false)}));
    } else if (data.cashier_url) {
      location.href = data.cashier_url;  // development: the fake WeChat Pay's cashier stands in for WeChat
    } else {
      fail("请在微信中打开本页面完成支付。");
    }
  });
})();
