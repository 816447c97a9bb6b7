"""Static and media files served by Apache itself
(mod_wsgi_ws_sidecar_static_files), the same in every mode that configures
them: put in place by molecule/resources/static_files.yml, listed in the
scenario's group_vars (/static/ for a year, /media/ without a cache header)."""

STYLESHEET = "body { color: #123456; }\n"


def test_static_files_come_from_apache_with_their_cache_header(probe):
    answer = probe.http("/static/css/site.css")
    assert answer["status"] == 200
    # The application answers every other path with its own page.
    assert answer["body"] == STYLESHEET
    assert answer["headers"]["Cache-Control"] == "public, max-age=31536000"
    assert answer["headers"]["Content-Type"].startswith("text/css")


def test_media_files_are_served_without_a_cache_header(probe):
    answer = probe.http("/media/upload.txt")
    assert (answer["status"], answer["body"]) == (200, "an upload\n")
    assert "Cache-Control" not in answer["headers"]


def test_a_static_directory_is_not_listed(probe):
    # System mode refuses it (Options -Indexes: 403); mod_wsgi-express loads
    # no mod_autoindex, so it is not found (404). Either way, no listing.
    answer = probe.http("/static/css/")
    assert answer["status"] in (403, 404)
    assert "site.css" not in answer["body"]


def test_a_missing_static_file_is_apaches_404_not_the_applications(probe):
    answer = probe.http("/static/css/missing.css")
    assert answer["status"] == 404
    assert "Not Found" in answer["body"]


def test_the_application_still_answers_beside_them(probe):
    answer = probe.http("/staticky")
    assert answer["status"] == 200
    assert answer["body"] != STYLESHEET
