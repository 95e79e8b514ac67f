"""Audio for calls: G.711 µ-law and A-law, WAV in and out, resampling to 8 kHz, 20 ms RTP frames.

References:
- ITU-T G.711 (11/1988), "Pulse code modulation (PCM) of voice frequencies": A-law Table 1a/1b, µ-law
  Table 2a/2b. The encoders reproduce, bit for bit, Sun Microsystems' public-domain g711.c (as revised by
  B. Lindberg, 1994), which CPython's audioop also uses: µ-law on the 14 high bits, A-law on the 13 high bits.
  ITU-T G.191's reference tool (STL ulaw_compress) rounds 508 negative µ-law inputs one step differently (it
  takes the one's complement of negative samples); A-law and both decoders agree everywhere.
- RFC 3551 §4.5.14 and Table 4: PCMU is RTP payload type 0, PCMA is 8, both at 8,000 Hz; §4.2: 20 ms packets by default.
- RIFF/WAVE: IBM and Microsoft, "Multimedia Programming Interface and Data Specifications 1.0" (1991): RIFF
  chunks (word-aligned) and the WAVE fmt/data chunks; Microsoft's WAVEFORMATEX (mmreg.h format tags) and
  WAVEFORMATEXTENSIBLE (a sub-format GUID whose first two bytes are the format tag).

Errors: `AudioError` is the only exception `read_wav` raises, whatever the bytes; its message
is written for the person who uploaded the file. Passing an array of the wrong dtype is a programming error
and raises `TypeError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import soxr

from switchboard.errors import AudioError

TELEPHONY_RATE = 8000
"""RFC 3551 Table 4: G.711 is clocked at 8,000 Hz."""
FRAME_BYTES = 160
"""20 ms of G.711 at 8,000 Hz, one byte a sample (RFC 3551 §4.5.14; 20 ms is the default packetization, §4.2)."""
MIN_RATE, MAX_RATE = 8000, 192000

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
_Table = TypeVar("_Table", npt.NDArray[np.uint8], npt.NDArray[np.int16])


def _build_ulaw_encoder() -> npt.NDArray[np.uint8]:
    # g711.c linear2ulaw: magnitude of the 14-bit value, clipped at 8159, biased by 33 (0x84 >> 2); the segment is
    # the first of the ends 0x3F, 0x7F, .., 0x1FFF not below it; the code word is complemented (G.711 Table 2).
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    negative = x < 0
    biased = np.minimum(np.abs(x), 8159) + 33
    seg = np.searchsorted(np.array([(0x40 << s) - 1 for s in range(8)]), biased)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((biased >> (seg + 1)) & 0xF))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8)


def _build_alaw_encoder() -> npt.NDArray[np.uint8]:
    # g711.c linear2alaw: one's complement magnitude of the 13-bit value, segment ends 0x1F, 0x3F, .., 0xFFF, the
    # two lowest segments share one step size; the even bits are inverted for transmission (G.711 Table 1).
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    negative = x < 0
    magnitude = np.where(negative, -x - 1, x)
    seg = np.searchsorted(np.array([(0x20 << s) - 1 for s in range(8)]), magnitude)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> np.maximum(seg, 1)) & 0xF))
    return (code ^ np.where(negative, 0x55, 0xD5)).astype(np.uint8)


def _build_ulaw_decoder() -> Int16Array:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decoder() -> Int16Array:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _frozen(table: _Table) -> _Table:
    table.setflags(write=False)
    return table


# Lookup tables built once at import (a few milliseconds); encoders index by the int16 read as uint16.
_ULAW_ENCODE = _frozen(_build_ulaw_encoder())
_ALAW_ENCODE = _frozen(_build_alaw_encoder())
_ULAW_DECODE = _frozen(_build_ulaw_decoder())
_ALAW_DECODE = _frozen(_build_alaw_decoder())


def _encode(pcm: Int16Array, table: npt.NDArray[np.uint8]) -> bytes:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError(f"G.711 encoders take int16 linear PCM, not {getattr(pcm, 'dtype', type(pcm))}")
    return table.take(pcm.reshape(-1).view(np.uint16)).tobytes()


def ulaw_encode(pcm: Int16Array) -> bytes:
    """µ-law (G.711 Table 2) code bytes for 16-bit linear samples."""
    return _encode(pcm, _ULAW_ENCODE)


def alaw_encode(pcm: Int16Array) -> bytes:
    """A-law (G.711 Table 1) code bytes for 16-bit linear samples."""
    return _encode(pcm, _ALAW_ENCODE)


def ulaw_decode(data: bytes) -> Int16Array:
    """16-bit linear samples (G.711 Table 2 decoder outputs, scaled by 4) for µ-law code bytes."""
    return _ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


def alaw_decode(data: bytes) -> Int16Array:
    """16-bit linear samples (G.711 Table 1 decoder outputs, scaled by 8) for A-law code bytes."""
    return _ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


class Codec(enum.Enum):
    """The G.711 laws offered in SDP; the value is the static RTP payload type (RFC 3551 Table 4)."""

    PCMU = 0
    """µ-law (North America, Japan): payload type 0, digital silence 0xFF."""
    PCMA = 8
    """A-law (the rest of the world): payload type 8, digital silence 0xD5."""

    @property
    def payload_type(self) -> int:
        return int(self.value)

    @property
    def rtpmap_name(self) -> str:
        """The encoding name in `a=rtpmap:<pt> <name>/8000` (RFC 4566 §6, RFC 3551 Table 4)."""
        return self.name

    @property
    def silence(self) -> int:
        """The code of a zero sample: 0xFF in µ-law (positive zero), 0xD5 in A-law (+8 with even bits toggled)."""
        return 0xFF if self is Codec.PCMU else 0xD5

    def encode(self, pcm: Int16Array) -> bytes:
        return ulaw_encode(pcm) if self is Codec.PCMU else alaw_encode(pcm)

    def decode(self, data: bytes) -> Int16Array:
        return ulaw_decode(data) if self is Codec.PCMU else alaw_decode(data)


@dataclass(frozen=True, eq=False, slots=True)
class Pcm:
    """Mono audio: float32 samples in [-1, 1] at `rate` Hz."""

    samples: Float32Array
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


# WAVEFORMATEX wFormatTag values (mmreg.h) that we decode, and a few common ones we name when refusing.
_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_KNOWN_TAGS = {0x0002: "Microsoft ADPCM", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0050: "MPEG",
               0x0055: "MP3", 0x00FF: "AAC", 0x1610: "AAC", 0x6771: "Vorbis", 0xF1AC: "FLAC"}  # fmt: skip
# KSDATAFORMAT_SUBTYPE_* GUIDs are {XXXXXXXX-0000-0010-8000-00AA00389B71}: the tag, then this fixed tail.
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def read_wav(data: bytes, *, max_seconds: float = 600.0) -> Pcm:
    """Decode a RIFF/WAVE file into mono float samples (channels averaged), refusing what cannot be played.

    Accepts PCM 8-bit unsigned and 16/24/32-bit signed, IEEE float 32/64, G.711 A-law and µ-law, plain or
    WAVE_FORMAT_EXTENSIBLE, any channel count, 8,000-192,000 Hz. Unknown chunks are skipped; a data chunk
    whose declared size runs past the end (streaming writers leave 0 or 0xFFFFFFFF) is read as far as it goes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a WAV file (it does not start with a RIFF/WAVE header)")
    fmt: bytes | None = None
    audio: bytes | None = None
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or audio is None):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt " and fmt is None:
            fmt = body
        elif chunk_id == b"data" and audio is None:
            # Writers that cannot seek back leave the size 0 or 0xFFFFFFFF: then the audio runs to the end.
            audio = data[pos + 8 :] if size == 0 and not _looks_like_chunk(data, pos + 8) else body
        pos += 8 + size + (size & 1)  # RIFF: chunks are word-aligned, an odd size is followed by a pad byte
    if fmt is None:
        raise AudioError("the WAV file has no fmt chunk")
    if audio is None:
        raise AudioError("the WAV file has no data chunk")
    tag, channels, rate, width = _parse_fmt(fmt)
    frame = channels * width
    count = len(audio) // frame
    if count == 0:
        raise AudioError("the WAV file contains no audio")
    if count / rate > max_seconds:
        raise AudioError(f"the recording is {count / rate:.1f} s long; at most {max_seconds:g} s is accepted")
    samples = _decode_samples(audio[: count * frame], tag, width)
    mono = samples.reshape(count, channels).mean(axis=1, dtype=np.float64) if channels > 1 else samples
    out = np.clip(mono, -1.0, 1.0).astype(np.float32)
    out.setflags(write=False)
    return Pcm(samples=out, rate=rate)


