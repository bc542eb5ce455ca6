// console/roster/roster.html: loaded from the page, no inline script (the Content-Security-Policy allows none).
document.getElementById('upload').addEventListener('submit', function (event) {
  var replace = this.querySelector('input[name=mode][value=replace]');
  if (replace && replace.checked && !window.confirm('替换方式会从名单中删除文件里没有的学生，确定继续吗？')) {
    event.preventDefault();
  }
});
