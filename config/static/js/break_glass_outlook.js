// The break-glass panel says what the current choice gives; the server wrote it for the
// initial choice, this keeps it in step as the incident or severity changes.
(function () {
  "use strict";
  var data = document.getElementById("break-glass-outlooks");
  var said = document.getElementById("break-glass-outlook");
  var panel = document.getElementById("break-glass");
  if (!data || !said || !panel) return;
  var sentences = JSON.parse(data.textContent);
  var incident = panel.querySelector("select[name=incident]");
  var severity = panel.querySelector("select[name=severity]");
  function update() {
    var chosen = incident && incident.value;
    // An incident's severity counts over one typed beside it.
    var sentence = chosen ? sentences.incident[chosen]
                          : sentences.severity[severity ? severity.value : ""];
    if (sentence) {
      var strong = document.createElement("strong");
      strong.textContent = sentence;
      said.replaceChildren(strong);
    }
  }
  [incident, severity].forEach(function (select) {
    if (select) select.addEventListener("change", update);
  });
})();
