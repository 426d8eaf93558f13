// The API reference page (/api/docs): Swagger UI (vendored) drawing /api/v1/openapi.json.
// A file of its own because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var root = document.getElementById("api-docs");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    // No badge from the public validator: nothing on this page leaves the server.
    validatorUrl: null,
    // "Try it out" with the signed-in session: same-origin requests that change
    // something carry the page's CSRF token, as the API asks of a session.
    requestInterceptor: function (request) {
      var sameOrigin = new URL(request.url, window.location.href).origin === window.location.origin;
      if (sameOrigin && request.method && request.method.toUpperCase() !== "GET") {
        request.headers["X-CSRFToken"] = root.dataset.csrfToken;
      }
      return request;
    }
  });
})();
