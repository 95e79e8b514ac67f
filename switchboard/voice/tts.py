"""Text to speech: the `TtsEngine` interface, espeak-ng behind it, its locale table, and `TtsCache`.

`EspeakEngine` binds libespeak-ng with ctypes from the `espeakng-loader` wheel (library and voice data
inside: a fresh machine needs no system package), else runs Debian's `espeak-ng` program. libespeak-ng
keeps process-global state, is not thread-safe and blocks: each engine makes every call on one thread of
its own, and a process-wide lock keeps two engines out of the library at once. Its output varies by a
few samples between renders of one text; the cache is what makes a prompt sound the same every time.

Locales: the named ones of `_NAMED` (the contract's and other common ones) and every language tag that
espeak-ng reports (espeak_ListVoices), each to the voice speaking it with the best priority, less voices
whose dictionary is missing (the wheel lacks fo, kaa, xex: they would speak silence). Lookups ignore case
and take `_`; a bare language ("hi") finds a named locale of it ("hi-IN"); no region falls back to
another (fr-CA is unsupported). Text: at most `MAX_TEXT_CHARS`; control characters other than newline and
tab become spaces (a NUL would end the C string); never read as SSML or phonemes ("<speak>" is text).

    TtsError                  no espeak-ng; text refused (empty, too long); engine closed; bad voice name
    ├── UnsupportedLocale     not in the table, or not a locale at all (the API's 5004)
    └── RenderFailed          no audio: unknown voice, espeak-ng failed, over MAX_AUDIO_SECONDS

`TtsCache` raises ValueError for a key it did not make (a programming error) and lets OSError through
(`prompts.AudioLibrary`, its one caller, turns that into TtsError).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from switchboard.domain.clock import Clock, SystemClock
from switchboard.errors import RenderFailed, TtsError, UnsupportedLocale

log = logging.getLogger("switchboard.voice.tts")

MAX_TEXT_CHARS = 5_000
"""The longest text rendered (about 4 minutes of speech, 8 when it is all digits)."""
MAX_AUDIO_SECONDS = 15 * 60
"""Rendering stops with RenderFailed past this much audio."""


@dataclass(frozen=True, eq=False)
class Rendered:
    """Speech as int16 mono samples at the engine's native rate (22,050 Hz for espeak-ng)."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        return self.samples.size / self.rate


class TtsEngine(Protocol):
    name: str
    version: str

    def locale_voice(self, locale: str) -> str | None:
        """The engine voice for a locale (any casing, `_` or `-`); None when unsupported."""

    def locales(self) -> list[str]:
        """Every supported locale, canonical, sorted."""

    async def render(self, text: str, *, locale: str, voice: str | None = None) -> Rendered:
        """`text` spoken in `locale` (by `voice` instead of the locale's when given)."""

    def close(self) -> None:
        """Stop the engine; renders already submitted finish first."""


# ---------------------------------------------------------------------------------------------- locales

_LOCALE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")

# Locale -> the espeak-ng language tag that selects its voice (as espeak_ListVoices / `--voices` report it).
_NAMED: dict[str, str] = {
    "hi-IN": "hi", "en-US": "en-us", "en-GB": "en-gb", "es-ES": "es", "fr-FR": "fr-fr", "ar": "ar",
    "bn-IN": "bn", "ta-IN": "ta", "te-IN": "te", "mr-IN": "mr", "gu-IN": "gu", "ur-PK": "ur",
    "kn-IN": "kn", "ml-IN": "ml", "pa-IN": "pa", "or-IN": "or", "as-IN": "as", "ne-NP": "ne", "si-LK": "si",
    "de-DE": "de", "it-IT": "it", "pt-BR": "pt-br", "pt-PT": "pt-pt", "nl-NL": "nl", "ru-RU": "ru",
    "zh-CN": "cmn", "zh-HK": "yue", "ja-JP": "ja", "ko-KR": "ko", "tr-TR": "tr", "pl-PL": "pl", "sv-SE": "sv",
    "id-ID": "id", "vi-VN": "vi", "es-MX": "es-419", "fr-BE": "fr-be", "fr-CH": "fr-ch", "da-DK": "da",
    "fi-FI": "fi", "nb-NO": "nb", "cs-CZ": "cs", "el-GR": "el", "he-IL": "he", "hu-HU": "hu", "ro-RO": "ro",
    "uk-UA": "uk", "th-TH": "th", "ms-MY": "ms", "bg-BG": "bg", "hr-HR": "hr", "sk-SK": "sk", "sl-SI": "sl",
    "sr-RS": "sr", "ca-ES": "ca", "eu-ES": "eu", "et-EE": "et", "lv-LV": "lv", "lt-LT": "lt", "fa-IR": "fa",
    "sw-KE": "sw", "af-ZA": "af", "am-ET": "am", "ka-GE": "ka", "hy-AM": "hy", "az-AZ": "az", "kk-KZ": "kk",
    "is-IS": "is", "ga-IE": "ga", "cy-GB": "cy", "sq-AL": "sq", "mk-MK": "mk", "bs-BA": "bs", "mt-MT": "mt",
    "my-MM": "my", "uz-UZ": "uz", "ky-KG": "ky",
}  # fmt: skip


