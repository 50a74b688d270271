"""``run.py soak``: the chaos soak (issue 13) as a command, bounded in jobs and time.

``command.py`` runs it (``soak``, ``run_soak``); ``serve.py`` is the ``run.py serve`` child it
kills and starts again; ``drive.py`` the clients and the kills; ``stand_in.py`` the noisy
ElevenLabs on 127.0.0.1; ``figures.py`` what is counted and the verdict.
"""
