// Passkeys on the sign-in and account pages (WebAuthn Level 3). The
// forms are hidden until this script finds a browser that can use them;
// without it the password form is what people see. The options come from
// linkd as JSON and the browser's answer goes back in the form, so the
// server decides everything and a sign-in ends like a password sign-in.
(function () {
  "use strict";

  var PKC = window.PublicKeyCredential;
  if (!PKC || !PKC.parseCreationOptionsFromJSON || !PKC.parseRequestOptionsFromJSON) {
    return;
  }

  function options(form) {
    var body = new URLSearchParams();
    body.set("csrf", form.elements.csrf.value);
    return fetch(form.getAttribute("data-options"), {
      method: "POST",
      body: body,
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("options " + response.status);
      }
      return response.json();
    });
  }

  function send(form, credential) {
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    form.submit();
  }

  function failed(form, error) {
    // A sign-in the browser's autofill started and the person left is
    // not a failure to show.
    if (error && error.name === "AbortError") {
      return;
    }
    var alert = form.querySelector("[role=alert]");
    alert.textContent = form.getAttribute("data-failed");
    alert.hidden = false;
  }

  var signIn = document.getElementById("passkey-signin");
  if (signIn) {
    var pending = null;
    var ask = function (mediation) {
      if (pending) {
        pending.abort();
      }
      var controller = new AbortController();
      pending = controller;
      return options(signIn).then(function (json) {
        var request = { publicKey: PKC.parseRequestOptionsFromJSON(json), signal: controller.signal };
        if (mediation) {
          request.mediation = mediation;
        }
        return navigator.credentials.get(request);
      }).then(function (credential) {
        if (credential) {
          send(signIn, credential);
        }
      });
    };
    signIn.hidden = false;
    signIn.querySelector("button").addEventListener("click", function () {
      ask(null).catch(function (error) {
        failed(signIn, error);
      });
    });
    // The browser's autofill offers passkeys in the email field
    // (autocomplete="username webauthn") where it can; not again right
    // after a sign-in failed (the page shows why), so nothing repeats.
    if (document.getElementById("email") && !document.getElementById("form-error") &&
        PKC.isConditionalMediationAvailable) {
      PKC.isConditionalMediationAvailable().then(function (available) {
        if (available) {
          return ask("conditional");
        }
      }).catch(function () {});
    }
  }

  var add = document.getElementById("passkey-add");
  if (add) {
    add.hidden = false;
    var note = document.getElementById("passkey-needs-script");
    if (note) {
      note.hidden = true;
    }
    add.querySelector("button").addEventListener("click", function () {
      options(add).then(function (json) {
        return navigator.credentials.create({ publicKey: PKC.parseCreationOptionsFromJSON(json) });
      }).then(function (credential) {
        if (credential) {
          send(add, credential);
        }
      }).catch(function (error) {
        failed(add, error);
      });
    });
  }
})();
