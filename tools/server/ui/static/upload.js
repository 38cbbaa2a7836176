// Content upload with a progress bar: the file goes as the request body of one XHR POST (its
// upload progress events drive the bar); id, version, protected and hold ride in the query string,
// the session's CSRF token in a header. The server computes the sha256.
"use strict";
(function () {
  var form = document.getElementById("upload");
  if (!form) return;
  var bar = document.getElementById("progress");
  var pct = document.getElementById("percent");
  var msg = document.getElementById("upload-message");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.elements.file.files[0];
    if (!file) return;
    var q = new URLSearchParams({ id: form.elements.cid.value, version: form.elements.version.value });
    if (form.elements.protected.checked) q.set("protected", "true");
    if (form.elements.hold && form.elements.hold.checked) q.set("hold", "true");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action + "?" + q.toString());
    xhr.setRequestHeader("X-CSRF-Token", form.elements.csrf.value);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    bar.hidden = false;
    bar.max = file.size || 1;
    bar.value = 0;
    msg.textContent = "Uploading " + file.name + "…";
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      pct.textContent = Math.floor((100 * e.loaded) / e.total) + " %";
    };
    xhr.onload = function () {
      if (xhr.status === 200) {
        var r = JSON.parse(xhr.responseText);
        bar.value = bar.max;
        pct.textContent = "100 %";
        msg.textContent = "Uploaded " + r.id + (r.version ? ", version " + r.version : "") +
          " (" + r.size + " bytes), sha256 " + r.sha256 + ". ";
        var link = document.createElement("a");
        link.href = r.next;
        link.id = "uploaded";
        link.textContent = "Show the list";
        msg.appendChild(link);
        return;
      }
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var why = doc.getElementById("reason");
      msg.textContent = "Upload failed (" + xhr.status + "): " + (why ? why.textContent : xhr.statusText);
    };
    xhr.onerror = function () {
      msg.textContent = "Upload failed: the connection was lost.";
    };
    xhr.send(file);
  });
})();