def normalize_locale(value: str) -> str:
    """The canonical BCP-47 casing of a locale ("en_us" → "en-US", "AR" → "ar", "zh-hans-cn" →
    "zh-Hans-CN"); raises UnsupportedLocale when `value` is not shaped like a locale at all."""
    if len(value) > 64 or not _LOCALE.fullmatch(value):
        raise UnsupportedLocale(value)
    parts = value.replace("_", "-").lower().split("-")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        if len(parts[i - 1]) == 1:  # after a singleton (x-, u-) everything is lower case (RFC 5646 §2.1.1)
            out.extend(parts[i:])
            break
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())  # region
        else:
            out.append(part)
    return "-".join(out)


@dataclass(frozen=True)
class _Voice:
    identifier: str  # what selects it: "gmw/en-US"
    languages: tuple[tuple[int, str], ...]  # (priority, tag); a lower priority number is preferred


class _LocaleTable:
    def __init__(self, voices: list[_Voice]) -> None:
        best: dict[str, tuple[int, str]] = {}
        for voice in voices:
            for priority, tag in voice.languages:
                if tag.lower() not in best or priority < best[tag.lower()][0]:
                    best[tag.lower()] = (priority, voice.identifier)
        self._table: dict[str, str] = {}
        for tag, (_, identifier) in best.items():
            try:
                self._table[normalize_locale(tag)] = identifier
            except UnsupportedLocale:
                continue  # not shaped like a locale
        for locale, tag in _NAMED.items():  # named entries exist only when this espeak-ng has their voice
            if tag in best:
                self._table[locale] = best[tag][1]

    def voice(self, locale: str) -> str | None:
        try:
            canonical = normalize_locale(locale)
        except UnsupportedLocale:
            return None
        if canonical in self._table:
            return self._table[canonical]
        if "-" not in canonical:  # a bare language: a named locale of it ("hi" → hi-IN)
            for named in _NAMED:
                if named.startswith(canonical + "-") and named in self._table:
                    return self._table[named]
        return None

    def locales(self) -> list[str]:
        return sorted(self._table)


def _has_dictionary(data: Path, identifier: str) -> bool:
    """Whether the voice's dictionary is in `data`: named by its `dictionary` line, else by its first
    language tag up to "-" (how espeak-ng's LoadVoice chooses it)."""
    path = data / "lang" / identifier
    if not path.is_file():
        path = data / "voices" / identifier
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return True  # a layout we do not know: trust espeak-ng's list
    words = [line.split() for line in lines]
    named = [w[1] for w in words if len(w) > 1 and w[0] == "dictionary"]
    language = [w[1] for w in words if len(w) > 1 and w[0] == "language"]
    name = named[0] if named else language[0].split("-")[0] if language else None
    return name is None or (data / f"{name}_dict").is_file()


def _clean_text(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(f"text is {len(text)} characters, at most {MAX_TEXT_CHARS} are spoken")
    cleaned = "".join(" " if (ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) < 160 else c for c in text)
    if not cleaned.strip():
        raise TtsError("text is empty")
    return cleaned


_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+./-]{0,38}")  # espeak-ng copies -v into char[40]


# ---------------------------------------------------------------------------------------------- espeak-ng

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1  # and neither espeakSSML (0x10) nor espeakPHONEMES (0x100): the text is only text
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int), ("spare", ctypes.c_void_p),
    ]  # fmt: skip


# libespeak-ng's state is process-wide whatever the number of engines: one caller at a time.
_LIBRARY_LOCK = threading.Lock()