def _looks_like_chunk(data: bytes, pos: int) -> bool:
    """Whether a chunk header (four printable ASCII characters, a size that fits) starts at `pos`."""
    if pos + 8 > len(data):
        return pos >= len(data)
    chunk_id, size = struct.unpack_from("<4sI", data, pos)
    return all(0x20 <= c < 0x7F for c in chunk_id) and pos + 8 + size <= len(data)


def _parse_fmt(fmt: bytes) -> tuple[int, int, int, int]:
    """(format tag, channels, rate, bytes per sample) from a WAVEFORMATEX or WAVEFORMATEXTENSIBLE body."""
    if len(fmt) < 16:
        raise AudioError("the WAV file's fmt chunk is truncated")
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        # cbSize 22: wValidBitsPerSample, dwChannelMask, then the 16-byte SubFormat GUID at offset 24.
        if len(fmt) < 40:
            raise AudioError("the WAV file's fmt chunk is truncated (WAVE_FORMAT_EXTENSIBLE needs 40 bytes)")
        guid = fmt[24:40]
        if guid[2:] != _GUID_TAIL:
            raise AudioError(f"unsupported WAV sub-format {guid.hex()}")
        tag = int.from_bytes(guid[:2], "little")
    if channels == 0:
        raise AudioError("the WAV file declares 0 channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (accepted: {MIN_RATE:,} to {MAX_RATE:,} Hz)")
    width = (bits + 7) // 8  # a sample occupies whole bytes, left-justified (WAVEFORMATEX, wBitsPerSample)
    if tag == _PCM and 1 <= width <= 4:
        return tag, channels, rate, width
    if tag == _FLOAT and width in (4, 8):
        return tag, channels, rate, width
    if tag in (_ALAW, _ULAW) and width == 1:
        return tag, channels, rate, width
    if tag in (_PCM, _FLOAT, _ALAW, _ULAW):
        name = {_PCM: "PCM", _FLOAT: "float", _ALAW: "A-law", _ULAW: "µ-law"}[tag]
        raise AudioError(f"unsupported WAV sample size: {bits}-bit {name}")
    known = f" ({_KNOWN_TAGS[tag]})" if tag in _KNOWN_TAGS else ""
    raise AudioError(f"unsupported WAV format tag 0x{tag:04X}{known}; use PCM, float, A-law or µ-law")


