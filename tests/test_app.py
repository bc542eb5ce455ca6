"""The app factory and its configuration: layering, no side effects, clear start-up errors."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from app import create_app
from config import ConfigError, load_config
from tests.factories import PROD_ENV

ROOT = Path(__file__).resolve().parent.parent


def test_production_without_secrets_names_every_missing_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"XINWEI_ENV": "production"}, instance_path=str(tmp_path))
    message = str(err.value)
    for name in ("SECRET_KEY", "DATABASE_URL", "PUBLIC_URL", "WECHAT_APP_ID", "WECHAT_APP_SECRET",
                 "WECHAT_TOKEN", "WECHAT_ENCODING_AES_KEY", "CERT_SIGNING_KEY"):
        assert name in message


def test_production_never_inherits_dev_secrets(tmp_path: Path) -> None:
    env = dict(PROD_ENV)
    del env["WECHAT_TOKEN"]
    with pytest.raises(ConfigError, match="WECHAT_TOKEN"):
        load_config(env, instance_path=str(tmp_path))


def test_production_with_everything_set_starts_without_touching_anything(tmp_path: Path) -> None:
    config = load_config(PROD_ENV, instance_path=str(tmp_path))
    assert config["SIMULATOR_ENABLED"] is False
    # The database host does not exist: create_app must not connect, migrate or call out.
    app = create_app({**PROD_ENV})
    assert app.config["DATABASE_URL"] == PROD_ENV["DATABASE_URL"]


def test_malformed_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WECHAT_ENCODING_AES_KEY"):
        load_config({"WECHAT_ENCODING_AES_KEY": "too-short"}, instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="WECHAT_REPLAY_WINDOW"):
        load_config({"WECHAT_REPLAY_WINDOW": "soon"}, instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="WECHAT_API_BASE"):
        load_config({"WECHAT_API_BASE": "api.weixin.qq.com"}, instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="CERT_SIGNING_KEY"):
        load_config({"CERT_SIGNING_KEY": "c2hvcnQ="}, instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="SIMULATOR_ENABLED"):
        load_config({**PROD_ENV, "SIMULATOR_ENABLED": "1"}, instance_path=str(tmp_path))


def test_order_is_defaults_then_environment_then_mapping(tmp_path: Path) -> None:
    env = {"WECHAT_API_BASE": "http://127.0.0.1:9", "WECHAT_REPLAY_WINDOW": "60"}
    config = load_config(env, {"WECHAT_REPLAY_WINDOW": 30}, instance_path=str(tmp_path))
    assert config["WECHAT_API_BASE"] == "http://127.0.0.1:9"
    assert config["WECHAT_REPLAY_WINDOW"] == 30
    assert config["WECHAT_OPEN_BASE"] == "https://open.weixin.qq.com"
    assert config["DATABASE_URL"] == "sqlite:///" + str(tmp_path / "xinwei.db")


def test_create_app_has_no_side_effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    db_file = tmp_path / "never-created.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{db_file}"})
    assert not db_file.exists()
    assert set(os.listdir(tmp_path)) == before
    assert "wechat.verify_server" in app.view_functions


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [
    ("handlers", {"flask", "werkzeug", "wechat", "web", "app"}),
    ("models", {"flask", "werkzeug", "wechat", "web", "handlers", "app"}),
])
def test_layers_point_down(package: str, forbidden: set[str]) -> None:
    offenders = {str(p.relative_to(ROOT)): _imports(p) & forbidden for p in (ROOT / package).rglob("*.py")}
    assert {p: bad for p, bad in offenders.items() if bad} == {}


def test_every_module_opens_with_a_docstring() -> None:
    missing = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", "migrations"} and rel.name != "env.py" or rel.parts[0].startswith("."):
            continue
        if rel.parts[0] == "tests" and rel.name == "__init__.py":
            continue
        module = ast.parse(path.read_text(encoding="utf-8"))
        if not ast.get_docstring(module):
            missing.append(str(rel))
    assert missing == []


def test_no_unused_imports_or_undefined_names() -> None:
    """pyflakes over the project: dead imports and typos in names fail the build, not production."""
    import io

    from pyflakes.api import checkPath
    from pyflakes.reporter import Reporter

    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out, err)
    for folder in ("app.py", "cli.py", "config.py", "telemetry.py", "wsgi.py", "web", "wechat", "handlers", "jobs",
                   "models", "content", "bench", "tests"):
        path = ROOT / folder
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            checkPath(str(file), reporter)
    assert out.getvalue() + err.getvalue() == ""
