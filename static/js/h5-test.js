// h5/test.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
// One tap submits once; the server also counts a repeated submit only once.
document.getElementById("paper").addEventListener("submit", () => {
  document.getElementById("submit-paper").disabled = true;
});
