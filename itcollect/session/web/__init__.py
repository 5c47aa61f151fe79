"""``itcollect session --web``: the annotation sessions in a browser, for a team.

:mod:`.app` is the ASGI app (a third front-end over the session engine, beside the terminal UI
and the line protocol), :mod:`.desk` one annotator's engine session inside the server,
:mod:`.auth` login tokens and where the running server is (no web framework needed for
``itcollect annotators``), :mod:`.server` the command that serves it; ``static/`` the page.
"""
