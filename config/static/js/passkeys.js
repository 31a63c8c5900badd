// Passkeys (django-otp-webauthn's ceremonies): once one is added, back to the account page;
// once one confirmed a step-up on a form, say so beside the code field, which is then optional.
(function () {
  "use strict";
  document.addEventListener("otp_webauthn.register_complete", function () {
    window.location.assign(document.getElementById("passkey-done-url").dataset.url);
  });
  document.addEventListener("otp_webauthn.verification_complete", function () {
    var done = document.getElementById("passkey-step-up-done");
    if (done) {
      done.hidden = false;
      ["passkey-verification-button", "passkey-verification-status-message"].forEach(
        function (id) {
          var element = document.getElementById(id);
          if (element) { element.hidden = true; }
        });
    }
  });
})();
