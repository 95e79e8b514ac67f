"""The audio layer: G.711 bit-exact against two references, WAV uploads of every common kind, 8 kHz output."""

from __future__ import annotations

import math
import re
import struct
import time
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.errors import AudioError
from switchboard.voice.audio import (
    Codec,
    Pcm,
    alaw_decode,
    alaw_encode,
    correlate,
    frames,
    read_wav,
    to_telephony,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)


def _audioop() -> ModuleType | None:
    # audioop is deprecated since 3.11 and gone in 3.13; importing it warns, which this suite treats as an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


AUDIOOP = _audioop()
needs_audioop = pytest.mark.skipif(AUDIOOP is None, reason="audioop is not in this Python (removed in 3.13)")
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


# --- Reference 1: a scalar port of Sun Microsystems' public-domain g711.c (1994 revision) -------------------------


def _search(value: int, ends: list[int]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def sun_linear2ulaw(pcm: int) -> int:
    pcm >>= 2  # 14-bit range
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)  # CLIP, then BIAS
    seg = _search(pcm, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def sun_ulaw2linear(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0xF) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def sun_linear2alaw(pcm: int) -> int:
    pcm >>= 3  # 13-bit range
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _search(pcm, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (1 if seg < 2 else seg)) & 0xF)) ^ mask


def sun_alaw2linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0xF) << 4
    seg = (code & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << max(seg - 1, 0)
    return t if code & 0x80 else -t


# --- Reference 3: ITU-T G.191 STL g711.c encoders (one's complement for negative samples) ------------------------


def g191_ulaw_compress(pcm: int) -> int:
    absno = min(((~pcm if pcm < 0 else pcm) >> 2) + 33, 0x1FFF)
    segno, i = 1, absno >> 6
    while i:
        segno, i = segno + 1, i >> 1
    code = ((8 - segno) << 4) | (0xF - ((absno >> segno) & 0xF))
    return code | 0x80 if pcm >= 0 else code


def g191_alaw_compress(pcm: int) -> int:
    ix = (~pcm if pcm < 0 else pcm) >> 4
    if ix > 15:
        exp = 1
        while ix > 31:
            ix, exp = ix >> 1, exp + 1
        ix = ix - 16 + (exp << 4)
    return (ix | 0x80 if pcm >= 0 else ix) ^ 0x55


def scalar_table(function: Callable[[int], int], inputs: range) -> list[int]:
    return [function(x) for x in inputs]


# --- G.711 ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("encode", "reference"), [(ulaw_encode, sun_linear2ulaw), (alaw_encode, sun_linear2alaw)])
def test_encoders_match_sun_g711_for_every_int16(
    encode: Callable[[npt.NDArray[np.int16]], bytes], reference: Callable[[int], int]
) -> None:
    assert list(encode(ALL_INT16)) == scalar_table(reference, range(-32768, 32768))


@pytest.mark.parametrize(("decode", "reference"), [(ulaw_decode, sun_ulaw2linear), (alaw_decode, sun_alaw2linear)])
def test_decoders_match_sun_g711_for_every_code(
    decode: Callable[[bytes], npt.NDArray[np.int16]], reference: Callable[[int], int]
) -> None:
    assert decode(ALL_CODES).tolist() == scalar_table(reference, range(256))


@needs_audioop
def test_encoders_and_decoders_match_audioop_everywhere() -> None:
    assert AUDIOOP is not None
    linear = ALL_INT16.astype("<i2").tobytes()
    assert ulaw_encode(ALL_INT16) == AUDIOOP.lin2ulaw(linear, 2)
    assert alaw_encode(ALL_INT16) == AUDIOOP.lin2alaw(linear, 2)
    assert ulaw_decode(ALL_CODES).astype("<i2").tobytes() == AUDIOOP.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES).astype("<i2").tobytes() == AUDIOOP.alaw2lin(ALL_CODES, 2)


def test_published_table_values() -> None:
    # G.711 Table 2 (µ-law) and Table 1 (A-law) decoder outputs, scaled to 16 bits.
    assert ulaw_decode(bytes([0x00, 0x80, 0x7F, 0xFF, 0x70, 0xF0])).tolist() == [-32124, 32124, 0, 0, -120, 120]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    extremes = np.array([0, 32767, -32768], dtype=np.int16)
    assert ulaw_encode(extremes) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(extremes) == bytes([0xD5, 0xAA, 0x2A])


