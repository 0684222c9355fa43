// Progressive touches for linkd's pages. Every page works without this
// file (all flows are plain forms); it only makes typing a code easier
// and times read in the person's own zone.

// Tell the server the browser's time zone (an IANA name such as
// "Europe/Berlin") in a cookie, so pages show times in it. A page shown
// in a guessed zone says which (data-zone); it is loaded once more when
// the cookie now says otherwise. The cookie is read back first, so a
// browser that keeps no cookies, or a zone the server does not know,
// never loads a page twice.
(function () {
  "use strict";

  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) {
    return;
  }
  var secure = location.protocol === "https:";
  // Over https the __Host- name, as the server's other cookies.
  var name = (secure ? "__Host-" : "") + "linkd_tz";
  function sent() {
    var found = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return found ? found[1] : null;
  }
  if (sent() === zone) {
    return;
  }
  document.cookie = name + "=" + zone + "; Path=/; Max-Age=31536000; SameSite=Lax" +
    (secure ? "; Secure" : "");
  var shown = document.documentElement.getAttribute("data-zone");
  if (shown && shown !== zone && sent() === zone) {
    location.reload();
  }
})();

(function () {
  "use strict";

  var input = document.getElementById("code");
  if (!input || input.tagName !== "INPUT") {
    return;
  }

  // RFC 8628 §6.1: codes ignore case, and dashes and spaces are only
  // there to help reading, so keep everything else as typed (the server
  // explains characters that codes never use) and show XXXX-XXXX.
  function significant(text) {
    return text.replace(/[\s\-\u2010-\u2015\u2212\uFE58\uFE63\uFF0D]/g, "").toUpperCase();
  }

  function format(chars) {
    return chars.length > 4 ? chars.slice(0, 4) + "-" + chars.slice(4) : chars;
  }

  // Where the caret goes after `count` significant characters.
  function caretAfter(formatted, count) {
    var seen = 0;
    for (var i = 0; i < formatted.length; i++) {
      if (seen === count) {
        return i;
      }
      if (formatted[i] !== "-") {
        seen++;
      }
    }
    return formatted.length;
  }

  var previous = input.value;

  // Pasted text often holds more than the code ("Code: MFJT-LWZM"): take
  // the one code out of it, as the server does for a form sent without
  // this script. Eight code letters, or two groups of four with one dash
  // or space between, set off from other letters and digits.
  var CODE = /(^|[^0-9A-Za-z])([BCDFGHJ-NP-TV-XZ]{4})[\s\-\u2010-\u2015]?([BCDFGHJ-NP-TV-XZ]{4})(?![0-9A-Za-z])/gi;
  function codeIn(text) {
    var found = null;
    var match;
    CODE.lastIndex = 0;
    while ((match = CODE.exec(text)) !== null) {
      var code = (match[2] + match[3]).toUpperCase();
      if (found !== null && found !== code) {
        return null;
      }
      found = code;
    }
    return found;
  }

  input.addEventListener("paste", function (event) {
    var text = event.clipboardData ? event.clipboardData.getData("text") : "";
    var code = codeIn(text);
    if (code === null || significant(text) === code) {
      return;
    }
    event.preventDefault();
    input.value = format(code);
    input.setSelectionRange(input.value.length, input.value.length);
    previous = input.value;
  });

  // A code sent back with an error is selected, so typing replaces it.
  if (input.value && document.activeElement === input) {
    input.select();
  }

  input.addEventListener("input", function (event) {
    if (event.isComposing) {
      return;
    }
    var raw = input.value;
    var caret = input.selectionStart === null ? raw.length : input.selectionStart;
    var chars = significant(raw);
    var before = significant(raw.slice(0, caret)).length;
    // Backspace over the dash we inserted: remove the letter before it,
    // as the person meant to.
    if (event.inputType === "deleteContentBackward" &&
        chars === significant(previous) && before > 0) {
      chars = chars.slice(0, before - 1) + chars.slice(before);
      before -= 1;
    }
    var formatted = format(chars);
    if (formatted !== raw) {
      input.value = formatted;
      var at = caretAfter(formatted, before);
      input.setSelectionRange(at, at);
    }
    previous = input.value;
  });
})();
