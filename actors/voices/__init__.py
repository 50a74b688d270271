"""Voice services: VoiceSync tracks clones until they are ready."""
