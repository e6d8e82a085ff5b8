"""Properties that must hold for every input (Hypothesis): the normalizer never raises and
speaks only the voice's characters, and storage keys never leave their root or prefix."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.jobs import speech_key
from common.normalize import Normalizer
from common.repository import scan
from common.storage import GCSStorage, LocalStorage, audio_key, is_key
from harness.processes import REPO
from harness.voice_factory import COMPAT, CONJOINING, PUNCTUATION, SYLLABLES
from tests import report
from tests.support import TEST_SECRET

NORMALIZER_EXAMPLES = 300
KEY_EXAMPLES = 400

# -- Korean-heavy text ---------------------------------------------------------------------------

_HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
_JAMO = st.characters(min_codepoint=0x1100, max_codepoint=0x11FF)  # archaic ones included
_COMPAT_JAMO = st.characters(min_codepoint=0x3131, max_codepoint=0x318E)
_DIGITS = st.sampled_from("0123456789０１２３") | st.characters(categories=["Nd"])
_LATIN = st.characters(min_codepoint=0x41, max_codepoint=0x7A) | st.characters(
    min_codepoint=0xC0, max_codepoint=0x24F
)
_PUNCTUATION = st.sampled_from(".,!?;:-/()[]{}'\"…。！？~%℃°·@#&*+=<>|\\_^`")
_EMOJI = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF) | st.sampled_from(
    ["\u200d", "\ufe0f", "\u2764"]
)
_EMOJI_SEQUENCES = st.sampled_from(["👩‍👩‍👧", "🇰🇷", "❤️", "👍🏽"])
_CONTROLS = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cs"])
_COUNTER = r"(km|kg|mb|%|℃|원|년|개|시|번)?"
_NUMBERS = st.one_of(
    st.from_regex(rf"\A-?[0-9]{{1,30}}([.,][0-9]{{1,6}})*{_COUNTER}\Z", fullmatch=True),
    st.from_regex(rf"\A[1-9][0-9]{{0,2}}(,[0-9]{{3}}){{0,8}}{_COUNTER}\Z", fullmatch=True),
    st.from_regex(r"\A[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}\Z", fullmatch=True),
    st.tuples(
        st.text(_DIGITS, min_size=1, max_size=4), st.text(_DIGITS, min_size=1, max_size=4)
    ).map(".".join),
)

_PIECE = st.one_of(
    st.text(_HANGUL, min_size=1, max_size=8),
    st.text(_HANGUL, min_size=1, max_size=8),
    st.text(_JAMO | _COMPAT_JAMO, min_size=1, max_size=4),
    _NUMBERS,
    st.text(_LATIN, min_size=1, max_size=8),
    st.text(_PUNCTUATION | _EMOJI | _CONTROLS, min_size=1, max_size=3),
    _EMOJI_SEQUENCES,
    st.sampled_from([" ", "  ", "\n", ". ", "! ", "? ", ", "]),
)
KOREAN_HEAVY = st.lists(_PIECE, max_size=30).map("".join)
ANY_TEXT = st.one_of(KOREAN_HEAVY, KOREAN_HEAVY, st.text(), st.text(_CONTROLS | _HANGUL))


def _demo_characters() -> str:
    """A shipped demo voice's real symbol inventory, read from its config."""
    voices = scan(REPO / "voice_model").voices
    return next(iter(voices.values())).characters if voices else CONJOINING + ".,!? "


SCRIPTS = {
    "conjoining-jamo voice": CONJOINING + PUNCTUATION,
    "compatibility-jamo voice": COMPAT + PUNCTUATION,
    "syllable voice": SYLLABLES + PUNCTUATION,
    "demo voice (its shipped config)": _demo_characters(),
}


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    """One normalizer (g2pK's dictionary loads once) for every example."""
    normalizer = Normalizer()
    normalizer.warm_up()
    return normalizer


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_normalizer_never_raises_and_speaks_only_the_voice(
    normalizer: Normalizer, script: str
) -> None:
    """For any text, in every script the normalizer supports: no exception, and each sentence
    it returns is non-empty, holds a letter the voice can say and nothing else of its own."""
    characters = SCRIPTS[script]
    allowed = set(characters)
    letters = {ch for ch in allowed if ch.isalpha()}
    seen = {"examples": 0, "sentences": 0}

    @settings(
        max_examples=NORMALIZER_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(text=ANY_TEXT)
    def check(text: str) -> None:
        sentences = normalizer.sentences(text, characters)
        assert isinstance(sentences, list)
        for sentence in sentences:
            assert sentence and set(sentence) <= allowed, (text, sentence)
            assert set(sentence) & letters, (text, sentence)
        seen["examples"] += 1
        seen["sentences"] += len(sentences)

    check()
    report.record(
        "fuzzing",
        f"normalizer, {script}: {seen['examples']} generated texts (any Unicode with lone "
        "surrogates; Korean-heavy mixes of Hangul, jamo, 30-digit and comma-grouped numbers, "
        "other scripts' digits, Latin, punctuation, emoji, controls)",
        f"never raised; {seen['sentences']} sentences, only the voice's characters",
    )


# -- storage keys --------------------------------------------------------------------------------

_PARTS = st.sampled_from(
    ["", ".", "..", "wav", "1", "out", "link", "inside", "%2e%2e", "\\", "..\\..", "\x00", "~"]
)
_LONG = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "가", "é"]), st.integers(80, 2000))
PATHISH = st.lists(_PARTS | _LONG | st.text(max_size=12), max_size=6).map("/".join) | st.text()


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root with a file, a folder symlink leading out and one staying inside."""
    base = tmp_path_factory.mktemp("keys")
    root = base / "root"
    (root / "wav" / "1").mkdir(parents=True)
    (root / "wav" / "1" / "a.wav").write_bytes(b"RIFF")
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_bytes(b"secret")
    os.symlink(base / "outside", root / "wav" / "out")
    os.symlink(root / "wav" / "1", root / "wav" / "inside")
    os.symlink(base / "outside" / "secret", root / "link")
    return root


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


@settings(max_examples=KEY_EXAMPLES, deadline=None)
@given(
    member_id=st.integers(min_value=0, max_value=2**63),
    version=st.text(),
    text=st.text(),
    pause=st.floats(allow_nan=True, allow_infinity=True),
)
def test_keys_are_server_shaped_and_stay_in_the_root(
    media_root: Path, member_id: int, version: str, text: str, pause: float
) -> None:
    """Whatever the member id, voice version or text: audio_key and speech_key give keys of
    the server's shape, whose local file is under the root."""
    storage = LocalStorage(media_root)
    for key in (
        audio_key(member_id, version, text, secret=TEST_SECRET),
        speech_key(member_id, version, text, pause, secret=TEST_SECRET),
    ):
        assert is_key(key), key
        path = storage.path_for(key)
        assert path is not None and _inside(path, media_root)