def test_against_the_itu_g191_tool_alaw_agrees_and_ulaw_differs_one_step_on_508_negative_inputs() -> None:
    # Documents a known divergence: g711.c (and audioop) negate negative samples, G.191 complements them, so
    # e.g. -1 encodes as 0x7E (decoding to -8) here and as 0x7F (decoding to 0) in the ITU tool.
    values = range(-32768, 32768)
    assert list(alaw_encode(ALL_INT16)) == scalar_table(g191_alaw_compress, values)
    ours = np.frombuffer(ulaw_encode(ALL_INT16), dtype=np.uint8).astype(int)
    itu = np.array(scalar_table(g191_ulaw_compress, values))
    differing = ALL_INT16[ours != itu]
    assert len(differing) == 508
    assert differing.max() == -1
    assert np.abs(ours - itu).max() == 1


@pytest.mark.parametrize("codec", list(Codec))
def test_a_speech_level_sine_survives_encoding_with_telephone_quality(codec: Codec) -> None:
    t = np.arange(8000) / 8000
    signal = np.round(0.3 * 32767 * np.sin(2 * np.pi * 1004 * t)).astype(np.int16)
    decoded = codec.decode(codec.encode(signal)).astype(float)
    noise = decoded - signal
    snr = 10 * math.log10(float(np.sum(signal.astype(float) ** 2) / np.sum(noise**2)))
    assert snr > 35  # G.711's companding holds about 38 dB over a wide range of levels


def test_codec_facts_for_sdp_and_rtp() -> None:
    assert (Codec.PCMU.payload_type, Codec.PCMU.rtpmap_name, Codec.PCMU.silence) == (0, "PCMU", 0xFF)
    assert (Codec.PCMA.payload_type, Codec.PCMA.rtpmap_name, Codec.PCMA.silence) == (8, "PCMA", 0xD5)
    zeros = np.zeros(4, dtype=np.int16)
    for codec in Codec:
        assert codec.encode(zeros) == bytes([codec.silence]) * 4
        assert np.abs(codec.decode(bytes([codec.silence]))).max() <= 8  # the quietest level the law has


def test_encoders_take_strided_views_and_refuse_other_dtypes() -> None:
    stereo = np.array([[100, -100], [2000, -2000], [-30000, 30000]], dtype=np.int16)
    assert ulaw_encode(stereo[:, 0]) == ulaw_encode(np.array([100, 2000, -30000], dtype=np.int16))
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        Codec.PCMA.encode(np.zeros(3, dtype=np.int32))


def test_encoding_ten_seconds_is_a_table_lookup_not_a_python_loop() -> None:
    pcm = np.random.default_rng(7).integers(-32768, 32768, 80_000).astype(np.int16)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        Codec.PCMU.encode(pcm)
        best = min(best, time.perf_counter() - start)
    assert best < 0.002  # measured ~0.06 ms; a per-sample loop takes tens of milliseconds


# --- WAV reading ------------------------------------------------------------------------------------------------------


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    return struct.pack("<4sI", chunk_id, len(body)) + body + b"\0" * (len(body) & 1)