class _Library:
    """libespeak-ng through ctypes. Only ever called on its engine's thread."""

    def __init__(self, library: str, data: str) -> None:
        try:
            lib = ctypes.CDLL(library)
        except OSError as e:
            raise TtsError(f"cannot load {library}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        self._lib = lib
        used = ctypes.c_char_p()
        with _LIBRARY_LOCK:
            self.rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), _INITIALIZE_DONT_EXIT))
            version = lib.espeak_Info(ctypes.byref(used))
        if self.rate <= 0:
            raise TtsError(f"espeak-ng could not start with the data at {data}")
        if used.value is None or os.path.realpath(used.value.decode()) != os.path.realpath(data):
            # espeak-ng keeps the path in a fixed buffer and silently uses its built-in one when ours is longer.
            raise TtsError(f"espeak-ng did not take its data from {data} (a path over ~150 bytes?)")
        self.version = version.decode()
        self.voices = [v for v in self._list_voices() if _has_dictionary(Path(data), v.identifier)]
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._chunks: list[bytes] = []
        self._room = 0

    def _list_voices(self) -> list[_Voice]:
        voices = []
        with _LIBRARY_LOCK:
            array = self._lib.espeak_ListVoices(None)
            for i in range(10_000):
                if not array[i]:
                    break
                entry = array[i].contents
                languages, p = [], entry.languages
                while (priority := ctypes.string_at(p, 1)[0]) != 0:  # (priority byte, NUL-ended tag)..., 0
                    tag = ctypes.string_at(p + 1)
                    languages.append((priority, tag.decode()))
                    p += len(tag) + 2
                voices.append(_Voice((entry.identifier or b"").decode(), tuple(languages)))
        return voices

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None) -> int:
        if count > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, count * 2))
            self._room -= count
        return 1 if self._room < 0 else 0  # 1 stops the synthesis

    def synth(self, text: str, voice: str) -> Rendered:
        raw = text.encode("utf-8") + b"\0"
        with _LIBRARY_LOCK:
            self._lib.espeak_SetSynthCallback(self._callback)
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RenderFailed(f"espeak-ng has no voice {voice!r}")
            self._chunks, self._room = [], MAX_AUDIO_SECONDS * self.rate
            status = self._lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if status != 0:
            raise RenderFailed(f"espeak_Synth failed ({status})")
        if self._room < 0:
            raise RenderFailed(f"the text makes over {MAX_AUDIO_SECONDS} s of speech")
        return _rendered(np.frombuffer(b"".join(chunks), dtype=np.int16), self.rate)


