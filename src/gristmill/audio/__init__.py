"""Sound-event detection in recordings: streaming decode, model scores, events, clips.

The pieces join at 16 kHz mono float32 samples on YAMNet's patch grid
(:mod:`gristmill.audio.framing`): :mod:`~gristmill.audio.decode` streams a recording in
windows aligned to that grid, so that a model scoring window by window gives the rows it
would give for the whole file at once.
"""
