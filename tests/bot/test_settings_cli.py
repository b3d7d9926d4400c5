"""Settings, CLI usage and the clear errors of the foundation."""

from __future__ import annotations

import socket

import pytest

from bot.cli import main
from bot.settings import PLACEHOLDER_SECRET, Settings, get_settings
from knowledge.errors import ConfigurationError


def test_placeholder_secret_refused_outside_dev():
    Settings(env="dev").check_secrets()
    with pytest.raises(ConfigurationError) as err:
        Settings(env="production", secret_key=PLACEHOLDER_SECRET).check_secrets()
    assert err.value.code == "placeholder_secret"
    Settings(env="production", secret_key="x" * 40).check_secrets()


def test_default_database_is_sqlite_under_data_dir(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'hybridesk.db').resolve()}"


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDESK_PORT", "9123")
    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert get_settings().port == 9123
        assert get_settings().data_dir == tmp_path
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("argv", [["--help"], ["init", "--help"], ["serve", "--help"], ["chat", "--help"],
                                  ["db", "upgrade", "--help"], ["users", "add", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "usage: hybridesk" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--no-such-option"])
    assert exit_.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_database_url_names_the_fix(capsys):
    assert main(["db", "upgrade", "--url", "not a url"]) == 2
    err = capsys.readouterr().err
    assert "bad_database_url" in err and "HYBRIDESK_DATABASE_URL" in err


def test_unreachable_database_exit_code(capsys):
    code = main(["db", "upgrade", "--url", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"])
    assert code == 3
    err = capsys.readouterr().err
    assert "database_unreachable" in err
    assert "secret" not in err  # the password never reaches the output


def test_db_upgrade_and_downgrade_via_cli(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--url", url]) == 0
    assert "revision" in capsys.readouterr().out
    assert main(["db", "downgrade", "base", "--yes", "--url", url]) == 0


def test_port_in_use_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            assert main(["serve", "--port", str(port)]) == 2
        finally:
            get_settings.cache_clear()
    assert "port_in_use" in capsys.readouterr().err


def test_serve_believes_forwarded_addresses_only_from_the_configured_proxies(tmp_path, monkeypatch, capsys):
    """Rate limits and sign-in throttling count per client address: behind a proxy that is what the
    proxy forwards, and only the proxies named in HYBRIDESK_FORWARDED_ALLOW_IPS are believed."""
    import uvicorn

    from bot.server import serve

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    from bot.db.migrate import upgrade

    upgrade(url)  # (serve refuses a database not at this version's schema)
    serve(Settings(env="test", data_dir=tmp_path, database_url=url, forwarded_allow_ips="10.0.0.5"),
          host="127.0.0.1", port=port)
    serve(Settings(env="test", data_dir=tmp_path, database_url=url), host="127.0.0.1", port=port)
    capsys.readouterr()
    assert calls[0]["proxy_headers"] is True and calls[0]["forwarded_allow_ips"] == "10.0.0.5"
    assert calls[1]["proxy_headers"] is False  # no proxy configured: X-Forwarded-For is ignored
    import logging

    # the product's records at HYBRIDESK_LOG_LEVEL (QA: the switch to another NLU version was never logged)
    assert logging.getLogger("bot.conversation.nlu.registry").getEffectiveLevel() == logging.INFO


def test_auto_generator_picks_llama_cpp_for_the_default_model_only(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is a project dependency")
    from bot.services import build_generator
    from bot.settings import resolved_generator
    from models.llamacpp import LlamaCppGenerator

    assert resolved_generator(Settings(data_dir=tmp_path)) == "llamacpp"
    # a custom Hugging Face model has no GGUF file: the transformers engine runs it
    assert resolved_generator(Settings(data_dir=tmp_path, base_model_dir=tmp_path)) == "transformers"
    gguf = tmp_path / "model.gguf"
    assert resolved_generator(Settings(data_dir=tmp_path, base_model_dir=tmp_path, gguf_path=gguf)) == "llamacpp"
    assert resolved_generator(Settings(data_dir=tmp_path, generator="transformers")) == "transformers"
    monkeypatch.setenv("HYBRIDESK_GENERATOR", "llamacpp")
    assert Settings(data_dir=tmp_path).generator == "llamacpp"
    # building it loads nothing yet (the model loads on first use), but a GGUF path must exist then
    generator = build_generator(Settings(data_dir=tmp_path, base_model_dir=tmp_path, gguf_path=gguf))
    assert isinstance(generator, LlamaCppGenerator) and not generator.is_loaded
    assert generator.weights == "shipped"  # your own GGUF runs as it is
    forced = build_generator(Settings(data_dir=tmp_path, base_model_dir=tmp_path, gguf_path=gguf,
                                      llamacpp_weights="q8_0"))
    assert forced.weights == "q8_0"
    monkeypatch.setenv("HYBRIDESK_LLAMACPP_WEIGHTS", "q2")
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path)
    monkeypatch.delenv("HYBRIDESK_LLAMACPP_WEIGHTS")
    from knowledge.errors import Unavailable

    with pytest.raises(Unavailable):
        generator.generate([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("target", ["demo", "serve"])
def test_make_demo_listens_where_the_settings_say(target, monkeypatch):
    """README: HYBRIDESK_HOST / HYBRIDESK_PORT (or a line in .env) say where `serve` listens;
    `make demo` used to pass --host 127.0.0.1 --port 8000 whatever they said."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[2]

    def serve_line(*args: str, **env: str) -> str:
        out = subprocess.run(["make", "-n", "-C", str(root), target, *args], capture_output=True, text=True,
                             env={**__import__("os").environ, **env}, check=True).stdout
        return next(line for line in out.splitlines() if "hybridesk serve" in line)

    line = serve_line(HYBRIDESK_PORT="8766")
    assert "--port" not in line and "--host" not in line  # the settings decide (default 127.0.0.1:8000)
    assert serve_line("PORT=9000").split()[-2:] == ["--port", "9000"]
    assert "--host 0.0.0.0" in serve_line("HOST=0.0.0.0")


def test_serve_caps_mallocs_arenas_unless_the_operator_did():
    """``serve`` asks glibc for two malloc arenas (resident memory, README); an operator's own
    MALLOC_ARENA_MAX is left as it is."""
    import os
    import subprocess
    import sys

    code = "from bot.server import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