def _decode_samples(raw: bytes, tag: int, width: int) -> npt.NDArray[np.float64]:
    if tag == _ULAW:
        return ulaw_decode(raw) / 32768.0
    if tag == _ALAW:
        return alaw_decode(raw) / 32768.0
    if tag == _FLOAT:
        values = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        return np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=-1.0)
    if width == 1:  # 8-bit PCM is the one unsigned width, centred on 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:  # widen each little-endian 24-bit sample to the top of an int32, keeping its sign
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        return padded.view("<i4").reshape(-1).astype(np.float64) / 2.0**31
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(raw, dtype=dtype).astype(np.float64) / 2.0 ** (8 * width - 1)


def to_telephony(pcm: Pcm) -> Int16Array:
    """8 kHz mono int16, resampled with libsoxr's high-quality filter (which removes what is above 4 kHz)."""
    samples = np.asarray(pcm.samples, dtype=np.float32)
    if pcm.rate != TELEPHONY_RATE and len(samples):
        samples = soxr.resample(samples, pcm.rate, TELEPHONY_RATE, quality="HQ")
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def write_wav(pcm8k: Int16Array, *, rate: int = TELEPHONY_RATE) -> bytes:
    """A 16-bit mono PCM WAV file (a 44-byte canonical header) of the samples."""
    if not isinstance(pcm8k, np.ndarray) or pcm8k.dtype != np.int16:
        raise TypeError(f"write_wav takes int16 samples, not {getattr(pcm8k, 'dtype', type(pcm8k))}")
    body = pcm8k.reshape(-1).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, _PCM, 1, rate,
                         rate * 2, 2, 16, b"data", len(body))  # fmt: skip
    return header + body + b"\0" * (len(body) & 1)


def frames(data: bytes, *, codec: Codec, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Encoded audio cut into RTP payloads of `frame_bytes`, the last one padded with the codec's silence."""
    if frame_bytes <= 0:
        raise ValueError("frame_bytes must be positive")
    short = -len(data) % frame_bytes
    padded = data + bytes([codec.silence]) * short
    return [padded[i : i + frame_bytes] for i in range(0, len(padded), frame_bytes)]


def correlate(reference: npt.ArrayLike, received: npt.ArrayLike, *, max_lag: int = 8000) -> float:
    """The highest normalised cross-correlation of `reference` with `received` delayed by 0..max_lag samples.

    At each lag, the cosine between the reference and the stretch of `received` starting there (cut short by
    the end of `received`): 1.0 when received holds the reference unchanged but for gain and delay. Computed
    for all lags at once with an FFT, so a few seconds of audio take milliseconds.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    rec = np.asarray(received, dtype=np.float64).reshape(-1)
    n, m = len(ref), len(rec)
    ref_energy = float(ref @ ref)
    if n == 0 or m == 0 or ref_energy == 0.0 or max_lag < 0:
        return 0.0
    lags = min(max_lag, m - 1) + 1
    rec = rec[: n + lags - 1]  # what lies beyond the last window cannot matter
    m = len(rec)
    size = 1 << (n + m - 2).bit_length()  # room for the whole linear correlation, so no lag wraps around
    dots = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(ref, size)), size)[:lags]
    cumulative = np.concatenate(([0.0], np.cumsum(rec * rec)))
    starts = np.arange(lags)
    window_energy = cumulative[np.minimum(starts + n, m)] - cumulative[starts]
    # Windows holding a vanishing share of the signal are rounding noise, not a match.
    audible = window_energy > 1e-9 * cumulative[-1]
    if not audible.any():
        return 0.0
    scores = dots[audible] / np.sqrt(window_energy[audible] * ref_energy)
    return float(np.clip(scores.max(), -1.0, 1.0))