def fmt_body(tag: int, channels: int, rate: int, bits: int, *, extensible_tag: int | None = None) -> bytes:
    block = channels * ((bits + 7) // 8)
    base = struct.pack(
        "<HHIIHH", tag if extensible_tag is None else 0xFFFE, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits
    )
    if extensible_tag is None:
        return base
    guid = struct.pack("<H", extensible_tag) + bytes.fromhex("000000001000800000aa00389b71")
    return base + struct.pack("<HHI", 22, bits, 0) + guid


def wav(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def simple_wav(tag: int, bits: int, samples: bytes, *, channels: int = 1, rate: int = 8000) -> bytes:
    return wav(chunk(b"fmt ", fmt_body(tag, channels, rate, bits)), chunk(b"data", samples))


def pcm24(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(3, "little", signed=True) for v in values)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("8-bit unsigned", simple_wav(1, 8, bytes([0, 64, 128, 255])), [-1.0, -0.5, 0.0, 127 / 128]),
        (
            "16-bit",
            simple_wav(1, 16, struct.pack("<4h", -32768, -16384, 1, 32767)),
            [-1.0, -0.5, 1 / 32768, 32767 / 32768],
        ),
        ("24-bit", simple_wav(1, 24, pcm24([-(2**23), -1, 2**22, 2**23 - 1])), [-1.0, -(2.0**-23), 0.5, 1 - 2.0**-23]),
        ("32-bit", simple_wav(1, 32, struct.pack("<4i", -(2**31), -(2**30), 0, 2**30)), [-1.0, -0.5, 0.0, 0.5]),
        ("float32", simple_wav(3, 32, struct.pack("<4f", -1.0, -0.25, 0.5, 1.0)), [-1.0, -0.25, 0.5, 1.0]),
        ("float64", simple_wav(3, 64, struct.pack("<4d", -1.0, -0.25, 0.5, 1.0)), [-1.0, -0.25, 0.5, 1.0]),
        (
            "µ-law",
            simple_wav(7, 8, bytes([0x00, 0x80, 0xFF, 0x70])),
            [-32124 / 32768, 32124 / 32768, 0.0, -120 / 32768],
        ),
        (
            "A-law",
            simple_wav(6, 8, bytes([0xD5, 0x55, 0xAA, 0x2A])),
            [8 / 32768, -8 / 32768, 32256 / 32768, -32256 / 32768],
        ),
        (
            "extensible 24-bit",
            wav(
                chunk(b"fmt ", fmt_body(1, 1, 8000, 24, extensible_tag=1)),
                chunk(b"data", pcm24([-(2**23), -1, 2**22, 2**23 - 1])),
            ),
            [-1.0, -(2.0**-23), 0.5, 1 - 2.0**-23],
        ),
        (
            "extensible float",
            wav(
                chunk(b"fmt ", fmt_body(3, 1, 8000, 32, extensible_tag=3)),
                chunk(b"data", struct.pack("<4f", -1.0, -0.25, 0.5, 1.0)),
            ),
            [-1.0, -0.25, 0.5, 1.0],
        ),
        (
            "float beyond full scale, NaN",
            simple_wav(3, 32, struct.pack("<4f", 3.0, -7.0, math.nan, math.inf)),
            [1.0, -1.0, 0.0, 1.0],
        ),
    ],
)
def test_every_common_sample_format_reads_to_the_same_scale(name: str, data: bytes, expected: list[float]) -> None:
    pcm = read_wav(data)
    assert pcm.rate == 8000
    assert pcm.samples.dtype == np.float32
    np.testing.assert_allclose(pcm.samples, expected, rtol=0, atol=1e-7, err_msg=name)


def test_channels_are_averaged_into_mono() -> None:
    stereo = struct.pack("<6h", 16384, -16384, 8192, 8192, 32767, 0)
    assert read_wav(simple_wav(1, 16, stereo, channels=2)).samples.tolist() == [0.0, 0.25, 32767 / 65536]
    six = struct.pack("<6f", 0.6, 0.0, 0.0, 0.0, 0.0, 0.0) * 2
    np.testing.assert_allclose(read_wav(simple_wav(3, 32, six, channels=6)).samples, [0.1, 0.1], atol=1e-7)


def test_unknown_chunks_are_skipped_including_the_pad_byte_after_an_odd_size() -> None:
    samples = struct.pack("<3h", 1000, -1000, 0)
    data = wav(chunk(b"JUNK", b"abc"), chunk(b"fmt ", fmt_body(1, 1, 16000, 16)), chunk(b"LIST", b"INFOx"),
               chunk(b"data", samples), chunk(b"id3 ", b"tail"))  # fmt: skip
    pcm = read_wav(data)
    assert pcm.rate == 16000
    assert (pcm.samples * 32768).tolist() == [1000, -1000, 0]


def test_fmt_after_data_is_found() -> None:
    data = wav(chunk(b"data", struct.pack("<2h", 5, -5)), chunk(b"fmt ", fmt_body(1, 1, 8000, 16)))
    assert (read_wav(data).samples * 32768).tolist() == [5, -5]


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF, 1000])
def test_a_data_size_the_writer_could_not_fill_in_reads_to_the_end(declared: int) -> None:
    samples = struct.pack("<4h", 1, 2, 3, 4) + b"\x07"  # and half a sample, dropped
    data = wav(chunk(b"fmt ", fmt_body(1, 1, 8000, 16))) + struct.pack("<4sI", b"data", declared) + samples
    assert (read_wav(data).samples * 32768).tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV file"),
        (b"ID3\x03" + bytes(100), "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not a WAV file"),
        (wav(chunk(b"data", bytes(8))), "no fmt chunk"),
        (wav(chunk(b"fmt ", fmt_body(1, 1, 8000, 16))), "no data chunk"),
        (wav(chunk(b"fmt ", fmt_body(1, 1, 8000, 16)[:12]), chunk(b"data", bytes(8))), "fmt chunk is truncated"),
        (wav(chunk(b"fmt ", fmt_body(1, 1, 8000, 16, extensible_tag=1)[:30]), chunk(b"data", bytes(8))), "truncated"),
        (simple_wav(0x55, 16, bytes(8)), "format tag 0x0055 (MP3)"),
        (simple_wav(0x0002, 4, bytes(8)), "format tag 0x0002 (Microsoft ADPCM)"),
        (simple_wav(0x1234, 16, bytes(8)), "format tag 0x1234"),
        (
            wav(chunk(b"fmt ", fmt_body(2, 1, 8000, 16, extensible_tag=2)), chunk(b"data", bytes(8))),
            "format tag 0x0002",
        ),
        (simple_wav(3, 16, bytes(8)), "16-bit float"),
        (simple_wav(1, 0, bytes(8)), "0-bit PCM"),
        (simple_wav(1, 16, bytes(8), channels=0), "0 channels"),
        (simple_wav(1, 16, bytes(8), rate=4000), "sample rate 4000 Hz"),
        (simple_wav(1, 16, bytes(8), rate=4_000_000_000), "sample rate"),
        (simple_wav(1, 16, b""), "no audio"),
        (simple_wav(1, 16, b"\x01"), "no audio"),
        (wav(chunk(b"fmt ", fmt_body(1, 1, 8000, 16)), chunk(b"data", b""), chunk(b"LIST", b"INFO")), "no audio"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=re.escape(message)):
        read_wav(data)


