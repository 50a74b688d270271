"""The compatibility layer: what the ElevenLabs- and OpenAI-shaped routes share (their error
shapes, waiting for a job, a finished job's clip and timings). The routes themselves are in
``web/routes/el_speech.py``, ``el_account.py``, ``openai_speech.py`` and ``compat_models.py``;
each convert is an ordinary Chorus job submitted through the ``Intake``."""
