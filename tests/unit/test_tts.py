"""Text to speech (switchboard/voice/tts.py): the locale table, real espeak-ng renders, and the audio cache."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from switchboard.errors import RenderFailed, TtsError, UnsupportedLocale
from switchboard.voice import tts
from switchboard.voice.tts import MAX_TEXT_CHARS, EspeakEngine, Rendered, TtsCache, normalize_locale
from tests.clock import FakeClock

CONTRACT_LOCALES = ["hi-IN", "en-US", "en-GB", "es-ES", "fr-FR", "ar", "bn-IN", "ta-IN", "te-IN", "mr-IN", "gu-IN",
                    "ur-PK"]  # fmt: skip
COMMON_LOCALES = ["de-DE", "it-IT", "pt-BR", "pt-PT", "nl-NL", "ru-RU", "zh-CN", "ja-JP", "ko-KR", "tr-TR", "pl-PL",
                  "sv-SE", "id-ID", "vi-VN"]  # fmt: skip
# "Welcome to our service" (or near it) in each contract locale's own script.
GREETINGS = {
    "hi-IN": "नमस्ते, हमारी सेवा में आपका स्वागत है।",
    "en-US": "Welcome to Optimum Measures Voice solution",
    "en-GB": "Welcome to Optimum Measures Voice solution",
    "es-ES": "Bienvenido a nuestro servicio de voz.",
    "fr-FR": "Bienvenue dans notre service vocal.",
    "ar": "مرحبا بكم في خدمتنا الصوتية",
    "bn-IN": "আমাদের পরিষেবায় আপনাকে স্বাগতম",
    "ta-IN": "எங்கள் சேவைக்கு உங்களை வரவேற்கிறோம்",
    "te-IN": "మా సేవకు మీకు స్వాగతం",
    "mr-IN": "आमच्या सेवेत आपले स्वागत आहे",
    "gu-IN": "અમારી સેવામાં આપનું સ્વાગત છે",
    "ur-PK": "ہماری سروس میں خوش آمدید",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[EspeakEngine]:
    e = EspeakEngine()
    yield e
    e.close()


def loudness(r: Rendered) -> float:
    return float(np.sqrt(np.mean(r.samples.astype(np.float64) ** 2)))


def assert_speech(r: Rendered, *, low: float = 1.0, high: float = 10.0) -> None:
    assert r.samples.dtype == np.int16 and r.samples.ndim == 1
    assert low <= r.duration <= high, r.duration
    assert loudness(r) > 300  # int16 full scale is 32767; espeak-ng speaks at a few thousand RMS


# ---------------------------------------------------------------------------------------------- locales


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("en-us", "en-US"), ("EN_us", "en-US"), ("AR", "ar"), ("hi-in", "hi-IN"), ("zh_hans_cn", "zh-Hans-CN"),
     ("ES-419", "es-419"), ("en-gb-x-RP", "en-GB-x-rp"), ("cmn-latn-pinyin", "cmn-Latn-pinyin")],
)  # fmt: skip
def test_normalize_locale_gives_canonical_casing(given: str, canonical: str) -> None:
    assert normalize_locale(given) == canonical


@pytest.mark.parametrize("bad", ["", "e", "en--us", "en US", "hi-IN;rm -rf", "en-", "1n-US", "hi-" + "x" * 70])
def test_what_is_not_a_locale_is_unsupported(bad: str) -> None:
    with pytest.raises(UnsupportedLocale):
        normalize_locale(bad)


@pytest.mark.parametrize("locale", CONTRACT_LOCALES + COMMON_LOCALES)
def test_contract_and_common_locales_are_supported_and_listed(engine: EspeakEngine, locale: str) -> None:
    assert engine.locale_voice(locale) is not None
    assert locale in engine.locales()


def test_lookups_are_tolerant_of_case_and_underscore(engine: EspeakEngine) -> None:
    assert engine.locale_voice("hi_in") == engine.locale_voice("HI-IN") == engine.locale_voice("hi-IN")
    assert engine.locale_voice("en_us") == engine.locale_voice("en-US") != engine.locale_voice("en-GB")
    assert engine.locale_voice("hi") == engine.locale_voice("hi-IN")  # a bare language
    assert engine.locale_voice("zh") == engine.locale_voice("zh-CN")


def test_languages_espeak_reports_are_supported_beyond_the_named_ones(engine: EspeakEngine) -> None:
    for locale in ["sw", "cy", "yue", "en-GB-scotland", "vi-VN-x-south", "es-419"]:
        assert engine.locale_voice(locale) is not None, locale
    assert all(normalize_locale(locale) == locale for locale in engine.locales())


@pytest.mark.parametrize("locale", ["xx-YY", "en-IN", "fr-CA", "klingon-ish", "", "fo"])
async def test_unknown_locale_is_unsupported(engine: EspeakEngine, locale: str) -> None:
    assert engine.locale_voice(locale) is None
    with pytest.raises(UnsupportedLocale) as raised:
        await engine.render("hello", locale=locale)
    assert isinstance(raised.value, TtsError) and raised.value.locale == locale


async def test_every_listed_locale_speaks(engine: EspeakEngine) -> None:
    # A locale advertised by locales() must not render silence (as a voice without its dictionary would).
    voices = {engine.locale_voice(locale): locale for locale in engine.locales()}
    for locale in voices.values():
        # Digits, or letters for the few (Cherokee, Chuvash, Sindarin) that do not read Latin digits.
        r = max([await engine.render(t, locale=locale) for t in ("1 2 3 4 5", "a b c d e")], key=lambda r: r.duration)
        assert r.duration > 0.5 and loudness(r) > 300, locale


# ---------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("locale", CONTRACT_LOCALES)
async def test_each_contract_locale_renders_speech_of_plausible_length(engine: EspeakEngine, locale: str) -> None:
    assert_speech(await engine.render(GREETINGS[locale], locale=locale))


async def test_welcome_in_english_and_hindi(engine: EspeakEngine) -> None:
    english = await engine.render("Welcome to Optimum Measures Voice solution", locale="en-us")
    hindi = await engine.render("नमस्ते, ऑप्टिमम मेज़र्स वॉइस सॉल्यूशन में आपका स्वागत है।", locale="hi-IN")
    for r in (english, hindi):
        assert_speech(r)
        assert r.rate == 22050  # espeak-ng's native rate, as espeak_Initialize reports it
        assert r.duration == r.samples.size / r.rate


async def test_concurrent_renders_do_not_interleave(engine: EspeakEngine) -> None:
    long_text = "Your appointment is confirmed for Monday at ten in the morning. " * 3
    short_text = "नमस्ते"
    alone_long = await engine.render(long_text, locale="en-US")
    alone_short = await engine.render(short_text, locale="hi-IN")
    together = await asyncio.gather(*(engine.render(t, locale=lo) for t, lo in
                                      [(long_text, "en-US"), (short_text, "hi-IN")] * 2))  # fmt: skip
    # espeak-ng's output varies by a few samples between renders; mixed buffers would be far off.
    for r, alone in zip(together, [alone_long, alone_short] * 2, strict=True):
        assert abs(r.samples.size - alone.samples.size) < 0.02 * alone.samples.size


async def test_markup_is_spoken_as_text_not_interpreted(engine: EspeakEngine) -> None:
    r = await engine.render("<speak><break time='10s'/>Hello</speak> [[h@l'oU]] &amp;", locale="en-US")
    assert_speech(r, low=0.5, high=9.0)  # an SSML break would add 10 s of silence


async def test_control_characters_become_spaces(engine: EspeakEngine) -> None:
    # A NUL reaching espeak-ng would end the text there: "world" would not be spoken.
    with_nul = await engine.render("hello\x00world\x07", locale="en-US")
    plain = await engine.render("hello world", locale="en-US")
    assert abs(with_nul.duration - plain.duration) < 0.1


async def test_text_limits(engine: EspeakEngine) -> None:
    for bad in ["", "   \n\t ", "a" * (MAX_TEXT_CHARS + 1)]:
        with pytest.raises(TtsError):
            await engine.render(bad, locale="en-US")
    assert_speech(await engine.render("a " * (MAX_TEXT_CHARS // 2), locale="en-US"), low=30, high=600)


async def test_voice_override_and_bad_voices(engine: EspeakEngine) -> None:
    assert_speech(await engine.render("Welcome to the service", locale="en-US", voice="gmw/en-US+f3"), low=0.5)
    with pytest.raises(RenderFailed):
        await engine.render("hello", locale="en-US", voice="no-such-voice")
    for bad in ["../../etc/passwd", "en us", "-x", "a" * 60]:
        with pytest.raises(TtsError):
            await engine.render("hello", locale="en-US", voice=bad)


async def test_render_does_not_block_the_event_loop(engine: EspeakEngine) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    r = await engine.render("1234567890 " * (MAX_TEXT_CHARS // 11), locale="en-US")  # ~8 min of speech
    took = time.monotonic() - started
    task.cancel()
    during = [t for t in ticks if t >= started]
    gaps = np.diff([started, *during])
    assert r.duration > 300 and took > 0.15  # long enough that blocking would show
    assert len(during) >= took / 0.01 / 3 and gaps.max() < max(0.1, took / 3)


async def test_closed_engine_refuses() -> None:
    e = EspeakEngine()
    e.close()
    with pytest.raises(TtsError):
        await e.render("hello", locale="en-US")


def test_no_espeak_at_all_is_a_clear_error() -> None:
    with pytest.raises(TtsError, match="espeak-ng"):
        EspeakEngine(library="/nonexistent/libespeak-ng.so", data="/nonexistent", program="/nonexistent/espeak-ng")


# ---------------------------------------------------------------------------------------------- the program

FAKE_PROGRAM = """#!{python}
# Stands in for Debian's espeak-ng: its --version and --voices output, and a WAV on stdout as espeak-ng
# writes one to a pipe (placeholder sizes, since it cannot seek back).
import struct, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 1.51  Data at: /nonexistent/espeak-ng-data")
elif args == ["--voices"]:
    print("Pty Language       Age/Gender VoiceName          File                 Other Languages")
    print(" 5  af              --/M      Afrikaans          gmw/af               ")
    print(" 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)")
    print(" 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)")
    print(" 5  hi              --/M      Hindi              inc/hi               ")
    print(" 5  variant         --/F      Alicia             !v/Alicia            ")
