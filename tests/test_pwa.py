"""The installable app's files (webapp/pwa): the service worker and the manifest, at the
root of the app, also when it is mounted under a path prefix."""

from __future__ import annotations

from werkzeug.test import TestResponse


def fetch(client, path: str, **kwargs) -> TestResponse:
    """GET `path`, read in full and closed (a sent file holds an open file until then)."""
    response = client.get(path, **kwargs)
    response.get_data()
    response.close()
    return response


def test_the_worker_is_served_at_the_root_and_always_revalidated(client):
    response = fetch(client, "/sw.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Service-Worker-Allowed"] == "/"
    assert b'addEventListener("push"' in response.data
    again = fetch(client, "/sw.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_the_manifest_needs_no_sign_in_and_is_revalidated(client):
    response = fetch(client, "/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/manifest+json"
    assert response.get_json()["start_url"] == "/inbox"
    etag = response.headers["ETag"]
    assert (
        fetch(client, "/manifest.webmanifest", headers={"If-None-Match": etag}).status_code == 304
    )


def test_under_a_path_prefix_everything_stays_inside_it(app, admin, client):
    prefix = "http://localhost/bell/"
    worker = fetch(client, "/sw.js", base_url=prefix)
    assert worker.headers["Service-Worker-Allowed"] == "/bell/"
    manifest = fetch(client, "/manifest.webmanifest", base_url=prefix).get_json()
    assert (manifest["id"], manifest["scope"], manifest["start_url"]) == (
        "/bell/",
        "/bell/",
        "/bell/inbox",
    )
    assert {icon["src"].split("/static/")[0] for icon in manifest["icons"]} == {"/bell"}
    page = fetch(client, "/inbox", base_url=prefix).get_data(as_text=True)
    assert 'data-worker="/bell/sw.js" data-scope="/bell/"' in page
    assert 'href="/bell/manifest.webmanifest"' in page
