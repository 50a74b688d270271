"""ClipCache: the audio rows and bytes of recently sent clips, by audio id, bounded in bytes.

The compatible routes answer a convert with the clip itself; a cache hit asked for again and
again would otherwise read its audio row (a ``SELECT``) and its file (a worker thread, or S3)
on every request. Both are immutable: an audio row is never changed or deleted, and its blob is
content-addressed and never rewritten, so a remembered clip is never stale. A clip is only
given for a job of its owner (``get``: the job's owner must own the row, as
``JobStore.get_audio(audio_id, owner=...)`` requires), so it never crosses users. Least
recently used clips go first once ``max_bytes`` is passed; clips over ``max_clip`` bytes are
not kept (long books and such are rarely asked for twice in a row).
"""

from __future__ import annotations

from collections import OrderedDict

from protocols.messages import Audio

MAX_BYTES = 32 * 1024 * 1024
MAX_CLIP = 2 * 1024 * 1024


class ClipCache:
    """One per app (``WebContext.clips``); not shared between processes."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_clip: int = MAX_CLIP) -> None:
        self.max_bytes, self.max_clip = max_bytes, max_clip
        self._clips: OrderedDict[str, tuple[Audio, bytes]] = OrderedDict()
        self.size = 0

    def get(self, audio_id: str, owner: str) -> tuple[Audio, bytes] | None:
        """The clip ``audio_id`` if remembered and owned by ``owner``; else None."""
        found = self._clips.get(audio_id)
        if found is None or found[0].owner != owner:
            return None
        self._clips.move_to_end(audio_id)
        return found

    def put(self, audio: Audio, data: bytes) -> None:
        if len(data) > self.max_clip or audio.id in self._clips:
            return
        self._clips[audio.id] = (audio, data)
        self.size += len(data)
        while self.size > self.max_bytes:
            _, (_, dropped) = self._clips.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._clips)