else:
    text = sys.stdin.buffer.read()
    open({log!r}, "ab").write(repr(args).encode() + b"\\n" + text + b"\\n")
    if args[1] == "nope":
        sys.exit(1)
    header = bytes.fromhex("52494646 24f0ff7f 57415645 666d7420 10000000 01000100")
    sys.stdout.buffer.write(header + struct.pack("<II", 22050, 44100) + bytes.fromhex("02001000 64617461 00f0ff7f"))
    sys.stdout.buffer.write(struct.pack("<h", 3000) * 2205 * len(text.split()))
"""


@pytest.fixture
def fake_program(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    program = tmp_path / "espeak-ng"
    program.write_text(FAKE_PROGRAM.format(python=sys.executable, log=str(log)))
    program.chmod(0o755)
    return program, log


async def test_falls_back_to_the_espeak_ng_program(fake_program: tuple[Path, Path]) -> None:
    program, log = fake_program
    e = EspeakEngine(library="/nonexistent/libespeak-ng.so", data="/nonexistent", program=str(program))
    try:
        assert e.version == "1.51+cli"
        assert e.locale_voice("en-US") == "gmw/en-US" and e.locale_voice("en") == "gmw/en"
        assert e.locale_voice("hi-IN") == "inc/hi" and e.locale_voice("de-DE") is None
        r = await e.render("one two three [[h@l'oU]]", locale="en_us")
        assert r.rate == 22050 and r.samples.size == 2205 * 5 and r.samples[0] == 3000
        calls = log.read_bytes()
        assert b"'-v', 'gmw/en-US'" in calls and b"[[" not in calls  # phoneme input neutralised
        with pytest.raises(RenderFailed):
            await e.render("hello", locale="en-US", voice="nope")
    finally:
        e.close()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="Debian's espeak-ng is not installed")
async def test_the_real_espeak_ng_program() -> None:
    e = EspeakEngine(library="/nonexistent/libespeak-ng.so", data="/nonexistent")
    try:
        assert_speech(await e.render("Welcome to Optimum Measures Voice solution", locale="en-US"))
        assert_speech(await e.render(GREETINGS["hi-IN"], locale="hi-IN"))
    finally:
        e.close()


# ---------------------------------------------------------------------------------------------- cache


class StubEngine:
    def __init__(self, name: str = "espeak-ng", version: str = "1.52.0") -> None:
        self.name, self.version = name, version


def key(text: str = "hello", locale: str = "en-US", voice: str | None = None, version: str = "1.52.0") -> str:
    return TtsCache.key(StubEngine(version=version), text, locale, voice)  # type: ignore[arg-type]


def test_key_covers_engine_text_locale_and_voice() -> None:
    base = key()
    assert len(base) == 64 and base == key(locale="en_us")  # canonical locale
    variants = [key(text="hello."), key(locale="en-GB"), key(voice="gmw/en-US"), key(voice=""), key(version="1.51")]
    assert len({base, *variants}) == 1 + len(variants)
    # the encoding is unambiguous: moving text between fields does not collide
    assert TtsCache.key(StubEngine("a", "b"), "c", "en", None) != TtsCache.key(StubEngine("a", "bc"), "", "en", None)  # type: ignore[arg-type]


def test_cache_round_trip_and_miss(tmp_path: Path) -> None:
    cache = TtsCache(tmp_path / "tts")
    assert cache.get(key()) is None
    cache.put(key(), b"\x00\x01pcm")
    assert cache.get(key()) == b"\x00\x01pcm"
    assert TtsCache(tmp_path / "tts").get(key()) == b"\x00\x01pcm"  # survives a restart
    cache.put(key(), b"replaced")
    assert cache.get(key()) == b"replaced"
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = TtsCache(tmp_path, max_bytes=1000, clock=clock)
    a, b, c, d = (key(text=t) for t in "abcd")
    for k in (a, b, c):
        cache.put(k, b"x" * 300)
        clock.advance(seconds=1)
    assert cache.get(a) is not None  # a is now the most recently used
    clock.advance(seconds=1)
    cache.put(d, b"x" * 300)  # 1,200 bytes: the oldest, b, goes
    assert cache.get(b) is None
    assert all(cache.get(k) is not None for k in (a, c, d))
    cache.put(key(text="huge"), b"x" * 1001)  # never fits: not kept, and nothing else is evicted for it
    assert cache.get(key(text="huge")) is None and all(cache.get(k) is not None for k in (a, c, d))


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TtsCache(tmp_path)
    seen: list[bool] = []
    real_fsync = os.fsync

    def fsync_then_look(fd: int) -> None:
        real_fsync(fd)
        seen.append((tmp_path / key()).exists())  # while the data is being made durable

    monkeypatch.setattr(os, "fsync", fsync_then_look)
    cache.put(key(), b"whole")
    assert seen == [False] and cache.get(key()) == b"whole"

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        cache.put(key(text="other"), b"partial")
    assert cache.get(key(text="other")) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [key()]  # no temp file left behind


def test_cache_removes_temp_files_left_by_a_crash(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = TtsCache(tmp_path, clock=clock)
    orphan = tmp_path / ".partial-crashed"
    orphan.write_bytes(b"half")
    os.utime(orphan, (clock.now_ms() / 1000 - 7200,) * 2)
    fresh = tmp_path / ".partial-writing-now"
    fresh.write_bytes(b"half")
    os.utime(fresh, (clock.now_ms() / 1000,) * 2)
    cache.put(key(), b"data")
    assert not orphan.exists() and fresh.exists()


def test_parse_wav_reads_sizes_written_by_a_pipe() -> None:
    pcm = struct.pack("<3h", 1, -2, 3)
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    whole = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    piped = whole[:40] + b"\x00\xf0\xff\x7f" + pcm
    for wav in (whole, piped):
        samples, rate = tts._parse_wav(wav)
        assert rate == 16000 and samples.tolist() == [1, -2, 3]
    with pytest.raises(RenderFailed):
        tts._parse_wav(b"not a wav at all")
