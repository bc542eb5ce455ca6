"""Static URLs name their content's hash and are cached for a year; an old or bare URL is cached briefly."""
from __future__ import annotations

import re


def test_pages_link_versioned_static_files_cached_for_a_year(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/console/sign-in").get_data(as_text=True)
    links = re.findall(r'/static/[\w./-]+\?v=[0-9a-f]{12}', page)
    assert links, page[:500]
    current = client.get(links[0])
    assert current.status_code == 200
    assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    bare = links[0].split("?")[0]
    for stale in (bare, bare + "?v=000000000000"):
        assert client.get(stale).headers["Cache-Control"] == "public, max-age=300"
    assert client.get("/static/js/nothing-here.js?v=1").status_code == 404