@given(member_id=st.integers(max_value=-1), version=st.text())
def test_negative_member_ids_build_no_key(member_id: int, version: str) -> None:
    """The one input audio_key refuses (the API never lets it through) is refused loudly."""
    with pytest.raises(ValueError, match="refusing to build key"):
        audio_key(member_id, version, "text", secret=TEST_SECRET)


def test_any_string_is_refused_or_inside_the_root(media_root: Path) -> None:
    """For any string at all, path_for is None or a path inside the root (resolved, symlinks
    followed), and exists() and lookup() answer without raising."""
    storage = LocalStorage(media_root)
    counts = {"examples": 0, "refused": 0}

    @settings(max_examples=KEY_EXAMPLES, deadline=None)
    @given(key=PATHISH)
    def check(key: str) -> None:
        path = storage.path_for(key)
        if path is None:
            counts["refused"] += 1
        else:
            assert _inside(path, media_root), (key, path)
        storage.lookup(key)
        counts["examples"] += 1

    check()
    for key in ("wav/out/secret", "link", "wav/inside/a.wav", "../root/wav/1/a.wav"):
        assert storage.path_for(key) is None, key
    assert storage.path_for("wav/1/a.wav") == media_root.resolve() / "wav" / "1" / "a.wav"
    report.record(
        "fuzzing",
        f"local storage: {counts['examples']} generated keys (any string; path-like pieces: "
        "'..', backslashes, NUL, names over NAME_MAX, symlinks out and in)",
        f"every path inside the root; {counts['refused']} refused; exists/lookup never raised",
    )


_SEGMENT = st.from_regex(r"\A[a-z0-9_-]{1,8}\Z", fullmatch=True)


@pytest.fixture(scope="module")
def gcs_env(service_account_key: Path) -> Iterator[None]:
    """Storage pointed at an emulator address nobody listens on: names and signed URLs are
    made locally, so no request is ever sent."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
        patch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_key))
        yield


@pytest.mark.usefixtures("gcs_env")
def test_gcs_object_names_stay_under_the_prefix() -> None:
    """For any prefix and any key string: the object name is refused (not a server key) or
    starts with the prefix, and the signed URL's path, even normalized the way a browser
    would, stays under bucket/prefix."""
    counts = {"examples": 0, "refused": 0}

    @settings(
        max_examples=KEY_EXAMPLES // 2,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        prefix=st.lists(_SEGMENT, max_size=3).map("/".join),
        key=PATHISH
        | st.builds(
            audio_key, st.integers(0, 10**6), st.text(), st.text(), secret=st.just(TEST_SECRET)
        ),
    )
    def check(prefix: str, key: str) -> None:
        storage = GCSStorage("moksori-test", prefix)
        counts["examples"] += 1
        try:
            name = storage._name(key)
        except ValueError:
            assert not is_key(key)
            counts["refused"] += 1
            return
        assert name == (f"{prefix}/{key}" if prefix else key)
        assert ".." not in name.split("/") and "." not in name.split("/")
        base = f"/moksori-test/{prefix}/" if prefix else "/moksori-test/"
        path = unquote(urlsplit(storage.url(key)).path)
        assert posixpath.normpath(path).startswith(base), (key, path)
        assert storage.location(key) == f"gs://moksori-test/{name}"

    check()
    report.record(
        "fuzzing",
        f"GCS object names: {counts['examples']} generated (prefix, key) pairs",
        f"always under the prefix, in the name and the signed URL's normalized path; "
        f"{counts['refused']} non-keys refused",
    )
