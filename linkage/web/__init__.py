"""The reviewers' web page, served by ``linkage serve`` on its own port (same process).

* :mod:`~linkage.web.app`: the HTTP server and its routes, calling the serving process's
  review core (:class:`linkage.review.core.Review`) and its person look-ups;
* :mod:`~linkage.web.pages`: the server-rendered pages (queue, item with waterfall and
  decision buttons with keyboard shortcuts, person history);
* :mod:`~linkage.web.i18n`: English and French strings; the language follows the browser
  with a switch.

The run report it serves is :mod:`linkage.report`'s.
"""
