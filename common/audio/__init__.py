"""The audio stack both sides use: the daemon renders with it, the CLI and TUI export, analyse and
encode melody uploads with it (so clients never import daemon internals).

Modules: files (library layout, atomic WAV with tags), export (WAV/FLAC for producers), ardour
(session folders), loudness and analysis (measurements), pipeline (normalise + analyse, analyse a
file), melody (decode and reduce a melody reference; the upload encoding).
"""
