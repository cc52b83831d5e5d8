"""YAMNet's patch grid, in samples at 16 kHz: the one place its numbers live.

YAMNet frames the waveform with a 400-sample (25 ms) STFT window every 160 samples
(10 ms) and groups 96 frames into a patch (0.96 s); a patch starts every 48 frames.
Patch ``p`` therefore reads samples ``[p * PATCH_HOP, p * PATCH_HOP + PATCH_SPAN)``: its
96 frames cover ``95 * 160 + 400`` samples. Decoding windows that start on multiples of
``PATCH_HOP`` and overlap by :data:`OVERLAP` give a model exactly the patches the whole
waveform would.
"""

from __future__ import annotations

__all__ = ["HOP_SECONDS", "OVERLAP", "PATCH_HOP", "PATCH_SECONDS", "PATCH_SPAN",
           "SAMPLE_RATE", "patches", "scored_patches"]

#: The rate every recording is resampled to (YAMNet's input).
SAMPLE_RATE = 16_000
#: Samples from one patch's start to the next (48 STFT hops of 160: 0.48 s).
PATCH_HOP = 7_680
#: Samples one patch reads (95 STFT hops of 160 plus one 400-sample window: 0.975 s).
PATCH_SPAN = 15_600
#: Samples two consecutive decoding windows share, so no patch straddles a gap.
OVERLAP = PATCH_SPAN - PATCH_HOP  # 7,920
#: Seconds between patch starts, and seconds one patch's 96 frames cover (their hops).
HOP_SECONDS = PATCH_HOP / SAMPLE_RATE  # 0.48
PATCH_SECONDS = 96 * 160 / SAMPLE_RATE  # 0.96


def patches(samples: int) -> int:
    """Whole patches in a waveform of ``samples`` samples (0 if shorter than one patch).

    Example: ``patches(16_000 * 60) == 123``.
    """
    if samples < PATCH_SPAN:
        return 0
    return 1 + (samples - PATCH_SPAN) // PATCH_HOP


def scored_patches(samples: int) -> int:
    """Patches a YAMNet model scores for ``samples`` samples: the whole ones, plus one
    zero-padded patch for a tail no whole patch holds (YAMNet's ``pad_waveform``), so
    every sample is in some patch; none for none.

    Example: ``scored_patches(16_000 * 60) == 124``.
    """
    if samples <= 0:
        return 0
    beyond_first = max(samples, PATCH_SPAN) - PATCH_SPAN
    return 1 - (-beyond_first // PATCH_HOP)
