"""``--mic``, ``--record``, ``--frame-ms``: a call's audio from and to WAV files (no sound card used)."""

from __future__ import annotations

import argparse

from app.cli.command import user_path
from app.cli.output import EXIT_USAGE, CliError
from app.voice.audio_io import AudioFileError, WavMicrophone, WavSpeaker
from app.voice.call_media import MediaConfig
from app.voice.opus_codec import CodecSettings


def add_audio_options(parser: argparse.ArgumentParser) -> None:
    """The options of commands that talk."""
    parser.add_argument(
        "--frame-ms", type=int, choices=(10, 20), default=20, help="audio frame length (default 20)"
    )
    parser.add_argument(
        "--mic", metavar="IN.wav", type=user_path, help="48 kHz mono WAV to send as the microphone"
    )
    parser.add_argument("--record", metavar="OUT.wav", type=user_path, help="write what you hear to this WAV")


def media_config(args: argparse.Namespace) -> MediaConfig:
    """The call's media settings from the command line."""
    return MediaConfig(codec=CodecSettings(frame_ms=args.frame_ms))


def microphone(args: argparse.Namespace) -> WavMicrophone:
    """The ``--mic`` file as a microphone (a usage error when missing or unreadable)."""
    if not args.mic or not args.record:
        raise CliError("calls need --mic IN.wav and --record OUT.wav (no sound card is used)", EXIT_USAGE)
    try:
        return WavMicrophone(args.mic, media_config(args).codec)
    except AudioFileError as exc:
        raise CliError(str(exc), EXIT_USAGE, "bad_audio_file") from exc


def speaker(args: argparse.Namespace) -> WavSpeaker:
    """The ``--record`` file as a speaker."""
    try:
        return WavSpeaker(args.record)
    except AudioFileError as exc:
        raise CliError(str(exc), EXIT_USAGE, "bad_audio_file") from exc
