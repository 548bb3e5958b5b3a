"""Daemon-only audio: bounded reads of track files for `track.audio`. The shared stack is dgx_music.common.audio."""
