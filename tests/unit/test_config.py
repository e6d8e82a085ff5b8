"""Settings come from MOKSORI_* variables with embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import REPO_ROOT, Settings


def test_defaults_run_on_a_laptop() -> None:
    """With no environment at all every setting has a usable value."""
    settings = Settings.from_env({})
    assert settings.voice_dir == REPO_ROOT / "voice_model"
    assert settings.max_text_length == 1000
    assert settings.device == "auto"
    assert not settings.result_backend.startswith("rpc")


def test_environment_is_parsed_by_type(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MOKSORI_MAX_TEXT_LENGTH": "50",
            "MOKSORI_SENTENCE_PAUSE": "0.5",
            "MOKSORI_VOICE_DIR": str(tmp_path),
            "MOKSORI_CORS_ORIGINS": "https://a.example, https://b.example",
            "MOKSORI_DEVICE": "",  # empty means default
        }
    )
    assert settings.max_text_length == 50
    assert settings.sentence_pause == 0.5
    assert settings.voice_dir == tmp_path
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.device == "auto"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="MOKSORI_MAX_TEXT_LENGTH='lots'"):
        Settings.from_env({"MOKSORI_MAX_TEXT_LENGTH": "lots"})


def test_overrides_are_parsed_and_checked(tmp_path: Path) -> None:
    """Test or programmatic overrides accept strings like the environment does."""
    settings = Settings.from_env({}, voice_dir=str(tmp_path), port="9000")
    assert settings.voice_dir == tmp_path
    assert settings.port == 9000
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, colour="blue")


def test_members_are_a_list_of_ids() -> None:
    """MOKSORI_MEMBERS=1,2 names the voices a worker serves; anything else is refused."""
    assert Settings.from_env({"MOKSORI_MEMBERS": "1, 2"}).members == (1, 2)
    assert Settings.from_env({}).members == ()
    with pytest.raises(ValueError, match=r"MOKSORI_MEMBERS: item 2 \('two'\) is not valid"):
        Settings.from_env({"MOKSORI_MEMBERS": "1,two"})


def test_waits_must_leave_threads_free() -> None:
    """MOKSORI_MAX_WAITING at or over MOKSORI_API_THREADS would let waits hold every request
    thread: refused, naming both."""
    assert Settings.from_env({"MOKSORI_MAX_WAITING": "31"}).max_waiting == 31
    with pytest.raises(ValueError, match=r"MOKSORI_MAX_WAITING=8 .*MOKSORI_API_THREADS=8"):
        Settings.from_env({"MOKSORI_MAX_WAITING": "8", "MOKSORI_API_THREADS": "8"})