class _Program:
    """The `espeak-ng` program (Debian's package), one process per render."""

    def __init__(self, program: str) -> None:
        self._program = program
        banner = self._run(["--version"], b"").decode(errors="replace")  # "eSpeak NG ...: 1.51  Data at: /usr/..."
        found = re.search(r":\s*(\S+)\s+Data at:\s*(.+?)\s*$", banner)
        self.version = (found.group(1) if found else "unknown") + "+cli"
        data = Path(found.group(2)) if found else None
        self.voices: list[_Voice] = []
        for line in self._run(["--voices"], b"").decode(errors="replace").splitlines()[1:]:
            # "%2d  %-15s%s/%c      %-18s %-20s " then "(%s %d)" per other language; spaces in names are "_"
            fields = line.split(None, 5)
            if len(fields) < 5 or not fields[0].isdigit() or fields[1] == "variant":
                continue
            others = [(int(p), t) for t, p in re.findall(r"\((\S+) (\d+)\)", fields[5] if len(fields) > 5 else "")]
            voice = _Voice(fields[4], ((int(fields[0]), fields[1]), *others))
            if data is None or _has_dictionary(data, voice.identifier):
                self.voices.append(voice)

    def _run(self, args: list[str], text: bytes) -> bytes:
        try:
            done = subprocess.run([self._program, *args], input=text, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RenderFailed(f"{self._program}: {e}") from e
        if done.returncode != 0:
            raise RenderFailed(f"{self._program} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def synth(self, text: str, voice: str) -> Rendered:
        # The program reads "[[...]]" as phonemes whatever its flags; a space keeps it text. --stdin reads the
        # whole text (without it, lines of up to 1,000 bytes).
        wav = self._run(["-v", voice, "-b", "1", "--stdin", "--stdout"], text.replace("[[", "[ [").encode())
        samples, rate = _parse_wav(wav)
        if samples.size > MAX_AUDIO_SECONDS * rate:
            raise RenderFailed(f"the text makes over {MAX_AUDIO_SECONDS} s of speech")
        return _rendered(samples, rate)


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono 16-bit PCM from a RIFF WAVE file. espeak-ng writing to a pipe cannot go back to fill in sizes,
    so a data chunk longer than what is there means "to the end"."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RenderFailed(f"not a WAV file ({len(data)} bytes)")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and size >= 16:
            form, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, pos + 8)
            if (form, channels, bits) != (1, 1, 16):
                raise RenderFailed(f"WAV is format {form}, {channels} channels, {bits} bits; not 16-bit mono PCM")
        elif chunk == b"data":
            if not rate:
                raise RenderFailed("WAV data before its format")
            pcm = data[pos + 8 : pos + 8 + size]
            return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise RenderFailed("WAV without data")


def _rendered(samples: np.ndarray, rate: int) -> Rendered:
    if samples.size == 0:
        raise RenderFailed("espeak-ng produced no audio")
    return Rendered(samples=samples, rate=rate)


def _open(library: str | None, data: str | None, program: str) -> _Library | _Program:
    try:
        if library is None or data is None:
            import espeakng_loader

            library = library or espeakng_loader.get_library_path()
            data = data or espeakng_loader.get_data_path()
        return _Library(str(library), str(data))
    except (ImportError, RuntimeError, TtsError) as e:
        found = shutil.which(program)
        if found is None:
            raise TtsError(f"no espeak-ng: the espeakng-loader library failed ({e}) and {program!r} is not on "
                           "PATH; pip install espeakng-loader, or apt install espeak-ng") from e  # fmt: skip
        log.warning("espeak-ng library unavailable (%s); using the program %s", e, found)
        return _Program(found)


class EspeakEngine:
    """espeak-ng as a `TtsEngine`. Construction loads the library (or finds the program) and reads its
    voices, blocking for some tens of milliseconds; raises TtsError when there is no espeak-ng at all.

    library, data: libespeak-ng and its espeak-ng-data directory (default: the espeakng-loader wheel's).
    program: the `espeak-ng` program used when the library cannot be loaded."""

    name = "espeak-ng"

    def __init__(self, *, library: str | None = None, data: str | None = None, program: str = "espeak-ng") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak-ng")
        try:
            self._backend = self._executor.submit(_open, library, data, program).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self.version: str = self._backend.version
        self._table = _LocaleTable(self._backend.voices)
        self._closed = False

    def locale_voice(self, locale: str) -> str | None:
        return self._table.voice(locale)

    def locales(self) -> list[str]:
        return self._table.locales()

    async def render(self, text: str, *, locale: str, voice: str | None = None) -> Rendered:
        chosen = self.locale_voice(locale)
        if chosen is None:
            raise UnsupportedLocale(locale)
        cleaned = _clean_text(text)
        if voice is not None:
            if not _VOICE_NAME.fullmatch(voice) or ".." in voice:
                raise TtsError(f"not a voice name: {voice!r}")
            chosen = voice
        if self._closed:
            raise TtsError("the text-to-speech engine is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._backend.synth, cleaned, chosen)

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)


def default_engine() -> TtsEngine:
    """The engine a deployment uses: espeak-ng from the espeakng-loader wheel, else the `espeak-ng` program."""
    return EspeakEngine()


# ---------------------------------------------------------------------------------------------- cache

_KEY = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".partial-"
_STALE_TEMP_SECONDS = 3600  # a temp file this old is left by a crashed writer


class TtsCache:
    """Blobs on disk under a key made from what was rendered, least recently used first out past
    `max_bytes`. It does not care what the bytes are. Blocking I/O: call it from a thread. Entries are
    written to a temp file, fsynced and renamed, so a key's file is whole or absent, across processes too.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 200 * 1024 * 1024, clock: Clock | None = None) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._clock = clock or SystemClock()
        directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(engine: TtsEngine, text: str, locale: str, voice: str | None) -> str:
        """sha256 of the engine's name and version, the text, the canonical locale and the voice."""
        # A locale that does not normalize is keyed as given: it is never rendered, so never cached.
        with contextlib.suppress(UnsupportedLocale):
            locale = normalize_locale(locale)
        fields = [engine.name, engine.version, text, locale, voice]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            self._touch(path)
        except FileNotFoundError:
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there; data over max_bytes is not kept."""
        path = self._path(key)
        if len(data) > self._max_bytes:
            return
        fd, temp = tempfile.mkstemp(dir=self._dir, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._touch(Path(temp))
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self._evict()

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self._dir / key

    def _touch(self, path: Path) -> None:
        now = self._clock.now_ms() / 1000
        os.utime(path, (now, now))

    def _evict(self) -> None:
        now = self._clock.now_ms() / 1000
        entries: list[tuple[float, int, Path]] = []
        with os.scandir(self._dir) as scan:
            for entry in scan:
                try:
                    stat = entry.stat()
                    if _KEY.fullmatch(entry.name):
                        entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
                    elif entry.name.startswith(_TEMP_PREFIX) and now - stat.st_mtime > _STALE_TEMP_SECONDS:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # evicted or renamed by another process meanwhile
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self._max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