def test_a_plain_fmt_chunk_with_extension_bytes_reads() -> None:
    fmt = fmt_body(1, 1, 8000, 16) + struct.pack("<HHI", 22, 16, 0) + bytes(16)
    assert (read_wav(wav(chunk(b"fmt ", fmt), chunk(b"data", struct.pack("<h", 9)))).samples * 32768).tolist() == [9]


def test_an_extensible_file_with_a_foreign_guid_is_refused() -> None:
    fmt = fmt_body(1, 1, 8000, 16, extensible_tag=1)
    data = wav(chunk(b"fmt ", fmt[:-1] + b"\x00"), chunk(b"data", bytes(8)))
    with pytest.raises(AudioError, match="unsupported WAV sub-format"):
        read_wav(data)


def test_recordings_longer_than_the_limit_are_refused() -> None:
    two_seconds = simple_wav(1, 16, bytes(32000))
    assert read_wav(two_seconds, max_seconds=2.0).seconds == 2.0
    with pytest.raises(AudioError, match=r"2\.0 s long; at most 1\.5 s"):
        read_wav(two_seconds, max_seconds=1.5)


def test_the_decoded_samples_cannot_be_changed_by_accident() -> None:
    pcm = read_wav(simple_wav(1, 16, bytes(8)))
    with pytest.raises(ValueError, match="read-only"):
        pcm.samples[0] = 1.0


VALID_WAVS = [
    simple_wav(1, 16, struct.pack("<8h", *range(-4, 4)), channels=2, rate=44100),
    wav(
        chunk(b"LIST", b"INFOabc"),
        chunk(b"fmt ", fmt_body(3, 3, 22050, 32, extensible_tag=3)),
        chunk(b"data", struct.pack("<9f", *[0.1 * i for i in range(9)])),
    ),
    simple_wav(7, 8, bytes(range(0, 256, 16))),
    simple_wav(1, 24, pcm24(list(range(-5, 5)))),
]


def assert_usable_or_refused(data: bytes) -> None:
    try:
        pcm = read_wav(data)
    except AudioError as error:
        assert str(error)
        return
    assert pcm.samples.ndim == 1
    assert pcm.samples.dtype == np.float32
    assert len(pcm.samples) > 0
    assert np.isfinite(pcm.samples).all()
    assert np.abs(pcm.samples).max() <= 1.0
    assert 8000 <= pcm.rate <= 192_000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda tail: b"RIFF\xff\xff\xff\xffWAVE" + tail))
def test_arbitrary_bytes_give_audio_or_an_audio_error(data: bytes) -> None:
    assert_usable_or_refused(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID_WAVS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 200),
    st.binary(max_size=12),
)
def test_mutated_wav_files_give_audio_or_an_audio_error(
    original: bytes, edits: list[tuple[int, int]], cut: int, inserted: bytes
) -> None:
    data = bytearray(original)
    for position, value in edits:
        data[position % len(data)] = value
    at = cut % (len(data) + 1)
    assert_usable_or_refused(bytes(data[:at] + inserted + data[at:]))
    assert_usable_or_refused(bytes(data[:at]))


# --- To 8 kHz, back to WAV, into frames ----------------------------------------------------------------------------


