"""Score a far-end recording against the speech that was sent: alignment and PESQ wideband (ITU-T P.862.2).

Runs in the benchmark virtualenv (``.bench-venv``, with numpy and pesq), not the app's: ::

    .bench-venv/bin/python tests/bench/pesq_score.py REFERENCE_16K.wav DEGRADED_16K.wav

Both files are 16 kHz mono 16-bit. Prints one JSON line: ``lag_seconds`` (where the reference starts in the
recording, from the peak of their cross-correlation), ``pesq`` (the aligned recording's score) and
``window_lags`` (the same for each 2 s stretch of speech: how the delay moved during the call).
"""

from __future__ import annotations

import json
import sys
import wave

import numpy as np
from pesq import pesq

RATE = 16_000


def read(path: str) -> np.ndarray:
    """A WAV file's samples as floats."""
    with wave.open(path, "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)


def lag(reference: np.ndarray, recording: np.ndarray) -> int:
    """Samples from the start of ``recording`` to where ``reference`` begins in it."""
    size = 1 << int(np.ceil(np.log2(len(reference) + len(recording))))
    spectrum = np.fft.rfft(recording, size) * np.conj(np.fft.rfft(reference, size))
    correlation = np.fft.irfft(spectrum, size)[: len(recording)]
    return int(np.argmax(correlation))


def window_lags(reference: np.ndarray, recording: np.ndarray, start: int) -> list[float]:
    """Each 2 s stretch of the reference that holds speech, found within ±0.5 s of the global alignment."""
    size, slack, lags = 2 * RATE, RATE // 2, []
    loud = np.sqrt(np.mean(reference**2))
    for offset in range(0, len(reference) - size, size):
        piece = reference[offset : offset + size]
        if np.sqrt(np.mean(piece**2)) < 0.3 * loud:
            continue  # mostly silence: nothing to align
        low = max(0, start + offset - slack)
        found = low + lag(piece, recording[low : start + offset + size + slack])
        lags.append((found - offset) / RATE)
    return lags


def main() -> None:
    reference, recording = read(sys.argv[1]), read(sys.argv[2])
    start = lag(reference, recording)
    aligned = recording[start : start + len(reference)]
    if len(aligned) < len(reference):
        aligned = np.concatenate([aligned, np.zeros(len(reference) - len(aligned))])
    score = pesq(RATE, reference, aligned, "wb")
    windows = window_lags(reference, recording, start)
    print(json.dumps({"lag_seconds": start / RATE, "pesq": round(float(score), 3), "window_lags": windows}))


if __name__ == "__main__":
    main()
