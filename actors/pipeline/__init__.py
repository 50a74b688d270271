"""The job pipeline: Producer -> StreamReader -> TTSActors -> Storer, and its helpers."""