def tone(frequency: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> Pcm:
    t = np.arange(int(rate * seconds)) / rate
    return Pcm(samples=(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate=rate)


def rms(samples: npt.NDArray[np.int16]) -> float:
    middle = samples[800:-800].astype(float) / 32768  # away from the filter's start-up and tail
    return float(np.sqrt(np.mean(middle**2)))


@pytest.mark.parametrize("rate", [44100, 48000, 16000, 22050, 8000])
def test_a_1khz_tone_comes_out_at_8khz_with_the_same_length_and_pitch(rate: int) -> None:
    out = to_telephony(tone(1000, rate))
    assert out.dtype == np.int16
    assert abs(len(out) - 8000) <= 160
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert np.argmax(spectrum) * 8000 / len(out) == pytest.approx(1000, abs=2)
    assert rms(out) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_telephone_band_passes_and_what_would_alias_is_removed(rate: int) -> None:
    full = 0.5 / math.sqrt(2)
    assert rms(to_telephony(tone(3400, rate))) == pytest.approx(full, rel=0.01)  # ITU-T G.712 band edge
    assert rms(to_telephony(tone(3700, rate))) == pytest.approx(full, rel=0.01)
    # soxr's HQ filter rolls off between 3.7 and 4 kHz: a 3.9 kHz tone is at -25 dB, not kept.
    assert rms(to_telephony(tone(4100, rate))) < full * 0.001  # would fold to 3.9 kHz
    assert rms(to_telephony(tone(6000, rate))) < full * 0.001  # would fold to 2 kHz


def test_full_scale_input_is_clipped_not_wrapped() -> None:
    out = to_telephony(Pcm(samples=np.array([1.0, -1.0, 0.99999], dtype=np.float32), rate=8000))
    assert out.tolist() == [32767, -32768, 32767]
    assert to_telephony(Pcm(samples=np.zeros(0, dtype=np.float32), rate=48000)).size == 0


def test_write_wav_round_trips_through_read_wav_bit_for_bit() -> None:
    samples = np.random.default_rng(3).integers(-32768, 32768, 1001).astype(np.int16)
    data = write_wav(samples)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert len(data) == 44 + 2002
    pcm = read_wav(data)
    assert pcm.rate == 8000
    assert np.array_equal(to_telephony(pcm), samples)
    assert read_wav(write_wav(samples, rate=16000)).rate == 16000


@pytest.mark.parametrize("codec", list(Codec))
def test_frames_are_20ms_with_the_last_padded_with_silence(codec: Codec) -> None:
    data = bytes(range(200)) * 2
    cut = frames(data, codec=codec)
    assert [len(f) for f in cut] == [160, 160, 160]
    assert b"".join(cut) == data + bytes([codec.silence]) * 80
    assert frames(data[:320], codec=codec) == [data[:160], data[160:320]]
    assert frames(b"", codec=codec) == []
    assert frames(b"\x01\x02\x03", codec=codec, frame_bytes=2) == [b"\x01\x02", b"\x03" + bytes([codec.silence])]


# --- Correlation ------------------------------------------------------------------------------------------------------


def speech_like(seed: int, seconds: float = 2.0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(8000 * seconds)) / 8000
    chirp = np.sin(2 * np.pi * (300 * t + (3000 - 300) / (2 * seconds) * t**2))
    signal = 0.4 * chirp + 0.1 * rng.standard_normal(len(t))
    return np.round(np.clip(signal, -1, 1) * 32767).astype(np.int16)


@pytest.mark.parametrize("codec", list(Codec))
def test_audio_that_went_through_g711_and_arrived_late_correlates_above_099(codec: Codec) -> None:
    sent = speech_like(1)
    heard = codec.decode(b"".join(frames(codec.encode(sent), codec=codec)))
    received = np.concatenate([np.zeros(1234, dtype=np.int16), heard, np.zeros(700, dtype=np.int16)])
    assert correlate(sent, received) > 0.99
    assert correlate(sent, received // 4) > 0.99  # quieter is still the same audio


def test_unrelated_silent_missing_or_cut_audio_does_not_correlate() -> None:
    sent = speech_like(1)
    assert correlate(sent, speech_like(2)[::-1]) < 0.3
    assert correlate(sent, np.random.default_rng(9).standard_normal(20000)) < 0.3
    assert correlate(sent, np.zeros(20000)) == 0.0
    assert correlate(sent, []) == 0.0
    assert correlate(np.zeros(100), sent) == 0.0
    delayed = np.concatenate([np.zeros(1234), sent])
    assert correlate(sent, delayed, max_lag=1000) < 0.3  # the match lies beyond the lags searched
    assert correlate(sent, sent[: len(sent) // 2]) == pytest.approx(math.sqrt(0.5), abs=0.05)  # cut off halfway
